//! Names and endpoints: duplicates (across includes and templates too),
//! clashes, bad names, missing listen addresses.

use crate::common::{Dir, error_at, errors, find, show};

use super::AGENT_A;

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
