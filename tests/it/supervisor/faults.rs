//! Agents that fail while they run — killed, stopped, over their memory
//! limit, deaf to SNMP — are found, replaced and reported, in order, until
//! they fail too often; and the devices say so themselves (coldStart, then
//! warmStart).

use std::time::Duration;

use crate::harness::imports::{Signal, probe};
use crate::harness::{
    Fleet, agent, agentcluster, free_port, free_ports, is, is_alive, kill, kinds_for, pid_in,
    pid_of, snmp_ok, sys_name_ok, tempdir,
};

use super::{agents_yaml, fake_agent};

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
    // Frames: body length and descriptor count (big-endian u32 each), then
    // JSON; a plain read drops the store descriptors of the start.
    let scripts = tempdir();
    let exe = fake_agent(
        scripts.path(),
        "mute.py",
        "exec python3 - <<'EOF'\nimport json, os, struct, time\ndef read():\n    h = b''\n    while len(h) < 8:\n        h += os.read(3, 8 - len(h))\n    n = struct.unpack('>II', h)[0]\n    b = b''\n    while len(b) < n:\n        b += os.read(3, n - len(b))\n    return json.loads(b)\ndef send(m):\n    b = json.dumps(m).encode()\n    os.write(3, struct.pack('>II', len(b), 0) + b)\nstart = read()\nsend({'type': 'ready', 'token': start['token']})\nwhile True:\n    send({'type': 'heartbeat', 'agents': []})\n    time.sleep(0.05)\nEOF",
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
