//! What a valid configuration turns into: defaults, both community forms,
//! templates, includes, legacy files.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agentcluster_conf::*;
use common::{Dir, error_at, find, show};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn defaults() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
");
    assert!(l.warnings.is_empty(), "{}", show(&l.warnings));
    let f = &l.fleet;
    assert_eq!(f.source, d.path("fleet.yaml"));
    let c = &f.cluster;
    assert!(!c.node.is_empty());
    assert!(c.state_dir.ends_with("agentcluster"), "{:?}", c.state_dir);
    assert!(c.cache_dir.ends_with("agentcluster"), "{:?}", c.cache_dir);
    assert_eq!(c.control_socket, None);
    assert_eq!(c.start_tokens, 8);
    assert_eq!(c.start_timeout, Duration::from_secs(10));
    assert_eq!(c.heartbeat, Duration::from_secs(1));
    assert_eq!(c.inactive_after, Duration::from_secs(5));
    assert_eq!(c.stop_timeout, Duration::from_secs(5));
    assert_eq!(c.agents_per_process, 1);
    assert_eq!(
        c.restart,
        Restart {
            policy: RestartPolicy::Always,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            max_restarts: 10,
            window: Duration::from_secs(60),
        }
    );
    assert_eq!(c.probe, None);
    assert_eq!(c.snmp, None);
    assert_eq!(c.etcd, None);
    assert_eq!(c.max_varbinds, 1000);
    assert_eq!(c.user, None);
    assert_eq!(c.group, None);
    assert_eq!(c.memory_max, None);
    assert_eq!(f.events, Events::default());

    let a = &f.agents[0];
    assert_eq!(a.name, "a");
    assert!(a.active);
    assert_eq!(a.listen, vec![addr("127.0.0.1:10161")]);
    assert_eq!(a.engine_id, None);
    assert_eq!(a.data, Some(d.path("mibs/a.snmprec")));
    assert_eq!(a.snmpv1, None);
    let v2 = a.snmpv2c.as_ref().expect("v2c");
    assert_eq!(v2.entries.len(), 1);
    assert_eq!(v2.entries[0].name.expose(), "public");
    assert_eq!(v2.entries[0].data, d.path("mibs/a.snmprec"));
    assert!(!v2.entries[0].write);
    assert_eq!(a.snmpv3, None);
    assert_eq!(a.notify, AgentNotify::Inherit);
    assert_eq!(a.max_varbinds, 1000);
    assert_eq!(a.memory_max, None);
}

#[test]
fn section_defaults_when_present() {
    let d = Dir::new();
    let l = d.ok("cluster:
  probe: {}
  snmp: { listen: [\"127.0.0.1:16100\"] }
  etcd: {}
events:
  kvp: {}
  notify:
    - target: 127.0.0.1:162
agents: []
");
    let c = &l.fleet.cluster;
    assert_eq!(
        c.probe,
        Some(Probe {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2)
        })
    );
    let snmp = c.snmp.as_ref().expect("snmp");
    assert_eq!(snmp.listen, vec![addr("127.0.0.1:16100")]);
    assert_eq!(snmp.community.expose(), "public");
    let etcd = c.etcd.as_ref().expect("etcd");
    assert_eq!(etcd.endpoints, vec!["http://127.0.0.1:2379".to_string()]);
    assert_eq!(etcd.prefix, "/agentcluster");
    assert_eq!(etcd.lease_ttl, Duration::from_secs(10));
    let e = &l.fleet.events;
    assert_eq!(
        e.kvp,
        Some(Kvp {
            path: PathBuf::from("/var/lib/hyperv/.kvp_pool_1"),
            max_records: 4096
        })
    );
    let t = &e.notify[0];
    assert_eq!(t.target, "127.0.0.1:162");
    assert_eq!(t.version, SnmpVersion::V2c);
    assert_eq!(t.community.as_ref().map(Secret::expose), Some("public"));
    assert_eq!(t.kind, NotifyType::Trap);
    assert_eq!(t.events, None);
    assert_eq!(t.user, None);
    assert_eq!(t.retries, 3);
    assert_eq!(t.timeout, Duration::from_secs(2));
    find(&l.warnings, "the fleet has no agents");
}

#[test]
fn explicit_cluster_values_and_relative_paths() {
    let d = Dir::new();
    let l = d.ok("cluster:
  node: lab-a
  state_dir: ./state
  cache_dir: /var/tmp/ac-cache
  control_socket: state/control.sock
  start_tokens: 2
  start_timeout: 1.5s
  heartbeat: 250ms
  inactive_after: 2s
  stop_timeout: 0s
  agents_per_process: 16
  restart: { policy: on-failure, backoff: 1s..1m, max_restarts: 0, window: 1h }
  max_varbinds: 50
events:
  kvp: { path: kvp/pool, max_records: 10 }
agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    max_varbinds: 7
");
    let c = &l.fleet.cluster;
    assert_eq!(c.node, "lab-a");
    assert_eq!(c.state_dir, d.path("state"));
    assert_eq!(c.cache_dir, PathBuf::from("/var/tmp/ac-cache"));
    assert_eq!(c.control_socket, Some(d.path("state/control.sock")));
    assert_eq!(c.start_tokens, 2);
    assert_eq!(c.start_timeout, Duration::from_millis(1500));
    assert_eq!(c.heartbeat, Duration::from_millis(250));
    assert_eq!(c.inactive_after, Duration::from_secs(2));
    assert_eq!(c.stop_timeout, Duration::ZERO);
    assert_eq!(c.agents_per_process, 16);
    assert_eq!(c.restart.policy, RestartPolicy::OnFailure);
    assert_eq!(c.restart.backoff_min, Duration::from_secs(1));
    assert_eq!(c.restart.backoff_max, Duration::from_secs(60));
    assert_eq!(c.restart.max_restarts, 0);
    assert_eq!(c.restart.window, Duration::from_secs(3600));
    assert_eq!(c.max_varbinds, 50);
    assert_eq!(
        l.fleet.events.kvp,
        Some(Kvp {
            path: d.path("kvp/pool"),
            max_records: 10
        })
    );
    assert_eq!(l.fleet.agents[0].max_varbinds, 7);
}

#[test]
fn agents_inherit_cluster_max_varbinds() {
    let d = Dir::new();
    let l = d.ok("cluster: { max_varbinds: 64 }
agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
");
    assert_eq!(l.fleet.agents[0].max_varbinds, 64);
}

#[test]
fn cluster_user_and_group_by_name() {
    // root (uid 0) and its group are on every Linux host.
    let d = Dir::new();
    let l = d.ok("cluster:
  user: root
  group: root
agents: []
");
    let c = &l.fleet.cluster;
    assert_eq!(c.user.as_deref(), Some("root"));
    assert_eq!(c.group.as_deref(), Some("root"));
    assert_eq!(resolve_user("root"), Some((0, 0)));
    assert_eq!(resolve_group("root"), Some(0));
}

#[test]
fn cluster_user_and_group_by_number() {
    // Numeric ids need not exist in /etc/passwd or /etc/group.
    let d = Dir::new();
    let l = d.ok("cluster:
  user: 4242
  group: \"4343\"
agents: []
");
    let c = &l.fleet.cluster;
    assert_eq!(c.user.as_deref(), Some("4242"));
    assert_eq!(c.group.as_deref(), Some("4343"));
    assert_eq!(resolve_user("4242").map(|(uid, _)| uid), Some(4242));
    assert_eq!(resolve_group("4343"), Some(4343));
}

#[test]
fn memory_max_cluster_default_and_agent_overrides() {
    let d = Dir::new();
    let l = d.ok("cluster:
  memory_max: 64M
agents:
  - name: inherits
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
  - name: binary
    listen: [\"127.0.0.1:10162\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    memory_max: 1.5GiB
  - name: bytes
    listen: [\"127.0.0.1:10163\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    memory_max: 1048576
  - name: \"si-{i}\"
    count: 2
    listen: [\"127.0.0.1:{i+10164}\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    memory_max: 100MB
");
    assert_eq!(l.fleet.cluster.memory_max, Some(64 << 20));
    let got: Vec<(&str, Option<u64>)> = l
        .fleet
        .agents
        .iter()
        .map(|a| (a.name.as_str(), a.memory_max))
        .collect();
    assert_eq!(
        got,
        vec![
            ("inherits", Some(64 << 20)),
            ("binary", Some(1_610_612_736)),
            ("bytes", Some(1 << 20)),
            ("si-0", Some(100_000_000)),
            ("si-1", Some(100_000_000)),
        ]
    );
}

#[test]
fn memory_max_per_agent_only() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    memory_max: 512k
  - name: b
    listen: [\"127.0.0.1:10162\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
");
    assert_eq!(l.fleet.cluster.memory_max, None);
    assert_eq!(l.fleet.agents[0].memory_max, Some(512 * 1024));
    assert_eq!(l.fleet.agents[1].memory_max, None);
}

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
fn templates_expand() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: first
    listen: [\"127.0.0.1:20999\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
  - name: \"printer-{i}\"
    count: 3
    listen: [\"127.0.0.1:{i+20000}\", \"[::1]:{ i + 30000 }\"]
    engine_id: \"80001f88040{i}\"
    data: mibs/a.snmprec
    snmpv2c:
      communities:
        \"c{i}\": {}
    snmpv3:
      users: [{ name: \"u{i+1}\" }]
      contexts: { \"ctx-{i}\": mibs/b.snmprec }
  - name: \"sw-{i-0}{{x}}\"
    count: 2
    listen: [\"127.0.0.2:{i+20000}\"]
    data: mibs/a.snmprec
    snmpv1: { communities: [public] }
  - name: last
    listen: [\"127.0.0.1:21000\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
");
    let names: Vec<&str> = l.fleet.agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "first",
            "printer-0",
            "printer-1",
            "printer-2",
            "sw-0{x}",
            "sw-1{x}",
            "last"
        ]
    );
    let p2 = &l.fleet.agents[3];
    assert_eq!(
        p2.listen,
        vec![addr("127.0.0.1:20002"), addr("[::1]:30002")]
    );
    assert_eq!(p2.engine_id, Some(vec![0x80, 0x00, 0x1f, 0x88, 0x04, 0x02]));
    assert_eq!(
        p2.snmpv2c.as_ref().expect("v2c").entries[0].name.expose(),
        "c2"
    );
    let v3 = p2.snmpv3.as_ref().expect("v3");
    assert_eq!(v3.users[0].name, "u3");
    assert_eq!(v3.contexts[1].0, "ctx-2");
}

#[test]
fn placeholder_without_count_is_kept_and_warned() {
    let d = Dir::new();
    let l = d.ok("agents:
  - name: \"printer-{i}\"
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
");
    assert_eq!(l.fleet.agents[0].name, "printer-{i}");
    let w = find(&l.warnings, "placeholder in an agent without `count`");
    assert_eq!((w.line, w.column), (2, 11));
}

#[test]
fn includes_in_glob_order_then_nested() {
    let d = Dir::new();
    let agent = |name: &str, port: u16| {
        format!(
            "  - name: {name}\n    listen: [\"127.0.0.1:{port}\"]\n    data: ../mibs/a.snmprec\n    snmpv2c: {{ communities: [public] }}\n"
        )
    };
    d.write(
        "agents.d/b.yaml",
        &format!("agents:\n{}", agent("b", 10002)),
    );
    d.write(
        "agents.d/a.yaml",
        &format!(
            "include: [\"../more/*.yml\"]\nagents:\n{}",
            agent("a", 10001)
        ),
    );
    d.write(
        "more/n.yml",
        &format!("agents:\n{}", agent("nested", 10003)),
    );
    d.write("agents.d/notes.txt", "not included");
    let l = d.ok("include: [\"agents.d/*.yaml\"]
agents:
  - name: main
    listen: [\"127.0.0.1:10000\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
");
    let names: Vec<&str> = l.fleet.agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["main", "a", "nested", "b"]);
    // Snapshot paths are relative to the file that names them.
    assert_eq!(l.fleet.agents[1].data, Some(d.path("mibs/a.snmprec")));
}

#[test]
fn include_single_string_and_absolute() {
    let d = Dir::new();
    let inc = d.write(
        "x/one.yaml",
        "agents:\n  - name: one\n    listen: [\"127.0.0.1:10001\"]\n    snmpv2c: { communities: { public: { data: ../mibs/a.snmprec } } }\n",
    );
    let l = d.ok(&format!("include: {}\nagents: []\n", inc.display()));
    assert_eq!(l.fleet.agents[0].name, "one");
}

#[test]
fn include_matching_nothing_is_a_warning_a_missing_file_an_error() {
    let d = Dir::new();
    let l = d.ok("include: [\"nothing/*.yaml\"]\nagents: []\n");
    let w = find(&l.warnings, "`nothing/*.yaml` matches no file");
    assert_eq!((w.line, w.column), (1, 11));
    let ps = d.fails("include: [exact.yaml]\nagents: []\n");
    error_at(&ps, "fleet.yaml", 1, 11, "included file not found");
    let ps = d.fails("include: [\"[\"]\nagents: []\n");
    error_at(&ps, "fleet.yaml", 1, 11, "bad `include` pattern");
}

#[test]
fn include_cycles_do_not_loop() {
    let d = Dir::new();
    d.write("a.yaml", "include: [b.yaml]\nagents: []\n");
    d.write("b.yaml", "include: [a.yaml, fleet.yaml]\nagents: []\n");
    let l = d.ok("include: [\"*.yaml\"]
agents:
  - name: main
    listen: [\"127.0.0.1:10000\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
");
    assert_eq!(l.fleet.agents.len(), 1);
    let repeats = l
        .warnings
        .iter()
        .filter(|w| w.message.contains("already part of the configuration"))
        .count();
    assert!(repeats >= 2, "{}", show(&l.warnings));
}

#[test]
fn errors_in_included_files_are_reported_with_the_main_files() {
    let d = Dir::new();
    d.write("inc/bad.yaml", "agents:\n  - name: x\n    lisen: []\n");
    let ps = d.fails("include: [\"inc/*.yaml\"]\nagents:\n  - name: m\n    listen: 5\n");
    error_at(&ps, "bad.yaml", 3, 5, "unknown field `lisen`");
    find(&ps, "`5` is not an IP address");
}

const LEGACY: &str = "{
    \"__comment__\": [\"This file specifies the behavior of a SNMP agent\"],
    \"name\":     \"Mixed device\",
    \"engineID\": \"mixed\",
    \"active\":\t\"True\",
    \"__comment__\": [\"List of addresses\"],
    \"listen\": {
        \"udp\": [ \"127.0.0.1:33400\", \"127.0.0.1\" ],
        \"udp6\":  \"[::1]:33401\"
    },
    \"snmpv1\": {
        \"users\": [ { \"name\": \"public\" } ],
        \"mib\": { \"public\": \"Linux.snmpwalk\" }
    },
    \"snmpv2c\": {
        \"users\": [ { \"name\": \"public\"}, { \"name\": \"v2c\"} ],
        \"mib\": {
            \"public\":   \"Solaris.snmpwalk\",
            \"v2c\":      \"Linux.snmpwalk\"
        }
    },
    \"snmpv3\": {
        \"users\": [
            {
\t\"name\":      \"usr-snmp\",
                \"authAlgo\":  \"sha\",
                \"privAlgo\":  \"aes\",
                \"authPass\":  \"test-auth-password\",
                \"privPass\":  \"test-priv-password\"
            },
            { \"name\": \"usr-md5\", \"authProtocol\": \"MD5\", \"authKey\": \"test-auth-password\", \"privAlgo\": \"none\" }
        ],
        \"mib\": {
    \t    \"\":                 \"Solaris.snmpwalk\",
    \t    \"Linux\":            \"Linux.snmpwalk\"
        }
    }
}
";

#[test]
fn legacy_agent_file() {
    let d = Dir::new();
    d.write("legacy/mixed.agent", LEGACY);
    d.write("legacy/Solaris.snmpwalk", "");
    d.write("legacy/Linux.snmpwalk", "");
    let l = d.ok("include: [\"legacy/*.agent\"]\nagents: []\n");
    let a = &l.fleet.agents[0];
    assert_eq!(a.name, "Mixed device");
    assert!(a.active);
    assert_eq!(a.engine_id, Some(b"mixed".to_vec()));
    assert_eq!(
        a.listen,
        vec![
            addr("127.0.0.1:33400"),
            addr("127.0.0.1:161"),
            addr("[::1]:33401")
        ]
    );
    let solaris = d.path("legacy/Solaris.snmpwalk");
    let linux = d.path("legacy/Linux.snmpwalk");
    let v1 = &a.snmpv1.as_ref().expect("v1").entries;
    assert_eq!((v1[0].name.expose(), &v1[0].data), ("public", &linux));
    let v2 = &a.snmpv2c.as_ref().expect("v2c").entries;
    assert_eq!((v2[0].name.expose(), &v2[0].data), ("public", &solaris));
    assert_eq!((v2[1].name.expose(), &v2[1].data), ("v2c", &linux));
    let v3 = a.snmpv3.as_ref().expect("v3");
    assert_eq!(v3.users[0].name, "usr-snmp");
    assert_eq!(
        v3.users[0].auth.as_ref().map(|(p, _)| *p),
        Some(AuthProtocol::Sha1)
    );
    assert_eq!(
        v3.users[0].privacy.as_ref().map(|(p, _)| *p),
        Some(PrivProtocol::Aes128)
    );
    assert_eq!(
        v3.users[1].auth.as_ref().map(|(p, _)| *p),
        Some(AuthProtocol::Md5)
    );
    assert_eq!(v3.users[1].privacy, None);
    assert_eq!(
        v3.contexts,
        vec![(String::new(), solaris), ("Linux".to_string(), linux)]
    );
}

#[test]
fn legacy_agent_problems() {
    let d = Dir::new();
    d.write(
        "legacy/bad.agent",
        "{
  \"name\": \"bad\",
  \"active\": \"maybe\",
  \"listen\": { \"udp\": \"127.0.0.1:1161\", \"unix\": \"/run/x\" },
  \"snmpv2c\": { \"users\": [{ \"name\": \"p\" }], \"mib\": { \"q\": \"x.snmprec\" } },
  \"snmpV3\": { \"users\": [{ \"name\": \"u\", \"authAlgo\": \"sha\" }], \"mib\": \"nope.snmprec\" },
  \"enginID\": \"x\"
}
",
    );
    d.write(
        "legacy/broken.agent",
        "{ \"name\": \"x\",\n  \"listen\": [1, }\n",
    );
    let ps = d.fails("include: [\"legacy/*.agent\"]\nagents: []\n");
    error_at(&ps, "bad.agent", 3, 13, "`active` must be true or false");
    error_at(&ps, "bad.agent", 4, 40, "`unix` sockets are not supported");
    error_at(
        &ps,
        "bad.agent",
        5,
        36,
        "`snmpv2c` community has no snapshot",
    );
    error_at(
        &ps,
        "bad.agent",
        5,
        53,
        "snapshot for a community that `users` does not list",
    );
    error_at(&ps, "bad.agent", 6, 52, "`authAlgo` without `authPass`");
    error_at(&ps, "bad.agent", 6, 69, "snapshot file not found");
    error_at(
        &ps,
        "bad.agent",
        7,
        3,
        "unknown key `enginID` in a legacy agent file (did you mean `engineID`?)",
    );
    error_at(&ps, "broken.agent", 2, 17, "invalid JSON");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
    assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
    assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
    assert_eq!(parse_duration("fast"), None);
    assert_eq!(parse_duration("-1s"), None);
}

#[test]
fn sizes() {
    assert_eq!(parse_size("512k"), Some(512 * 1024));
    assert_eq!(parse_size("64M"), Some(64 << 20));
    assert_eq!(parse_size("64MiB"), Some(64 << 20));
    assert_eq!(parse_size("1G"), Some(1 << 30));
    assert_eq!(parse_size("1.5GiB"), Some(1_610_612_736));
    assert_eq!(parse_size("2T"), Some(2 << 40));
    assert_eq!(parse_size("100MB"), Some(100_000_000));
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("64X"), None);
    assert_eq!(parse_size("-1M"), None);
    assert_eq!(parse_size("1.5"), None);
}

#[test]
fn durations_in_yaml_accept_bare_numbers() {
    let d = Dir::new();
    let l = d.ok("cluster:\n  start_timeout: 3\n  stop_timeout: 0.5\nagents: []\n");
    assert_eq!(l.fleet.cluster.start_timeout, Duration::from_secs(3));
    assert_eq!(l.fleet.cluster.stop_timeout, Duration::from_millis(500));
}

#[test]
fn load_str_resolves_against_source() {
    let d = Dir::new();
    let text = "agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
";
    // The source file need not exist.
    let l = load_str(text, &d.path("virtual.yaml")).unwrap_or_else(|ps| panic!("{}", show(&ps)));
    assert_eq!(l.fleet.agents[0].data, Some(d.path("mibs/a.snmprec")));
    let ps = load_str("agents: [", &d.path("virtual.yaml")).expect_err("syntax");
    assert!(
        ps[0]
            .to_string()
            .starts_with(&format!("{}:1:", d.path("virtual.yaml").display())),
        "{}",
        ps[0]
    );
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

#[test]
fn mib_root_default_and_a_sites_own() {
    let d = Dir::new();
    let l = d.ok("agents: []\n");
    assert_eq!(
        l.fleet.events.mib_root,
        [1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 4242]
    );
    assert_eq!(l.fleet.events.mib_root, DEFAULT_MIB_ROOT);
    let l = d.ok("events:\n  mib_root: .1.3.6.1.4.1.99999.7\nagents: []\n");
    assert_eq!(l.fleet.events.mib_root, [1, 3, 6, 1, 4, 1, 99999, 7]);
}

#[test]
fn cluster_response_size_and_rate_limit() {
    let d = Dir::new();
    let l = d.ok("agents: []\n");
    let c = &l.fleet.cluster;
    assert_eq!(c.max_response_bytes, 65_507);
    assert_eq!(c.rate_limit, None);

    let l = d.ok("cluster:
  max_response_bytes: 1472
  rate_limit: { per_source: 500, burst: 50 }
agents: []
");
    let c = &l.fleet.cluster;
    assert_eq!(c.max_response_bytes, 1472);
    assert_eq!(
        c.rate_limit,
        Some(RateLimit {
            per_source: 500,
            burst: 50
        })
    );
    // The burst defaults to one second's worth.
    let l = d.ok("cluster: { rate_limit: { per_source: 200 } }\nagents: []\n");
    assert_eq!(
        l.fleet.cluster.rate_limit,
        Some(RateLimit {
            per_source: 200,
            burst: 200
        })
    );
}
