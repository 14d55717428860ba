//! `agentcluster status` against a live supervisor: the summary line, the
//! `--state` filter, `--sort`, `--watch` (a new table after events, none
//! without), and colour on a terminal only; and `run`'s progress, drawn
//! on a terminal only.

use std::process::Command;
use std::time::Duration;

use crate::harness::fleet::READY_WITHIN;
use crate::harness::imports::{Signal, procs};
use crate::harness::{
    BIN, Fleet, Process, agentcluster, alone, free_port, is, mib, output, pid_of, poll_until,
    sys_name_ok, table_rows, tempdir, text,
};

/// One agent entry on a port of its own, `extra` its own further keys.
fn agent_yaml(name: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    listen: [\"127.0.0.1:{}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n{extra}",
        free_port(),
        mib("linux-host.snmprec").display()
    )
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
    let names: Vec<String> = table_rows(&table)
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(names, ["hungry", "idle", "ok-1", "ok-2"], "{table}");

    // --state: only those agents, the summary still of the whole fleet
    let out = agentcluster(&["status", "--control", &sock, "--state", "failed"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let rows_failed = table_rows(&table);
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
    let json_names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["status", "--control", &sock, "--json"];
        all.extend_from_slice(args);
        let out = agentcluster(&all);
        assert!(out.status.success(), "{}", text(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json.as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    let names = json_names(&["--state", "failed", "--state", "stopped"]);
    assert_eq!(names, ["hungry", "idle"]);

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
    let restarts: Vec<(String, u32)> = table_rows(&table)
        .into_iter()
        .map(|r| (r[0].clone(), r[4].parse().unwrap()))
        .collect();
    let mut want = restarts.clone();
    want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    assert_eq!(restarts, want, "{table}");
    assert!(restarts[0].1 >= 1, "{table}");
    assert_eq!(restarts.last().unwrap().1, 0, "{table}");

    // names and globs: only those agents, the summary of the whole fleet
    let out = agentcluster(&["status", "--control", &sock, "ok-*", "idle"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let names: Vec<String> = table_rows(&table)
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(names, ["idle", "ok-1", "ok-2"], "{table}");
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .ends_with(": 4 agents: 2 running, 1 failed, 1 stopped (3 shown)"),
        "{table}"
    );
    // with --state, both must hold
    let names = json_names(&["--state", "running", "ok-[2-9]", "idle"]);
    assert_eq!(names, ["ok-2"]);
    // a name that matches no agent is an error that names it, as for stop
    let out = agentcluster(&["status", "--control", &sock, "ok-1", "nosuch-*", "gone"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no agent matches nosuch-*, gone"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out));
    // a pattern that is no glob is a usage error
    let out = agentcluster(&["status", "--control", &sock, "ok-[1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad pattern \"ok-[1\""),
        "{}",
        text(&out)
    );
}

/// The agents of one process count apart in `status`: heartbeats carry
/// only the agents whose counts moved, so one asked earlier keeps its
/// count while another is asked, and one never asked stays at 0.
#[test]
fn status_counts_each_agent_of_a_packed_process() {
    let ports = [free_port(), free_port(), free_port()];
    let agents: String = ["a", "b", "c"]
        .iter()
        .zip(ports)
        .map(|(name, port)| {
            format!(
                "  - name: {name}\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
                mib("linux-host.snmprec").display()
            )
        })
        .collect();
    let fleet = Fleet::start(&format!(
        "  heartbeat: 100ms\n  agents_per_process: 3\nagents:\n{agents}"
    ));
    let get = |port: u16, times: usize| (0..times).for_each(|_| sys_name_ok(port));
    let counts_are = |what: &str, want: [u64; 3]| {
        poll_until(
            what,
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                let status = fleet.status();
                let seen: Vec<u64> = ["a", "b", "c"]
                    .iter()
                    .map(|n| {
                        crate::harness::agent(&status, n)["requests"]
                            .as_u64()
                            .unwrap_or(u64::MAX)
                    })
                    .collect();
                if seen == want {
                    Ok(())
                } else {
                    Err(format!("{seen:?}"))
                }
            },
        );
    };
    let pids: Vec<u32> = ["a", "b", "c"]
        .iter()
        .map(|n| pid_of(&fleet.status(), n))
        .collect();
    assert!(pids.iter().all(|p| *p == pids[0]), "one process: {pids:?}");
    get(ports[1], 4);
    counts_are("b's 4 requests, none to a or c", [0, 4, 0]);
    get(ports[0], 2);
    counts_are("a's 2 requests beside b's 4", [2, 4, 0]);
    // Several heartbeats later b, not asked since, still has its count.
    std::thread::sleep(Duration::from_millis(500));
    counts_are("the same counts after five more heartbeats", [2, 4, 0]);
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

/// `run` on a terminal draws its progress on stderr (indicatif) while it
/// compiles and starts a few hundred agents, and clears it before the
/// ready block; with pipes it prints what it always did, nothing more.
#[test]
fn run_shows_progress_on_a_terminal_and_nothing_more_in_pipes() {
    let _alone = alone();
    let n = 200;
    let yaml = |dir: &std::path::Path| {
        let mut y = format!(
            "cluster:\n  cache_dir: {}\n  state_dir: {}\n  control_socket: {}\nagents:\n",
            dir.join("cache").display(),
            dir.join("state").display(),
            dir.join("control.sock").display(),
        );
        for i in 0..n {
            y += &agent_yaml(&format!("p-{i}"), "");
        }
        y
    };

    // Pipes: the ready block as ever, no progress, no escape codes.
    let piped = tempdir();
    let config = piped.path().join("fleet.yaml");
    std::fs::write(&config, yaml(piped.path())).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("run").arg("-c").arg(&config).env_remove("NO_COLOR");
    let fleet = Fleet::spawn(cmd, piped);
    let sock = fleet.control();
    let node = fleet.events()[0]["node"].as_str().unwrap().to_string();
    let mut want = vec![format!("agentcluster: {n} agents ready on node {node}")];
    let status = fleet.status();
    let mut named: Vec<(u32, String)> = status
        .iter()
        .map(|a| {
            let name = a["name"].as_str().unwrap();
            (
                name[2..].parse().unwrap(),
                a["endpoints"][0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    named.sort();
    for (i, endpoint) in named.iter().take(10) {
        want.push(format!(
            "  snmpwalk -v2c -c public {endpoint} 1.3.6.1.2.1.1    # p-{i}"
        ));
    }
    let dir = fleet.dir.path().display().to_string();
    want.extend([
        format!(
            "  … and {} more (agentcluster status --control {sock})",
            n - 10
        ),
        "Files:".to_string(),
        format!("  cache:          {dir}/cache"),
        format!("  state:          {dir}/state"),
        format!("  control socket: {sock}"),
        format!("Status: agentcluster status --control {sock}"),
        "Stop with Ctrl-C.".to_string(),
    ]);
    assert_eq!(fleet.banner, want);
    let log = fleet.stderr().text();
    for drawn in ['\r', '\x1b'] {
        assert!(!log.contains(drawn), "{log:?}");
    }
    assert!(!log.contains("starting agents"), "{log}");
    let (exit, _) = fleet.stop();
    assert!(exit.success(), "{exit:?}");

    // A terminal: the progress, then the ready block.
    let tty = tempdir();
    let config = tty.path().join("fleet.yaml");
    std::fs::write(&config, yaml(tty.path())).unwrap();
    let line = format!("exec {BIN} run -c {}", config.display());
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env_remove("NO_COLOR");
    let script = Process::spawn(cmd);
    let ready = script
        .stdout
        .wait_for(0, READY_WITHIN, |l| l.contains("Stop with Ctrl-C."));
    // (`exec`: the supervisor is script's child itself.)
    let supervisor = Supervisor(procs::children(script.pid()).first().copied());
    let ready = ready.unwrap_or_else(|| panic!("not ready: {}", script.stdout.tail(20)));
    let seen = script.stdout.range(0, ready + 1).join("\n");
    assert!(
        seen.contains("compiling snapshots [") && seen.contains(" files, "),
        "{seen}"
    );
    assert!(seen.contains("starting agents ["), "{seen}");
    assert!(seen.contains(&format!("/{n}: ")), "{seen}");
    assert!(seen.contains(" ready, 0 failed"), "{seen}");
    // indicatif clears its line before the ready block
    let banner = seen
        .lines()
        .position(|l| l.contains(&format!("agentcluster: {n} agents ready on node")))
        .unwrap_or_else(|| panic!("no ready line: {seen}"));
    assert!(
        seen.lines()
            .skip(banner + 1)
            .all(|l| !l.contains("starting agents")),
        "{seen}"
    );
    supervisor.stop();
    let (exit, _) = script.finish();
    assert!(exit.success(), "{exit:?}");
}

/// The supervisor `script` runs on its terminal: killed if the test ends
/// before it is stopped (the terminal's end would only be a SIGHUP, a
/// reload, to it).
struct Supervisor(Option<u32>);

impl Supervisor {
    fn stop(mut self) {
        if let Some(pid) = self.0.take() {
            procs::signal(pid, Signal::SIGTERM).unwrap();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = procs::signal(pid, Signal::SIGKILL);
        }
    }
}

/// Built without the cargo feature `etcd`, `status --cluster` says so.
#[cfg(not(feature = "etcd"))]
#[test]
fn status_cluster_needs_the_etcd_feature() {
    let dir = tempdir();
    let file = dir.path().join("fleet.yaml");
    std::fs::write(
        &file,
        "cluster:\n  etcd:\n    endpoints: [\"http://127.0.0.1:1\"]\nagents: []\n",
    )
    .unwrap();
    let out = agentcluster(&["status", "--cluster", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("built without etcd support"),
        "{}",
        text(&out)
    );
}
