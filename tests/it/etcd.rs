//! Scale-out through etcd (docs/scale-out.md), against a real etcd the test
//! starts: the fleet pushed and read back; nodes that share it.

use crate::harness::etcd::Etcd;
use crate::harness::{agentcluster, mib, tempdir, text};

const AUTH: &str = "auth-Secret-4711";
const PRIV: &str = "priv-Secret-0815";

/// A fleet file in `dir` whose `cluster.etcd` is `etcd` under `prefix`,
/// with `agents` (YAML lines under `agents:`).
fn fleet_file(
    dir: &std::path::Path,
    etcd: &Etcd,
    prefix: &str,
    agents: &str,
) -> std::path::PathBuf {
    let path = dir.join("fleet.yaml");
    let yaml = format!(
        "cluster:\n  cache_dir: {}\n  state_dir: {}\n{}agents:\n{agents}",
        dir.join("cache").display(),
        dir.join("state").display(),
        etcd.cluster_yaml(prefix, "3s"),
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn push_and_get_round_trip_masked_and_all_or_nothing() {
    let etcd = Etcd::start();
    let dir = tempdir();
    let agents = format!(
        "  - name: router-{{i}}\n    count: 3\n    listen: [\"127.0.0.1:{{i+21000}}\"]\n    data: {data}\n    snmpv3:\n      users:\n        - name: ops\n          auth: {{ protocol: SHA, password: {AUTH} }}\n          priv:\n            protocol: AES128\n            password: \"{PRIV}\"\n",
        data = mib("linux-host.snmprec").display()
    );
    let file = fleet_file(dir.path(), &etcd, "/lab", &agents);
    let out = agentcluster(&["etcd", "push", "-c", file.to_str().unwrap()]);
    assert!(out.status.success(), "push: {}", text(&out));
    assert!(
        text(&out).contains("pushed 3 agents to /lab/fleet/config"),
        "{}",
        text(&out)
    );

    let out = agentcluster(&["-c", file.to_str().unwrap(), "etcd", "get"]);
    assert!(out.status.success(), "get: {}", text(&out));
    let shown = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(shown.contains("name: router-{i}"), "{shown}");
    assert!(
        shown.contains(&format!("pushed from {}", file.display())),
        "{shown}"
    );
    for secret in [AUTH, PRIV] {
        assert!(!shown.contains(secret), "a password shown:\n{shown}");
    }
    assert_eq!(shown.matches("password: ********").count(), 2, "{shown}");

    let out = agentcluster(&["etcd", "get", "--json", "-c", file.to_str().unwrap()]);
    assert!(out.status.success(), "get --json: {}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["key"], "/lab/fleet/config");
    assert_eq!(json["source"], file.display().to_string());
    let yaml = json["yaml"].as_str().unwrap();
    assert!(
        yaml.contains("count: 3") && !yaml.contains(AUTH) && !yaml.contains(PRIV),
        "{yaml}"
    );
    let revision = json["revision"].as_i64().unwrap();

    // A fleet that fails validation (two agents on one endpoint) writes
    // nothing: the pushed fleet stays as it was, at its revision.
    let bad_dir = tempdir();
    let bad = fleet_file(
        bad_dir.path(),
        &etcd,
        "/lab",
        &format!(
            "  - name: a\n    listen: [\"127.0.0.1:21500\"]\n    data: {d}\n  - name: b\n    listen: [\"127.0.0.1:21500\"]\n    data: {d}\n",
            d = mib("linux-host.snmprec").display()
        ),
    );
    let out = agentcluster(&["etcd", "push", "-c", bad.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad fleet pushed: {}",
        text(&out)
    );
    let out = agentcluster(&["etcd", "get", "--json", "-c", file.to_str().unwrap()]);
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["revision"].as_i64(), Some(revision), "{again}");
    assert_eq!(again["yaml"], json["yaml"]);

    // Under a prefix nothing was pushed to, `get` says so.
    let fresh = fleet_file(dir.path(), &etcd, "/other", &agents);
    let out = agentcluster(&["etcd", "get", "-c", fresh.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("nothing pushed at /other/fleet/config"),
        "{}",
        text(&out)
    );
}
