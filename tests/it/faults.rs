//! Faults on running devices (`agentcluster fault`), end to end with the
//! real binary, net-snmp's clients and a real `snmptrapd`: a reboot as a
//! manager sees it (silence, sysUpTime from 0, snmpEngineBoots + 1, a
//! coldStart from the device's own address), link flaps (ifOperStatus,
//! ifLastChange, linkDown/linkUp with IF-MIB varbinds), latency and loss
//! measured from the client, `hang` that the supervisor does not take for
//! a dead agent, faults that outlive `kill -9` and expire by themselves.
//!
//! Waits are on the event stream, snmptrapd's log and SNMP answers.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::harness::imports::Signal;
use crate::harness::trapd::Trapd;
use crate::harness::{
    Fleet, agent, agentcluster, engine_boots, free_port, is, kill, mib, pid_of, poll_until, snmp,
    text, ts_millis,
};

const SYS_UPTIME: &str = ".1.3.6.1.2.1.1.3.0";
const IF_OPER_2: &str = ".1.3.6.1.2.1.2.2.1.8.2";
const IF_LAST_CHANGE_2: &str = ".1.3.6.1.2.1.2.2.1.9.2";

/// `agentcluster fault …` against `fleet`; its output, which must say it
/// succeeded.
fn fault(fleet: &Fleet, args: &[&str]) -> String {
    let control = fleet.control();
    let mut all = vec!["fault", "--control", &control];
    all.extend_from_slice(args);
    let out = agentcluster(&all);
    assert!(out.status.success(), "fault {args:?}: {}", text(&out));
    text(&out)
}

/// One v2c agent of linux-host.snmprec (two interfaces) on `listen`, with
/// `more` YAML lines of its own.
fn device(name: &str, listen: &str, more: &str) -> String {
    format!(
        "  - name: {name}\n    listen: [\"{listen}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n{more}",
        mib("linux-host.snmprec").display()
    )
}

/// A v2c GET of `oids` on `target`: the values (`-Ov`), or `None` when no
/// answer came within `timeout_s` (one attempt).
fn get(target: &str, timeout_s: &str, oids: &[&str]) -> Option<Vec<String>> {
    let mut args = vec![
        "-v2c", "-c", "public", "-On", "-Ov", "-t", timeout_s, "-r", "0", target,
    ];
    args.extend_from_slice(oids);
    let out = snmp("snmpget", &args);
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    })
}

/// Hundredths of a second in a `Timeticks: (N) …` value.
fn ticks(value: &str) -> u64 {
    value
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("Timeticks in {value:?}"))
}

/// The device's sysUpTime once it is past 0 (a tick is 10 ms).
fn uptime_past_zero(target: &str) -> u64 {
    poll_until(
        "sysUpTime past 0",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            let t =
                ticks(&get(target, "5", &[SYS_UPTIME]).ok_or_else(|| "no answer".to_string())?[0]);
            if t > 0 {
                Ok(t)
            } else {
                Err(format!("sysUpTime {t}"))
            }
        },
    )
}

/// snmpEngineBoots as served to the noAuthNoPriv user `plain`.
fn boots(target: &str) -> u32 {
    engine_boots(target).unwrap_or_else(|| panic!("no snmpEngineBoots from {target}"))
}

/// The source (`[ip]:port`) of a notification logged as `%b|…`.
fn source(line: &str) -> &str {
    line.strip_prefix("UDP: ")
        .and_then(|l| l.split_once("->"))
        .map_or("", |(from, _)| from)
}

const TRAP_FORMAT: &str = "%b|%v\n";

#[test]
fn a_reboot_is_silence_then_uptime_from_zero_one_boot_more_and_a_cold_start() {
    let trapd = Trapd::start_format("authCommunity log public\n", TRAP_FORMAT);
    let port = free_port();
    let target = format!("127.0.3.7:{port}");
    let more = format!(
        "    snmpv3: {{ users: [ {{ name: plain }} ] }}\n    notify: [ {{ target: \"127.0.0.1:{}\", version: 2c, community: public }} ]\n",
        trapd.port
    );
    let fleet = Fleet::start(&format!("agents:\n{}", device("dev", &target, &more)));
    let from = format!("[127.0.3.7]:{port}");
    let first = trapd.expect(".1.3.6.1.6.3.1.1.5.1");
    assert_eq!(source(&first), from, "the start's coldStart: {first}");
    let boots_before = boots(&target);
    // The device has been up a while (a tick is 10 ms: a fast start can
    // still be at 0).
    let uptime_before = uptime_past_zero(&target);
    assert!(uptime_before > 0);

    let mut events = fleet.follow(fleet.next_seq());
    let asked = Instant::now();
    fault(&fleet, &["dev", "reboot", "5s"]);
    events.wait("fault-injected", |e| {
        is(e, "dev", "fault-injected") && e["reason"] == "reboot 5s"
    });
    events.wait("the rebooted process", |e| is(e, "dev", "ready"));
    // Unanswered while it boots.
    assert_eq!(
        get(&target, "1", &[SYS_UPTIME]),
        None,
        "silent in the outage"
    );
    events.wait("up again", |e| {
        is(e, "dev", "fault-cleared") && e["reason"] == "reboot 5s, up again"
    });
    let cold = trapd.expect(".1.3.6.1.6.3.1.1.5.1");
    assert_eq!(source(&cold), from, "the reboot's coldStart: {cold}");
    let uptime = ticks(&get(&target, "5", &[SYS_UPTIME]).expect("answers again")[0]);
    // sysUpTime counts from the reboot: less than the time since it was
    // asked for (it would be more, had it gone on from before).
    let since = asked.elapsed().as_millis() as u64 / 10;
    assert!(
        uptime <= since,
        "sysUpTime {uptime} after a reboot {since} ticks ago"
    );
    assert_eq!(boots(&target), boots_before + 1, "snmpEngineBoots + 1");
}

#[test]
fn a_reboot_of_a_packed_agent_leaves_its_neighbour_serving() {
    let (p1, p2) = (free_port(), free_port());
    let (t1, t2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    let yaml = format!(
        "  agents_per_process: 2\nagents:\n{}{}",
        device("a", &t1, "    snmpv3: { users: [ { name: plain } ] }\n"),
        device("b", &t2, "")
    );
    let fleet = Fleet::start(&yaml);
    let pid = pid_of(&fleet.status(), "a");
    let boots_before = boots(&t1);
    let mut events = fleet.follow(fleet.next_seq());
    let asked = Instant::now();
    fault(&fleet, &["a", "reboot", "5s"]);
    events.wait("fault-injected", |e| is(e, "a", "fault-injected"));
    // The neighbour answers meanwhile; `a` does not.
    assert!(get(&t2, "5", &[SYS_UPTIME]).is_some(), "b serves on");
    assert_eq!(get(&t1, "1", &[SYS_UPTIME]), None, "a is rebooting");
    events.wait("up again", |e| is(e, "a", "fault-cleared"));
    let uptime = ticks(&get(&t1, "5", &[SYS_UPTIME]).expect("a answers again")[0]);
    assert!(
        uptime <= asked.elapsed().as_millis() as u64 / 10,
        "{uptime}"
    );
    assert_eq!(boots(&t1), boots_before + 1);
    let status = fleet.status();
    assert_eq!(pid_of(&status, "a"), pid, "the same process");
    assert_eq!(agent(&status, "a")["restarts"], 0);
}

/// A rebooted device answers again as soon as its fault clears, however
/// late its process heard of the reboot: the outage counts from the
/// supervisor's instant, not from the order's arrival. Here the process is
/// held stopped (SIGSTOP; no watchdog check falls in that time) while the
/// order waits in its channel; the device used to stay silent that long
/// after `fault-cleared`.
#[test]
fn a_reboot_ends_when_its_fault_clears_however_late_the_order_arrives() {
    let (p1, p2) = (free_port(), free_port());
    let (t1, t2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    let yaml = format!(
        "  heartbeat: 1h\n  inactive_after: 2h\n  agents_per_process: 2\nagents:\n{}{}",
        device("a", &t1, ""),
        device("b", &t2, "")
    );
    let fleet = Fleet::start(&yaml);
    let pid = pid_of(&fleet.status(), "a");
    let mut events = fleet.follow(fleet.next_seq());
    kill(pid, Signal::SIGSTOP);
    fault(&fleet, &["a", "reboot", "2s"]);
    events.wait("fault-injected", |e| is(e, "a", "fault-injected"));
    // The scenario itself: the order is late by this much.
    std::thread::sleep(Duration::from_millis(1500));
    kill(pid, Signal::SIGCONT);
    events.wait("up again", |e| is(e, "a", "fault-cleared"));
    assert!(
        get(&t1, "1", &[SYS_UPTIME]).is_some(),
        "a answers once its fault has cleared"
    );
}

#[test]
fn a_link_flap_changes_the_interface_and_sends_link_down_and_up() {
    let trapd = Trapd::start_format("authCommunity log public\n", TRAP_FORMAT);
    let port = free_port();
    let target = format!("127.0.3.8:{port}");
    let more = format!(
        "    notify: [ {{ target: \"127.0.0.1:{}\", version: 2c, community: public }} ]\n",
        trapd.port
    );
    let fleet = Fleet::start(&format!("agents:\n{}", device("sw", &target, &more)));
    let from = format!("[127.0.3.8]:{port}");
    trapd.expect(".1.3.6.1.6.3.1.1.5.1");
    assert_eq!(get(&target, "5", &[IF_OPER_2]).unwrap(), ["INTEGER: 1"]);
    // So that the change's time (ifLastChange) is past 0.
    uptime_past_zero(&target);

    fault(&fleet, &["sw", "link-down", "2"]);
    let down = trapd.expect(".1.3.6.1.6.3.1.1.5.3");
    assert_eq!(source(&down), from, "{down}");
    for varbind in [
        ".1.3.6.1.2.1.2.2.1.1.2 = INTEGER: 2",
        ".1.3.6.1.2.1.2.2.1.7.2 = INTEGER: 1",
        ".1.3.6.1.2.1.2.2.1.8.2 = INTEGER: 2",
    ] {
        assert!(down.contains(varbind), "{varbind} in {down}");
    }
    let v = get(&target, "5", &[IF_OPER_2, IF_LAST_CHANGE_2, SYS_UPTIME]).unwrap();
    assert_eq!(v[0], "INTEGER: 2", "ifOperStatus down");
    let (changed, now) = (ticks(&v[1]), ticks(&v[2]));
    assert!(
        changed > 0 && changed <= now,
        "ifLastChange {changed}, sysUpTime {now}"
    );
    // ifAdminStatus stays: a cable pull, no shutdown.
    assert_eq!(
        get(&target, "5", &[".1.3.6.1.2.1.2.2.1.7.2"]).unwrap(),
        ["INTEGER: 1"]
    );
    let status = fleet.status();
    assert_eq!(agent(&status, "sw")["faults"][0], "link-down 2");

    fault(&fleet, &["sw", "link-up", "2"]);
    let up = trapd.expect(".1.3.6.1.6.3.1.1.5.4");
    assert_eq!(source(&up), from, "{up}");
    assert!(up.contains(".1.3.6.1.2.1.2.2.1.8.2 = INTEGER: 1"), "{up}");
    let v = get(&target, "5", &[IF_OPER_2, IF_LAST_CHANGE_2]).unwrap();
    assert_eq!(v[0], "INTEGER: 1");
    assert!(ticks(&v[1]) >= changed);

    // An interface the device does not have is an error, and changes
    // nothing.
    let control = fleet.control();
    let out = agentcluster(&["fault", "--control", &control, "sw", "link-down", "9"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no interface 9"), "{}", text(&out));
    assert_eq!(
        agent(&fleet.status(), "sw")["faults"],
        serde_json::json!([])
    );
}

/// Devices of one process at three addresses of one port: steered, only
/// the first keeps a socket of its own, and the others send through it.
/// Each device's coldStart (a trap from two, an inform from the third,
/// which must be acknowledged: the acknowledgement comes back to its
/// address and is steered to its process) and a linkDown leave from the
/// device's own address and port.
#[test]
fn devices_sharing_a_socket_send_their_notifications_from_their_own_address() {
    let trapd = Trapd::start_format("authCommunity log public\n", TRAP_FORMAT);
    let port = free_port();
    let at = |i: u8| format!("127.0.3.{}:{port}", 30 + i);
    let notify = |kind: &str| {
        format!(
            "    notify: [ {{ target: \"127.0.0.1:{}\", version: 2c, community: public, type: {kind}, timeout: 1s, retries: 2 }} ]\n",
            trapd.port
        )
    };
    let fleet = Fleet::start(&format!(
        "  agents_per_process: 3\nagents:\n{}{}{}",
        device("n0", &at(0), &notify("trap")),
        device("n1", &at(1), &notify("trap")),
        device("n2", &at(2), &notify("inform")),
    ));
    if !fleet.stderr().text().contains("datagrams are not steered") {
        let table = std::fs::read_to_string("/proc/net/udp").unwrap();
        let at_port = format!(":{port:04X} ");
        let bound = table.lines().filter(|l| l.contains(&at_port)).count();
        assert_eq!(bound, 1, "one socket at the devices' port:\n{table}");
    }
    let mut from: Vec<String> = (0..3)
        .map(|_| source(&trapd.expect(".1.3.6.1.6.3.1.1.5.1")).to_string())
        .collect();
    from.sort();
    let want: Vec<String> = (0..3)
        .map(|i| format!("[127.0.3.{}]:{port}", 30 + i))
        .collect();
    assert_eq!(from, want, "each coldStart from its device");
    fault(&fleet, &["n1", "link-down", "2"]);
    let down = trapd.expect(".1.3.6.1.6.3.1.1.5.3");
    assert_eq!(source(&down), want[1], "{down}");
    // Unacknowledged, the inform would be sent again after 1 s, and said
    // undelivered after 3.
    std::thread::sleep(Duration::from_millis(3500));
    let err = fleet.stderr().text();
    assert!(!err.contains("not delivered"), "{err}");
    for i in 0..3 {
        assert!(get(&at(i), "5", &[SYS_UPTIME]).is_some(), "{}", at(i));
    }
}

/// A v2c GET of sysUpTime.0 with `id` as its request-id.
fn get_packet(id: u8) -> Vec<u8> {
    vec![
        0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x1c,
        0x02, 0x04, 0, 0, 0, id, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c, 0x06,
        0x08, 0x2b, 6, 1, 2, 1, 1, 3, 0, 0x05, 0x00,
    ]
}

/// The next answer on `client`, or `None` when its read timeout passes
/// first (a signal to the test process does not end the wait).
fn answer(client: &UdpSocket, buf: &mut [u8]) -> Option<usize> {
    loop {
        match client.recv(buf) {
            Ok(n) => return Some(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn latency_and_loss_are_what_the_client_sees() {
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let fleet = Fleet::start(&format!("agents:\n{}", device("slow", &target, "")));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(&target).unwrap();
    let mut buf = [0u8; 1500];

    fault(&fleet, &["slow", "latency", "200ms"]);
    for id in 0..10 {
        let sent = Instant::now();
        client.send(&get_packet(id)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        answer(&client, &mut buf).expect("an answer");
        let took = sent.elapsed();
        assert!(
            took >= Duration::from_millis(200),
            "answered after {took:?}"
        );
    }

    fault(&fleet, &["slow", "loss", "50"]);
    for id in 0..50 {
        client.send(&get_packet(id)).unwrap();
    }
    // Every answer that comes comes well within 3 s (200 ms late).
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut answered = 0;
    while answer(&client, &mut buf).is_some() {
        answered += 1;
    }
    assert!((10..=40).contains(&answered), "{answered} of 50 answered");

    // A fault is in effect once `fault` has answered: no request sent
    // after it is answered.
    fault(&fleet, &["slow", "loss", "100"]);
    for id in 0..20 {
        client.send(&get_packet(id)).unwrap();
    }
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        answer(&client, &mut buf).is_none(),
        "answered after loss 100% was confirmed"
    );

    fault(&fleet, &["slow", "clear"]);
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let sent = Instant::now();
    client.send(&get_packet(99)).unwrap();
    answer(&client, &mut buf).expect("answered after clear");
    assert!(sent.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_hung_agent_stays_running_and_answers_after_clear() {
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let yaml = format!(
        "  heartbeat: 200ms\n  inactive_after: 1s\n  probe: {{ interval: 200ms, timeout: 200ms }}\nagents:\n{}",
        device("stuck", &target, "")
    );
    let fleet = Fleet::start(&yaml);
    let pid = pid_of(&fleet.status(), "stuck");
    let since = fleet.next_seq();
    fault(&fleet, &["stuck", "hang"]);
    // Silent for 4 s: many heartbeat intervals, four times inactive_after,
    // twenty probes unanswered.
    assert_eq!(
        get(&target, "4", &[SYS_UPTIME]),
        None,
        "no answer while hung"
    );
    let status = fleet.status();
    let s = agent(&status, "stuck");
    assert_eq!(s["state"], "running", "{s}");
    assert_eq!(pid_of(&status, "stuck"), pid, "not restarted");
    assert_eq!(s["restarts"], 0);
    assert_eq!(s["faults"][0], "hang");
    let events = fleet.events();
    let after: Vec<_> = events
        .iter()
        .filter(|e| e["seq"].as_u64().unwrap_or(0) >= since)
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(after, ["fault-injected"], "nothing but the fault");
    fault(&fleet, &["stuck", "clear"]);
    assert!(get(&target, "5", &[SYS_UPTIME]).is_some(), "answers again");
}

#[test]
fn a_fault_survives_kill_9_and_expires_by_itself() {
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let fleet = Fleet::start(&format!("agents:\n{}", device("dev", &target, "")));
    let mut events = fleet.follow(fleet.next_seq());
    fault(&fleet, &["dev", "link-down", "2"]);
    fault(&fleet, &["dev", "loss", "100", "--for", "2s"]);
    events.wait("loss injected", |e| {
        is(e, "dev", "fault-injected") && e["reason"] == "loss 100%, for 2s"
    });
    let pid = pid_of(&fleet.status(), "dev");
    kill(pid, Signal::SIGKILL);
    // Back with a new process, and the loss over (in either order).
    events.wait_all("a new process and the loss expired", |seen| {
        seen.iter()
            .any(|e| is(e, "dev", "ready") && e["pid"] != pid)
            && seen
                .iter()
                .any(|e| is(e, "dev", "fault-cleared") && e["reason"] == "loss 100%, expired")
    });
    // The link is still down in the new process.
    assert_eq!(get(&target, "5", &[IF_OPER_2]).unwrap(), ["INTEGER: 2"]);
    let status = fleet.status();
    assert_ne!(pid_of(&status, "dev"), pid);
    assert_eq!(
        agent(&status, "dev")["faults"],
        serde_json::json!(["link-down 2"])
    );
}

/// One run of a seeded scenario over three agents: each agent's first two
/// `fault-injected` times, in milliseconds after `supervisor-started`, and
/// the kinds of its fault events in order.
fn seeded_run() -> std::collections::BTreeMap<String, (Vec<i64>, Vec<String>)> {
    let mut yaml = String::from("agents:\n");
    for i in 0..3 {
        yaml += &device(
            &format!("sw-{i}"),
            &format!("127.0.0.1:{}", free_port()),
            "",
        );
    }
    yaml += "scenarios:\n  - { agents: \"sw-*\", fault: loss, arg: 10, every: 3s, for: 1s, jitter: 1500ms, seed: 42 }\n";
    let fleet = Fleet::start(&yaml);
    let mut events = fleet.follow(1);
    let injected = |seen: &[serde_json::Value], agent: &str| {
        seen.iter()
            .filter(|e| is(e, agent, "fault-injected"))
            .count()
    };
    let seen = events
        .wait_all("two faults on each agent", |seen| {
            (0..3).all(|i| injected(seen, &format!("sw-{i}")) >= 2)
        })
        .to_vec();
    let started = seen
        .iter()
        .find(|e| e["event"] == "supervisor-started")
        .and_then(|e| ts_millis(e["ts"].as_str()?))
        .expect("supervisor-started");
    let mut out = std::collections::BTreeMap::new();
    for i in 0..3 {
        let name = format!("sw-{i}");
        let mine: Vec<&serde_json::Value> = seen
            .iter()
            .filter(|e| e["agent"] == name.as_str())
            .filter(|e| e["event"].as_str().is_some_and(|k| k.starts_with("fault-")))
            .collect();
        let times = mine
            .iter()
            .filter(|e| e["event"] == "fault-injected")
            .take(2)
            .map(|e| ts_millis(e["ts"].as_str().unwrap()).unwrap() - started)
            .collect();
        let kinds = mine
            .iter()
            .take(3)
            .map(|e| {
                format!(
                    "{} {}",
                    e["event"].as_str().unwrap(),
                    e["reason"].as_str().unwrap()
                )
            })
            .collect();
        out.insert(name, (times, kinds));
    }
    out
}

#[test]
fn a_seeded_scenario_gives_the_same_faults_at_the_same_times_twice() {
    let first = seeded_run();
    let second = seeded_run();
    for (agent, (times, kinds)) in &first {
        assert_eq!(
            kinds,
            &[
                "fault-injected loss 10%, for 1s",
                "fault-cleared loss 10%, expired",
                "fault-injected loss 10%, for 1s"
            ],
            "{agent}"
        );
        let (again, kinds_again) = &second[agent];
        assert_eq!(kinds, kinds_again, "{agent}");
        for (k, (a, b)) in times.iter().zip(again).enumerate() {
            // Occurrence k is due 3 s × (k + 1) plus its seeded jitter.
            let due = 3000 * (k as i64 + 1);
            assert!(
                (due - 200..=due + 1500 + 1000).contains(a),
                "{agent} #{k}: {a} ms"
            );
            assert!(
                (a - b).abs() <= 300,
                "{agent} #{k}: {a} ms, then {b} ms: {first:?} {second:?}"
            );
        }
    }
}
