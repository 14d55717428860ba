//! Template expressions: arithmetic over `i` and formats in every string of
//! an agent, so that one entry makes many distinct devices.

use std::collections::HashSet;

use agentcluster_conf::*;

use crate::common::Dir;

use super::addr;

/// 600 printers, each at its own address on the standard port, with its
/// own name, engine ID, community, user, context and notify target; three
/// snapshot models shared among them.
#[test]
fn expressions_make_distinct_devices() {
    let d = Dir::new();
    for m in 0..3 {
        d.write(
            &format!("mibs/model-{m}.snmprec"),
            "1.3.6.1.2.1.1.1.0|4|x\n",
        );
    }
    let l = d.ok("agents:
  - name: \"printer-{i:04d}\"
    count: 600
    listen: [\"10.1.{i/250}.{i%250+1}:161\", \"[fd00::{i:x}]:{(i+1)*2+10000}\"]
    engine_id: \"80001f8804{i:08x}\"
    data: \"mibs/model-{i%3}.snmprec\"
    snmpv2c:
      communities:
        \"c{i%256:02x}\": {}
        \"{{literal}}\": { data: mibs/a.snmprec }
    snmpv3:
      users: [{ name: \"u{i:X}\" }]
      contexts: { \"ctx-{-i+1000}\": mibs/b.snmprec }
    notify:
      - target: \"127.0.0.{i%2+1}:162\"
        community: \"t{i/100}\"
");
    let agents = &l.fleet.agents;
    assert_eq!(agents.len(), 600);
    let p = |i: usize| &agents[i];
    assert_eq!(p(0).name, "printer-0000");
    assert_eq!(
        p(0).listen,
        vec![addr("10.1.0.1:161"), addr("[fd00::0]:10002")]
    );
    assert_eq!(p(249).listen[0], addr("10.1.0.250:161"));
    assert_eq!(p(250).listen[0], addr("10.1.1.1:161"));
    let last = p(599);
    assert_eq!(last.name, "printer-0599");
    assert_eq!(
        last.listen,
        vec![addr("10.1.2.100:161"), addr("[fd00::257]:11200")]
    );
    assert_eq!(
        last.engine_id,
        Some(vec![0x80, 0x00, 0x1f, 0x88, 0x04, 0x00, 0x00, 0x02, 0x57])
    );
    assert_eq!(last.data, Some(d.path("mibs/model-2.snmprec")));
    let v2c = last.snmpv2c.as_ref().expect("v2c");
    let names: Vec<&str> = v2c.entries.iter().map(|c| c.name.expose()).collect();
    assert_eq!(names, ["c57", "{literal}"]);
    let v3 = last.snmpv3.as_ref().expect("v3");
    assert_eq!(v3.users[0].name, "u257");
    assert!(
        v3.contexts.iter().any(|(c, _)| c == "ctx-401"),
        "{:?}",
        v3.contexts
    );
    let AgentNotify::Targets(targets) = &last.notify else {
        panic!("{:?}", last.notify)
    };
    assert_eq!(targets[0].target, "127.0.0.2:162");
    assert_eq!(
        targets[0].community.as_ref().map(Secret::expose),
        Some("t5")
    );
    assert_eq!(p(10).name, "printer-0010");
    assert_eq!(
        p(10).snmpv3.as_ref().map(|v| v.users[0].name.as_str()),
        Some("uA")
    );
    let addresses: HashSet<_> = agents.iter().map(|a| a.listen[0]).collect();
    assert_eq!(addresses.len(), 600);
    // Counted without expanding: three models, a.snmprec and b.snmprec.
    assert_eq!(l.fleet.counts.agents, 600);
    assert_eq!(l.fleet.counts.snapshots, 3 + 2);
    assert_eq!(l.fleet.counts.snapshot_bytes, 3 * 22);
}

/// A templated snapshot path counts the distinct files its copies name,
/// found without making the copies; past 1,024 names, one per copy.
#[test]
fn snapshot_files_are_counted_without_copies() {
    let d = Dir::new();
    let path = d.write(
        "fleet.yaml",
        "agents:
  - name: \"a-{i}\"
    count: 5000
    listen: [\"127.1.{i/250}.{i%250+1}:161\"]
    data: \"mibs/m-{i%1024}.snmprec\"
    snmpv2c:
      communities: { public: {}, other: { data: \"mibs/dev-{i}.snmprec\" } }
  - name: \"b-{i}\"
    count: 10
    listen: [\"127.2.0.{i+1}:161\"]
    data: \"mibs/m-{i*100}.snmprec\"
    snmpv2c: { communities: [public] }
",
    );
    let mut seen = None;
    check(&path, &mut |fleet| {
        seen = Some(fleet.counts);
        vec!["refused".to_string()]
    });
    let counts = seen.expect("fits was asked");
    assert_eq!(counts.agents, 5010);
    // m-0 … m-1023 (b's m-0 … m-900 among them), and dev-0 … dev-4999.
    assert_eq!(counts.snapshots, 1024 + 5000);
}
