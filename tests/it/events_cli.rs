//! `agentcluster events` against a real supervisor: replay, `--since`,
//! `--filter`, `--json`, and `--follow` seeing a restart as it happens
//! (waiting on the follower's lines, never on sleeps).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;

use serde_json::Value as Json;

use crate::harness::{BIN, Fleet, Process, WAIT, agentcluster, free_block, free_port, mib};

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

    // --last N: the newest N of what the other options chose.
    assert_eq!(events_json(&fleet, &["--last", "2"]), all[all.len() - 2..]);
    let newest_ready = events_json(&fleet, &["-n", "1", "--filter", "*|agent|ready|*"]);
    assert_eq!(newest_ready, ready_a[1..], "{newest_ready:?}");
    assert_eq!(
        events_json(&fleet, &["--since", &since, "-n", "1000"]),
        later
    );

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
    // `-f -n 1`: dev-b's newest event first (its ready), then new ones.
    let mut cmd = Command::new(BIN);
    cmd.args(["events", "-f", "-n", "1", "--json", "--control", &sock])
        .args(["--filter", "*|agent|*|dev-b"]);
    let tail = Process::spawn(cmd);
    let first = tail.stdout.wait_for(0, WAIT, |_| true);
    assert_eq!(first, Some(0), "no first line: {}", tail.stderr.text());
    let newest: Json = serde_json::from_str(&tail.stdout.range(0, 1)[0]).unwrap();
    assert_eq!(
        (&newest["agent"], &newest["event"], &newest["restarts"]),
        (&Json::from("dev-b"), &Json::from("ready"), &Json::from(0)),
        "{newest}"
    );
    assert!(newest["seq"].as_u64().unwrap() <= last, "{newest}");

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
    let again = tail.stdout.wait_for(1, WAIT, |l| {
        let e: Json = serde_json::from_str(l).unwrap();
        e["event"] == "ready" && e["restarts"] == 1
    });
    assert!(
        again.is_some(),
        "-f -n 1 printed no new ready: {:?}",
        tail.stdout.range(0, usize::MAX)
    );
    assert!(
        tail.stdout.range(1, usize::MAX).iter().all(|l| {
            let e: Json = serde_json::from_str(l).unwrap();
            e["agent"] == "dev-b" && e["seq"].as_u64().unwrap() > last
        }),
        "{:?}",
        tail.stdout.range(0, usize::MAX)
    );
    assert!(seen[0]["seq"].as_u64().unwrap() > last, "{seen:?}");
    let kinds: Vec<&str> = seen.iter().filter_map(|e| e["event"].as_str()).collect();
    let starting = kinds.iter().position(|k| *k == "starting");
    assert!(
        starting.is_some_and(|i| i < kinds.len() - 1),
        "starting before ready: {kinds:?}"
    );
}

/// A subscriber that stops reading while far more events come than it may
/// have queued (restarts of one process of 200 agents, each agent with its
/// own `restarting`, `starting`, `ready`: 2,400 events) is not cut: once it
/// reads, it gets every event, in order, once, served from the ring (one
/// that falls out of the ring is cut: the stream's unit tests).
#[test]
fn a_subscriber_that_stops_reading_gets_every_event_once_it_reads() {
    let n = 200;
    let base = free_block(n);
    let fleet = Fleet::start(&format!(
        "  agents_per_process: {n}\nagents:\n  - name: \"dev-{{i}}\"\n    count: {n}\n    listen: [\"127.0.0.1:{{i+{base}}}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n    notify: none\n",
        mib("linux-host.snmprec").display()
    ));
    let since = fleet.next_seq();
    let mut events = fleet.follow(since);
    let mut slow = UnixStream::connect(fleet.control()).expect("connect");
    slow.write_all(
        format!("{{\"protocol\":1,\"cmd\":\"events\",\"since\":{since},\"follow\":true}}\n")
            .as_bytes(),
    )
    .expect("subscribe");
    slow.set_read_timeout(Some(WAIT)).expect("a read timeout");
    let mut slow = BufReader::new(slow);
    let mut lines = Vec::new();
    let sock = fleet.control();
    for round in 1..=4 {
        let out = agentcluster(&["restart", "--control", &sock, "dev-*"]);
        assert!(out.status.success(), "{out:?}");
        if round == 1 {
            // The subscriber is streaming once it has a line; from now on
            // it reads nothing.
            let mut line = String::new();
            slow.read_line(&mut line).expect("a first record");
            lines.push(line);
        }
        for i in 0..n {
            let name = format!("dev-{i}");
            events.wait(&format!("{name} ready after restart {round}"), |e| {
                e["agent"] == name.as_str() && e["event"] == "ready" && e["restarts"] == round
            });
        }
    }
    let end = fleet.next_seq();

    // Now it reads, up to the last event published.
    let mut got: Vec<u64> = Vec::new();
    for line in &lines {
        let record: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        got.extend(record["seq"].as_u64());
    }
    while got.last().is_none_or(|s| *s + 1 < end) {
        let mut line = String::new();
        let n = slow.read_line(&mut line).expect("read the stream");
        assert!(n > 0, "the stream ended after {got:?}");
        let record: Json = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            record.get("overflow").is_none() && record.get("gap").is_none(),
            "{record}"
        );
        got.extend(record["seq"].as_u64());
    }
    let want: Vec<u64> = (since..end).collect();
    assert!(
        got == want,
        "every event from {since} to {end}, once, in order"
    );
}
