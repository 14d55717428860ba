//! `agentcluster status` against a live supervisor: the summary line, the
//! `--state` filter, `--sort`, `--watch` (a new table after events, none
//! without), and colour on a terminal only.

use std::process::Command;
use std::time::Duration;

use crate::harness::imports::{Signal, procs};
use crate::harness::{BIN, Fleet, Process, agentcluster, free_port, is, mib, output, pid_of, text};

/// One agent entry on a port of its own, `extra` its own further keys.
fn agent_yaml(name: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    listen: [\"127.0.0.1:{}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n{extra}",
        free_port(),
        mib("linux-host.snmprec").display()
    )
}

/// The rows of a status table (after the summary line and the header),
/// split into columns.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// A fleet of four: two running (one restarted once after a kill), one
/// stopped by the operator, one failed (its process needs more than the
/// 1 MiB it may have, so every run ends unresponsive until too many
/// restarts leave it failed).
fn mixed_fleet() -> Fleet {
    let fleet = Fleet::start(&format!(
        "  heartbeat: 200ms\n  restart: {{ max_restarts: 1, backoff: 10ms..20ms }}\nagents:\n{}{}{}{}",
        agent_yaml("ok-1", ""),
        agent_yaml("ok-2", ""),
        agent_yaml("idle", ""),
        agent_yaml("hungry", "    memory_max: 1M\n"),
    ));
    fleet.wait_event(1, "hungry failed", |e| is(e, "hungry", "failed"));
    let since = fleet.next_seq();
    let out = agentcluster(&["stop", "--control", &fleet.control(), "idle"]);
    assert!(out.status.success(), "{}", text(&out));
    let pid = pid_of(&fleet.status(), "ok-2");
    procs::signal(pid, Signal::SIGKILL).unwrap();
    let mut events = fleet.follow(since);
    events.wait("idle stopped", |e| is(e, "idle", "stopped"));
    events.wait("ok-2 back", |e| is(e, "ok-2", "ready"));
    fleet
}

#[test]
fn status_sums_up_filters_and_sorts() {
    let fleet = mixed_fleet();
    let sock = fleet.control();

    let out = agentcluster(&["status", "--control", &sock]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let summary = table.lines().next().unwrap();
    assert!(summary.starts_with("node "), "{table}");
    assert!(
        summary.ends_with(": 4 agents: 2 running, 1 failed, 1 stopped"),
        "{table}"
    );
    assert!(
        table.lines().nth(1).unwrap().starts_with("NAME "),
        "{table}"
    );
    // a pipe gets no escape codes
    assert!(!table.contains('\x1b'), "{table:?}");
    let names: Vec<String> = rows(&table).into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(names, ["hungry", "idle", "ok-1", "ok-2"], "{table}");

    // --state: only those agents, the summary still of the whole fleet
    let out = agentcluster(&["status", "--control", &sock, "--state", "failed"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let rows_failed = rows(&table);
    assert_eq!(rows_failed.len(), 1, "{table}");
    assert_eq!(rows_failed[0][..2], ["hungry", "failed"], "{table}");
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .ends_with("1 failed, 1 stopped (1 shown)"),
        "{table}"
    );
    let out = agentcluster(&[
        "status",
        "--control",
        &sock,
        "--state",
        "failed",
        "--state",
        "stopped",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hungry", "idle"], "{json}");

    // an unknown state is a usage error naming the valid ones
    let out = agentcluster(&["status", "--control", &sock, "--state", "sleeping"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for state in [
        "inactive",
        "starting",
        "running",
        "unresponsive",
        "stopping",
        "backoff",
        "failed",
        "stopped",
    ] {
        assert!(stderr.contains(state), "{state}: {stderr}");
    }
    assert!(out.stdout.is_empty());

    // --sort restarts: the most restarts first, ties by name
    let out = agentcluster(&["status", "--control", &sock, "--sort", "restarts"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let restarts: Vec<(String, u32)> = rows(&table)
        .into_iter()
        .map(|r| (r[0].clone(), r[4].parse().unwrap()))
        .collect();
    let mut want = restarts.clone();
    want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    assert_eq!(restarts, want, "{table}");
    assert!(restarts[0].1 >= 1, "{table}");
    assert_eq!(restarts.last().unwrap().1, 0, "{table}");
}

/// `status --watch` into a pipe: one table, then nothing while nothing
/// happens; a killed agent brings new tables (after a blank line) that
/// end with its restart.
#[test]
fn status_watch_draws_again_on_events_and_only_then() {
    let fleet = Fleet::start(&format!(
        "agents:\n{}{}",
        agent_yaml("w-1", ""),
        agent_yaml("w-2", "")
    ));
    let mut cmd = Command::new(BIN);
    cmd.args(["status", "--watch", "--control", &fleet.control()]);
    let watch = Process::spawn(cmd);
    let summary = |l: &str| l.starts_with("node ");
    let first = watch
        .stdout
        .wait_for(0, Duration::from_secs(30), summary)
        .unwrap_or_else(|| panic!("no table: {}", watch.stderr.text()));
    // Quiet fleet: a second table would be polling.
    assert_eq!(
        watch
            .stdout
            .wait_for(first + 1, Duration::from_secs(2), summary),
        None,
        "drawn again without an event:\n{}",
        watch.stdout.text()
    );
    let table = watch.stdout.text();
    assert!(table.contains("2 running"), "{table}");
    assert!(!table.contains('\x1b'), "{table:?}");

    let pid = pid_of(&fleet.status(), "w-1");
    procs::signal(pid, Signal::SIGKILL).unwrap();
    // A later table shows w-1 running again, restarted once.
    let restarted = watch
        .stdout
        .wait_for(first + 1, Duration::from_secs(30), |l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() == 8 && cols[0] == "w-1" && cols[1] == "running" && cols[4] == "1"
        })
        .unwrap_or_else(|| panic!("no table with the restart:\n{}", watch.stdout.text()));
    let lines = watch.stdout.range(0, restarted + 1);
    let second = (first + 1..lines.len())
        .find(|&i| summary(&lines[i]))
        .unwrap();
    assert_eq!(
        lines[second - 1],
        "",
        "a blank line between tables: {lines:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains('\x1b')), "{lines:?}");
}

/// Under a terminal the STATE column is coloured; not with NO_COLOR, and
/// never in a pipe (the tests above).
#[test]
fn status_colours_the_state_on_a_terminal_unless_no_color() {
    let fleet = Fleet::start(&format!("agents:\n{}", agent_yaml("tty-1", "")));
    let line = format!("{BIN} status --control {}", fleet.control());
    let on_tty = |no_color: Option<&str>| {
        let mut cmd = Command::new("timeout");
        cmd.args(["60", "script", "-qec", &line, "/dev/null"])
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = output(&mut cmd).unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(t.contains("tty-1"), "{t}");
        t
    };
    let coloured = on_tty(None);
    assert!(coloured.contains("\x1b[32mrunning"), "{coloured:?}");
    let plain = on_tty(Some("1"));
    assert!(!plain.contains('\x1b'), "{plain:?}");
    assert!(plain.contains("tty-1  running"), "{plain:?}");
}
