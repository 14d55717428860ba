//! `agentcluster events` against a real supervisor: replay, `--since`,
//! `--filter`, `--json`, and `--follow` seeing a restart as it happens
//! (waiting on the follower's lines, never on sleeps).

use std::process::Command;

use serde_json::Value as Json;

use crate::harness::{BIN, Fleet, Process, WAIT, agentcluster, free_port, mib};

fn fleet(names: &[&str]) -> Fleet {
    let mut y = String::from("agents:\n");
    for name in names {
        y += &format!(
            "  - name: {name}\n    listen: [\"127.0.0.1:{}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            free_port(),
            mib("linux-host.snmprec").display()
        );
    }
    Fleet::start(&y)
}

/// `events --json` with extra arguments: the events, one JSON object each.
fn events_json(fleet: &Fleet, extra: &[&str]) -> Vec<Json> {
    let sock = fleet.control();
    let mut args = vec!["events", "--json", "--control", &sock];
    args.extend_from_slice(extra);
    let out = agentcluster(&args);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn events_are_replayed_filtered_and_printed() {
    let fleet = fleet(&["dev-a", "dev-b"]);
    let all = events_json(&fleet, &[]);
    assert_eq!(all[0]["event"], "supervisor-started", "{all:?}");
    assert_eq!(all[0]["agent"], "");
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for name in ["dev-a", "dev-b"] {
        assert!(
            all.iter()
                .any(|e| e["agent"] == name && e["event"] == "ready"),
            "{name} ready: {all:?}"
        );
    }

    let ready_a = events_json(&fleet, &["--filter", "*|agent|ready|dev-?"]);
    assert_eq!(ready_a.len(), 2, "{ready_a:?}");
    assert!(ready_a.iter().all(|e| e["event"] == "ready"));
    let supervisor = events_json(&fleet, &["--filter", "*|supervisor|*|*"]);
    assert!(
        supervisor.iter().all(|e| e["agent"] == ""),
        "{supervisor:?}"
    );
    assert!(!supervisor.is_empty());

    let since = seqs[2].to_string();
    let later = events_json(&fleet, &["--since", &since]);
    assert_eq!(later.len(), all.len() - 2);
    assert_eq!(later[0], all[2]);

    // The text form: one line per event, the agent and kind in it.
    let sock = fleet.control();
    let out = agentcluster(&["events", "--control", &sock]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), all.len(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(" dev-a ready ") && l.contains("state=running")),
        "{text}"
    );
}

#[test]
fn a_bad_filter_is_a_user_error_told_before_connecting() {
    let out = agentcluster(&[
        "events",
        "--control",
        "/nonexistent/x.sock",
        "--filter",
        "lab-a|agent",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("node|component|event|agent"), "{stderr}");
    let out = agentcluster(&["events", "--follow", "--control", "/nonexistent/x.sock"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

#[test]
fn follow_prints_a_restart_as_it_happens() {
    let fleet = fleet(&["dev-a", "dev-b"]);
    let sock = fleet.control();
    let last = events_json(&fleet, &[])
        .last()
        .and_then(|e| e["seq"].as_u64())
        .expect("some events");
    let mut cmd = Command::new(BIN);
    cmd.args(["events", "--follow", "--json", "--control", &sock])
        .args(["--filter", "*|agent|*|dev-a", "--since"])
        .arg((last + 1).to_string());
    let follower = Process::spawn(cmd);

    let out = agentcluster(&["restart", "--control", &sock, "dev-*"]);
    assert!(out.status.success(), "{out:?}");

    let parse = |line: &str| -> Json {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    let ready = follower.stdout.wait_for(0, WAIT, |l| {
        let e = parse(l);
        e["event"] == "ready" && e["restarts"] == 1
    });
    let lines = follower
        .stdout
        .range(0, ready.map_or(usize::MAX, |i| i + 1));
    let seen: Vec<Json> = lines.iter().map(|l| parse(l)).collect();
    assert!(
        ready.is_some(),
        "the follower printed no ready after the restart within {WAIT:?}; it printed {seen:?}; its stderr: {}",
        follower.stderr.text()
    );
    assert!(seen.iter().all(|e| e["agent"] == "dev-a"), "{seen:?}");
    assert!(seen[0]["seq"].as_u64().unwrap() > last, "{seen:?}");
    let kinds: Vec<&str> = seen.iter().filter_map(|e| e["event"].as_str()).collect();
    let starting = kinds.iter().position(|k| *k == "starting");
    assert!(
        starting.is_some_and(|i| i < kinds.len() - 1),
        "starting before ready: {kinds:?}"
    );
}
