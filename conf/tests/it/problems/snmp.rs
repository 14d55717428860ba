//! What agents serve and how: snapshots, engine IDs, USM users,
//! communities and users without data, notification targets.

use crate::common::{Dir, error_at, errors, find, show};

#[test]
fn missing_snapshots() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/nope.snmprec
    snmpv2c:
      communities:
        public: {}
        private: { data: mibs/gone.snmprec }
    snmpv3:
      users: [{ name: ops, auth: { protocol: SHA, password: \"12345678\" } }]
      contexts: { vlan: \"mibs/absent.snmprec\" }
",
    );
    let nope = d.path("mibs/nope.snmprec");
    error_at(
        &ps,
        "fleet.yaml",
        4,
        11,
        &format!("snapshot file not found: {}", nope.display()),
    );
    error_at(&ps, "fleet.yaml", 8, 26, "gone.snmprec");
    error_at(&ps, "fleet.yaml", 11, 25, "absent.snmprec");
    assert_eq!(errors(&ps).len(), 3, "{}", show(&ps));
}

#[test]
fn snapshot_that_is_a_directory() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs
    snmpv2c: { communities: [public] }
",
    );
    error_at(&ps, "fleet.yaml", 4, 11, "is a directory");
}

/// `run` cannot compile a snapshot of an unknown format: an error at the
/// path, not a warning that passes `check`.
#[test]
fn snapshot_of_an_unknown_format() {
    let d = Dir::new();
    d.write("mibs/dump.txt", "1.3.6.1.2.1.1.1.0|4|x\n");
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/dump.txt
    snmpv2c: { communities: [public] }
",
    );
    error_at(&ps, "fleet.yaml", 4, 11, "is not a known snapshot format");
    assert_eq!(errors(&ps).len(), 1, "{}", show(&ps));
}

#[test]
fn bad_engine_ids() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    engine_id: \"80001f88zz\"
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
  - name: b
    listen: [\"127.0.0.1:10162\"]
    engine_id: 0x8000
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    error_at(&ps, "fleet.yaml", 4, 16, "is not hex");
    error_at(
        &ps,
        "fleet.yaml",
        9,
        16,
        "2 bytes: RFC 3411 requires 5 to 32",
    );
}

#[test]
fn same_engine_id_twice_is_a_warning() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    engine_id: 80001f8804
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
  - name: b
    listen: [\"127.0.0.1:10162\"]
    engine_id: 0x80001f8804
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
");
    let w = find(&l.warnings, "engine ID also used by agent `a`");
    assert_eq!((w.line, w.column), (9, 16), "{w}");
}

#[test]
fn usm_problems() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv3:
      users:
        - name: u1
          auth: { protocol: SHA3, password: \"12345678\" }
        - name: u2
          auth: { protocol: SHA256, password: short }
          priv: { protocol: Blowfish, password: \"12345678\" }
        - name: u3
          priv: { protocol: AES, password: \"12345678\" }
        - name: u1
          auth: { protocol: md5, password: \"12345678\" }
",
    );
    error_at(&ps, "fleet.yaml", 8, 29, "unknown auth protocol `SHA3`");
    error_at(&ps, "fleet.yaml", 10, 47, "shorter than 8 characters");
    error_at(
        &ps,
        "fleet.yaml",
        11,
        29,
        "unknown priv protocol `Blowfish`",
    );
    error_at(&ps, "fleet.yaml", 13, 17, "`priv` without `auth`");
    error_at(&ps, "fleet.yaml", 14, 17, "SNMPv3 user `u1` listed twice");
    assert_eq!(errors(&ps).len(), 5, "{}", show(&ps));
}

#[test]
fn agent_serving_nothing() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
",
    );
    error_at(&ps, "fleet.yaml", 2, 5, "agent `a` serves nothing");
}

#[test]
fn community_without_snapshot() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    snmpv1: { communities: [public] }
    snmpv2c:
      communities:
        public: {}
        private: { data: mibs/b.snmprec }
",
    );
    error_at(
        &ps,
        "fleet.yaml",
        4,
        29,
        "`snmpv1` community has no snapshot",
    );
    error_at(
        &ps,
        "fleet.yaml",
        7,
        9,
        "`snmpv2c` community has no snapshot",
    );
    assert_eq!(errors(&ps).len(), 2, "{}", show(&ps));
    // Community strings are secrets: never quoted in messages.
    assert!(
        ps.iter().all(|p| !p.message.contains("public")),
        "{}",
        show(&ps)
    );
}

#[test]
fn v3_users_without_snapshot() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    snmpv3:
      users: [{ name: ops, auth: { protocol: SHA, password: \"12345678\" } }]
",
    );
    error_at(&ps, "fleet.yaml", 5, 7, "SNMPv3 users but no snapshot");
}

#[test]
fn notify_target_problems() {
    let d = Dir::new();
    let ps = d.fails(
        "events:
  notify:
    - target: 127.0.0.1
      events: [died, dide]
    - target: \"[::1]:162\"
      version: 3
    - target: nms.example:162
      version: 4
    - target: nms.example:162
      version: 1
      type: inform
    - target: nms.example:162
      user: ops
agents: []
",
    );
    error_at(&ps, "fleet.yaml", 3, 15, "`127.0.0.1` has no port");
    error_at(
        &ps,
        "fleet.yaml",
        4,
        22,
        "unknown event kind `dide` (did you mean `died`?)",
    );
    error_at(&ps, "fleet.yaml", 5, 7, "a version 3 target needs `user`");
    error_at(&ps, "fleet.yaml", 8, 16, "unknown SNMP version `4`");
    error_at(&ps, "fleet.yaml", 11, 13, "SNMPv1 has no inform");
    error_at(
        &ps,
        "fleet.yaml",
        13,
        13,
        "`user` is only used with version 3",
    );
}

#[test]
fn agent_notify_word() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    notify: inherti
",
    );
    error_at(&ps, "fleet.yaml", 6, 13, "`notify: inherti`");
}
