//! `data_dir`: an snmpsim data directory expanded into communities and
//! contexts at load time, with snmpsim's names; its errors name the
//! directory.

use std::path::PathBuf;

use agentcluster_conf::*;

use crate::common::{Dir, error_at, find, show};

/// An snmpsim-like tree: subdirectories, a `self/` one, a long name, a
/// compressed file and one that is not a snapshot.
fn tree(d: &Dir) {
    for f in [
        "lab/public.snmprec",
        "lab/foundry/switch.snmpwalk",
        "lab/a/b/router.sapwalk",
        "lab/self/mine.snmprec",
        "lab/self.snmprec",
        "lab/network/appliance/vss-monitoring-optimizer-2400-span.snmprec",
        "lab/network/ups.snmprec.bz2",
        "lab/README.txt",
    ] {
        d.write(f, "");
    }
}

#[test]
fn every_file_is_a_community_and_a_context_named_by_its_path() {
    let d = Dir::new();
    tree(&d);
    let l = d.ok("agents:
  - name: lab
    listen: [\"127.0.0.1:20161\"]
    data_dir: lab
    snmpv3:
      users: [{ name: simulator, auth: { protocol: MD5, password: auctoritas }, priv: { protocol: DES, password: privatus } }]
");
    let a = &l.fleet.agents[0];
    assert_eq!(a.data_dir, Some(d.path("lab")));
    let lab = |p: &str| -> PathBuf { d.path("lab").join(p) };
    let communities: Vec<(&str, PathBuf)> = a
        .snmpv2c
        .as_ref()
        .unwrap()
        .entries
        .iter()
        .map(|c| (c.name.expose(), c.data.clone()))
        .collect();
    let long = "network/appliance/vss-monitoring-optimizer-2400-span";
    assert_eq!(
        communities,
        vec![
            ("a/b/router", lab("a/b/router.sapwalk")),
            ("foundry/switch", lab("foundry/switch.snmpwalk")),
            (long, lab(&format!("{long}.snmprec"))),
            ("public", lab("public.snmprec")),
            ("mine", lab("self/mine.snmprec")),
        ]
    );
    assert_eq!(a.snmpv1, a.snmpv2c);
    let contexts = &a.snmpv3.as_ref().unwrap().contexts;
    let names: Vec<&str> = contexts.iter().map(|(n, _)| n.as_str()).collect();
    // The long name is served under its MD5 digest, as snmpsim does
    // (python3 -c "import hashlib; print(hashlib.md5(b'…').hexdigest())");
    // top-level `self.snmprec` is the default context.
    assert_eq!(
        names,
        vec![
            "a/b/router",
            "foundry/switch",
            "60aeb8e4df1fd6394f2c16ade59a85e5",
            "public",
            "mine",
            "",
        ],
        "{contexts:?}"
    );
    assert_eq!(contexts[5].1, lab("self.snmprec"));
    // One file per name: each compiled once.
    assert_eq!(a.snapshots().len(), 6);
    let w = find(&l.warnings, "does not read");
    assert!(w.message.contains("1 file"), "{}", show(&l.warnings));
    assert_eq!(l.fleet.counts.snapshots, 6);
    assert_eq!(l.fleet.counts.max_snapshots, 6);
}

#[test]
fn a_name_given_twice_is_served_once_with_a_warning() {
    let d = Dir::new();
    d.write("lab/x.snmprec", "");
    d.write("lab/x.snmpwalk", "");
    d.write("lab/self/x.sapwalk", "");
    let l = d.ok("agents:
  - { name: lab, listen: [\"127.0.0.1:20161\"], data_dir: lab }
");
    let c = &l.fleet.agents[0].snmpv2c.as_ref().unwrap().entries;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].data, d.path("lab/self/x.sapwalk"));
    assert_eq!(
        l.warnings
            .iter()
            .filter(|w| w.message.contains("are both served as `x`"))
            .count(),
        2,
        "{}",
        show(&l.warnings)
    );
}

#[test]
fn missing_empty_and_clashing_directories_are_errors_naming_them() {
    let d = Dir::new();
    d.write("empty/README.txt", "");
    d.write("packed/a.snmprec.bz2", "");
    let ps = d.fails(
        "agents:
  - { name: a, listen: [\"127.0.0.1:20161\"], data_dir: nowhere }
  - { name: b, listen: [\"127.0.0.1:20162\"], data_dir: empty }
  - { name: c, listen: [\"127.0.0.1:20163\"], data_dir: packed }
  - { name: d, listen: [\"127.0.0.1:20164\"], data_dir: mibs/a.snmprec }
  - name: e
    listen: [\"127.0.0.1:20165\"]
    data_dir: mibs
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
",
    );
    let nowhere = find(&ps, "`data_dir` not found");
    assert!(
        nowhere
            .message
            .contains(&*d.path("nowhere").to_string_lossy()),
        "{nowhere}"
    );
    error_at(&ps, "fleet.yaml", 2, 55, "`data_dir` not found");
    let empty = find(&ps, "empty holds no snapshot file");
    assert_eq!(empty.severity, Severity::Error);
    let packed = find(&ps, "packed holds no snapshot file");
    assert!(packed.message.contains("bunzip2"), "{packed}");
    find(&ps, "`data_dir` is not a directory");
    error_at(
        &ps,
        "fleet.yaml",
        9,
        11,
        "`data` and `data_dir` exclude each other",
    );
    error_at(
        &ps,
        "fleet.yaml",
        10,
        14,
        "`snmpv2c` and `data_dir` exclude each other",
    );
}
