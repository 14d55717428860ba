//! Where agents come from: templates, includes (in order, nested, cyclic,
//! with errors), legacy agent files, text loaded against a source path.

use agentcluster_conf::*;

use crate::common::{Dir, error_at, find, show};

use super::{LEGACY, addr};

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
