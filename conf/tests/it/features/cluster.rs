//! The cluster section: defaults, explicit values, relative paths, users
//! and groups, memory limits, durations and sizes, the MIB root, response
//! size and rate limits, the snapshot loss limit, the interface that gets
//! missing listen addresses.

use std::path::PathBuf;
use std::time::Duration;

use agentcluster_conf::*;

use crate::common::{Dir, find, show};

use super::addr;

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
    assert_eq!(c.metrics, None);
    assert_eq!(c.etcd, None);
    assert_eq!(c.max_varbinds, 1000);
    assert_eq!(c.user, None);
    assert_eq!(c.group, None);
    assert_eq!(c.memory_max, None);
    assert_eq!(c.snapshot_max_loss, 50);
    assert_eq!(c.addresses, None);
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

#[test]
fn snapshot_max_loss_is_a_percentage() {
    let d = Dir::new();
    for (written, percent) in [("0%", 0), ("10%", 10), ("\"25 %\"", 25), ("100%", 100)] {
        let l = d.ok(&format!(
            "cluster:\n  snapshot_max_loss: {written}\nagents: []\n"
        ));
        assert_eq!(l.fleet.cluster.snapshot_max_loss, percent, "{written}");
    }
}

#[test]
fn metrics_endpoint() {
    let d = Dir::new();
    for (written, want) in [
        ("127.0.0.1:9464", "127.0.0.1:9464"),
        ("\"[::1]:9464\"", "[::1]:9464"),
        ("0.0.0.0:9100", "0.0.0.0:9100"),
    ] {
        let l = d.ok(&format!(
            "cluster:\n  metrics: {{ listen: {written} }}\nagents: []\n"
        ));
        assert_eq!(
            l.fleet.cluster.metrics,
            Some(ClusterMetrics { listen: addr(want) }),
            "{written}"
        );
    }
    // Every problem at once, each where it is.
    let ps = d.fails(
        "cluster:
  metrics: {}
agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    crate::common::error_at(&ps, "fleet.yaml", 2, 12, "cluster.metrics has no `listen`");
    for (written, needle) in [
        ("127.0.0.1:0", "has port 0"),
        ("localhost:9464", "is not an IP address with a port"),
        ("127.0.0.1", "has no port"),
    ] {
        let ps = d.fails(&format!(
            "cluster:\n  metrics: {{ listen: {written} }}\nagents: []\n"
        ));
        let p = find(&ps, needle);
        assert!(p.message.contains("`metrics.listen`"), "{p}");
        assert_eq!((p.line, p.column), (2, 22), "{p}");
    }
    let ps = d.fails("cluster:\n  metrics: { listen: 127.0.0.1:9464, path: /m }\nagents: []\n");
    assert!(!ps.is_empty());
}

#[test]
fn addresses_name_an_interface() {
    let d = Dir::new();
    for (written, interface, create) in [
        ("{ interface: lo, create: true }", "lo", true),
        ("{ interface: lo }", "lo", false),
        (
            "{ interface: ac-dummy0, create: false }",
            "ac-dummy0",
            false,
        ),
        ("{ interface: abcdefghijklmno }", "abcdefghijklmno", false),
    ] {
        let l = d.ok(&format!("cluster:\n  addresses: {written}\nagents: []\n"));
        assert_eq!(
            l.fleet.cluster.addresses,
            Some(Addresses {
                interface: interface.into(),
                create
            }),
            "{written}"
        );
    }
}

#[test]
fn etcd_serves_ranges_and_their_errors() {
    let d = Dir::new();
    let l = d.ok("cluster:\n  etcd: { serves: [\"10.1.0.0/16\", \"127.0.0.1\", \"fd00::/64\"] }\nagents: []\n");
    let serves = l
        .fleet
        .cluster
        .etcd
        .as_ref()
        .and_then(|e| e.serves.clone())
        .expect("serves");
    let shown: Vec<String> = serves.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.1.0.0/16", "127.0.0.1/32", "fd00::/64"]);
    assert!(serves[0].contains("10.1.200.7".parse().unwrap()));
    assert!(!serves[0].contains("10.2.0.1".parse().unwrap()));
    assert!(!serves[1].contains("127.0.0.2".parse().unwrap()));
    assert!(!serves[0].contains("::1".parse().unwrap()));
    assert_eq!(
        d.ok("cluster:\n  etcd: {}\nagents: []\n")
            .fleet
            .cluster
            .etcd
            .and_then(|e| e.serves),
        None
    );
    let ps = d.fails("cluster:\n  etcd: { serves: [\"10.1.0.0/33\", \"nope\"] }\nagents: []\n");
    find(&ps, "`serves`: `10.1.0.0/33`: prefix length must be 0..=32");
    find(
        &ps,
        "`serves`: `nope` is not an IP address or ADDR/LEN range",
    );
    let ps = d.fails("cluster:\n  etcd: { serves: [] }\nagents: []\n");
    find(&ps, "`serves` is empty");
}

/// A cluster node's own file: `cluster.etcd` and no `agents` (its share
/// comes from etcd) loads without an error or a warning; without
/// `cluster.etcd` a file with no agents is still an error.
#[test]
fn a_node_file_needs_no_agents() {
    let d = Dir::new();
    let l = d.ok("cluster:
  node: n1
  etcd: { endpoints: [\"http://127.0.0.1:2379\"], lease_ttl: 3s }
");
    assert!(l.fleet.agents.is_empty());
    assert!(l.warnings.is_empty(), "{}", show(&l.warnings));
    assert_eq!(l.fleet.cluster.node, "n1");
    let ps = d.fails("cluster:\n  node: n1\n");
    find(&ps, "no `agents`");
}
