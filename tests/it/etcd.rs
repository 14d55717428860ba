//! Scale-out through etcd (docs/scale-out.md), against a real etcd the test
//! starts: the fleet pushed and read back; nodes that share it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::harness::etcd::Etcd;
use crate::harness::events::{is, ts_millis};
use crate::harness::imports::snmp::{self, Op, Request, Scratch, Security};
use crate::harness::imports::{ber, derive_engine_id, parse_duration};
use crate::harness::{
    BIN, Fleet, agentcluster, alone, free_port, mib, poll_until, snmp_ok, tempdir, text,
};

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

/// A fleet is pushed for nodes to share: that this host could not serve
/// all of it is no reason to refuse it. `push` says how many nodes like
/// this one it needs instead (here the host is made small: a hard limit of
/// 256 open files, under which about a hundred single-agent processes fit).
#[test]
fn push_takes_a_fleet_larger_than_this_host_and_says_how_many_nodes() {
    let etcd = Etcd::start();
    let dir = tempdir();
    let agents = format!(
        "  - name: d-{{i}}\n    count: 2000\n    listen: [\"127.{{i/62500+1}}.{{i/250%250}}.{{i%250+1}}:16100\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        mib("linux-host.snmprec").display()
    );
    let file = fleet_file(dir.path(), &etcd, "/big", &agents);
    let small = |args: &[&str]| {
        crate::harness::output(
            std::process::Command::new("bash")
                .arg("-c")
                .arg(r#"ulimit -n 256 && exec "$0" "$@""#)
                .arg(crate::harness::BIN)
                .args(args),
        )
        .unwrap()
    };
    // `check` (what `run` does) refuses it on this host…
    let out = small(&["check", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("open files"), "{}", text(&out));
    // …`push` writes it, and says what one such host carries.
    let out = small(&["etcd", "push", "-c", file.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "push: {t}");
    assert!(t.contains("pushed 2000 agents to /big/fleet/config"), "{t}");
    let carries: u64 = t
        .split("it carries about ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no capacity in: {t}"));
    assert!((1..2000).contains(&carries), "{t}");
    assert!(
        t.contains(&format!(
            "needs at least {} nodes like it",
            2000u64.div_ceil(carries)
        )),
        "{t}"
    );
    // Read back whole (and `get` does not refuse it either).
    let out = small(&["etcd", "get", "--json", "-c", file.to_str().unwrap()]);
    assert!(out.status.success(), "get: {}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["yaml"].as_str().unwrap().contains("count: 2000"),
        "{json}"
    );
    // A fleet this host carries is pushed without the line.
    let out = agentcluster(&["etcd", "push", "-c", file.to_str().unwrap()]);
    assert!(
        out.status.success() && !text(&out).contains("nodes like it"),
        "{}",
        text(&out)
    );
}

/// Agents of the shared fleet in the node tests: `count` copies at
/// 127.61.X.Y:`port`, one process each (moves restart no neighbour).
fn shared_fleet(dir: &std::path::Path, etcd: &Etcd, prefix: &str, port: u16, count: usize) {
    shared_fleet_with(dir, etcd, prefix, port, count, "");
}

/// [`shared_fleet`], then `more` (top-level YAML, e.g. `scenarios:`).
fn shared_fleet_with(
    dir: &std::path::Path,
    etcd: &Etcd,
    prefix: &str,
    port: u16,
    count: usize,
    more: &str,
) {
    let agents = format!(
        "  - name: dev-{{i}}\n    count: {count}\n    listen: [\"127.61.{{i/200}}.{{i%200+1}}:{port}\"]\n    data: {data}\n    snmpv2c: {{ communities: [public] }}\n    snmpv3:\n      users:\n        - name: ops\n          auth: {{ protocol: SHA, password: {AUTH} }}\n{more}",
        data = mib("linux-host.snmprec").display()
    );
    let file = fleet_file(dir, etcd, prefix, &agents);
    let out = agentcluster(&["etcd", "push", "-c", file.to_str().unwrap()]);
    assert!(out.status.success(), "push: {}", text(&out));
}

/// The endpoint of agent `dev-I`.
fn endpoint(name: &str, port: u16) -> String {
    let i: usize = name.trim_start_matches("dev-").parse().unwrap();
    format!("127.61.{}.{}:{port}", i / 200, i % 200 + 1)
}

/// `agentcluster run -c node.yaml --node NAME`: a node of the fleet under
/// `prefix` (state, cache, control socket and log of its own), waited for
/// until it is ready (at once: its agents come from etcd after).
fn start_node(etcd: &Etcd, prefix: &str, name: &str, ttl: &str) -> Fleet {
    start_node_limited(etcd, prefix, name, ttl, None)
}

/// [`start_node`], under a hard limit of `files` open files when given.
fn start_node_limited(
    etcd: &Etcd,
    prefix: &str,
    name: &str,
    ttl: &str,
    files: Option<u32>,
) -> Fleet {
    let dir = tempdir();
    let yaml = format!(
        "cluster:\n  node: not-{name}\n  cache_dir: {d}/cache\n  state_dir: {d}/state\n  control_socket: {d}/control.sock\n  stop_timeout: 2s\n{}",
        etcd.cluster_yaml(prefix, ttl),
        d = dir.path().display()
    ) + "    serves: [\"127.0.0.0/8\"]\n";
    let path = dir.path().join("node.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut cmd = match files {
        Some(n) => {
            let mut c = std::process::Command::new("bash");
            c.arg("-c")
                .arg(format!(r#"ulimit -n {n} && exec "$0" "$@""#))
                .arg(BIN);
            c
        }
        None => std::process::Command::new(BIN),
    };
    cmd.args(["run", "-c", path.to_str().unwrap(), "--node", name]);
    let node = Fleet::spawn(cmd, dir);
    assert!(
        node.banner
            .iter()
            .any(|l| l.contains(&format!("on node {name}"))),
        "--node not applied: {:?}",
        node.banner
    );
    node
}

/// `status --cluster --json` as `node`'s configuration finds it.
fn cluster_json(node: &Fleet) -> Result<serde_json::Value, String> {
    let config = node.dir.path().join("node.yaml");
    let out = agentcluster(&[
        "status",
        "--cluster",
        "--json",
        "-c",
        config.to_str().unwrap(),
    ]);
    if !out.status.success() {
        return Err(text(&out));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// The agents `node` serves in `served` (agent → (node, pid)).
fn served_by(served: &BTreeMap<String, (String, u32)>, node: &str) -> Vec<String> {
    served
        .iter()
        .filter(|(_, (n, _))| n == node)
        .map(|(a, _)| a.clone())
        .collect()
}

/// Agent → (node, pid) of every running agent of `nodes`; panics when one
/// agent runs on two nodes.
fn running(nodes: &[(&str, &Fleet)]) -> BTreeMap<String, (String, u32)> {
    let mut all = BTreeMap::new();
    for (name, node) in nodes {
        for a in node.status() {
            if a["state"] != "running" {
                continue;
            }
            let agent = a["name"].as_str().unwrap().to_string();
            let pid = a["pid"].as_u64().unwrap() as u32;
            if let Some((other, _)) = all.insert(agent.clone(), (name.to_string(), pid)) {
                panic!("{agent} runs on {other} and on {name}");
            }
        }
    }
    all
}

/// Agent → (node, create revision) of every owner key under `prefix`.
fn owners(etcd: &Etcd, prefix: &str) -> BTreeMap<String, (String, i64)> {
    let owners = format!("{prefix}/owners/");
    etcd.range(&owners)
        .0
        .into_iter()
        .map(|kv| {
            (
                kv.key.trim_start_matches(&owners).to_string(),
                (kv.value, kv.create_revision),
            )
        })
        .collect()
}

/// Waits until `nodes` run every one of `count` agents, each on the node
/// its owner key names, and returns who runs what.
fn converged(
    etcd: &Etcd,
    prefix: &str,
    nodes: &[(&str, &Fleet)],
    count: usize,
    within: Duration,
) -> BTreeMap<String, (String, u32)> {
    poll_until(
        "every agent running on the node that owns it",
        within,
        Duration::from_millis(200),
        || agreed(etcd, prefix, nodes, count),
    )
}

/// Who runs what, if `nodes` run every one of `count` agents, each on the
/// node its owner key names (one look).
fn agreed(
    etcd: &Etcd,
    prefix: &str,
    nodes: &[(&str, &Fleet)],
    count: usize,
) -> Result<BTreeMap<String, (String, u32)>, String> {
    let run = running(nodes);
    let own = owners(etcd, prefix);
    let agree = run.len() == count
        && own.len() == count
        && run
            .iter()
            .all(|(a, (n, _))| own.get(a).is_some_and(|(o, _)| o == n));
    if agree {
        Ok(run)
    } else {
        Err(format!("{} running, {} owner keys", run.len(), own.len()))
    }
}

/// Waits until `nodes` run every one of `count` agents as their owner keys
/// say, each node at least `least` of them, and returns who runs what.
/// [`converged`] alone can be satisfied before a node has joined: the
/// nodes already there serving every agent is a converged fleet too.
fn converged_sharing(
    etcd: &Etcd,
    prefix: &str,
    nodes: &[(&str, &Fleet)],
    count: usize,
    least: usize,
    within: Duration,
) -> BTreeMap<String, (String, u32)> {
    poll_until(
        &format!(
            "every agent running on the node that owns it, every node serving at least {least}"
        ),
        within,
        Duration::from_millis(200),
        || {
            let run = agreed(etcd, prefix, nodes, count)?;
            let short: Vec<String> = nodes
                .iter()
                .map(|(n, _)| (n, run.values().filter(|(o, _)| o == n).count()))
                .filter(|(_, share)| *share < least)
                .map(|(n, share)| format!("{n} serves {share}"))
                .collect();
            if short.is_empty() {
                Ok(run)
            } else {
                Err(short.join(", "))
            }
        },
    )
}

/// Every agent answers SNMP on its own endpoint.
fn all_answer(agents: impl IntoIterator<Item = String>, port: u16) {
    for a in agents {
        let out = snmp_ok(
            "snmpget",
            &[
                "-v2c",
                "-c",
                "public",
                &endpoint(&a, port),
                "1.3.6.1.2.1.1.3.0",
            ],
        );
        assert!(out.contains("Timeticks"), "{a}: {out}");
    }
}

/// Asks each of `agents` for sysUpTime (v2c, one socket, every 100 ms
/// the ones that have not answered yet) until each has answered or
/// `until` has passed: the agents that never answered.
fn unanswered_by(agents: &[String], port: u16, until: Instant) -> Vec<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let addrs: Vec<SocketAddr> = agents
        .iter()
        .map(|a| endpoint(a, port).parse().unwrap())
        .collect();
    let mut pending: BTreeSet<SocketAddr> = addrs.iter().copied().collect();
    let req = Request::new(Op::Get, &[ber::parse_oid("1.3.6.1.2.1.1.3.0").unwrap()]);
    let mut sec = Security::community(1, "public");
    let mut scratch = Scratch::default();
    let (mut out, mut buf) = (Vec::new(), vec![0u8; 4096]);
    while !pending.is_empty() && Instant::now() < until {
        for (rid, addr) in pending.iter().enumerate() {
            snmp::encode(&mut sec, &req, rid as i32 + 1, &mut out, &mut scratch);
            // Refused while nobody serves the address: asked again later.
            let _ = sock.send_to(&out, addr);
        }
        let round = Instant::now() + Duration::from_millis(100);
        while Instant::now() < round {
            if let Ok((len, from)) = sock.recv_from(&mut buf) {
                let mut plain = Vec::new();
                if snmp::decode(&sec, &buf[..len], &mut plain).is_ok() {
                    pending.remove(&from);
                }
            }
        }
    }
    agents
        .iter()
        .zip(&addrs)
        .filter(|(_, a)| pending.contains(a))
        .map(|(name, _)| name.clone())
        .collect()
}

/// (snmpEngineID as hex, snmpEngineBoots) of agent `name`, over SNMPv3.
fn engine(name: &str, port: u16) -> (String, u64) {
    let get = |oid: &str| {
        snmp_ok(
            "snmpget",
            &[
                "-v3",
                "-l",
                "authNoPriv",
                "-u",
                "ops",
                "-a",
                "SHA",
                "-A",
                AUTH,
                "-Oqvx",
                &endpoint(name, port),
                oid,
            ],
        )
    };
    let id: String = get("1.3.6.1.6.3.10.2.1.1.0")
        .split_whitespace()
        .collect::<String>()
        .trim_matches('"')
        .to_lowercase();
    let boots = get("1.3.6.1.6.3.10.2.1.2.0");
    let boots = boots
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("snmpEngineBoots: {boots}"));
    (id, boots)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// No node failed to bind an endpoint (another node holding it) or to
/// start an agent.
fn no_clash(nodes: &[(&str, &Fleet)]) {
    for (name, node) in nodes {
        let log = node.stderr().text();
        assert!(
            !log.contains("Address already in use") && !log.contains("event=start-failed"),
            "{name}: {}",
            node.stderr().tail(40)
        );
    }
}

/// Three nodes share 300 agents: each agent runs on exactly one node, the
/// one its owner key names, and answers; the shares are balanced. A node
/// killed with SIGKILL loses its agents to the others once its lease
/// expires, and no other agent moves; a node that comes back gets a share
/// again, taken only from the agents that move to it.
#[test]
fn three_nodes_share_a_fleet_and_take_over_from_a_dead_one() {
    let _alone = alone();
    const COUNT: usize = 300;
    let etcd = Etcd::start();
    let dir = tempdir();
    let port = free_port();
    shared_fleet(dir.path(), &etcd, "/three", port, COUNT);
    let n1 = start_node(&etcd, "/three", "n1", "3s");
    let n2 = start_node(&etcd, "/three", "n2", "3s");
    let n3 = start_node(&etcd, "/three", "n3", "3s");
    let within = Duration::from_secs(60);
    let before = converged_sharing(
        &etcd,
        "/three",
        &[("n1", &n1), ("n2", &n2), ("n3", &n3)],
        COUNT,
        60,
        within,
    );
    for n in ["n1", "n2", "n3"] {
        let share = before.values().filter(|(o, _)| o == n).count();
        // A third each, give or take five standard deviations of chance.
        assert!((60..=140).contains(&share), "{n} serves {share} of {COUNT}");
    }
    all_answer(before.keys().cloned(), port);
    // Nodes started together see each other before they plan: none took
    // agents that it then had to hand on.
    for (name, node) in [("n1", &n1), ("n2", &n2), ("n3", &n3)] {
        let moved: Vec<_> = node
            .events()
            .into_iter()
            .filter(|e| e["event"] == "released")
            .collect();
        assert!(
            moved.is_empty(),
            "{name} handed agents on at the start: {moved:?}"
        );
    }
    // `status --cluster` shows every agent once, on the node that runs it,
    // running, with that process's pid: from the status keys the nodes
    // write (at most a second after a change).
    poll_until(
        "status --cluster agrees with the nodes",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            let v = cluster_json(&n1)?;
            let (nodes, rows) = (v["nodes"].as_array(), v["agents"].as_array());
            let (Some(nodes), Some(rows)) = (nodes, rows) else {
                return Err(format!("no nodes or agents: {v}"));
            };
            if nodes.len() != 3 || rows.len() != COUNT {
                return Err(format!("{} nodes, {} agents", nodes.len(), rows.len()));
            }
            for r in rows {
                let (n, pid) = &before[r["agent"].as_str().unwrap_or_default()];
                if r["node"] != n.as_str() || r["state"] != "running" || r["pid"] != *pid {
                    return Err(format!("{r} (runs on {n} as {pid})"));
                }
            }
            Ok(())
        },
    );
    let keys_before = owners(&etcd, "/three");
    // The membership keys say who serves what.
    let (members, _) = etcd.range("/three/nodes/");
    assert_eq!(members.len(), 3, "{members:?}");
    let m: serde_json::Value = serde_json::from_str(&members[0].value).unwrap();
    assert_eq!(m["node"], "n1");
    assert_eq!(m["serves"], serde_json::json!(["127.0.0.0/8"]));
    assert!(members.iter().all(|kv| kv.lease != 0), "{members:?}");
    // Its capacity: what this host carries under the node's settings.
    assert!(m["capacity"].as_u64().is_some_and(|c| c > 0), "{m}");

    // An agent's identity comes from the fleet, not the node.
    let mover = before
        .iter()
        .find(|(_, (n, _))| n == "n2")
        .map(|(a, _)| a.clone())
        .unwrap();
    let (id, boots) = engine(&mover, port);
    assert_eq!(id, hex(&derive_engine_id("etcd:/three", &mover)));
    assert!(boots >= 1, "{boots}");

    // n2 dies without a word: its lease expires, the others take its agents.
    let since = n1.next_seq();
    assert!(n2.signal(Signal::KILL));
    let killed = std::time::Instant::now();
    drop(n2);
    let orphans = served_by(&before, "n2");
    poll_until(
        "n2's owner keys re-created by the others",
        Duration::from_secs(3 + 2),
        Duration::from_millis(100),
        || {
            let own = owners(&etcd, "/three");
            let moved = orphans
                .iter()
                .filter(|a| own.get(*a).is_some_and(|(n, _)| n != "n2"))
                .count();
            if moved == orphans.len() {
                Ok(())
            } else {
                Err(format!("{moved} of {} moved", orphans.len()))
            }
        },
    );
    eprintln!(
        "n2's agents owned again {:?} after its SIGKILL",
        killed.elapsed()
    );
    let silent = unanswered_by(&orphans, port, killed + Duration::from_secs(3 + 2));
    assert!(
        silent.is_empty(),
        "{} of n2's {} agents do not answer {:?} after its SIGKILL (lease_ttl 3 s + 2 s): {silent:?}",
        silent.len(),
        orphans.len(),
        killed.elapsed()
    );
    eprintln!(
        "n2's agents answer again {:?} after its SIGKILL",
        killed.elapsed()
    );
    let after = converged(&etcd, "/three", &[("n1", &n1), ("n3", &n3)], COUNT, within);
    let keys_after = owners(&etcd, "/three");
    for (a, (n, pid)) in &before {
        if n != "n2" {
            assert_eq!(after[a], (n.clone(), *pid), "{a} moved or restarted");
            assert_eq!(keys_after[a], keys_before[a], "{a}'s owner key changed");
        }
    }
    all_answer(orphans.iter().cloned(), port);
    let (moved_id, moved_boots) = engine(&mover, port);
    assert_eq!(moved_id, id, "{mover} changed its engine ID as it moved");
    assert!(
        moved_boots > boots,
        "{mover}'s snmpEngineBoots went from {boots} to {moved_boots}"
    );
    n1.wait_event(since, "n2 left", |e| {
        e["event"] == "node-left" && e["reason"].as_str().unwrap_or("").contains("node n2 left")
    });
    let assigned = n1.wait_event(since, "n2's agents assigned", |e| e["event"] == "assigned");
    assert_eq!(assigned["node"], "n1", "{assigned}");

    // n2 comes back: it gets a share, and only agents that move to it move.
    let n2 = start_node(&etcd, "/three", "n2", "3s");
    let nodes = [("n1", &n1), ("n2", &n2), ("n3", &n3)];
    let back = converged_sharing(&etcd, "/three", &nodes, COUNT, 60, within);
    let share = back.values().filter(|(o, _)| o == "n2").count();
    assert!(share >= 60, "n2 serves {share} again");
    for (a, (n, pid)) in &back {
        if n != "n2" {
            assert_eq!(after[a], (n.clone(), *pid), "{a} moved between n1 and n3");
        }
    }
    all_answer(back.keys().cloned(), port);
    no_clash(&nodes);
}

/// etcd stops answering (SIGSTOP). For less than the lease: nothing moves
/// and every agent keeps answering. For longer: each node stops serving
/// before its lease can expire (while etcd still says nothing), and when
/// etcd is back the agents are shared again, never on two nodes at once.
/// Each live node's capacity, from the membership keys under `prefix`,
/// once `n` nodes are there.
fn capacities(etcd: &Etcd, prefix: &str, n: usize) -> BTreeMap<String, usize> {
    poll_until(
        "the nodes' membership keys",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let got: BTreeMap<String, usize> = etcd
                .range(&format!("{prefix}/nodes/"))
                .0
                .iter()
                .filter_map(|kv| {
                    let m: serde_json::Value = serde_json::from_str(&kv.value).ok()?;
                    Some((
                        m["node"].as_str()?.to_string(),
                        m["capacity"].as_u64()? as usize,
                    ))
                })
                .collect();
            if got.len() == n {
                Ok(got)
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
}

/// A node is given no more agents than its host carries (the capacity in
/// its membership key): two nodes under a low open-file limit share a
/// fleet one of them could not carry; when one dies, the other takes over
/// up to its capacity and no more (nothing fails to start), and says how
/// many agents are left without a node.
#[test]
fn a_node_takes_over_no_more_agents_than_it_carries() {
    let _alone = alone();
    let etcd = Etcd::start();
    let n1 = start_node_limited(&etcd, "/cap", "n1", "2s", Some(256));
    let n2 = start_node_limited(&etcd, "/cap", "n2", "2s", Some(256));
    let caps = capacities(&etcd, "/cap", 2);
    let c2 = caps["n2"];
    let count = caps["n1"].min(c2) * 3 / 2;
    assert!(
        (20..1000).contains(&c2),
        "a host under 256 open files carries a few dozen agents: {caps:?}"
    );
    let dir = tempdir();
    let port = free_port();
    let agents = format!(
        "  - name: dev-{{i}}\n    count: {count}\n    listen: [\"127.61.{{i/200}}.{{i%200+1}}:{port}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        mib("linux-host.snmprec").display()
    );
    let file = fleet_file(dir.path(), &etcd, "/cap", &agents);
    let out = agentcluster(&["etcd", "push", "-c", file.to_str().unwrap()]);
    assert!(out.status.success(), "push: {}", text(&out));
    let both = [("n1", &n1), ("n2", &n2)];
    let shared = converged(&etcd, "/cap", &both, count, Duration::from_secs(60));
    for (n, c) in &caps {
        let share = shared.values().filter(|(o, _)| o == n).count();
        assert!(share <= *c, "{n} serves {share}, over its capacity {c}");
    }

    assert!(n1.signal(Signal::KILL));
    let survivor = [("n2", &n2)];
    poll_until(
        "n2 serves as many agents as it carries, and owns no more",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let (run, own) = (running(&survivor).len(), owners(&etcd, "/cap").len());
            if run == c2 && own == c2 {
                Ok(())
            } else {
                Err(format!("{run} running, {own} owner keys, capacity {c2}"))
            }
        },
    );
    // It stays so: nothing over its capacity was tried.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(running(&survivor).len(), c2);
    // `status --cluster` says why the others are unowned.
    let v = cluster_json(&n2).unwrap();
    let unowned: Vec<&serde_json::Value> = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "unowned")
        .collect();
    assert_eq!(unowned.len(), count - c2, "{v}");
    assert!(
        unowned.iter().all(|a| a["unowned"] == "no node has room"),
        "{unowned:?}"
    );
    let config = n2.dir.path().join("node.yaml");
    let out = agentcluster(&["status", "--cluster", "-c", config.to_str().unwrap()]);
    let table = text(&out);
    assert_eq!(
        table
            .lines()
            .filter(|l| l.ends_with("  no node has room"))
            .count(),
        count - c2,
        "{table}"
    );
    let failed: Vec<String> = n2
        .events()
        .iter()
        .filter(|e| e["event"] == "start-failed")
        .map(|e| e.to_string())
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let (_, log) = n2.stop();
    assert!(
        log.contains(&format!(
            "{} of {count} agents fit on no node: every node that can serve them is at its capacity",
            count - c2
        )),
        "{log}"
    );
    drop(n1);
}

#[test]
fn nodes_ride_out_a_short_etcd_pause_and_stop_serving_in_a_long_one() {
    let _alone = alone();
    const COUNT: usize = 40;
    let etcd = Etcd::start();
    let dir = tempdir();
    let port = free_port();
    shared_fleet(dir.path(), &etcd, "/pause", port, COUNT);
    let n1 = start_node(&etcd, "/pause", "n1", "3s");
    let n2 = start_node(&etcd, "/pause", "n2", "3s");
    let nodes = [("n1", &n1), ("n2", &n2)];
    let within = Duration::from_secs(60);
    // Both nodes serving: agents moving to a node that joins late are not
    // the pause's doing.
    let before = converged_sharing(&etcd, "/pause", &nodes, COUNT, 1, within);
    let keys = owners(&etcd, "/pause");
    let seqs = [n1.next_seq(), n2.next_seq()];

    // Half a second without etcd (the pause is what is tested; nothing to
    // wait for), then one lease's worth of checks: every agent answers
    // throughout, on the same node, in the same process.
    etcd.signal(Signal::STOP);
    std::thread::sleep(Duration::from_millis(500));
    etcd.signal(Signal::CONT);
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < end {
        all_answer(before.keys().take(10).cloned(), port);
    }
    assert_eq!(running(&nodes), before, "agents moved in a short pause");
    assert_eq!(owners(&etcd, "/pause"), keys);
    for ((name, node), since) in nodes.iter().zip(seqs) {
        let released: Vec<_> = node
            .events()
            .into_iter()
            .filter(|e| e["seq"].as_u64() >= Some(since) && e["event"] == "released")
            .collect();
        assert!(released.is_empty(), "{name} released: {released:?}");
    }

    // A pause longer than the lease: both nodes stop every agent while
    // etcd is still stopped.
    let seqs = [n1.next_seq(), n2.next_seq()];
    etcd.signal(Signal::STOP);
    for ((name, node), since) in nodes.iter().zip(seqs) {
        let e = node.wait_event(since, "the lease's end fenced", |e| {
            e["event"] == "released"
                && e["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("stopping every agent before lease")
        });
        assert_eq!(e["node"], *name, "{e}");
        let still: Vec<_> = node
            .status()
            .into_iter()
            .filter(|a| a["state"] == "running")
            .collect();
        assert!(still.is_empty(), "{name} still serves {still:?}");
    }
    etcd.signal(Signal::CONT);
    let again = converged(&etcd, "/pause", &nodes, COUNT, within);
    all_answer(again.keys().cloned(), port);
    no_clash(&nodes);
}

/// A node whose watch fell behind a compaction (it was stopped while the
/// prefix took megabytes of writes, then etcd compacted past them) is told
/// its watch is cancelled, logs it, lists again and goes on: a fleet
/// pushed after is served.
#[test]
fn a_watch_cancelled_by_compaction_lists_again_and_converges() {
    let _alone = alone();
    let etcd = Etcd::start();
    let dir = tempdir();
    let port = free_port();
    shared_fleet(dir.path(), &etcd, "/cmp", port, 6);
    // A long lease: the node is stopped for a while (7 s on an idle
    // machine, 300 writes through curl; far longer on a busy one) and
    // must not lose it, or it lists again as a new session, without the
    // cancellation this test is about.
    let n1 = start_node(&etcd, "/cmp", "n1", "90s");
    converged(&etcd, "/cmp", &[("n1", &n1)], 6, Duration::from_secs(60));
    assert!(n1.signal(Signal::STOP));
    // More than the watch stream can buffer for a reader that reads nothing.
    let big = "x".repeat(60_000);
    let stopped = std::time::Instant::now();
    let mut revision = 0;
    for i in 0..300 {
        revision = etcd.put(&format!("/cmp/junk/{}", i % 4), &big);
    }
    etcd.compact(revision);
    let stopped = stopped.elapsed();
    assert!(n1.signal(Signal::CONT));
    let relisted = n1.stderr().wait_for(0, Duration::from_secs(30), |l| {
        l.contains("watch cancelled (compaction past its revision); re-listing")
    });
    assert!(
        relisted.is_some(),
        "no re-list (the node was stopped {stopped:?} of its 90 s lease): {}",
        n1.stderr().tail(30)
    );
    // Watching again from the new list: a new fleet is picked up.
    shared_fleet(dir.path(), &etcd, "/cmp", port, 9);
    let served = converged(&etcd, "/cmp", &[("n1", &n1)], 9, Duration::from_secs(60));
    all_answer(served.keys().cloned(), port);
}

/// Pushes `count` agents under `prefix` with `more` (top-level YAML, e.g.
/// `scenarios:`), starts nodes n1 and n2 and waits until they serve them:
/// the push's wall time (ms), the nodes, and who serves what.
fn two_nodes_with(
    etcd: &Etcd,
    prefix: &str,
    count: usize,
    more: &str,
) -> (i64, Fleet, Fleet, BTreeMap<String, (String, u32)>) {
    let dir = tempdir();
    shared_fleet_with(dir.path(), etcd, prefix, free_port(), count, more);
    let (kvs, _) = etcd.range(&format!("{prefix}/fleet/config"));
    let pushed: serde_json::Value = serde_json::from_str(&kvs[0].value).unwrap();
    let zero = pushed["pushed_at_ms"].as_i64().expect("the push says when");
    let n1 = start_node(etcd, prefix, "n1", "3s");
    let n2 = start_node(etcd, prefix, "n2", "3s");
    let served = converged(
        etcd,
        prefix,
        &[("n1", &n1), ("n2", &n2)],
        count,
        Duration::from_secs(60),
    );
    (zero, n1, n2, served)
}

#[test]
fn nodes_run_the_pushed_scenarios_of_their_own_agents_from_the_push() {
    let _alone = alone();
    let etcd = Etcd::start();
    // Every 4 s after the push, each agent loses 10 % for 1 s, late by its
    // seeded jitter (up to 1 s).
    let (zero, n1, n2, served) = two_nodes_with(
        &etcd,
        "/scn",
        6,
        "scenarios:\n  - { agents: \"dev-*\", fault: loss, arg: 10, every: 4s, for: 1s, jitter: 1s, seed: 11 }\n",
    );
    let nodes = [("n1", &n1), ("n2", &n2)];
    let of = |node: &str| served_by(&served, node);
    for (name, node) in nodes {
        on_the_push_times(name, node, &of(name), &of(name), 2, zero);
    }
    // n1 dies: n2 takes its agents over and goes on with their schedule
    // where it is, without replaying what n1 fired.
    assert!(n1.signal(Signal::KILL));
    drop(n1);
    converged(&etcd, "/scn", &[("n2", &n2)], 6, Duration::from_secs(60));
    let all: Vec<String> = served.keys().cloned().collect();
    on_the_push_times("n2", &n2, &all, &of("n1"), 1, zero);
}

/// A scenario's fault in progress moves with its agent: the node that
/// takes the agent over injects it again for what is left of it, so it
/// ends when it would have on the node that died; one without `for` lasts
/// there too, and one a later scenario ended does not come back. A node
/// that starts after the faults fell due gets those of its own share the
/// same way.
#[test]
fn a_fault_in_progress_moves_with_its_agent_to_the_node_that_takes_it_over() {
    let _alone = alone();
    let etcd = Etcd::start();
    // 1 s after the push, every agent loses 10 % for 90 s and its links 1
    // and 2 go down until further notice; at 2 s link 1 comes back.
    let (zero, n1, n2, served) = two_nodes_with(
        &etcd,
        "/mv",
        6,
        "scenarios:\n  - { agents: \"dev-*\", fault: loss, arg: 10, at: 1s, for: 90s }\n  - { agents: \"dev-*\", fault: link-down, arg: 2, at: 1s }\n  - { agents: \"dev-*\", fault: link-down, arg: 1, at: 1s }\n  - { agents: \"dev-*\", fault: link-up, arg: 1, at: 2s }\n",
    );
    let ends = zero + 91_000;
    // The agents of `node` losing 10 % with link 2 down and link 1 up.
    let faulted = |node: &Fleet| -> Vec<String> {
        faults(node)
            .into_iter()
            .filter(|(_, f)| {
                let [loss, down] = [f.first(), f.get(1)].map(|f| f.map_or("", |f| f.as_str()));
                f.len() == 2 && loss.starts_with("loss 10%") && down == "link-down 2"
            })
            .map(|(a, _)| a)
            .collect()
    };
    poll_until(
        "every agent losing 10 % with link 2 down",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let n = faulted(&n1).len() + faulted(&n2).len();
            if n == 6 {
                Ok(())
            } else {
                Err(format!("{n} of 6"))
            }
        },
    );
    let moved = served_by(&served, "n1");
    assert!(!moved.is_empty(), "n1 serves some: {served:?}");
    // An operator command on a node names only its own agents, and says
    // where to look for the others.
    let out = agentcluster(&["fault", &moved[0], "hang", "--control", &n2.control()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "no agent of node n2 matches {}: a node serves only its share of the fleet; `agentcluster status --cluster` shows which node serves which agent",
            moved[0]
        )),
        "{}",
        text(&out)
    );
    let since = n2.next_seq();
    assert!(n1.signal(Signal::KILL));
    drop(n1);
    converged(&etcd, "/mv", &[("n2", &n2)], 6, Duration::from_secs(60));
    poll_until(
        "the moved agents losing 10 % with link 2 down on n2",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let f = faulted(&n2);
            if f.len() == 6 {
                Ok(())
            } else {
                Err(format!("{f:?}"))
            }
        },
    );
    // `fault-injected` of `a` whose reason starts with `what`, since `from`.
    let injected = |seen: &[serde_json::Value], a: &str, what: &str, from: u64| {
        seen.iter()
            .filter(|e| e["seq"].as_u64() >= Some(from) && is(e, a, "fault-injected"))
            .filter(|e| e["reason"].as_str().is_some_and(|r| r.starts_with(what)))
            .cloned()
            .collect::<Vec<_>>()
    };
    let events = n2.wait_events("the resumed faults", |seen| {
        moved.iter().all(|a| {
            !injected(seen, a, "loss", since).is_empty()
                && !injected(seen, a, "link-down 2", since).is_empty()
        })
    });
    for a in &moved {
        let e = &injected(&events, a, "loss", since)[0];
        let left = lasts(e).unwrap_or_else(|| panic!("no time left in {e}"));
        let at = ts_millis(e["ts"].as_str().unwrap()).unwrap();
        let off = at + left.as_millis() as i64 - ends;
        assert!(
            left < Duration::from_secs(90) && off.abs() <= 1_500,
            "{a}: resumed for {left:?}, ending {off} ms from the occurrence's end: {e}"
        );
    }
    // Each agent got each of its faults once on n2: n2's own agents kept
    // theirs (no second injection), the moved ones got them again; and no
    // agent got link 1 down again.
    for a in served.keys() {
        for what in ["loss", "link-down 2"] {
            assert_eq!(injected(&events, a, what, 0).len(), 1, "{a}: {what}");
        }
        assert!(injected(&events, a, "link-down 1", since).is_empty(), "{a}");
    }
}

/// A fault injected by hand on a node is kept in etcd and moves with its
/// agent: the node that takes the agent over gives it the fault again,
/// for what is left of it; a cleared fault leaves nothing behind.
#[test]
fn a_fault_injected_by_hand_moves_with_its_agent() {
    let _alone = alone();
    let etcd = Etcd::start();
    // 1 s after the push, every agent's link 2 goes down until further
    // notice.
    let (_, n1, n2, served) = two_nodes_with(
        &etcd,
        "/hand",
        12,
        "scenarios:\n  - { agents: \"dev-*\", fault: link-down, arg: 2, at: 1s }\n",
    );
    let of = |node: &str| served_by(&served, node);
    // The node with more agents (at least 6 of 12) goes.
    let ((gone, victim), (stays, survivor)) = if of("n1").len() >= of("n2").len() {
        (("n1", n1), ("n2", n2))
    } else {
        (("n2", n2), ("n1", n1))
    };
    let agents = of(gone);
    let [a, b, c, up] = [&agents[0], &agents[1], &agents[2], &agents[3]];
    poll_until(
        "every agent's link 2 down",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let f = faults(&victim);
            let down = f.values().filter(|f| *f == &["link-down 2"]).count();
            (down == agents.len())
                .then_some(())
                .ok_or_else(|| format!("{f:?}"))
        },
    );
    let control = victim.control();
    let fault = |args: &[&str]| {
        let mut all = vec!["fault"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--control", &control]);
        let out = agentcluster(&all);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    fault(&[a, "hang", "--for", "60s"]);
    fault(&[b, "loss", "10"]);
    fault(&[c, "hang"]);
    fault(&[c, "clear"]);
    fault(&[up, "link-up", "2"]);
    // Waits until the agents with a faults key in etcd are as `done`
    // wants them.
    let kept_until = |what: &str, within: u64, done: &dyn Fn(&BTreeSet<String>) -> bool| {
        poll_until(
            what,
            Duration::from_secs(within),
            Duration::from_millis(100),
            || {
                let k: BTreeSet<String> = etcd
                    .range("/hand/faults/")
                    .0
                    .into_iter()
                    .map(|kv| kv.key.trim_start_matches("/hand/faults/").to_string())
                    .collect();
                done(&k)
                    .then_some(k.clone())
                    .ok_or_else(|| format!("{k:?}"))
            },
        )
    };
    // The clear and the link-up are kept too: they ended the scenario's
    // fault.
    kept_until("the faults kept in etcd", 10, &|k| {
        *k == BTreeSet::from([a.clone(), b.clone(), c.clone(), up.clone()])
    });
    let since = survivor.next_seq();
    assert!(victim.signal(Signal::KILL));
    drop(victim);
    converged(
        &etcd,
        "/hand",
        &[(stays, &survivor)],
        12,
        Duration::from_secs(60),
    );
    let faults_of = |agent: &str| faults(&survivor).remove(agent).unwrap_or_default();
    poll_until(
        "the faults given back on the node that took the agents over",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let sorted = |a: &str| {
                let mut f = faults_of(a);
                f.sort();
                f
            };
            let (fa, fb) = (sorted(a), sorted(b));
            let down = "link-down 2".to_string();
            let others = agents[4..].iter().all(|o| faults_of(o) == [down.clone()]);
            if fa.len() == 2
                && fa[0].starts_with("hang (")
                && fa[1] == down
                && fb == [down.clone(), "loss 10%".into()]
                && others
            {
                Ok(())
            } else {
                Err(format!("{a}: {fa:?}, {b}: {fb:?}, others: {others}"))
            }
        },
    );
    // Ended by hand on the node that died: not given back.
    assert!(faults_of(c).is_empty(), "{c}: {:?}", faults_of(c));
    assert!(faults_of(up).is_empty(), "{up}: {:?}", faults_of(up));
    let hang_of_a = |e: &&serde_json::Value| {
        e["seq"].as_u64() >= Some(since)
            && is(e, a, "fault-injected")
            && e["reason"].as_str().is_some_and(|r| r.starts_with("hang"))
    };
    let events = survivor.wait_events("the hang given back", |seen| {
        seen.iter().any(|e| hang_of_a(&e))
    });
    let hang = events.iter().find(hang_of_a).unwrap();
    let left = lasts(hang).unwrap_or_else(|| panic!("no time left in {hang}"));
    assert!(
        left < Duration::from_secs(60) && left > Duration::from_secs(20),
        "{hang}"
    );
    // The keys of an earlier push are swept (within the nodes' 10 s
    // upkeep): the fleet written again is a new push.
    let (fleet, _) = etcd.range("/hand/fleet/config");
    etcd.put("/hand/fleet/config", &fleet[0].value);
    kept_until(
        "the keys of the earlier push swept",
        25,
        &BTreeSet::is_empty,
    );
}

/// Each agent of `node` with its active faults as `status` shows them
/// (`hang (52s left)`).
fn faults(node: &Fleet) -> BTreeMap<String, Vec<String>> {
    node.status()
        .iter()
        .map(|a| {
            let f = a["faults"].as_array().map_or_else(Vec::new, |f| {
                f.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            });
            (a["name"].as_str().unwrap_or_default().to_string(), f)
        })
        .collect()
}

/// How long a `fault-injected` event says its fault lasts (`, for D`).
fn lasts(e: &serde_json::Value) -> Option<Duration> {
    parse_duration(e["reason"].as_str()?.rsplit_once(", for ")?.1)
}

/// Waits until `node` injected the scenario's fault at least `times` on
/// each of `waited` (`agents`: every agent it may fault), and checks each
/// of its injections: on one of `agents`, at the push's times (occurrence
/// k of `every: 4s, for: 1s, jitter: 1s` from 4 s × (k + 1) to 1 s later,
/// after `zero`, the push), and never two on one agent within a period
/// (no burst of occurrences already past). A fault still in
/// progress on an agent that moved in is injected again for what is left
/// of it: that one ends when the occurrence does.
fn on_the_push_times(
    name: &str,
    node: &Fleet,
    agents: &[String],
    waited: &[String],
    times: usize,
    zero: i64,
) {
    let scheduled = |e: &&serde_json::Value| lasts(e) == Some(Duration::from_secs(1));
    let injected = |seen: &[serde_json::Value], agent: &str| -> Vec<i64> {
        seen.iter()
            .filter(|e| is(e, agent, "fault-injected"))
            .filter(scheduled)
            .filter_map(|e| ts_millis(e["ts"].as_str()?))
            .collect()
    };
    let seen = node.wait_events(&format!("{times} faults on each of {waited:?}"), |seen| {
        waited.iter().all(|a| injected(seen, a).len() >= times)
    });
    for e in seen.iter().filter(|e| e["event"] == "fault-injected") {
        let agent = e["agent"].as_str().unwrap();
        assert!(
            agents.iter().any(|a| a == agent),
            "{name} faulted {agent}, not one of its own"
        );
        if !scheduled(&e) {
            let left = lasts(e).unwrap_or_else(|| panic!("{name}: {e}"));
            let ends = ts_millis(e["ts"].as_str().unwrap()).unwrap() + left.as_millis() as i64;
            let into = (ends - zero) % 4000;
            assert!(
                left < Duration::from_secs(1) && (900..=2500).contains(&into),
                "{name}: a fault resumed on {agent} ends {} ms after the push: {e}",
                ends - zero
            );
        }
    }
    for a in agents {
        let at = injected(&seen, a);
        for t in &at {
            let into = (t - zero) % 4000;
            assert!(
                t - zero >= 3800 && (0..=1400).contains(&into),
                "{name}: {a} at {} ms after the push",
                t - zero
            );
        }
        for pair in at.windows(2) {
            assert!(
                pair[1] - pair[0] >= 3000,
                "{name}: {a} faulted twice within {} ms",
                pair[1] - pair[0]
            );
        }
    }
}
