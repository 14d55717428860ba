//! Templates: placeholders that produce bad ports or addresses, malformed
//! or negative placeholders, bad counts.

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
