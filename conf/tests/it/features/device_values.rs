//! Per-device values and identity: plain and typed values, templates in
//! keys and values, what `identity` asks for.

use agentcluster_conf::{DeviceValue, Identity};

use crate::common::Dir;

#[test]
fn values_plain_and_typed_with_templates_in_keys_and_values() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: \"printer-{i}\"
    count: 3
    listen: [\"127.0.0.1:{i+20000}\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    values:
      1.3.6.1.2.1.1.5.0: \"printer-{i}\"
      1.3.6.1.2.1.1.6.0: floor 2
      1.3.6.1.4.1.99999.{i+1}.0: { type: 2, value: \"{i+10}\" }
      .1.3.6.1.2.1.2.2.1.6.1: { type: 4x, value: \"02000000000{i}\" }
      1.3.6.1.2.1.1.7.0: 72
");
    let a = &l.fleet.agents[2];
    assert_eq!(
        a.values,
        vec![
            DeviceValue {
                oid: vec![1, 3, 6, 1, 2, 1, 1, 5, 0],
                kind: None,
                value: "printer-2".into()
            },
            DeviceValue {
                oid: vec![1, 3, 6, 1, 2, 1, 1, 6, 0],
                kind: None,
                value: "floor 2".into()
            },
            DeviceValue {
                oid: vec![1, 3, 6, 1, 4, 1, 99999, 3, 0],
                kind: Some("2".into()),
                value: "12".into()
            },
            DeviceValue {
                oid: vec![1, 3, 6, 1, 2, 1, 2, 2, 1, 6, 1],
                kind: Some("4x".into()),
                value: "020000000002".into()
            },
            DeviceValue {
                oid: vec![1, 3, 6, 1, 2, 1, 1, 7, 0],
                kind: None,
                value: "72".into()
            },
        ]
    );
    assert_eq!(l.fleet.agents[0].values[0].value, "printer-0");
    assert_eq!(a.identity, None);
}

#[test]
fn values_take_template_expressions_and_formats() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: \"ap-{i:04d}\"
    count: 300
    listen: [\"127.2.{i/250}.{i%250+1}:161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    values:
      1.3.6.1.4.1.99999.{i/250}.{i%250}: \"floor {i/100}\"
      1.3.6.1.2.1.2.2.1.6.1: { type: 4x, value: \"02000000{i:04x}\" }
");
    let a = &l.fleet.agents[299];
    assert_eq!(a.values[0].oid, vec![1, 3, 6, 1, 4, 1, 99999, 1, 49]);
    assert_eq!(a.values[0].value, "floor 2");
    assert_eq!(a.values[1].value, "02000000012b");
}

#[test]
fn identity_all_some_or_none() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: a
    listen: [\"127.0.0.1:20001\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    identity: true
  - name: b
    listen: [\"127.0.0.1:20002\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    identity: { phys_address: false }
  - name: c
    listen: [\"127.0.0.1:20003\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    identity: false
");
    let all = Identity {
        sys_name: true,
        addresses: true,
        phys_address: true,
    };
    assert_eq!(l.fleet.agents[0].identity, Some(all));
    assert_eq!(
        l.fleet.agents[1].identity,
        Some(Identity {
            phys_address: false,
            ..all
        })
    );
    assert_eq!(l.fleet.agents[2].identity, None);
}

#[test]
fn counters_static_by_default_or_animate() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: still
    listen: [\"127.0.0.1:20001\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
  - name: busy
    listen: [\"127.0.0.1:20002\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    counters: animate
");
    use agentcluster_conf::CounterMode;
    assert_eq!(l.fleet.agents[0].counters, CounterMode::Static);
    assert_eq!(l.fleet.agents[1].counters, CounterMode::Animate);
}
