//! Values out of range: durations, backoff, numbers, users and groups,
//! memory limits, the MIB root, response size and rate limits, the
//! snapshot loss limit, the interface of `cluster.addresses`.

use crate::common::{Dir, error_at, errors, show};

#[test]
fn bad_durations() {
    let d = Dir::new();
    let ps = d.fails(
        "cluster:
  heartbeat: 2x
  start_timeout: -1s
  restart:
    window: 0s
agents: []
",
    );
    error_at(
        &ps,
        "fleet.yaml",
        2,
        14,
        "`heartbeat`: `2x` is not a duration",
    );
    error_at(
        &ps,
        "fleet.yaml",
        3,
        18,
        "`start_timeout`: `-1s` is not a duration",
    );
    error_at(&ps, "fleet.yaml", 5, 13, "`window` must be longer than 0");
}

#[test]
fn inactive_after_must_exceed_heartbeat() {
    let d = Dir::new();
    let ps = d.fails("cluster:\n  heartbeat: 5s\n  inactive_after: 3s\nagents: []\n");
    error_at(&ps, "fleet.yaml", 3, 19, "must be longer than `heartbeat`");
}

#[test]
fn bad_backoff() {
    let d = Dir::new();
    let ps = d.fails("cluster:\n  restart:\n    backoff: 30s..1s\nagents: []\n");
    error_at(&ps, "fleet.yaml", 3, 14, "MIN is longer than MAX");
    let ps = d.fails("cluster:\n  restart:\n    backoff: 30s\nagents: []\n");
    error_at(&ps, "fleet.yaml", 3, 14, "is not MIN..MAX");
    let ps = d.fails("cluster:\n  restart:\n    policy: sometimes\nagents: []\n");
    error_at(
        &ps,
        "fleet.yaml",
        3,
        13,
        "unknown restart policy `sometimes`",
    );
}

#[test]
fn numbers_out_of_range() {
    let d = Dir::new();
    let ps = d.fails(
        "cluster:
  start_tokens: 0
  max_varbinds: 0
  agents_per_process: 99999999999
events:
  kvp: { max_records: 0 }
agents: []
",
    );
    error_at(
        &ps,
        "fleet.yaml",
        2,
        17,
        "`start_tokens` must be at least 1",
    );
    error_at(
        &ps,
        "fleet.yaml",
        3,
        17,
        "`max_varbinds` must be at least 1",
    );
    error_at(
        &ps,
        "fleet.yaml",
        4,
        23,
        "`agents_per_process` is too large",
    );
    error_at(&ps, "fleet.yaml", 6, 23, "`max_records` must be at least 1");
}

#[test]
fn unknown_user_and_group() {
    let d = Dir::new();
    let ps = d.fails(
        "cluster:
  node: x
  user: no-such-user-agentcluster
  group:   no-such-group-agentcluster
agents: []
",
    );
    assert_eq!(errors(&ps).len(), 2, "{}", show(&ps));
    error_at(
        &ps,
        "fleet.yaml",
        3,
        9,
        "`user`: no user `no-such-user-agentcluster` in /etc/passwd",
    );
    error_at(
        &ps,
        "fleet.yaml",
        4,
        12,
        "`group`: no group `no-such-group-agentcluster` in /etc/group",
    );
}

#[test]
fn empty_user_and_group() {
    let d = Dir::new();
    let ps = d.fails("cluster: { user: \"\", group: \" \" }\nagents: []\n");
    error_at(&ps, "fleet.yaml", 1, 18, "`user` is empty");
    error_at(&ps, "fleet.yaml", 1, 29, "`group` is empty");
}

#[test]
fn bad_cluster_memory_max() {
    let d = Dir::new();
    let ps = d.fails("cluster:\n  memory_max: 64X\nagents: []\n");
    error_at(
        &ps,
        "fleet.yaml",
        2,
        15,
        "`memory_max`: `64X` is not a size",
    );
    let ps = d.fails("cluster:\n  memory_max: 0\nagents: []\n");
    error_at(
        &ps,
        "fleet.yaml",
        2,
        15,
        "`memory_max` must be larger than 0",
    );
}

#[test]
fn bad_agent_memory_max() {
    let d = Dir::new();
    let ps = d.fails(
        "cluster:
  memory_max: 1G
agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    memory_max: 0k
  - name: \"t-{i}\"
    count: 3
    listen: [\"127.0.0.1:{i+10170}\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    memory_max: -1M
",
    );
    assert_eq!(errors(&ps).len(), 2, "{}", show(&ps));
    error_at(
        &ps,
        "fleet.yaml",
        8,
        17,
        "`memory_max` must be larger than 0",
    );
    // A template's copies share one report, at the template's line.
    error_at(
        &ps,
        "fleet.yaml",
        14,
        17,
        "`memory_max`: `-1M` is not a size",
    );
}

#[test]
fn bad_mib_root() {
    let d = Dir::new();
    let ps = d.fails("events:\n  mib_root: 1.3.6.1.4.1.example\nagents: []\n");
    error_at(
        &ps,
        "fleet.yaml",
        2,
        13,
        "`mib_root`: `1.3.6.1.4.1.example` is not a numeric OID",
    );
    let ps = d.fails("events:\n  mib_root: \"7\"\nagents: []\n");
    error_at(&ps, "fleet.yaml", 2, 13, "needs at least two arcs");
}

#[test]
fn response_size_and_rate_limit_out_of_range() {
    let d = Dir::new();
    let ps = d.fails(
        "cluster:
  max_response_bytes: 483
  rate_limit: { per_source: 0, burst: 0 }
agents: []
",
    );
    error_at(
        &ps,
        "fleet.yaml",
        2,
        23,
        "`max_response_bytes` must be at least 484",
    );
    error_at(
        &ps,
        "fleet.yaml",
        3,
        29,
        "`rate_limit.per_source` must be at least 1",
    );
    error_at(
        &ps,
        "fleet.yaml",
        3,
        39,
        "`rate_limit.burst` must be at least 1",
    );
    let ps = d.fails("cluster:\n  max_response_bytes: 65508\nagents: []\n");
    error_at(
        &ps,
        "fleet.yaml",
        2,
        23,
        "`max_response_bytes` must be at most 65507",
    );
    let ps = d.fails("cluster:\n  rate_limit: { burst: 10 }\nagents: []\n");
    error_at(&ps, "fleet.yaml", 2, 15, "`rate_limit` needs `per_source`");
    let ps = d.fails("cluster:\n  rate_limit: { per_second: 10 }\nagents: []\n");
    assert!(show(&ps).contains("per_second"), "{}", show(&ps));
}

/// A Unix socket's path holds at most 107 bytes: a longer
/// `control_socket` could never be bound.
#[test]
fn control_socket_path_too_long() {
    let d = Dir::new();
    let long = format!("run/{}.sock", "s".repeat(120));
    let ps = d.fails(&format!(
        "cluster:\n  control_socket: {long}\nagents:\n  - name: a\n    listen: [\"127.0.0.1:10161\"]\n    data: mibs/a.snmprec\n    snmpv2c: {{ communities: [public] }}\n"
    ));
    error_at(
        &ps,
        "fleet.yaml",
        2,
        19,
        "a Unix socket's path has at most 107",
    );
    // Up to the limit is fine.
    let base = d.path("run/").display().to_string().len();
    let fits = format!("run/{}", "s".repeat(107 - base));
    d.ok(&format!(
        "cluster:\n  control_socket: {fits}\nagents:\n  - name: a\n    listen: [\"127.0.0.1:10161\"]\n    data: mibs/a.snmprec\n    snmpv2c: {{ communities: [public] }}\n"
    ));
}

#[test]
fn bad_snapshot_max_loss() {
    let d = Dir::new();
    for (written, message) in [
        (
            "50",
            "`snapshot_max_loss`: `50` is not a percentage (write e.g. 50%",
        ),
        ("0.5", "`snapshot_max_loss`: `0.5` is not a percentage"),
        ("12.5%", "`snapshot_max_loss`: `12.5%` is not a percentage"),
        ("-5%", "`snapshot_max_loss`: `-5%` is not a percentage"),
        ("\"%\"", "`snapshot_max_loss`: `%` is not a percentage"),
        ("101%", "`snapshot_max_loss` must be at most 100%"),
        ("99999999999%", "`snapshot_max_loss` must be at most 100%"),
    ] {
        let ps = d.fails(&format!(
            "cluster:\n  snapshot_max_loss: {written}\nagents: []\n"
        ));
        assert_eq!(errors(&ps).len(), 1, "{written}: {}", show(&ps));
        error_at(&ps, "fleet.yaml", 2, 22, message);
    }
}

#[test]
fn bad_addresses() {
    let d = Dir::new();
    for (written, column, message) in [
        (
            "{ create: true }",
            14,
            "`addresses` needs `interface`: the interface the missing addresses are added to",
        ),
        (
            "{ interface: \"\" }",
            27,
            "`addresses.interface`: the interface name is empty",
        ),
        (
            "{ interface: abcdefghijklmnop }",
            27,
            "`addresses.interface`: `abcdefghijklmnop` is 16 bytes long, but an interface name has at most 15",
        ),
        (
            "{ interface: \"eth0:1\" }",
            27,
            "`addresses.interface`: `eth0:1` is not a valid interface name: it holds ':'",
        ),
        (
            "{ interface: \"a b\" }",
            27,
            "`addresses.interface`: `a b` is not a valid interface name: it holds ' '",
        ),
        (
            "{ interface: a/b }",
            27,
            "`addresses.interface`: `a/b` is not a valid interface name",
        ),
        (
            "{ interface: \"..\" }",
            27,
            "`addresses.interface`: `..` is not a valid interface name",
        ),
    ] {
        let ps = d.fails(&format!("cluster:\n  addresses: {written}\nagents: []\n"));
        assert_eq!(errors(&ps).len(), 1, "{written}: {}", show(&ps));
        error_at(&ps, "fleet.yaml", 2, column, message);
    }
    // `create` is a boolean, and no other key is known.
    for written in [
        "{ interface: lo, create: maybe }",
        "{ interface: lo, dev: x }",
    ] {
        let ps = d.fails(&format!("cluster:\n  addresses: {written}\nagents: []\n"));
        assert!(!errors(&ps).is_empty(), "{written}: {}", show(&ps));
    }
}
