//! Every kind of problem a configuration can have, reported with its place.

mod common;

use agentcluster_conf::Severity;
use common::{Dir, error_at, errors, find, show};

#[test]
fn yaml_syntax_error() {
    let d = Dir::new();
    let ps = d.fails("agents:\n  - name: \"a\n    listen: []\n");
    assert_eq!(ps.len(), 1, "{}", show(&ps));
    assert!(ps[0].line >= 2, "{}", ps[0]);
    assert_eq!(ps[0].severity, Severity::Error);
    assert!(
        ps[0]
            .to_string()
            .starts_with(&format!("{}:", d.path("fleet.yaml").display()))
    );
}

#[test]
fn unknown_key() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
    comunity: public
",
    );
    error_at(&ps, "fleet.yaml", 6, 5, "unknown field `comunity`");
}

#[test]
fn unknown_key_in_cluster_and_top_level() {
    let d = Dir::new();
    let ps = d.fails(
        "cluster:
  hearbeat: 1s
agent: []
agents: []
",
    );
    error_at(&ps, "fleet.yaml", 2, 3, "unknown field `hearbeat`");
    error_at(&ps, "fleet.yaml", 3, 1, "unknown field `agent`");
}

#[test]
fn wrong_type() {
    let d = Dir::new();
    let ps = d.fails(
        "cluster:
  start_tokens: many
agents:
  - name: a
    active: perhaps
    listen: [\"127.0.0.1:10161\"]
    snmpv2c: { communities: [public] }
",
    );
    let p = find(&ps, "expected a whole number");
    assert_eq!(p.line, 2, "{p}");
    let p = find(&ps, "expected true or false");
    assert_eq!((p.line, p.column), (5, 13), "{p}");
}

#[test]
fn duplicate_key() {
    let d = Dir::new();
    let ps = d.fails("agents:\n  - name: a\n    name: b\n");
    error_at(&ps, "fleet.yaml", 3, 5, "duplicate mapping key");
}

const AGENT_A: &str = "  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
";

#[test]
fn duplicate_agent_name() {
    let d = Dir::new();
    let ps = d.fails(&format!(
        "agents:
{AGENT_A}  - name: a
    listen: [\"127.0.0.1:10162\"]
    data: mibs/a.snmprec
    snmpv2c: {{ communities: [public] }}
"
    ));
    let p = find(&ps, "duplicate agent name `a`");
    assert_eq!((p.line, p.column), (6, 11), "{p}");
    assert!(p.message.contains("fleet.yaml:2:11"), "{p}");
}

#[test]
fn duplicate_agent_name_across_include() {
    let d = Dir::new();
    d.write(
        "more/x.yaml",
        "agents:
  - name: a
    listen: [\"127.0.0.1:10162\"]
    snmpv2c: { communities: { public: { data: ../mibs/a.snmprec } } }
",
    );
    let ps = d.fails(&format!("include: [more/*.yaml]\nagents:\n{AGENT_A}"));
    error_at(&ps, "x.yaml", 2, 11, "duplicate agent name `a`");
}

#[test]
fn duplicate_agent_name_after_template_expansion() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: \"sw-{i}\"
    count: 3
    listen: [\"127.0.0.1:{i+10200}\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
  - name: sw-2
    listen: [\"127.0.0.1:10300\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    error_at(&ps, "fleet.yaml", 7, 11, "duplicate agent name `sw-2`");
}

#[test]
fn template_without_placeholder_in_name_duplicates_once() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: same
    count: 4
    listen: [\"127.0.0.1:{i+10200}\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    let p = find(&ps, "duplicate agent name `same`");
    assert_eq!((p.line, p.column), (2, 11), "{p}");
    assert!(p.message.contains("i=1, 2, 3"), "{p}");
}

#[test]
fn endpoint_clash_between_agents() {
    let d = Dir::new();
    let ps = d.fails(&format!(
        "agents:
{AGENT_A}  - name: b
    listen: [\"[::1]:10161\", \"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: {{ communities: [public] }}
"
    ));
    error_at(
        &ps,
        "fleet.yaml",
        7,
        29,
        "endpoint clash: endpoint `127.0.0.1:10161` of agent `a`",
    );
    assert_eq!(errors(&ps).len(), 1, "{}", show(&ps));
}

#[test]
fn endpoint_clash_within_agent_and_wildcards() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: [\"127.0.0.1:10161\", \"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
  - name: b
    listen: [\"0.0.0.0:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
  - name: c
    listen: [\"[::1]:10170\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
  - name: d
    listen: [\"[::]:10170\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    error_at(&ps, "fleet.yaml", 3, 33, "listed twice in this agent");
    error_at(
        &ps,
        "fleet.yaml",
        7,
        14,
        "`0.0.0.0:10161` overlaps `127.0.0.1:10161`",
    );
    error_at(
        &ps,
        "fleet.yaml",
        15,
        14,
        "`[::]:10170` overlaps `[::1]:10170`",
    );
}

#[test]
fn endpoint_shared_with_inactive_agent_is_a_warning() {
    let d = Dir::new();
    let l = d.ok(&format!(
        "agents:
{AGENT_A}  - name: b
    active: false
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: {{ communities: [public] }}
"
    ));
    let w = find(&l.warnings, "inactive");
    assert_eq!((w.line, w.column), (8, 14), "{w}");
}

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
fn template_producing_invalid_port() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: \"p-{i}\"
    count: 10
    listen: [\"127.0.0.1:{i+65530}\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    // Reported once, at the template's line, naming the copies.
    assert_eq!(errors(&ps).len(), 1, "{}", show(&ps));
    let p = find(&ps, "`127.0.0.1:65536`: port out of range");
    assert_eq!((p.line, p.column), (4, 14), "{p}");
    assert!(p.message.contains("i=6, 7, 8 and 1 more"), "{p}");
}

#[test]
fn template_producing_invalid_address() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: \"p-{i}\"
    count: 300
    listen: [\"10.0.0.{i}:161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    let p = find(&ps, "`10.0.0.256:161` is not an IP address");
    assert_eq!((p.line, p.column), (4, 14), "{p}");
    assert!(p.message.contains("i=256, 257, 258 and 41 more"), "{p}");
}

#[test]
fn malformed_placeholder_points_at_it() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: \"sw-{j}\"
    count: 2
    listen: [\"127.0.0.1:{i+10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    error_at(&ps, "fleet.yaml", 2, 15, "malformed placeholder `{j}`");
    error_at(&ps, "fleet.yaml", 4, 25, "unclosed `{`");
}

#[test]
fn negative_placeholder() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: \"sw-{i-1}\"
    count: 2
    listen: [\"127.0.0.1:{i+10161}\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    error_at(
        &ps,
        "fleet.yaml",
        2,
        15,
        "out of range (negative or too large) for i=0",
    );
}

#[test]
fn count_zero() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: \"sw-{i}\"
    count: 0
    listen: [\"127.0.0.1:{i+10161}\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    error_at(&ps, "fleet.yaml", 3, 12, "`count` must be at least 1");
}

#[test]
fn negative_count() {
    let d = Dir::new();
    let ps = d.fails("agents:\n  - name: a\n    count: -2\n");
    error_at(&ps, "fleet.yaml", 3, 12, "-2 is negative");
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
fn empty_and_missing_listen() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: a
    listen: []
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
  - name: b
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
  - name: c
    listen: [\"localhost:161\", \"127.0.0.1\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    error_at(&ps, "fleet.yaml", 3, 13, "`listen` of agent `a` is empty");
    error_at(&ps, "fleet.yaml", 6, 5, "agent `b` has no `listen`");
    error_at(
        &ps,
        "fleet.yaml",
        10,
        14,
        "`localhost:161` is not an IP address",
    );
    error_at(&ps, "fleet.yaml", 10, 31, "`127.0.0.1` has no port");
}

#[test]
fn bad_agent_names() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: \"a|b\"
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    error_at(&ps, "fleet.yaml", 2, 11, "names may not contain");
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
fn cluster_only_in_main_file() {
    let d = Dir::new();
    d.write("inc.yaml", "cluster:\n  node: x\nagents: []\n");
    let ps = d.fails("include: [inc.yaml]\nagents: []\n");
    error_at(
        &ps,
        "inc.yaml",
        2,
        3,
        "`cluster` is only allowed in the main configuration file",
    );
}

#[test]
fn no_agents_key() {
    let d = Dir::new();
    let ps = d.fails("cluster:\n  node: x\n");
    error_at(&ps, "fleet.yaml", 1, 1, "no `agents`");
}

#[test]
fn empty_agent_entry() {
    let d = Dir::new();
    let ps = d.fails(&format!("agents:\n{AGENT_A}  - ~\n"));
    error_at(&ps, "fleet.yaml", 6, 5, "empty entry in `agents`");
}

#[test]
fn unreadable_main_file() {
    let d = Dir::new();
    let ps = agentcluster_conf::load(&d.path("nope.yaml")).expect_err("missing file");
    assert_eq!(ps.len(), 1);
    assert_eq!((ps[0].line, ps[0].column), (0, 0));
    assert!(
        ps[0].to_string().contains("nope.yaml: error: cannot read"),
        "{}",
        ps[0]
    );
}

/// One run reports problems of every stage in every file, sorted.
#[test]
fn many_problems_at_once() {
    let d = Dir::new();
    d.write(
        "agents.d/broken.yaml",
        "agents:\n  - name: inc\n    listen: [\"127.0.0.1:10190\"\n",
    );
    d.write(
        "agents.d/ok.yaml",
        "agents:
  - name: c
    listen: [\"127.0.0.1:10161\"]
    snmpv2c: { communities: { public: { data: ../mibs/a.snmprec } } }
",
    );
    let ps = d.fails(
        "cluster:
  heartbeat: soon
  startup_tokens: 4
include: [\"agents.d/*.yaml\"]
agents:
  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/missing.snmprec
    snmpv2c: { communities: [public] }
  - name: b
    listen: [\"127.0.0.1:10162\"]
    engine_id: \"xyz\"
    snmpv2c: { communities: [public] }
    colour: blue
  - name: a
    listen: [\"127.0.0.1:10163\"]
    data: mibs/a.snmprec
    snmpv3:
      users: [{ name: ops, auth: { protocol: SHA, password: short } }]
  - name: d
    count: many
",
    );
    let where_: Vec<(String, usize, usize)> = ps
        .iter()
        .map(|p| (common::file_name(&p.file), p.line, p.column))
        .collect();
    assert_eq!(
        where_,
        vec![
            ("broken.yaml".to_string(), 3, 13),
            ("ok.yaml".to_string(), 3, 14),
            ("fleet.yaml".to_string(), 3, 3),
            ("fleet.yaml".to_string(), 8, 11),
            ("fleet.yaml".to_string(), 14, 5),
            ("fleet.yaml".to_string(), 15, 11),
            ("fleet.yaml".to_string(), 19, 61),
            ("fleet.yaml".to_string(), 21, 5),
        ],
        "\n{}",
        show(&ps)
    );
    find(&ps, "unknown field `startup_tokens`");
    find(&ps, "snapshot file not found");
    find(&ps, "unknown field `colour`");
    find(&ps, "duplicate agent name `a`");
    find(&ps, "password is shorter");
    find(&ps, "endpoint clash");
}

#[test]
fn clash_with_the_supervisors_own_snmp_endpoint() {
    let d = Dir::new();
    let ps = d.fails(
        "cluster:
  snmp: { listen: [\"127.0.0.1:16100\"] }
agents:
  - name: a
    listen: [\"0.0.0.0:16100\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    error_at(
        &ps,
        "fleet.yaml",
        5,
        14,
        "of the supervisor's own `cluster.snmp` (",
    );
}

#[test]
fn huge_count() {
    let d = Dir::new();
    let ps = d.fails("agents:\n  - name: \"a{i}\"\n    count: 2000000\n");
    error_at(&ps, "fleet.yaml", 3, 12, "`count` is at most 1000000");
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
