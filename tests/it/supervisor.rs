//! Supervision end to end: real agent processes, real signals, the control
//! socket, net-snmp clients. Waits are on answers (an SNMP request that the
//! kernel holds until the restarted agent reads it), on the event stream,
//! on log lines and on process exits, never on sleeps.

use std::path::Path;
use std::time::Duration;

use crate::harness::imports::{Signal, probe, procs};
use crate::harness::{
    Fleet, GETBULK_200, WAIT, agent, agentcluster, alone, free_block, free_port, free_ports, is,
    is_alive, kill, kinds_for, mib, pid_in, pid_of, snmp, snmp_ok, sys_name_ok, tempdir, wait_gone,
};

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

#[test]
fn a_killed_agent_is_restarted_and_requests_wait_for_it() {
    let [a, b] = free_ports(2)[..] else {
        unreachable!()
    };
    let fleet = Fleet::start(&agents_yaml(&[("dev-a", a), ("dev-b", b)]));
    let s = fleet.status();
    assert_eq!(agent(&s, "dev-a")["state"], "running");
    let old = pid_of(&s, "dev-a");
    let other = pid_of(&s, "dev-b");
    let since = fleet.next_seq();
    kill(old, Signal::SIGKILL);
    // Sent at once: the socket stays bound in the supervisor, so requests
    // wait in the kernel buffer and the restarted agent answers every one,
    // without a single retransmission.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for id in 1..=20 {
        let req = probe::request(b"public", false, id);
        sock.send_to(&req, ("127.0.0.1", a)).unwrap();
    }
    let mut answered = std::collections::HashSet::new();
    let mut buf = [0u8; 2048];
    while answered.len() < 20 {
        let (n, _) = sock
            .recv_from(&mut buf)
            .expect("every request sent during the restart is answered");
        if let Some(id) = (1..=20).find(|id| probe::answers(&buf[..n], *id)) {
            answered.insert(id);
        }
    }
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
    let ready = fleet.wait_event(since, "dev-a ready again", |e| is(e, "dev-a", "ready"));
    assert_eq!(ready["restarts"], 1, "{ready}");
    assert_ne!(ready["pid"], old, "{ready}");
    let s = fleet.status();
    assert_eq!(agent(&s, "dev-a")["pid"], ready["pid"]);
    // the other agent was not touched
    assert_eq!(pid_of(&s, "dev-b"), other);
    assert_eq!(agent(&s, "dev-b")["restarts"], 0);
}

#[test]
fn as_root_agents_serve_privileged_ports_as_nobody() {
    if !nix_is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // a free port below 1024
    let port = (700..1000)
        .rev()
        .find(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free privileged port");
    let fleet = Fleet::start(&agents_yaml(&[("priv", port)]));
    let pid = pid_of(&fleet.status(), "priv");
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = st.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
        "runs as nobody: {uid_line}"
    );
    let caps = st.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert!(
        caps.ends_with("0000000000000000"),
        "no capabilities: {caps}"
    );
    sys_name_ok(port);
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Children of `parent`: pid, argv joined by spaces, run state.
fn children(parent: u32) -> Vec<(u32, String, char)> {
    procs::children(parent)
        .into_iter()
        .map(|pid| (pid, procs::cmdline(pid), procs::state(pid).unwrap_or('?')))
        .collect()
}

/// The supervisor's spawn helpers.
fn helpers(supervisor: u32) -> Vec<u32> {
    children(supervisor)
        .into_iter()
        .filter(|(_, cmd, _)| cmd.starts_with("agentcluster: spawner"))
        .map(|(pid, _, _)| pid)
        .collect()
}

#[test]
fn killing_the_supervisor_leaves_no_agent_behind() {
    let ports: Vec<u16> = free_ports(3);
    let fleet = Fleet::start(&agents_yaml(&[
        ("o-1", ports[0]),
        ("o-2", ports[1]),
        ("o-3", ports[2]),
    ]));
    let s = fleet.status();
    let pids: Vec<u32> = ["o-1", "o-2", "o-3"]
        .iter()
        .map(|n| pid_of(&s, n))
        .collect();
    assert!(pids.iter().all(|p| is_alive(*p)));
    // Agents are the supervisor's own children (it reaps them), though a
    // spawn helper creates them; the helpers die with it too.
    let supervisor = fleet.pid();
    let kids: Vec<u32> = children(supervisor).iter().map(|c| c.0).collect();
    assert!(pids.iter().all(|p| kids.contains(p)), "{pids:?} {kids:?}");
    let helpers = helpers(supervisor);
    assert!(!helpers.is_empty(), "{:?}", children(supervisor));
    kill(supervisor, Signal::SIGKILL);
    let all: Vec<u32> = pids.iter().chain(&helpers).copied().collect();
    let left = wait_gone(&all, Duration::from_secs(1));
    assert!(
        left.is_empty(),
        "agents or spawn helpers still alive 1 s after the supervisor died: {left:?} of agents {pids:?}, helpers {helpers:?}"
    );
}

#[test]
fn a_dead_spawn_helper_is_replaced_and_its_agents_keep_running() {
    let ports: Vec<u16> = free_ports(2);
    let fleet = Fleet::start(&agents_yaml(&[("h-1", ports[0]), ("h-2", ports[1])]));
    let supervisor = fleet.pid();
    let before = fleet.status();
    let old = helpers(supervisor);
    assert!(!old.is_empty());
    for h in &old {
        kill(*h, Signal::SIGKILL);
    }
    // Agents do not depend on the helper that created them.
    for (name, port) in [("h-1", ports[0]), ("h-2", ports[1])] {
        assert!(is_alive(pid_of(&before, name)), "{name}");
        sys_name_ok(port);
    }
    // Starts after the helpers died succeed at the first try.
    let since = fleet.next_seq();
    for name in ["h-1", "h-2"] {
        let out = agentcluster(&["restart", name, "--control", &fleet.control()]);
        assert!(out.status.success(), "{out:?}");
    }
    fleet
        .follow(since)
        .wait_all("h-1 and h-2 ready again", |e| {
            ["h-1", "h-2"].iter().all(|n| {
                e.iter()
                    .any(|x| is(x, n, "ready") && x["pid"] != agent(&before, n)["pid"])
            })
        });
    let s = fleet.status();
    let kinds: Vec<String> = fleet
        .events()
        .iter()
        .filter_map(|e| e["event"].as_str().map(str::to_owned))
        .collect();
    assert!(!kinds.iter().any(|k| k == "start-failed"), "{kinds:?}");
    let new = helpers(supervisor);
    assert!(
        !new.is_empty() && new.iter().all(|h| !old.contains(h)),
        "{old:?} {new:?}"
    );
    // The dead helpers were reaped.
    let zombies: Vec<_> = children(supervisor)
        .into_iter()
        .filter(|c| c.2 == 'Z')
        .collect();
    assert!(zombies.is_empty(), "{zombies:?}");
    for (name, port) in [("h-1", ports[0]), ("h-2", ports[1])] {
        assert!(is_alive(pid_of(&s, name)));
        sys_name_ok(port);
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
    let old = pid_of(&fleet.status(), "frozen");
    let since = fleet.next_seq();
    kill(old, Signal::SIGSTOP);
    let ready = fleet.wait_event(since, "frozen replaced", |e| is(e, "frozen", "ready"));
    assert_ne!(ready["pid"], old, "{ready}");
    assert_eq!(ready["restarts"], 1, "{ready}");
    assert!(!is_alive(old), "the stopped process was killed");
    sys_name_ok(port);
}

#[test]
fn operators_stop_start_and_restart_by_name_and_glob() {
    let ports: Vec<u16> = free_ports(3);
    let fleet = Fleet::start(&agents_yaml(&[
        ("lab-sw-1", ports[0]),
        ("lab-sw-2", ports[1]),
        ("core", ports[2]),
    ]));
    let sock = fleet.control();
    let mut events = fleet.follow(fleet.next_seq());
    let out = agentcluster(&["stop", "--control", &sock, "lab-sw-*"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("lab-sw-1") && text.contains("lab-sw-2"),
        "{text}"
    );
    events.wait_all("lab-sw-* stopped", |e| {
        ["lab-sw-1", "lab-sw-2"]
            .iter()
            .all(|n| e.iter().any(|x| is(x, n, "stopped")))
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
    let core_pid = pid_of(&fleet.status(), "core");

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
    let ready = events.wait("core restarted", |e| is(e, "core", "ready"));
    assert_ne!(ready["pid"], core_pid, "{ready}");
    assert_eq!(ready["restarts"], 1, "{ready}");
    assert_eq!(agent(&fleet.status(), "lab-sw-2")["state"], "stopped");

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
    let mut events = fleet.follow(1);
    for round in 0..3 {
        let ready = events.wait(&format!("flaky running (round {round})"), |e| {
            is(e, "flaky", "ready")
        });
        assert_eq!(ready["restarts"], round, "{ready}");
        kill(pid_in(&ready), Signal::SIGKILL);
    }
    events.wait("flaky failed", |e| is(e, "flaky", "failed"));
    assert!(agent(&fleet.status(), "flaky")["pid"].is_null());
    let out = agentcluster(&["start", "--control", &fleet.control(), "flaky"]);
    assert!(out.status.success(), "{out:?}");
    events.wait("flaky back", |e| is(e, "flaky", "ready"));
}

#[test]
fn agents_share_processes_with_agents_per_process_and_show_their_names() {
    let ports: Vec<u16> = free_ports(5);
    let names = ["g-0", "g-1", "g-2", "g-3", "g-4"];
    let list: Vec<(&str, u16)> = names.iter().copied().zip(ports.iter().copied()).collect();
    let fleet = Fleet::start(&format!("  agents_per_process: 2\n{}", agents_yaml(&list)));
    let s = fleet.status();
    let pids: Vec<u32> = names.iter().map(|n| pid_of(&s, n)).collect();
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[2], pids[3]);
    assert_ne!(pids[0], pids[2]);
    assert_ne!(pids[4], pids[2]);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pids[0])).unwrap();
    let title = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(title.starts_with("agentcluster: agent g-0+1"), "{title}");
    for p in &ports {
        sys_name_ok(*p);
    }
    // no secret on any command line
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains("public"));
    }
}

#[test]
fn sigterm_stops_every_agent_and_exits_zero() {
    let ports: Vec<u16> = free_ports(2);
    let fleet = Fleet::start(&agents_yaml(&[("t-1", ports[0]), ("t-2", ports[1])]));
    let s = fleet.status();
    let pids = [pid_of(&s, "t-1"), pid_of(&s, "t-2")];
    let (code, stderr) = fleet.stop();
    assert!(code.success(), "{code:?} {stderr}");
    assert!(pids.iter().all(|p| !is_alive(*p)));
    for needle in ["supervisor-stopping", "stopped"] {
        assert!(stderr.contains(needle), "{stderr}");
    }
}

#[test]
fn a_kill_is_reported_as_died_restarting_starting_ready_in_order() {
    let port = free_port();
    let fleet = Fleet::start(&agents_yaml(&[("ev", port)]));
    let old = pid_of(&fleet.status(), "ev");
    kill(old, Signal::SIGKILL);
    let e = fleet.wait_events("ev ready again", |e| {
        kinds_for(e, "ev").iter().filter(|k| **k == "ready").count() == 2
    });
    assert_eq!(
        kinds_for(&e, "ev"),
        [
            "starting",
            "ready",
            "died",
            "restarting",
            "starting",
            "ready"
        ]
    );
    let died = e
        .iter()
        .find(|x| x["agent"] == "ev" && x["event"] == "died")
        .unwrap();
    assert_eq!(died["signal"], "SIGKILL");
    assert_eq!(died["pid"], old);
    assert!(died["exit_code"].is_null());
    assert_eq!(died["restarts"], 1);
    let seqs: Vec<u64> = e.iter().map(|x| x["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq strictly increasing: {seqs:?}"
    );
    assert_eq!(e[0]["event"], "supervisor-started");
}

#[test]
fn start_tokens_bound_how_many_agents_start_at_once() {
    let _alone = alone();
    let n: i32 = 200;
    let ports: Vec<u16> = free_ports(n as usize);
    let names: Vec<String> = (0..n).map(|i| format!("tok-{i}")).collect();
    let list: Vec<(&str, u16)> = names
        .iter()
        .map(|s| s.as_str())
        .zip(ports.iter().copied())
        .collect();
    let fleet = Fleet::start(&format!("  start_tokens: 4\n{}", agents_yaml(&list)));
    let e = fleet.events();
    let mut starting = 0i32;
    let mut most = 0;
    let mut ready = 0;
    for x in &e {
        match x["event"].as_str() {
            Some("starting") => starting += 1,
            Some("ready") | Some("start-failed") => {
                starting -= 1;
                ready += i32::from(x["event"] == "ready");
            }
            _ => {}
        }
        most = most.max(starting);
    }
    assert_eq!(ready, n, "every agent became ready");
    assert!(most <= 4, "{most} agents were starting at once");
    assert!(most >= 2, "tokens were used in parallel ({most})");
    // and every one answers
    for p in ports.iter().step_by(20) {
        sys_name_ok(*p);
    }
}

/// A stand-in agent program, for handshakes that go wrong.
fn fake_agent(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn start_with_agent_exe(yaml: &str, exe: &str) -> Fleet {
    Fleet::start_with(
        &format!("  start_timeout: 2s\n  restart: {{ policy: never }}\n{yaml}"),
        &[("AGENTCLUSTER_AGENT_EXE", exe.as_ref())],
    )
}

#[test]
fn the_handshake_rejects_garbage_early_close_and_silence() {
    let scripts = tempdir();
    let cases = [
        ("garbage", "printf 'GARBAGE-GARBAGE-GARBAGE' >&3; sleep 30"),
        ("close", "exec 3>&-; sleep 30"),
        (
            "wrong-token",
            "printf '\\000\\000\\000\\042{\"type\":\"ready\",\"token\":\"0000\"}' >&3; sleep 30",
        ),
        ("silent", "sleep 30"),
    ];
    for (name, body) in cases {
        let exe = fake_agent(scripts.path(), name, body);
        let port = free_port();
        let fleet = start_with_agent_exe(&agents_yaml(&[(name, port)]), &exe);
        let s = fleet.status();
        assert_eq!(agent(&s, name)["state"], "failed", "{name}: {s:?}");
        let e = fleet.events();
        let kinds = kinds_for(&e, name);
        assert!(kinds.contains(&"start-failed"), "{name}: {kinds:?}");
        assert!(
            !kinds.contains(&"ready"),
            "{name}: taken for ready: {kinds:?}"
        );
        assert!(
            fleet.banner.iter().any(|l| l.contains("failed to start")),
            "{name}: {:?}",
            fleet.banner
        );
    }
}

#[test]
fn an_agent_crashing_on_start_backs_off_and_ends_failed() {
    let scripts = tempdir();
    let exe = fake_agent(scripts.path(), "crash", "exit 3");
    let port = free_port();
    let fleet = Fleet::start_with(
        &format!(
            "  restart: {{ policy: always, backoff: 20ms..10s, max_restarts: 4, window: 60s }}\n{}",
            agents_yaml(&[("crasher", port)])
        ),
        &[("AGENTCLUSTER_AGENT_EXE", exe.as_ref())],
    );
    let e = fleet.wait_events("crasher failed", |e| {
        kinds_for(e, "crasher").contains(&"failed")
    });
    let delays: Vec<f64> = e
        .iter()
        .filter(|x| x["agent"] == "crasher" && x["event"] == "restarting")
        .map(|x| {
            let r = x["reason"].as_str().unwrap();
            let d = r.rsplit("restarting in ").next().unwrap();
            parse_delay(d)
        })
        .collect();
    assert_eq!(delays.len(), 4, "{e:#?}");
    assert_eq!(delays[0], 0.0, "first restart at once");
    assert!(
        delays.windows(2).all(|w| w[1] > w[0]),
        "growing: {delays:?}"
    );
    let failed = e
        .iter()
        .find(|x| x["agent"] == "crasher" && x["event"] == "failed")
        .unwrap();
    assert!(
        failed["reason"].as_str().unwrap().contains("max_restarts"),
        "{failed}"
    );
    assert_eq!(agent(&fleet.status(), "crasher")["state"], "failed");
}

#[test]
fn an_agent_program_that_cannot_run_fails_its_start_and_is_reaped() {
    use std::os::unix::fs::PermissionsExt;
    let scripts = tempdir();
    let exe = fake_agent(scripts.path(), "not-executable", "exit 0");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = free_port();
    let fleet = start_with_agent_exe(&agents_yaml(&[("noexec", port)]), &exe);
    let e = fleet.wait_events("noexec start-failed", |e| {
        kinds_for(e, "noexec").contains(&"start-failed")
    });
    let failed = e
        .iter()
        .find(|x| x["agent"] == "noexec" && x["event"] == "start-failed")
        .unwrap();
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("cannot create the agent process") && reason.contains("os error 13"),
        "{failed}"
    );
    // The child that failed before its exec is the supervisor's, and reaped.
    let zombies: Vec<_> = children(fleet.pid())
        .into_iter()
        .filter(|c| c.2 == 'Z')
        .collect();
    assert!(zombies.is_empty(), "{zombies:?}");
}

/// Rust's Debug form of a Duration: `0ns`, `20ms`, `1.5s`, `35.2µs`.
fn parse_delay(s: &str) -> f64 {
    let s = s.trim();
    for (unit, scale) in [("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)] {
        if let Some(n) = s.strip_suffix(unit) {
            return n.parse::<f64>().unwrap() * scale;
        }
    }
    panic!("not a delay: {s}")
}

#[test]
fn reload_changes_only_what_changed() {
    let ports: Vec<u16> = free_ports(5);
    let first = agents_yaml(&[
        ("keep-1", ports[0]),
        ("keep-2", ports[1]),
        ("change", ports[2]),
        ("remove", ports[3]),
    ]);
    let fleet = Fleet::start(&first);
    let before = fleet.status();
    // `change` moves to another snapshot, `remove` goes, `add` comes
    let second = first
        .replace(
            &format!("  - name: remove\n    listen: [\"127.0.0.1:{}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n", ports[3], mib("linux-host.snmprec").display()),
            "",
        )
        .replacen(
            &format!("name: change\n    listen: [\"127.0.0.1:{}\"]\n    data: {}", ports[2], mib("linux-host.snmprec").display()),
            &format!("name: change\n    listen: [\"127.0.0.1:{}\"]\n    data: {}", ports[2], mib("apc-ups.snmprec").display()),
            1,
        )
        + &agents_yaml(&[("add", ports[4])]).replace("agents:\n", "");
    assert_ne!(first, second);
    let path = fleet.config();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(&first, &second)).unwrap();
    let since = fleet.next_seq();
    let out = agentcluster(&["reload", "--control", &fleet.control()]);
    assert!(out.status.success(), "{out:?}");
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(msg.contains("1 changed, 1 added, 1 removed"), "{msg}");
    fleet.follow(since).wait_all("change and add running", |e| {
        ["change", "add"]
            .iter()
            .all(|n| e.iter().any(|x| is(x, n, "ready")))
    });
    let after = fleet.status();
    assert!(
        after.len() == 4 && after.iter().all(|a| a["state"] == "running"),
        "{after:?}"
    );
    for keep in ["keep-1", "keep-2"] {
        assert_eq!(
            pid_of(&after, keep),
            pid_of(&before, keep),
            "{keep} untouched"
        );
    }
    assert_ne!(pid_of(&after, "change"), pid_of(&before, "change"));
    assert!(after.iter().all(|a| a["name"] != "remove"));
    // the changed agent serves its new snapshot, the new one answers
    let out = snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-On",
            &format!("127.0.0.1:{}", ports[2]),
            ".1.3.6.1.2.1.1.2.0",
        ],
    );
    assert!(out.contains(".1.3.6.1.4.1.318"), "APC sysObjectID: {out}");
    snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            &format!("127.0.0.1:{}", ports[4]),
            ".1.3.6.1.2.1.1.5.0",
        ],
    );
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
            &format!("127.0.0.1:{}", ports[3]),
            ".1.3.6.1.2.1.1.5.0",
        ],
    );
    assert!(!out.status.success(), "the removed agent's port is closed");
    let e = fleet.events();
    let changed: Vec<&str> = e
        .iter()
        .filter(|x| x["event"] == "config-changed")
        .filter_map(|x| x["agent"].as_str())
        .collect();
    assert_eq!(changed.len(), 3, "{changed:?}");
}

#[test]
fn a_rewritten_snapshot_is_swapped_in_without_a_restart() {
    let port = free_port();
    let dir = tempdir();
    let snap = dir.path().join("dev.snmprec");
    std::fs::write(
        &snap,
        "1.3.6.1.2.1.1.1.0|4|first version\n1.3.6.1.2.1.1.5.0|4|dev\n",
    )
    .unwrap();
    let yaml = format!(
        "agents:\n  - name: hot\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        snap.display()
    );
    let fleet = Fleet::start(&yaml);
    let target = format!("127.0.0.1:{port}");
    let pid = pid_of(&fleet.status(), "hot");
    let out = snmp_ok(
        "snmpget",
        &["-v2c", "-c", "public", &target, ".1.3.6.1.2.1.1.1.0"],
    );
    assert!(out.contains("first version"), "{out}");
    // as an editor does: write a new file, rename it over the old one
    let tmp = dir.path().join(".dev.snmprec.new");
    std::fs::write(
        &tmp,
        "1.3.6.1.2.1.1.1.0|4|second version\n1.3.6.1.2.1.1.5.0|4|dev\n",
    )
    .unwrap();
    std::fs::rename(&tmp, &snap).unwrap();
    fleet.wait_events("data-reloaded", |e| {
        kinds_for(e, "hot").contains(&"data-reloaded")
    });
    let out = snmp_ok(
        "snmpget",
        &["-v2c", "-c", "public", &target, ".1.3.6.1.2.1.1.1.0"],
    );
    assert!(out.contains("second version"), "{out}");
    assert_eq!(pid_of(&fleet.status(), "hot"), pid, "no restart");
}

#[test]
fn an_agent_over_its_memory_limit_is_replaced() {
    let port = free_port();
    let yaml = format!(
        "  heartbeat: 100ms\n  memory_max: 1M\n  stop_timeout: 300ms\n{}",
        agents_yaml(&[("fat", port)])
    );
    let fleet = Fleet::start(&yaml);
    let e = fleet.wait_events("unresponsive for memory", |e| {
        e.iter()
            .any(|x| x["agent"] == "fat" && x["event"] == "unresponsive")
    });
    let u = e
        .iter()
        .find(|x| x["agent"] == "fat" && x["event"] == "unresponsive")
        .unwrap();
    assert!(u["reason"].as_str().unwrap().contains("memory"), "{u}");
    fleet.wait_events("restarted after the memory fault", |e| {
        kinds_for(e, "fat").contains(&"restarting")
    });
}

#[test]
fn the_snmp_probe_replaces_an_agent_that_heartbeats_but_does_not_answer() {
    // Completes the handshake and heartbeats, but never reads its socket.
    let scripts = tempdir();
    let exe = fake_agent(
        scripts.path(),
        "mute.py",
        "exec python3 - <<'EOF'\nimport json, os, struct, time\ndef read():\n    h = b''\n    while len(h) < 4:\n        h += os.read(3, 4 - len(h))\n    n = struct.unpack('>I', h)[0]\n    b = b''\n    while len(b) < n:\n        b += os.read(3, n - len(b))\n    return json.loads(b)\ndef send(m):\n    b = json.dumps(m).encode()\n    os.write(3, struct.pack('>I', len(b)) + b)\nstart = read()\nsend({'type': 'ready', 'token': start['token']})\nwhile True:\n    send({'type': 'heartbeat', 'agents': []})\n    time.sleep(0.05)\nEOF",
    );
    let port = free_port();
    let fleet = Fleet::start_with(
        &format!(
            "  heartbeat: 100ms\n  stop_timeout: 300ms\n  probe: {{ interval: 200ms, timeout: 300ms }}\n  restart: {{ policy: never }}\n{}",
            agents_yaml(&[("mute", port)])
        ),
        &[("AGENTCLUSTER_AGENT_EXE", exe.as_ref())],
    );
    let e = fleet.wait_events("probe failure", |e| {
        kinds_for(e, "mute").contains(&"failed")
    });
    let u = e
        .iter()
        .find(|x| x["agent"] == "mute" && x["event"] == "unresponsive")
        .unwrap_or_else(|| panic!("no unresponsive event: {e:#?}"));
    assert!(
        u["reason"].as_str().unwrap().contains("SNMP probe failed"),
        "{u}"
    );
}

/// Agents on ports `base..base + n` each answer a GET: one per agent, 100
/// in flight at a time (the client's receive buffer holds a few hundred
/// answers), in up to three rounds.
fn every_one_answers(base: u16, n: u16) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answered = std::collections::HashSet::new();
    let mut buf = [0u8; 2048];
    for round in 0..3 {
        let missing: Vec<u16> = (0..n).filter(|i| !answered.contains(&(base + i))).collect();
        for batch in missing.chunks(100) {
            for &i in batch {
                let req = probe::request(b"public", false, i32::from(i) + 1);
                sock.send_to(&req, ("127.0.0.1", base + i)).unwrap();
            }
            let mut got = 0;
            while got < batch.len() {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    break;
                };
                let id = i32::from(from.port().wrapping_sub(base)) + 1;
                if probe::answers(&buf[..len], id) && answered.insert(from.port()) {
                    got += 1;
                }
            }
        }
        if answered.len() == n as usize {
            break;
        }
        eprintln!("round {round}: {} answered", answered.len());
    }
    assert_eq!(answered.len(), n as usize, "every agent answers a GET");
}

/// Starts `n` agents `NAME-i` on a block of free ports (after the cluster
/// keys `cluster`), all running; returns the fleet, the first port and the
/// distinct pids of their processes.
fn start_block(cluster: &str, name: &str, n: u16, snapshot: &str) -> (Fleet, u16, Vec<u32>) {
    let base = free_block(n);
    let yaml = format!(
        "{cluster}agents:\n  - name: \"{name}-{{i}}\"\n    count: {n}\n    listen: [\"127.0.0.1:{{i+{base}}}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        mib(snapshot).display()
    );
    let fleet = Fleet::start(&yaml);
    let s = fleet.status();
    assert_eq!(s.len(), usize::from(n));
    assert!(s.iter().all(|a| a["state"] == "running"));
    let mut pids: Vec<u32> = s
        .iter()
        .map(|a| pid_of(&s, a["name"].as_str().unwrap_or_default()))
        .collect();
    pids.sort();
    pids.dedup();
    (fleet, base, pids)
}

#[test]
fn a_process_gets_more_sockets_than_one_message_carries() {
    let _alone = alone();
    // 300 agents in one process: 301 descriptors reach the spawn helper in
    // two messages (one carries at most 253).
    let n = 300u16;
    let (_fleet, base, pids) = start_block(
        &format!("  agents_per_process: {n}\n"),
        "m",
        n,
        "linux-host.snmprec",
    );
    assert_eq!(pids.len(), 1, "one process");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", pids[0]))
        .unwrap()
        .count();
    assert!(fds > usize::from(n), "{fds} descriptors");
    every_one_answers(base, n);
}

#[test]
fn a_thousand_agent_processes_start_and_all_answer() {
    let _alone = alone();
    let n = 1000u16;
    let (fleet, base, pids) = start_block("", "k", n, "cisco-c3750.snmprec");
    assert!(
        fleet.banner[0].contains("1000 agents ready"),
        "{:?}",
        fleet.banner
    );
    assert_eq!(pids.len(), 1000, "one process per agent");
    every_one_answers(base, n);
    let (code, _) = fleet.stop();
    assert!(code.success());
    assert!(pids.iter().all(|p| !is_alive(*p)), "no orphans");
}

#[test]
fn systemd_hears_ready_status_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let port = free_port();
    let dir = tempdir();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let fleet = Fleet::start_with(
        &agents_yaml(&[("sd", port)]),
        &[
            ("NOTIFY_SOCKET", notify_path.as_os_str()),
            ("WATCHDOG_USEC", "400000".as_ref()),
        ],
    );
    // WATCHDOG_PID is not set: the watchdog applies to us (sd_notify's rule)
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1")) {
        let n = notify.recv(&mut buf).expect("a notification within 10 s");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
    assert!(
        seen.contains("STATUS=1/1 agents running, 0 failed"),
        "{seen}"
    );
    let (code, _) = fleet.stop();
    assert!(code.success());
    let mut tail = String::new();
    while let Ok(n) = notify.recv(&mut buf) {
        tail.push_str(&String::from_utf8_lossy(&buf[..n]));
        if tail.contains("STOPPING=1") {
            break;
        }
    }
    assert!(tail.contains("STOPPING=1"), "{tail}");
}

#[test]
fn devices_send_their_own_cold_start_then_warm_start_after_a_restart() {
    let trapd = crate::harness::trapd::Trapd::start("authCommunity log public\n");
    let port = free_port();
    let yaml = format!(
        "events:\n  notify:\n    - {{ target: \"127.0.0.1:{}\", version: 2c, community: public, type: trap }}\n{}",
        trapd.port,
        agents_yaml(&[("booting", port)])
    );
    let fleet = Fleet::start(&yaml);
    // coldStart (snmpTraps.1) from the device's own address
    let line = trapd.expect(".1.3.6.1.6.3.1.1.5.1");
    assert!(
        line.starts_with("UDP: [127.0.0.1]"),
        "sent from the device's address: {line}"
    );
    kill(pid_of(&fleet.status(), "booting"), Signal::SIGKILL);
    // warmStart (snmpTraps.2) once it is back
    trapd.expect(".1.3.6.1.6.3.1.1.5.2");
}

/// `cluster.max_response_bytes` and `cluster.rate_limit` changed on reload
/// reach the running agent without a restart (same pid), and go away the
/// same way; a changed key that reload cannot apply is named. The agent
/// says `limits changed` (at debug level) once it applies them.
#[test]
fn reload_applies_the_cluster_limits_to_running_agents() {
    use std::net::UdpSocket;
    let port = free_port();
    let agents = agents_yaml(&[("lim", port)]);
    let fleet = Fleet::start_with(
        &agents,
        &[("RUST_LOG", "info,agentcluster_agent=debug".as_ref())],
    );
    let pid = pid_of(&fleet.status(), "lim");
    let path = fleet.config();
    let original = std::fs::read_to_string(&path).unwrap();

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let bulk = GETBULK_200;
    // (size of one answer, answers to a burst of 40)
    let probe = || {
        let mut buf = [0u8; 65_536];
        sock.send_to(&bulk, ("127.0.0.1", port)).unwrap();
        let (n, _) = sock.recv_from(&mut buf).expect("an answer");
        for _ in 0..40 {
            sock.send_to(&bulk, ("127.0.0.1", port)).unwrap();
        }
        let mut answered = 0;
        while sock.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
        (n, answered)
    };
    let (big, all) = probe();
    assert!(big > 1200, "unlimited answer of {big} bytes");
    assert_eq!(all, 40);

    // Reloads `text`; returns what reload said once the agent applied it.
    let reload = |text: &str| {
        let log = fleet.stderr();
        let mark = log.len();
        std::fs::write(&path, text).unwrap();
        let out = agentcluster(&["reload", "--control", &fleet.control()]);
        assert!(out.status.success(), "{out:?}");
        assert!(
            log.wait_for(mark, WAIT, |l| l.contains("limits changed"))
                .is_some(),
            "the agent did not log `limits changed` within {WAIT:?}; the log ends with:\n{}",
            log.tail(20)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let limited = original.replace(
        "agents:\n",
        "  max_response_bytes: 1200\n  rate_limit: { per_source: 5, burst: 5 }\n  start_tokens: 3\nagents:\n",
    );
    let msg = reload(&limited);
    assert!(msg.contains("0 changed, 0 added, 0 removed"), "{msg}");
    assert!(
        msg.contains("limits (max_response_bytes, rate_limit) applied"),
        "{msg}"
    );
    assert!(msg.contains("supervisor restarts: start_tokens"), "{msg}");
    let (n, answered) = probe();
    assert!(
        n <= 1200 && n > 200 && answered <= 10,
        "limits not applied: {n} bytes, {answered} of 40"
    );
    assert_eq!(pid_of(&fleet.status(), "lim"), pid, "no restart for limits");

    let msg = reload(&original);
    assert!(msg.contains("applied to every agent"), "{msg}");
    let (n, answered) = probe();
    assert!(
        n > 1200 && answered == 40,
        "limits not lifted: {n} bytes, {answered} of 40"
    );
    assert_eq!(pid_of(&fleet.status(), "lim"), pid);
}
