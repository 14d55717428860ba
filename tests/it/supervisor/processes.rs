//! The process tree: agents run as `nobody` without capabilities, share
//! processes when asked, are the supervisor's children (spawn helpers create
//! them) and die with it; SIGTERM stops them all, and systemd hears about
//! it.

use std::time::Duration;

use crate::harness::events::show;
use crate::harness::imports::Signal;
use crate::harness::{
    Fleet, agent, agentcluster, free_port, free_ports, is, is_alive, kill, pid_of, snmp_ok,
    sys_name_ok, tempdir, wait_gone,
};

use super::{agents_yaml, children};

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

#[test]
fn as_root_agents_serve_stores_kept_in_a_directory_they_cannot_enter() {
    use std::os::unix::fs::PermissionsExt;
    if !nix_is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // 0700, as `mktemp -d` and home directories are: `nobody` cannot enter
    // it. The snapshot, the cache and the state directory are all inside.
    let dir = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap();
    let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "a private directory");
    let snap = dir.path().join("dev.snmprec");
    std::fs::write(
        &snap,
        "1.3.6.1.2.1.1.1.0|4|first version\n1.3.6.1.2.1.1.5.0|4|dev\n",
    )
    .unwrap();
    // pv-0 and pv-1 share a process (and its one store); pv-2, alone, has an
    // SNMPv3 user, so its snmpEngineBoots is kept in the state directory.
    // A start that fails is final, not a restart loop.
    let ports = free_ports(3);
    let names = ["pv-0", "pv-1", "pv-2"];
    let mut yaml = String::from("  agents_per_process: 2\n  restart: { policy: never }\nagents:\n");
    for (name, port) in names.iter().zip(&ports) {
        yaml += &format!(
            "  - name: {name}\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            snap.display()
        );
    }
    yaml += "    snmpv3:\n      users:\n        - name: ops\n";
    let fleet = Fleet::start_in(dir, &[], &yaml, &[]);
    let dir = fleet.dir.path().to_path_buf();
    let status = fleet.status();
    for name in names {
        assert_eq!(
            agent(&status, name)["state"],
            "running",
            "{name} does not run: {:?}",
            fleet.events().iter().map(show).collect::<Vec<_>>()
        );
    }
    let pids: Vec<u32> = names.iter().map(|n| pid_of(&status, n)).collect();
    assert_eq!(pids[0], pids[1]);
    let get = |port: u16, oid: &str| {
        let target = format!("127.0.0.1:{port}");
        snmp_ok("snmpget", &["-v2c", "-c", "public", &target, oid])
    };
    for port in &ports {
        let out = get(*port, ".1.3.6.1.2.1.1.1.0");
        assert!(out.contains("first version"), "{out}");
    }
    let v3 = snmp_ok(
        "snmpget",
        &[
            "-v3",
            "-l",
            "noAuthNoPriv",
            "-u",
            "ops",
            &format!("127.0.0.1:{}", ports[2]),
            ".1.3.6.1.2.1.1.5.0",
        ],
    );
    assert!(v3.contains("dev"), "{v3}");
    for pid in &pids {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid_line = st.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
            "runs as nobody: {uid_line}"
        );
        maps_a_store_and_holds_nothing_under(*pid, &dir.join("cache"), &dir);
    }

    // A hot swap, as an editor saves: a new file renamed over the old one.
    let since = fleet.next_seq();
    let tmp = dir.join(".dev.snmprec.new");
    std::fs::write(
        &tmp,
        "1.3.6.1.2.1.1.1.0|4|second version\n1.3.6.1.2.1.1.5.0|4|dev\n",
    )
    .unwrap();
    std::fs::rename(&tmp, &snap).unwrap();
    let events = fleet
        .follow(since)
        .wait_all("data-reloaded for every agent", |e| {
            names
                .iter()
                .all(|n| e.iter().any(|x| is(x, n, "data-reloaded")))
        })
        .to_vec();
    for e in events.iter().filter(|e| e["event"] == "data-reloaded") {
        assert_eq!(
            e["reason"],
            "snapshot recompiled and swapped in",
            "{}",
            show(e)
        );
    }
    for port in &ports {
        let out = get(*port, ".1.3.6.1.2.1.1.1.0");
        assert!(out.contains("second version"), "{out}");
    }
    let after = fleet.status();
    for (name, pid) in names.iter().zip(&pids) {
        assert_eq!(pid_of(&after, name), *pid, "{name} was not restarted");
        maps_a_store_and_holds_nothing_under(*pid, &dir.join("cache"), &dir);
    }
}

/// Process `pid` maps a compiled store of `cache` (its own mapping, made
/// from a descriptor it was given) and has no descriptor open on anything
/// under `dir` (those descriptors are closed once mapped).
fn maps_a_store_and_holds_nothing_under(pid: u32, cache: &std::path::Path, dir: &std::path::Path) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(
        maps.lines()
            .any(|l| l.contains(&*cache.to_string_lossy()) && l.ends_with(".store")),
        "agent {pid} maps no store of {}:\n{maps}",
        cache.display()
    );
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let fd = fd.unwrap().path();
        if let Ok(target) = std::fs::read_link(&fd) {
            assert!(
                !target.starts_with(dir),
                "agent {pid} holds {} open as {}",
                target.display(),
                fd.display()
            );
        }
    }
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

/// The supervisor's spawn helpers.
fn helpers(supervisor: u32) -> Vec<u32> {
    children(supervisor)
        .into_iter()
        .filter(|(_, cmd, _)| cmd.starts_with("agentcluster: spawner"))
        .map(|(pid, _, _)| pid)
        .collect()
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

/// A reload that inserts an agent in the middle of the file and removes one
/// at the end keeps every process whose agents all stay as they were: only
/// the process that lost an agent restarts, and the new agent joins it.
#[test]
fn a_reload_keeps_the_packed_processes_whose_agents_stay() {
    let ports: Vec<u16> = free_ports(7);
    let names = ["k-0", "k-1", "k-2", "k-3", "k-4", "k-5"];
    let list: Vec<(&str, u16)> = names.iter().copied().zip(ports.iter().copied()).collect();
    let fleet = Fleet::start(&format!("  agents_per_process: 2\n{}", agents_yaml(&list)));
    let before = fleet.status();
    let pid = |s: &[serde_json::Value], n: &str| pid_of(s, n);
    assert_eq!(pid(&before, "k-0"), pid(&before, "k-1"));
    // k-new between k-0 and k-1; k-5 gone.
    let mut wanted = list.clone();
    wanted.insert(1, ("k-new", ports[6]));
    wanted.pop();
    let text = std::fs::read_to_string(fleet.config()).unwrap();
    let cluster = &text[..text.find("agents:\n").unwrap()];
    // (`cluster` holds agents_per_process too.)
    std::fs::write(fleet.config(), format!("{cluster}{}", agents_yaml(&wanted))).unwrap();
    let out = agentcluster(&["reload", "--control", &fleet.control()]);
    let t =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("1 changed, 1 added, 1 removed"),
        "k-4 restarts with k-new: {t}"
    );
    // The reload answers once the new process is spawned, not ready.
    let after = crate::harness::poll_until(
        "k-4 and k-new running",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            let s = fleet.status();
            let running = |n: &str| crate::harness::agent(&s, n)["state"] == "running";
            if running("k-4") && running("k-new") {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            }
        },
    );
    for n in ["k-0", "k-1", "k-2", "k-3"] {
        assert_eq!(
            pid(&after, n),
            pid(&before, n),
            "{n} kept its process: {after:?}"
        );
    }
    assert_ne!(pid(&after, "k-4"), pid(&before, "k-4"));
    assert_eq!(pid(&after, "k-4"), pid(&after, "k-new"), "packed together");
    for (_, port) in &wanted {
        sys_name_ok(*port);
    }
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
    // The socket holders too.
    let holders: Vec<u32> = children(supervisor)
        .into_iter()
        .filter(|(_, cmd, _)| cmd.starts_with("agentcluster: sockets"))
        .map(|(pid, _, _)| pid)
        .collect();
    assert!(!holders.is_empty(), "{:?}", children(supervisor));
    kill(supervisor, Signal::SIGKILL);
    let all: Vec<u32> = pids
        .iter()
        .chain(&helpers)
        .chain(&holders)
        .copied()
        .collect();
    let left = wait_gone(&all, Duration::from_secs(1));
    assert!(
        left.is_empty(),
        "agents, spawn helpers or socket holders still alive 1 s after the supervisor died: {left:?} of agents {pids:?}, helpers {helpers:?}, holders {holders:?}"
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
fn stop_signals_in_quick_succession_are_one_clean_stop() {
    // coreutils' `timeout` signals the child and its process group: the
    // supervisor gets SIGTERM twice at once, and that is one request.
    let ports = free_ports(2);
    let fleet = Fleet::start(&agents_yaml(&[("q-1", ports[0]), ("q-2", ports[1])]));
    let s = fleet.status();
    let pids = [pid_of(&s, "q-1"), pid_of(&s, "q-2")];
    kill(fleet.pid(), Signal::SIGTERM);
    kill(fleet.pid(), Signal::SIGINT);
    // and a third, as `stop` sends one more
    let (code, stderr) = fleet.stop();
    assert!(code.success(), "{code:?} {stderr}");
    assert!(stderr.contains("the same request"), "{stderr}");
    assert!(!stderr.contains("exiting now"), "{stderr}");
    assert!(pids.iter().all(|p| !is_alive(*p)));
    assert!(stderr.matches("stopped").count() >= 2, "{stderr}");
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
