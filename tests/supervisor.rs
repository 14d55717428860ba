//! Supervision end to end: real agent processes, real signals, the control
//! socket, net-snmp clients. Waits are on answers (an SNMP request that the
//! kernel holds until the restarted agent reads it) or bounded polls of
//! `status`, never fixed sleeps.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Fleet, agentcluster, free_port, mib, snmp, snmp_ok};
use serde_json::Value as Json;

fn agents_yaml(names: &[(&str, u16)]) -> String {
    let mut y = String::from("agents:\n");
    for (name, port) in names {
        y += &format!(
            "  - name: {name}\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            mib("linux-host.snmprec").display()
        );
    }
    y
}

fn control(fleet: &Fleet) -> String {
    fleet.dir.path().join("control.sock").display().to_string()
}

fn status(fleet: &Fleet) -> Vec<Json> {
    let out = agentcluster(&["status", "--json", "--control", &control(fleet)]);
    assert!(out.status.success(), "status failed: {out:?}");
    serde_json::from_slice::<Vec<Json>>(&out.stdout).expect("status --json is a JSON array")
}

fn agent<'a>(s: &'a [Json], name: &str) -> &'a Json {
    s.iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in status: {s:?}"))
}

/// Polls `status` until `pred` holds (bounded: 20 s).
fn wait_status(fleet: &Fleet, what: &str, pred: impl Fn(&[Json]) -> bool) -> Vec<Json> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(fleet);
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pid_of(s: &[Json], name: &str) -> i32 {
    agent(s, name)["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("{name} has no pid: {s:?}")) as i32
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

fn kill(pid: i32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

#[test]
fn a_killed_agent_is_restarted_and_requests_wait_for_it() {
    let (a, b) = (free_port(), free_port());
    let fleet = Fleet::start(&agents_yaml(&[("dev-a", a), ("dev-b", b)]));
    let s = status(&fleet);
    assert_eq!(agent(&s, "dev-a")["state"], "running");
    let old = pid_of(&s, "dev-a");
    let other = pid_of(&s, "dev-b");
    kill(old, "KILL");
    // Sent at once: the socket stays bound in the supervisor, so the request
    // waits in the kernel buffer and the restarted agent answers it.
    let target = format!("127.0.0.1:{a}");
    snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-r",
            "3",
            "-t",
            "2",
            &target,
            ".1.3.6.1.2.1.1.5.0",
        ],
    );
    let s = wait_status(&fleet, "dev-a restarted", |s| {
        agent(s, "dev-a")["state"] == "running" && agent(s, "dev-a")["restarts"] == 1
    });
    assert_ne!(pid_of(&s, "dev-a"), old);
    // the other agent was not touched
    assert_eq!(pid_of(&s, "dev-b"), other);
    assert_eq!(agent(&s, "dev-b")["restarts"], 0);
}

#[test]
fn killing_the_supervisor_leaves_no_agent_behind() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let fleet = Fleet::start(&agents_yaml(&[
        ("o-1", ports[0]),
        ("o-2", ports[1]),
        ("o-3", ports[2]),
    ]));
    let s = status(&fleet);
    let pids: Vec<i32> = ["o-1", "o-2", "o-3"]
        .iter()
        .map(|n| pid_of(&s, n))
        .collect();
    assert!(pids.iter().all(|p| alive(*p)));
    kill(fleet.pid() as i32, "KILL");
    let deadline = Instant::now() + Duration::from_secs(1);
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "agents still alive 1 s after the supervisor died: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_stopped_agent_is_found_unresponsive_and_replaced() {
    let port = free_port();
    let yaml = format!(
        "  heartbeat: 100ms\n  inactive_after: 500ms\n  stop_timeout: 300ms\n{}",
        agents_yaml(&[("frozen", port)])
    );
    let fleet = Fleet::start(&yaml);
    let old = pid_of(&status(&fleet), "frozen");
    kill(old, "STOP");
    let s = wait_status(&fleet, "frozen replaced", |s| {
        let a = agent(s, "frozen");
        a["state"] == "running" && a["pid"].as_i64() != Some(i64::from(old))
    });
    assert_eq!(agent(&s, "frozen")["restarts"], 1);
    assert!(!alive(old), "the stopped process was killed");
    snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            &format!("127.0.0.1:{port}"),
            ".1.3.6.1.2.1.1.5.0",
        ],
    );
}

#[test]
fn operators_stop_start_and_restart_by_name_and_glob() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let fleet = Fleet::start(&agents_yaml(&[
        ("lab-sw-1", ports[0]),
        ("lab-sw-2", ports[1]),
        ("core", ports[2]),
    ]));
    let sock = control(&fleet);
    let out = agentcluster(&["stop", "--control", &sock, "lab-sw-*"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("lab-sw-1") && text.contains("lab-sw-2"),
        "{text}"
    );
    wait_status(&fleet, "lab-sw-* stopped", |s| {
        agent(s, "lab-sw-1")["state"] == "stopped" && agent(s, "lab-sw-2")["state"] == "stopped"
    });
    let out = snmp(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-r",
            "0",
            "-t",
            "1",
            &format!("127.0.0.1:{}", ports[0]),
            ".1.3.6.1.2.1.1.5.0",
        ],
    );
    assert!(!out.status.success(), "a stopped agent does not answer");
    let core_pid = pid_of(&status(&fleet), "core");

    let out = agentcluster(&["start", "--control", &sock, "lab-sw-1"]);
    assert!(out.status.success(), "{out:?}");
    snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-r",
            "3",
            &format!("127.0.0.1:{}", ports[0]),
            ".1.3.6.1.2.1.1.5.0",
        ],
    );

    let out = agentcluster(&["restart", "--control", &sock, "core"]);
    assert!(out.status.success(), "{out:?}");
    let s = wait_status(&fleet, "core restarted", |s| {
        agent(s, "core")["state"] == "running"
            && agent(s, "core")["pid"].as_i64() != Some(i64::from(core_pid))
    });
    assert_eq!(agent(&s, "lab-sw-2")["state"], "stopped");
    assert_eq!(agent(&s, "core")["restarts"], 1);

    let out = agentcluster(&["restart", "--control", &sock, "no-such-agent"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-agent"));

    // the table
    let out = agentcluster(&["status", "--control", &sock]);
    let table = String::from_utf8_lossy(&out.stdout);
    for col in [
        "NAME",
        "STATE",
        "PID",
        "ENDPOINTS",
        "RESTARTS",
        "UPTIME",
        "RSS",
        "REQUESTS",
    ] {
        assert!(table.contains(col), "{table}");
    }
    assert!(
        table.contains(&format!("127.0.0.1:{}", ports[2])),
        "{table}"
    );
}

#[test]
fn too_many_restarts_fail_until_an_operator_starts_it() {
    let port = free_port();
    let yaml = format!(
        "  restart: {{ policy: always, backoff: 10ms..20ms, max_restarts: 2, window: 60s }}\n{}",
        agents_yaml(&[("flaky", port)])
    );
    let fleet = Fleet::start(&yaml);
    for round in 0..3 {
        let s = wait_status(&fleet, "flaky running", |s| {
            agent(s, "flaky")["state"] == "running"
        });
        assert_eq!(agent(&s, "flaky")["restarts"], round);
        kill(pid_of(&s, "flaky"), "KILL");
        if round < 2 {
            wait_status(&fleet, "flaky restarted", |s| {
                agent(s, "flaky")["restarts"] == round + 1
            });
        }
    }
    let s = wait_status(&fleet, "flaky failed", |s| {
        agent(s, "flaky")["state"] == "failed"
    });
    assert!(agent(&s, "flaky")["pid"].is_null());
    let out = agentcluster(&["start", "--control", &control(&fleet), "flaky"]);
    assert!(out.status.success(), "{out:?}");
    wait_status(&fleet, "flaky back", |s| {
        agent(s, "flaky")["state"] == "running"
    });
}

#[test]
fn agents_share_processes_with_agents_per_process_and_show_their_names() {
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let names = ["g-0", "g-1", "g-2", "g-3", "g-4"];
    let list: Vec<(&str, u16)> = names.iter().copied().zip(ports.iter().copied()).collect();
    let fleet = Fleet::start(&format!("  agents_per_process: 2\n{}", agents_yaml(&list)));
    let s = status(&fleet);
    let pids: Vec<i32> = names.iter().map(|n| pid_of(&s, n)).collect();
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[2], pids[3]);
    assert_ne!(pids[0], pids[2]);
    assert_ne!(pids[4], pids[2]);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pids[0])).unwrap();
    let title = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(title.starts_with("agentcluster: agent g-0+1"), "{title}");
    for p in &ports {
        snmp_ok(
            "snmpget",
            &[
                "-v2c",
                "-c",
                "public",
                &format!("127.0.0.1:{p}"),
                ".1.3.6.1.2.1.1.5.0",
            ],
        );
    }
    // no secret on any command line
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains("public"));
    }
}

#[test]
fn sigterm_stops_every_agent_and_exits_zero() {
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let fleet = Fleet::start(&agents_yaml(&[("t-1", ports[0]), ("t-2", ports[1])]));
    let s = status(&fleet);
    let pids = [pid_of(&s, "t-1"), pid_of(&s, "t-2")];
    let (code, stderr) = fleet.stop();
    assert!(code.success(), "{code:?} {stderr}");
    assert!(pids.iter().all(|p| !alive(*p)));
    for needle in ["supervisor-stopping", "stopped"] {
        assert!(stderr.contains(needle), "{stderr}");
    }
}
