//! The command line: `check`, `snapshot …`, startup errors (the default
//! fleet is in `first_minute`). Each test runs the real binary.

use std::net::UdpSocket;
use std::process::Command;

use crate::harness::imports::snapshot;
use crate::harness::{
    BIN, Fleet, agentcluster, free_port, light, mib, output, pid_of, sys_name_ok, tempdir, text,
};

#[test]
fn check_reports_every_problem_with_its_location() {
    let dir = tempdir();
    let path = dir.path().join("bad.yaml");
    let snap = mib("linux-host.snmprec");
    std::fs::write(
        &path,
        format!(
            "agents:\n  - name: a\n    listen: [\"127.0.0.1:20001\"]\n    data: {snap}\n    snmpv2c: {{ communities: [public] }}\n  - name: a\n    listen: [\"127.0.0.1:20001\"]\n    data: {missing}\n    engine_id: \"zz\"\n    snmpv2c: {{ communities: [public] }}\n",
            snap = snap.display(),
            missing = dir.path().join("missing.snmprec").display(),
        ),
    )
    .unwrap();
    let out = agentcluster(&["check", "-c", path.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let shown = path.display().to_string();
    let problems: Vec<&str> = t.lines().filter(|l| l.starts_with(&shown)).collect();
    // duplicate name, endpoint clash, missing snapshot, bad engine ID
    assert!(problems.len() >= 4, "{t}");
    for p in &problems {
        let rest = &p[shown.len()..];
        let mut parts = rest.splitn(4, ':');
        assert_eq!(parts.next(), Some(""));
        assert!(
            parts.next().unwrap().parse::<u32>().is_ok(),
            "line number in {p}"
        );
        assert!(
            parts.next().unwrap().parse::<u32>().is_ok(),
            "column number in {p}"
        );
    }
    for needle in ["duplicate", "missing.snmprec", "engine"] {
        assert!(t.to_lowercase().contains(needle), "no {needle:?} in {t}");
    }

    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        format!(
            "agents:\n  - name: \"p-{{i}}\"\n    count: 3\n    listen: [\"127.0.0.1:{{i+20010}}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            snap.display()
        ),
    )
    .unwrap();
    let out = agentcluster(&["check", "-c", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("3 agents"), "{}", text(&out));
}

/// `check` reports at once every problem `run` would stop at before its
/// first agent: a broken snapshot line, a binary snapshot, an empty one, a
/// snapshot of an unknown format, a control socket path too long to bind.
#[test]
fn check_reports_what_run_would_meet_in_snapshots_and_the_control_socket() {
    let dir = tempdir();
    let d = dir.path();
    std::fs::write(
        d.join("broken.snmprec"),
        "1.3.6.1.2.1.1.1.0|4|ok\n1.3.6.1.2.1.1.2.0|4x|zz\n1.3.6.1.2.1.1.1.0|4|again\n",
    )
    .unwrap();
    let mut binary = b"1.3.6.1.2.1.1.1.0|4|a\n\n".to_vec();
    binary.extend_from_slice(&std::fs::read(BIN).unwrap()[..4096]);
    std::fs::write(d.join("binary.snmpwalk"), binary).unwrap();
    std::fs::write(d.join("empty.sapwalk"), "# nothing yet\n").unwrap();
    std::fs::write(d.join("dump.txt"), "1.3.6.1.2.1.1.1.0|4|x\n").unwrap();
    let socket = d.join(format!("{}.sock", "s".repeat(120)));
    let snap = mib("linux-host.snmprec");
    let agent = |name: &str, port: u16, data: &str| {
        format!(
            "  - name: {name}\n    listen: [\"127.0.0.1:{port}\"]\n    data: {data}\n    snmpv2c: {{ communities: [public] }}\n"
        )
    };
    let yaml = format!(
        "cluster:\n  cache_dir: {cache}\n  control_socket: {socket}\nagents:\n{}{}{}{}{}{}",
        agent("good", 20001, &snap.display().to_string()),
        agent("broken", 20002, "broken.snmprec"),
        agent("binary", 20003, "binary.snmpwalk"),
        agent("empty", 20004, "empty.sapwalk"),
        agent("unknown", 20005, "dump.txt"),
        // The same broken file again: parsed and reported once.
        agent("broken-too", 20006, "broken.snmprec"),
        cache = d.join("cache").display(),
        socket = socket.display(),
    );
    let path = d.join("fleet.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = agentcluster(&["check", "-c", path.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let line = |prefix: String, needle: &str| {
        let hits: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with(&prefix) && l.contains(needle))
            .collect();
        assert_eq!(hits.len(), 1, "one {prefix}… {needle:?} in:\n{t}");
    };
    let fleet = path.display().to_string();
    let at = |name: &str| d.join(name).display().to_string();
    line(
        format!("{fleet}:3:19: error: `control_socket`: "),
        "a Unix socket's path has at most 107",
    );
    line(
        format!("{fleet}:23:11: error: "),
        "is not a known snapshot format",
    );
    line(
        format!("{}:2: error: ", at("broken.snmprec")),
        "bad hex value \"zz\"",
    );
    line(
        format!("{}:3: warning: ", at("broken.snmprec")),
        "duplicate OID 1.3.6.1.2.1.1.1.0",
    );
    line(
        format!("{}:3: error: ", at("binary.snmpwalk")),
        "binary data",
    );
    line(format!("{}: error: ", at("empty.sapwalk")), "no records");
    assert!(!t.contains("ok, "), "{t}");
    // Nothing written: no cache, no socket.
    assert!(!d.join("cache").exists(), "{t}");

    // The same snapshots fixed: the fleet passes.
    std::fs::write(d.join("broken.snmprec"), "1.3.6.1.2.1.1.1.0|4|ok\n").unwrap();
    std::fs::write(
        d.join("binary.snmpwalk"),
        ".1.3.6.1.2.1.1.1.0 = STRING: \"x\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("empty.sapwalk"),
        "1.3.6.1.2.1.1.1.0, OctetString, x\n",
    )
    .unwrap();
    std::fs::rename(d.join("dump.txt"), d.join("dump.snmprec")).unwrap();
    let fixed = std::fs::read_to_string(&path)
        .unwrap()
        .replace("dump.txt", "dump.snmprec")
        .replace(
            &socket.display().to_string(),
            &d.join("c.sock").display().to_string(),
        );
    std::fs::write(&path, fixed).unwrap();
    let out = agentcluster(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("ok, 6 agents"), "{}", text(&out));
}

/// Three templates of a million copies each are refused from their counts,
/// with the arithmetic, before a copy is made: under an address-space limit
/// of 2.5 GB (the copies took more, and `check` aborted with SIGABRT), by
/// `check` and by `run` alike.
#[test]
fn a_fleet_of_millions_is_refused_before_its_templates_are_expanded() {
    let dir = tempdir();
    let mut yaml = format!(
        "cluster:\n  cache_dir: {}\n  state_dir: {}\n  control_socket: {}\nagents:\n",
        dir.path().join("cache").display(),
        dir.path().join("state").display(),
        dir.path().join("control.sock").display(),
    );
    for host in 1..=3 {
        yaml.push_str(&format!(
            "  - name: \"h{host}-{{i}}\"\n    count: 1000000\n    listen: [\"127.0.0.{host}:{{i+1}}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            mib("linux-host.snmprec").display()
        ));
    }
    let path = dir.path().join("huge.yaml");
    std::fs::write(&path, yaml).unwrap();
    for command in ["check", "run"] {
        let out = output(Command::new("prlimit").args([
            "--as=2500000000",
            BIN,
            command,
            "-c",
            path.to_str().unwrap(),
        ]))
        .unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{command}: {t}");
        assert!(
            t.contains("the fleet has 3000000 agents (count 1000000 at "),
            "{command}: {t}"
        );
        assert!(
            t.contains("3000000 processes × 768 KiB + 3000000 agents × 64 KiB"),
            "{command}: {t}"
        );
        let holders = socket_holders_in(&t);
        assert!(
            t.contains(&format!(
                "{} tasks (3000000 processes × 2 + 64 for the supervisor + {holders} socket holder",
                6_000_064 + holders
            )),
            "{command}: {t}"
        );
    }
    assert!(!dir.path().join("control.sock").exists());
}

#[test]
fn a_port_in_use_is_a_startup_error_naming_agent_and_endpoint() {
    let port = free_port();
    let _holder = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let dir = tempdir();
    let path = dir.path().join("fleet.yaml");
    std::fs::write(
        &path,
        format!(
            "cluster:\n  cache_dir: {cache}\n  state_dir: {state}\nagents:\n  - name: blocked-dev\n    listen: [\"127.0.0.1:{port}\"]\n    data: {snap}\n    snmpv2c: {{ communities: [public] }}\n",
            cache = dir.path().join("c").display(),
            state = dir.path().join("s").display(),
            snap = mib("linux-host.snmprec").display()
        ),
    )
    .unwrap();
    let out =
        output(Command::new("timeout").args(["60", BIN, "run", "-c", path.to_str().unwrap()]))
            .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("blocked-dev"), "{t}");
    assert!(t.contains(&format!("127.0.0.1:{port}")), "{t}");
    assert!(!t.contains(" ready"), "{t}");
}

#[test]
fn snapshot_convert_round_trips_and_sort_dedups() {
    let dir = tempdir();
    let walk = dir.path().join("host.snmpwalk");
    let back = dir.path().join("host.snmprec");
    let src = mib("linux-host.snmprec");
    for (i, o) in [(&src, &walk), (&walk, &back)] {
        let out = agentcluster(&[
            "snapshot",
            "convert",
            i.to_str().unwrap(),
            "-o",
            o.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let a = snapshot::load(&src).unwrap();
    let b = snapshot::load(&back).unwrap();
    assert_eq!(a.records.len(), b.records.len());
    for (x, y) in a.records.iter().zip(&b.records) {
        assert_eq!((&x.oid, &x.value), (&y.oid, &y.value));
    }

    let messy = dir.path().join("messy.snmprec");
    std::fs::write(
        &messy,
        "1.3.6.1.2.1.1.5.0|4|second\n1.3.6.1.2.1.1.1.0|4|descr\n1.3.6.1.2.1.1.5.0|4|last wins\n",
    )
    .unwrap();
    let out = agentcluster(&["snapshot", "check", messy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(":3"),
        "duplicate reported with its line: {}",
        text(&out)
    );
    let out = agentcluster(&["snapshot", "sort", messy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&messy).unwrap(),
        "1.3.6.1.2.1.1.1.0|4|descr\n1.3.6.1.2.1.1.5.0|4|last wins\n"
    );

    let broken = dir.path().join("broken.snmprec");
    std::fs::write(
        &broken,
        "1.3.6.1.2.1.1.1.0|4|ok\nnot a record\n1.3.6.1.2.1.1.2.0|99|x\n",
    )
    .unwrap();
    let out = agentcluster(&["snapshot", "check", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("broken.snmprec:2"), "{t}");
    assert!(t.contains("broken.snmprec:3"), "{t}");
}

/// An empty snapshot serves nothing, a hex value that is not hex is no
/// data: both are errors (exit 1), and a broken file's warnings are shown
/// beside its errors, in line order.
#[test]
fn snapshot_check_refuses_empty_files_and_bad_hex_and_keeps_the_warnings() {
    let dir = tempdir();
    let empty = dir.path().join("empty.snmprec");
    std::fs::write(&empty, "").unwrap();
    let out = agentcluster(&["snapshot", "check", empty.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("empty.snmprec: no records"), "{t}");
    assert!(!t.contains("ok, 0 records"), "{t}");

    let hex = dir.path().join("hex.snmprec");
    std::fs::write(
        &hex,
        concat!(
            "1.3.6.1.2.1.1.1.0|4x|zz\n",
            "1.3.6.1.2.1.1.5.0|4|first\n",
            "1.3.6.1.2.1.1.2.0|4x|abc\n",
            "1.3.6.1.2.1.1.5.0|4|last wins\n",
            "1.3.6.1.2.1.1.3.0|64x|zz\n",
        ),
    )
    .unwrap();
    let out = agentcluster(&["snapshot", "check", hex.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let lines: Vec<&str> = t.lines().collect();
    let at = |n: usize| format!("{}:{n}: ", hex.display());
    for n in [1, 3, 5] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&at(n)))
            .unwrap_or_else(|| panic!("no error on line {n}: {t}"));
        assert!(line.contains("bad hex value"), "{line}");
        assert!(!line.ends_with("(warning)"), "{line}");
    }
    let duplicate = lines
        .iter()
        .position(|l| l.starts_with(&at(4)))
        .unwrap_or_else(|| panic!("the duplicate is not shown: {t}"));
    assert!(lines[duplicate].contains("duplicate OID"), "{t}");
    assert!(lines[duplicate].ends_with("(warning)"), "{t}");
    // In line order: after the error of line 3, before that of line 5.
    assert!(lines[duplicate - 1].starts_with(&at(3)), "{t}");
    assert!(lines[duplicate + 1].starts_with(&at(5)), "{t}");
}

/// The socket holders a task count names (`+ N socket holder…`): as many
/// as the host's open-file limit needs for the fleet's sockets.
fn socket_holders_in(t: &str) -> u64 {
    t.split(" for the supervisor + ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no socket holders in the task count: {t}"))
}

/// A fleet larger than the host can carry fails at `check` and at `run`
/// with the arithmetic, before any agent starts. 120,000 agents, one
/// process each, are estimated at about 95 GiB (more than any CI machine
/// has available) and 240,000 tasks (beyond the default kernel.pid_max);
/// the same agents packed 2,000 per process no longer need that memory.
#[test]
fn a_fleet_larger_than_the_host_fails_with_the_arithmetic() {
    // `check` works through 120,000 agents: seconds of a core.
    let _slot = light();
    let dir = tempdir();
    let snap = mib("linux-host.snmprec");
    let fleet = |per: u32| {
        let mut y = format!(
            "cluster:\n  cache_dir: {cache}\n  state_dir: {state}\n  control_socket: {sock}\n  agents_per_process: {per}\nagents:\n",
            cache = dir.path().join("cache").display(),
            state = dir.path().join("state").display(),
            sock = dir.path().join("control.sock").display(),
        );
        for host in 1..=3 {
            y.push_str(&format!(
                "  - name: \"h{host}-{{i}}\"\n    count: 40000\n    listen: [\"127.0.0.{host}:{{i+20000}}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
                snap.display()
            ));
        }
        y
    };
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, fleet(1)).unwrap();

    let out = agentcluster(&["check", "-c", big.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let memory = t
        .lines()
        .find(|l| l.contains("of memory but"))
        .unwrap_or_else(|| panic!("no memory problem in {t}"));
    assert!(memory.starts_with(&big.display().to_string()), "{memory}");
    assert!(
        memory.contains("needs about 95.2 GiB")
            && memory.contains("120000 processes × 768 KiB + 120000 agents × 64 KiB"),
        "{memory}"
    );
    let holders = socket_holders_in(&t);
    assert!(
        t.contains(&format!(
            "{} tasks (120000 processes × 2 + 64 for the supervisor + {holders} socket holder",
            240_064 + holders
        )),
        "{t}"
    );
    assert!(
        t.contains("capacity: 120000 agents in 120000 processes"),
        "{t}"
    );

    // `run` refuses the same fleet at once: no control socket, no agent.
    let started = std::time::Instant::now();
    let out = agentcluster(&["run", "-c", big.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("of memory but"), "{t}");
    assert!(!dir.path().join("control.sock").exists());
    assert!(started.elapsed() < std::time::Duration::from_secs(60));

    // Packed 2,000 agents per process, memory is no longer the problem.
    let packed = dir.path().join("packed.yaml");
    std::fs::write(&packed, fleet(2000)).unwrap();
    let out = agentcluster(&["check", "-c", packed.to_str().unwrap()]);
    let t = text(&out);
    assert!(!t.contains("of memory but"), "{t}");
    assert!(t.contains("capacity: 120000 agents in 60 processes"), "{t}");

    // A reload that would grow a running fleet to it is refused the same
    // way, the running fleet's share counted as free, and the agent that
    // runs keeps running in the same process.
    let port = free_port();
    let running = Fleet::start(&format!(
        "agents:\n  - name: small\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        snap.display()
    ));
    let pid = pid_of(&running.status(), "small");
    let grown = std::fs::read_to_string(running.config()).unwrap()
        + &fleet(1)[fleet(1).find("agents:\n").unwrap() + "agents:\n".len()..];
    std::fs::write(running.config(), grown).unwrap();
    let out = agentcluster(&["reload", "--control", &running.control()]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("configuration not reloaded") && t.contains("of memory but"),
        "{t}"
    );
    assert!(
        t.contains("and about") && t.contains("the running fleet holds"),
        "{t}"
    );
    sys_name_ok(port);
    assert_eq!(pid_of(&running.status(), "small"), pid);
    let (status, stderr) = running.stop();
    assert!(status.success(), "{status:?}\n{stderr}");
}
