//! How agents start: a bounded number at once (start tokens), a handshake
//! that fails closed on garbage, early close, a wrong token or silence, and
//! backoff for an agent that keeps crashing on start.

use crate::harness::imports::parse_duration;
use crate::harness::{Fleet, agent, alone, free_port, free_ports, kinds_for, sys_name_ok, tempdir};

use super::{agents_yaml, children, fake_agent};

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
        .map(|x| parse_delay(x["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(delays.len(), 4, "{e:#?}");
    assert_eq!(delays[0], 0.0, "first restart at once");
    // Each delay is drawn from [base/2, base] (never under the minimum)
    // and the base doubles: a delay is never shorter than the one before
    // (jitter can make two in a row equal), and two steps on it is at
    // least twice as long.
    assert!(delays[1] > 0.0, "then backing off: {delays:?}");
    assert!(
        delays.windows(2).all(|w| w[1] >= w[0]),
        "never shorter: {delays:?}"
    );
    assert!(delays[3] >= 2.0 * delays[1] - 1e-9, "growing: {delays:?}");
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

/// The delay of a `restarting` reason, in seconds: `…; restarting at
/// once` is 0, `…; restarting in 20ms` (a humane duration, never `0ns`)
/// its duration.
fn parse_delay(reason: &str) -> f64 {
    if reason.ends_with("; restarting at once") {
        return 0.0;
    }
    let d = reason
        .rsplit_once("; restarting in ")
        .unwrap_or_else(|| panic!("no delay in {reason:?}"))
        .1;
    assert!(!d.ends_with("ns"), "{reason:?}");
    parse_duration(d)
        .unwrap_or_else(|| panic!("not a delay: {d:?}"))
        .as_secs_f64()
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
