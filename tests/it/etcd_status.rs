//! `agentcluster status --cluster` against a real etcd the test starts: a
//! pushed fleet, nodes' membership and owner keys written as a node
//! writes them, one node's status key written by the supervisor crate's
//! publisher, another's as the bytes the encoder's unit test pins.

use std::sync::Arc;

use crate::harness::etcd::Etcd;
use crate::harness::imports::{EtcdKeys, State, StatusEntry, StatusPublisher};
use crate::harness::{WAIT, agentcluster, free_port, mib, table_rows, tempdir, text};

const AUTH: &str = "auth-Secret-4711";

/// What the encoder's unit test pins (`cluster::status::tests::PINNED`):
/// node n1, r-1..r-4 running (pids 101..104, r-3 restarted twice), r-5
/// failed after 5 restarts, r-6 stopped.
const PINNED: &str = r#"{"v":1,"node":"n1","pid":4242,"updated":1700000000000,"counts":{"running":4,"failed":1,"stopped":1},"running":{"names":["r-[1-4]"],"pids":[101,1,1,1],"restarts":{"r-3":2}},"agents":{"r-5":{"state":"failed","restarts":5,"since":1699999990000},"r-6":{"state":"stopped"}}}"#;

/// A fleet file of `r-1`..`r-9` (one with an SNMPv3 user) using `etcd`
/// under `/cl`; returns it and the first agent's port.
fn fleet(dir: &std::path::Path, etcd: &Etcd) -> (std::path::PathBuf, u16) {
    let base = free_port();
    let path = dir.join("fleet.yaml");
    let yaml = format!(
        "cluster:\n  cache_dir: {cache}\n  state_dir: {state}\n{etcd}agents:\n  - name: r-{{i+1}}\n    count: 9\n    listen: [\"127.0.0.1:{{i+{port}}}\"]\n    data: {data}\n    snmpv3:\n      users:\n        - name: ops\n          auth: {{ protocol: SHA, password: {AUTH} }}\n",
        cache = dir.join("cache").display(),
        state = dir.join("state").display(),
        etcd = etcd.cluster_yaml("/cl", "10s"),
        port = base,
        data = mib("linux-host.snmprec").display(),
    );
    std::fs::write(&path, yaml).unwrap();
    (path, base)
}

fn member(node: &str, pid: u32) -> String {
    // n1 says its capacity; the others are of a version that did not.
    let capacity = if node == "n1" {
        r#","capacity":9870"#
    } else {
        ""
    };
    format!(r#"{{"node":"{node}","serves":["127.0.0.0/8"],"pid":{pid}{capacity}}}"#)
}

/// `status --cluster` with `args`, which must succeed: its stdout.
fn cluster_status(file: &std::path::Path, args: &[&str]) -> String {
    let mut all = vec!["status", "--cluster", "-c", file.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = agentcluster(&all);
    assert!(
        out.status.success(),
        "status --cluster {args:?}: {}",
        text(&out)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains(AUTH), "a password shown:\n{stdout}");
    stdout
}

fn row<'a>(rows: &'a [Vec<String>], agent: &str) -> &'a [String] {
    rows.iter()
        .find(|r| r[0] == agent)
        .unwrap_or_else(|| panic!("no row for {agent} in {rows:?}"))
}

#[test]
fn every_agent_of_every_node_with_its_owner_and_state() {
    let etcd = Etcd::start();
    let dir = tempdir();
    let (file, base) = fleet(dir.path(), &etcd);
    let out = agentcluster(&["etcd", "push", "-c", file.to_str().unwrap()]);
    assert!(out.status.success(), "push: {}", text(&out));

    // Three live nodes: n1 owns r-1..r-6 and reports them (the pinned
    // bytes), n2 owns r-7 and publishes its status with the supervisor's
    // publisher, n3 owns r-8 and has written no status; r-9 is unowned.
    let keys = EtcdKeys::new("/cl");
    for (node, pid) in [("n1", 4242), ("n2", 5252), ("n3", 6262)] {
        etcd.put(&keys.node(node), &member(node, pid));
    }
    for i in 1..=6 {
        etcd.put(&keys.owner(&format!("r-{i}")), "n1");
    }
    etcd.put(&keys.owner("r-7"), "n2");
    etcd.put(&keys.owner("r-8"), "n3");
    etcd.put(&keys.status("n1"), PINNED);

    let (runtime, mut client) = etcd.client();
    let lease = runtime.block_on(client.lease_grant(60, None)).unwrap().id();
    let mut watch = runtime
        .block_on(client.watch(keys.status("n2"), None))
        .unwrap();
    let entry = |state, pid, restarts| StatusEntry {
        agent: "r-7".into(),
        state,
        pid,
        restarts,
        since: None,
    };
    let (roster, rx) =
        tokio::sync::watch::channel(Arc::new(vec![entry(State::Running, Some(7007), 0)]));
    let stop = tokio_util::sync::CancellationToken::new();
    let publisher = runtime.spawn(
        StatusPublisher {
            client: client.clone(),
            keys: keys.clone(),
            node: "n2".into(),
            pid: 5252,
            lease,
        }
        .run(rx, stop.clone()),
    );
    // The publisher's first write.
    let written = |watch: &mut _| {
        let got = runtime.block_on(async { tokio::time::timeout(WAIT, next_put(watch)).await });
        assert!(matches!(got, Ok(true)), "no write of /cl/status/n2");
    };
    written(&mut watch);

    let table = cluster_status(&file, &[]);
    let first = table.lines().next().unwrap();
    assert!(
        first.starts_with("cluster /cl: 9 agents on 3 nodes (revision "),
        "{table}"
    );
    assert!(
        first.ends_with("): 5 running, 1 failed, 1 stopped, 1 unowned, 1 unknown"),
        "{table}"
    );
    assert_eq!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["AGENT", "NODE", "STATE", "PID", "RESTARTS", "ENDPOINTS"]
    );
    let r = table_rows(&table);
    assert_eq!(
        r.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(),
        [
            "r-1", "r-2", "r-3", "r-4", "r-5", "r-6", "r-7", "r-8", "r-9"
        ]
    );
    let ep = |i: u16| format!("127.0.0.1:{}", base + i - 1);
    assert_eq!(row(&r, "r-3"), ["r-3", "n1", "running", "103", "2", &ep(3)]);
    assert_eq!(row(&r, "r-5"), ["r-5", "n1", "failed", "-", "5", &ep(5)]);
    assert_eq!(row(&r, "r-6"), ["r-6", "n1", "stopped", "-", "0", &ep(6)]);
    assert_eq!(
        row(&r, "r-7"),
        ["r-7", "n2", "running", "7007", "0", &ep(7)]
    );
    assert_eq!(row(&r, "r-8"), ["r-8", "n3", "unknown", "-", "0", &ep(8)]);
    // An unowned agent says why: here the node rendezvous hashing gives it
    // to has not created its owner key.
    let r9 = row(&r, "r-9");
    assert_eq!(r9[..6], ["r-9", "-", "unowned", "-", "0", &ep(9)]);
    let why = r9[6..].join(" ");
    assert!(
        ["n1", "n2", "n3"]
            .map(|n| format!("being taken over by {n}"))
            .contains(&why),
        "{why}"
    );

    // --state, with the cluster's own states too; --sort.
    let t = cluster_status(&file, &["--state", "unowned", "--state", "failed"]);
    assert_eq!(
        table_rows(&t)
            .iter()
            .map(|r| r[0].as_str())
            .collect::<Vec<_>>(),
        ["r-5", "r-9"],
        "{t}"
    );
    assert!(t.lines().next().unwrap().ends_with("(2 shown)"), "{t}");
    // Names and globs, as for a supervisor's own agents.
    let t = cluster_status(
        &file,
        &["r-[7-9]", "r-1", "--state", "running", "--state", "unowned"],
    );
    assert_eq!(
        table_rows(&t)
            .iter()
            .map(|r| r[0].as_str())
            .collect::<Vec<_>>(),
        ["r-1", "r-7", "r-9"],
        "{t}"
    );
    assert!(t.lines().next().unwrap().ends_with("(3 shown)"), "{t}");
    let out = agentcluster(&[
        "status",
        "--cluster",
        "-c",
        file.to_str().unwrap(),
        "r-1",
        "x-*",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no agent matches x-* in the fleet at /cl/"),
        "{}",
        text(&out)
    );
    let t = cluster_status(&file, &["--sort", "restarts"]);
    assert_eq!(
        table_rows(&t)
            .iter()
            .take(2)
            .map(|r| r[0].as_str())
            .collect::<Vec<_>>(),
        ["r-5", "r-3"],
        "{t}"
    );
    let t = cluster_status(&file, &["--sort", "state"]);
    assert_eq!(
        table_rows(&t)
            .iter()
            .map(|r| r[2].as_str())
            .collect::<Vec<_>>()[4..],
        ["running", "failed", "stopped", "unowned", "unknown"],
        "{t}"
    );

    // --json: the documented shape.
    let json: serde_json::Value =
        serde_json::from_str(&cluster_status(&file, &["--json"])).unwrap();
    assert!(json["revision"].as_i64().unwrap() > 0, "{json}");
    let nodes = json["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{json}");
    assert_eq!(
        nodes[0],
        serde_json::json!({"node": "n1", "pid": 4242, "serves": ["127.0.0.0/8"], "agents": 6,
                           "capacity": 9870, "updated": 1_700_000_000_000_u64})
    );
    assert_eq!(nodes[1]["capacity"], serde_json::Value::Null);
    assert_eq!(nodes[2]["agents"], 1);
    assert_eq!(nodes[2]["updated"], serde_json::Value::Null);
    let agents = json["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 9);
    assert_eq!(
        agents[2],
        serde_json::json!({"agent": "r-3", "node": "n1", "state": "running", "pid": 103,
                           "restarts": 2, "endpoints": [ep(3)]})
    );
    assert_eq!(agents[8]["node"], serde_json::Value::Null);
    assert_eq!(agents[8]["state"], "unowned");
    assert!(
        agents[8]["unowned"]
            .as_str()
            .is_some_and(|w| w.starts_with("being taken over by n")),
        "{}",
        agents[8]
    );
    assert_eq!(agents[7]["state"], "unknown");
    let json: serde_json::Value =
        serde_json::from_str(&cluster_status(&file, &["--json", "--state", "unknown"])).unwrap();
    assert_eq!(json["agents"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["agents"][0]["agent"], "r-8");

    // n2's agent fails: the publisher writes again, and the status shows it.
    roster.send_replace(Arc::new(vec![entry(State::Failed, None, 3)]));
    written(&mut watch);
    let r = table_rows(&cluster_status(&file, &[]));
    assert_eq!(row(&r, "r-7"), ["r-7", "n2", "failed", "-", "3", &ep(7)]);
    stop.cancel();
    runtime.block_on(publisher).unwrap();

    // A broken status key is an error naming it, not a panic.
    etcd.put(&keys.status("n3"), "{\"v\":1,\"node\":");
    let out = agentcluster(&["status", "--cluster", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("etcd key /cl/status/n3: not a node status"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    etcd.delete(&keys.status("n3"));
    cluster_status(&file, &[]);
}

/// Waits for a put on the watched key: `true` once one comes.
async fn next_put(watch: &mut crate::harness::imports::EtcdWatchStream) -> bool {
    while let Ok(Some(answer)) = watch.message().await {
        if !answer.events().is_empty() {
            return true;
        }
    }
    false
}

#[test]
fn an_unreachable_etcd_or_nothing_pushed_is_a_clear_error() {
    let dir = tempdir();
    let port = free_port();
    let file = dir.path().join("fleet.yaml");
    std::fs::write(
        &file,
        format!(
            "cluster:\n  state_dir: {}\n  etcd:\n    endpoints: [\"http://127.0.0.1:{port}\"]\n    prefix: /cl\nagents: []\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let out = agentcluster(&["status", "--cluster", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "cannot read the cluster: etcd at http://127.0.0.1:{port}"
        )),
        "{}",
        text(&out)
    );

    let etcd = Etcd::start();
    let (file, _) = fleet(dir.path(), &etcd);
    let out = agentcluster(&["status", "--cluster", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("nothing pushed at /cl/fleet/config"),
        "{}",
        text(&out)
    );
    // A supervisor's own status has no unowned agents.
    let out = agentcluster(&["status", "--state", "unowned", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("only with --cluster"), "{}", text(&out));
}
