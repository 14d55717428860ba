//! SNMP settings: both community forms, SNMPv3 users and contexts,
//! notification targets, and the warning about readable secrets.

use std::path::PathBuf;
use std::time::Duration;

use agentcluster_conf::*;

use crate::common::Dir;

use super::addr;

#[test]
fn both_community_forms() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv1: { communities: [public, other] }
    snmpv2c:
      communities:
        public: {}
        bare:
        private: { data: mibs/b.snmprec, write: true }
");
    let a = &l.fleet.agents[0];
    let v1: Vec<(&str, &PathBuf, bool)> = a
        .snmpv1
        .as_ref()
        .expect("v1")
        .entries
        .iter()
        .map(|c| (c.name.expose(), &c.data, c.write))
        .collect();
    let pa = d.path("mibs/a.snmprec");
    let pb = d.path("mibs/b.snmprec");
    assert_eq!(v1, vec![("public", &pa, false), ("other", &pa, false)]);
    let v2: Vec<(&str, &PathBuf, bool)> = a
        .snmpv2c
        .as_ref()
        .expect("v2c")
        .entries
        .iter()
        .map(|c| (c.name.expose(), &c.data, c.write))
        .collect();
    assert_eq!(
        v2,
        vec![
            ("public", &pa, false),
            ("bare", &pa, false),
            ("private", &pb, true)
        ]
    );
    assert_eq!(a.snapshots(), vec![&pa, &pb]);
}

#[test]
fn community_with_own_data_needs_no_agent_data() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    snmpv2c: { communities: { public: { data: mibs/b.snmprec } } }
");
    let a = &l.fleet.agents[0];
    assert_eq!(a.data, None);
    assert_eq!(
        a.snmpv2c.as_ref().expect("v2c").entries[0].data,
        d.path("mibs/b.snmprec")
    );
}

#[test]
fn snmpv3_users_and_contexts() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: a
    listen: [\"127.0.0.1:10161\", \"[::1]:10161\"]
    engine_id: \"0x80001F8804636F72652D73772D31\"
    data: mibs/a.snmprec
    snmpv3:
      users:
        - name: ops
          auth: { protocol: sha256, password: \"auth-secret\" }
          priv: { protocol: aes, password: \"priv-secret\" }
          write: true
        - name: ro
          auth: { protocol: SHA1, password: \"12345678\" }
        - name: nobody
      contexts: { vlan10: mibs/c.snmpwalk }
");
    let a = &l.fleet.agents[0];
    assert_eq!(a.listen, vec![addr("127.0.0.1:10161"), addr("[::1]:10161")]);
    assert_eq!(
        a.engine_id,
        Some(hex::decode("80001f8804636f72652d73772d31").expect("hex"))
    );
    let v3 = a.snmpv3.as_ref().expect("v3");
    let ops = &v3.users[0];
    assert_eq!(ops.name, "ops");
    assert_eq!(
        ops.auth.as_ref().map(|(p, s)| (*p, s.expose())),
        Some((AuthProtocol::Sha256, "auth-secret"))
    );
    assert_eq!(
        ops.privacy.as_ref().map(|(p, s)| (*p, s.expose())),
        Some((PrivProtocol::Aes128, "priv-secret"))
    );
    assert!(ops.write);
    assert_eq!(
        v3.users[1].auth.as_ref().map(|(p, _)| *p),
        Some(AuthProtocol::Sha1)
    );
    assert!(!v3.users[1].write);
    assert_eq!(v3.users[2].auth, None);
    // "" is the agent's data unless listed.
    assert_eq!(
        v3.contexts,
        vec![
            (String::new(), d.path("mibs/a.snmprec")),
            ("vlan10".to_string(), d.path("mibs/c.snmpwalk"))
        ]
    );
    // Secrets never show in Debug.
    let dbg = format!("{:?}", l.fleet);
    assert!(
        !dbg.contains("auth-secret") && !dbg.contains("priv-secret"),
        "{dbg}"
    );
}

#[test]
fn listed_default_context_wins() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv3:
      users: [{ name: ops }]
      contexts: { \"\": mibs/b.snmprec }
");
    let v3 = l.fleet.agents[0].snmpv3.as_ref().expect("v3");
    assert_eq!(v3.contexts, vec![(String::new(), d.path("mibs/b.snmprec"))]);
}

#[test]
fn notify_targets() {
    let d = Dir::new();
    let l = d.ok("events:
  notify:
    - target: nms.example:162
      version: 1
      community: traps
    - target: \"[::1]:162\"
      version: \"2c\"
      type: inform
      events: [died, failed]
      retries: 5
      timeout: 500ms
    - target: 127.0.0.1:1162
      version: 3
      type: inform
      user: ops
      auth: { protocol: SHA512, password: \"auth-secret\" }
      priv: { protocol: AES256C, password: \"priv-secret\" }
agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    notify:
      - target: 127.0.0.1:2162
  - name: b
    listen: [\"127.0.0.1:10162\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    notify: none
");
    let n = &l.fleet.events.notify;
    assert_eq!(n.len(), 3);
    assert_eq!(
        (n[0].version, n[0].kind),
        (SnmpVersion::V1, NotifyType::Trap)
    );
    assert_eq!(n[0].community.as_ref().map(Secret::expose), Some("traps"));
    assert_eq!(
        (n[1].version, n[1].kind),
        (SnmpVersion::V2c, NotifyType::Inform)
    );
    assert_eq!(
        n[1].events,
        Some(vec![
            agentcluster_conf::EventKind::Died,
            agentcluster_conf::EventKind::Failed
        ])
    );
    assert_eq!(
        (n[1].retries, n[1].timeout),
        (5, Duration::from_millis(500))
    );
    assert_eq!(n[2].version, SnmpVersion::V3);
    assert_eq!(n[2].community, None);
    let u = n[2].user.as_ref().expect("user");
    assert_eq!(u.name, "ops");
    assert_eq!(u.auth.as_ref().map(|(p, _)| *p), Some(AuthProtocol::Sha512));
    assert_eq!(
        u.privacy.as_ref().map(|(p, _)| *p),
        Some(PrivProtocol::Aes256C)
    );
    assert!(!u.write);
    match &l.fleet.agents[0].notify {
        AgentNotify::Targets(t) => assert_eq!(t[0].target, "127.0.0.1:2162"),
        other => panic!("{other:?}"),
    }
    assert_eq!(l.fleet.agents[1].notify, AgentNotify::Targets(Vec::new()));
}

#[test]
fn a_world_readable_file_with_secrets_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("d.snmprec");
    std::fs::write(&snap, "1.3.6.1.2.1.1.1.0|4|x\n").unwrap();
    let path = dir.path().join("fleet.yaml");
    let write = |community: &str, mode: u32| {
        std::fs::write(
            &path,
            format!(
                "agents:\n  - name: a\n    listen: [\"127.0.0.1:20001\"]\n    data: {}\n    snmpv2c: {{ communities: [{community}] }}\n",
                snap.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        agentcluster_conf::load(&path).unwrap().warnings
    };
    let w = write("s3cret-rw", 0o644);
    assert!(w.iter().any(|p| p.message.contains("secrets")), "{w:?}");
    assert!(
        w.iter().all(|p| !p.message.contains("s3cret")),
        "never the secret itself"
    );
    assert!(
        write("s3cret-rw", 0o640)
            .iter()
            .all(|p| !p.message.contains("secrets"))
    );
    assert!(
        write("public", 0o644)
            .iter()
            .all(|p| !p.message.contains("secrets"))
    );
}
