//! `values:` and `identity:` problems: bad OIDs, types and values, with
//! their positions, also in template copies.

use crate::common::{Dir, error_at, errors, find, show};

#[test]
fn bad_oids_types_and_values_point_at_them() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:20001\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    values:
      1.3.6.x.1: one
      1.3.6.1.2.1.1.5.0: { type: 99, value: x }
      1.3.6.1.2.1.1.6.0: { type: 2, value: twelve }
      1.3.6.1.2.1.1.7.0: { type: 4x, value: abc }
      1.3.6.1.2.1.1.8.0: { type: 129, value: \"\" }
      1.3.6.1.2.1.1.9.0: { type: 64, value: 10.0.0 }
      .1.3.6.1.2.1.1.6.0: again
",
    );
    error_at(&ps, "fleet.yaml", 7, 7, "`1.3.6.x.1` is not a numeric OID");
    error_at(&ps, "fleet.yaml", 8, 34, "unknown type `99`");
    error_at(
        &ps,
        "fleet.yaml",
        9,
        44,
        "`twelve` is not a value of type 2",
    );
    error_at(&ps, "fleet.yaml", 10, 45, "`abc` is not hex");
    error_at(&ps, "fleet.yaml", 11, 34, "exception, not a value");
    error_at(&ps, "fleet.yaml", 12, 45, "expected a dotted quad");
    error_at(
        &ps,
        "fleet.yaml",
        13,
        7,
        ".1.3.6.1.2.1.1.6.0 is listed twice (first at ",
    );
    assert_eq!(errors(&ps).len(), 7, "{}", show(&ps));
}

#[test]
fn a_template_copy_with_a_bad_value_is_named() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: \"p-{i}\"
    count: 300
    listen: [\"127.0.0.1:{i+20000}\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    values:
      1.3.6.1.4.1.99999.1.0: { type: 64, value: \"10.0.0.{i}\" }
",
    );
    let p = find(&ps, "expected a dotted quad");
    assert_eq!(p.line, 8, "{p}");
    assert!(p.message.contains("i=256, 257, 258 and 41 more"), "{p}");
}

#[test]
fn bad_identity_and_unknown_keys() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:20001\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    identity: { sys_name: true, mac: true }
",
    );
    let p = find(&ps, "mac");
    assert_eq!(p.line, 6, "{p}");
}

#[test]
fn a_live_object_is_a_warning() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: a
    listen: [\"127.0.0.1:20001\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    values:
      1.3.6.1.2.1.1.3.0: { type: 67, value: 5 }
");
    let w = find(&l.warnings, "served live");
    assert_eq!((w.line, w.column), (7, 7), "{w}");
}

#[test]
fn an_unknown_counters_mode_points_at_it() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:20001\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    counters: wild
",
    );
    error_at(
        &ps,
        "fleet.yaml",
        6,
        15,
        "unknown counters mode `wild`: expected static or animate",
    );
}
