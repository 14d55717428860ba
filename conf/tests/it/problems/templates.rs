//! Templates: placeholders that produce bad ports or addresses, malformed
//! placeholders, placeholders without a value for some copy (negative, a
//! division by zero, an overflow), bad counts.

use crate::common::{Dir, error_at, errors, find, show};

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

/// An expression without a value for some copy: reported once, at the
/// placeholder, naming the first copy that fails.
#[test]
fn expression_without_a_value_names_the_copy() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: \"sw-{i}\"
    count: 10
    listen: [\"127.0.0.1:{20000+100/(i-3)}\"]
    engine_id: \"80001f8804{i-5:04x}\"
    data: mibs/a.snmprec
    snmpv2c: { communities: [\"c{i*4611686018427387904}\"] }
",
    );
    // Copy 0's engine ID is the first failure (the division and the
    // overflow come in later copies).
    assert_eq!(errors(&ps).len(), 1, "{}", show(&ps));
    error_at(
        &ps,
        "fleet.yaml",
        5,
        27,
        "placeholder `{i-5:04x}` is out of range (negative or too large) for i=0: it is -5",
    );
    let ps = d.fails(
        "agents:
  - name: \"sw-{i}\"
    count: 10
    listen: [\"127.0.0.1:{20000+100/(i-3)}\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    assert_eq!(errors(&ps).len(), 1, "{}", show(&ps));
    error_at(
        &ps,
        "fleet.yaml",
        4,
        25,
        "placeholder `{20000+100/(i-3)}` divides by zero for i=3",
    );
    let ps = d.fails(
        "agents:
  - name: \"sw-{i}\"
    count: 10
    listen: [\"127.0.0.1:{i+20000}\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [\"c{i*4611686018427387904}\"] }
",
    );
    assert_eq!(errors(&ps).len(), 1, "{}", show(&ps));
    error_at(
        &ps,
        "fleet.yaml",
        6,
        32,
        "for i=2: the arithmetic overflows 64-bit integers",
    );
}

/// A port below 0: the placeholder and the copy, not a bad address.
#[test]
fn negative_port() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: \"sw-{i}\"
    count: 200
    listen: [\"127.0.0.{i%250+1}:{161-i}\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    assert_eq!(errors(&ps).len(), 1, "{}", show(&ps));
    error_at(
        &ps,
        "fleet.yaml",
        4,
        33,
        "placeholder `{161-i}` is out of range (negative or too large) for i=162: it is -1",
    );
}

/// A syntax error is the template's, found once whatever the count.
#[test]
fn expression_syntax_is_reported_once_per_template() {
    let d = Dir::new();
    let ps = d.fails(
        "agents:
  - name: \"sw-{i:z}\"
    count: 1000
    listen: [\"127.0.{i/250}.{i%250+1}:{161*}\"]
    engine_id: \"80001f8804{i:8x}\"
    data: mibs/a.snmprec
    snmpv2c: { communities: [\"c{(i+1}\", \"d{i k}\", \"e{2i}\"] }
",
    );
    assert_eq!(errors(&ps).len(), 6, "{}", show(&ps));
    error_at(&ps, "fleet.yaml", 2, 15, "`{i:z}`: unknown format `z`");
    error_at(
        &ps,
        "fleet.yaml",
        4,
        39,
        "`{161*}`: the expression ends where a value was expected",
    );
    error_at(
        &ps,
        "fleet.yaml",
        5,
        27,
        "`{i:8x}`: a width pads with zeros and starts with one: write `08x`",
    );
    error_at(&ps, "fleet.yaml", 7, 32, "`{(i+1}`: missing `)`");
    error_at(
        &ps,
        "fleet.yaml",
        7,
        43,
        "`{i k}`: expected an operator (`+ - * / %`) before `k`",
    );
    error_at(&ps, "fleet.yaml", 7, 53, "`{2i}`: `2i` is not a number");
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
fn huge_count() {
    let d = Dir::new();
    let ps = d.fails("agents:\n  - name: \"a{i}\"\n    count: 2000000\n");
    error_at(&ps, "fleet.yaml", 3, 12, "`count` is at most 1000000");
}

/// Three templates of a million copies each: refused from their counts, in
/// the time and memory of three entries (expanding them took gigabytes).
#[test]
fn a_fleet_of_more_than_a_million_agents_is_refused_unexpanded() {
    let d = Dir::new();
    let mut text = "agents:\n".to_string();
    for host in 1..=3 {
        text.push_str(&format!(
            "  - name: \"h{host}-{{i}}\"\n    count: 1000000\n    listen: [\"127.0.0.{host}:{{i+1}}\"]\n    data: mibs/a.snmprec\n    snmpv2c: {{ communities: [public] }}\n"
        ));
    }
    text.push_str("  - name: one\n    listen: [\"127.0.0.9:161\"]\n    data: mibs/a.snmprec\n    snmpv2c: { communities: [public] }\n");
    let started = std::time::Instant::now();
    let ps = d.fails(&text);
    let p = find(&ps, "more than the 1000000 one supervisor takes");
    assert_eq!((p.line, p.column), (0, 0), "{p}");
    assert!(
        p.message
            .starts_with("the fleet has 3000001 agents (count 1000000 at "),
        "{p}"
    );
    assert!(p.message.contains("fleet.yaml:8:12"), "{p}");
    assert!(p.message.contains(", 1 other agents)"), "{p}");
    // Nothing else: the copies were never made (their ports would clash).
    assert_eq!(errors(&ps).len(), 1, "{}", show(&ps));
    // A million copies take seconds; the refusal takes the entries' time.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// What `check` asks of a fleet before expanding it: its counts, taken
/// from the entries; a refusal keeps every template unexpanded while the
/// other agents are still checked.
#[test]
fn a_fleet_refused_by_fits_is_counted_but_not_expanded() {
    let d = Dir::new();
    d.write("mibs/dev-0.snmprec", "1.3.6.1.2.1.1.1.0|4|x\n");
    let path = d.write(
        "fleet.yaml",
        "cluster: { agents_per_process: 10 }
agents:
  - name: \"t-{i}\"
    count: 25
    listen: [\"127.0.0.1:{i+20000}\", \"127.0.0.2:{i+20000}\"]
    data: mibs/a.snmprec
    snmpv2c:
      communities: { public: {}, other: { data: \"mibs/dev-{i}.snmprec\" } }
  - name: off
    active: false
    listen: [\"127.0.0.3:161\"]
    data: mibs/c.snmpwalk
    snmpv2c: { communities: [public] }
  - name: twice
    listen: [\"127.0.0.4:161\"]
    data: mibs/a.snmprec
    engine_id: \"zz\"
    snmpv2c: { communities: [public] }
",
    );
    let mut seen = None;
    let checked = agentcluster_conf::check(&path, &mut |fleet| {
        seen = Some((
            fleet.counts,
            fleet.agents.len(),
            fleet.cluster.agents_per_process,
        ));
        vec!["too big for this host".to_string()]
    });
    let (counts, agents, per) = seen.expect("fits was asked");
    assert_eq!((agents, per), (0, 10));
    assert_eq!(counts.agents, 27);
    assert_eq!(counts.inactive, 1);
    assert_eq!(counts.endpoints, 25 * 2 + 2);
    assert_eq!(counts.max_endpoints, 2);
    // a.snmprec and c.snmpwalk once each; dev-{i} one per copy, each of
    // dev-0's size (22 bytes; a.snmprec and c.snmpwalk are empty).
    assert_eq!(counts.snapshots, 2 + 25);
    assert_eq!(counts.snapshot_bytes, 25 * 22);
    // A copy of t-{i} serves a.snmprec and its dev-{i}.
    assert_eq!(counts.max_snapshots, 2);
    let p = find(&checked.problems, "too big for this host");
    assert_eq!(p.severity, agentcluster_conf::Severity::Error);
    assert_eq!((p.line, p.column), (0, 0));
    find(&checked.problems, "engine ID `zz` is not hex");
    let names: Vec<&str> = checked
        .fleet
        .agents
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["off", "twice"]);
    assert_eq!(checked.fleet.counts, counts);
    // Without a refusal, the copies: dev-1 … dev-24 are missing.
    let loaded = agentcluster_conf::load_within(&path, &mut |_| Vec::new());
    let ps = loaded.expect_err("the engine ID");
    assert_eq!(errors(&ps).len(), 2, "{}", show(&ps));
    let p = find(&ps, "snapshot file not found");
    assert!(p.message.contains("i=1, 2, 3 and 21 more"), "{p}");
}
