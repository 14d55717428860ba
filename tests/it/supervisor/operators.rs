//! What an operator does to a running fleet: stop, start and restart by
//! name and glob, `status`, reload (only what changed is touched; cluster
//! limits reach running agents), and snapshots rewritten under an agent:
//! swapped in, or refused (emptied, cut short, broken) with the old data
//! still served; refused configuration reloads, however asked.

use std::time::Duration;

use serde_json::Value as Json;

use crate::harness::imports::{Signal, probe};
use crate::harness::{
    Fleet, GETBULK_200, WAIT, agent, agentcluster, free_port, free_ports, is, kill, kinds_for, mib,
    pid_of, snmp, snmp_ok, tempdir,
};

use super::agents_yaml;

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
    // (size of the answer to a GETBULK as large as the agent allows,
    // answers to a burst of 40 small GETs: large answers would overflow
    // this socket's receive buffer whenever the test is slow to read)
    let measure = || {
        let mut buf = [0u8; 65_536];
        sock.send_to(&GETBULK_200, ("127.0.0.1", port)).unwrap();
        let (n, _) = sock.recv_from(&mut buf).expect("an answer");
        for id in 1..=40 {
            let get = probe::request(b"public", false, id);
            sock.send_to(&get, ("127.0.0.1", port)).unwrap();
        }
        let mut answered = 0;
        while sock.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
        (n, answered)
    };
    let (big, all) = measure();
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
    let (n, answered) = measure();
    assert!(
        n <= 1200 && n > 200 && answered <= 10,
        "limits not applied: {n} bytes, {answered} of 40"
    );
    assert_eq!(pid_of(&fleet.status(), "lim"), pid, "no restart for limits");

    let msg = reload(&original);
    assert!(msg.contains("applied to every agent"), "{msg}");
    let (n, answered) = measure();
    assert!(
        n > 1200 && answered == 40,
        "limits not lifted: {n} bytes, {answered} of 40"
    );
    assert_eq!(pid_of(&fleet.status(), "lim"), pid);
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

/// A served snapshot emptied (`: > file`), cut to less than half its
/// records, or broken is refused: the agent keeps answering from the old
/// data, a `reload-failed` event of the agent names the file and why, and
/// the supervisor logs it as an error. A good rewrite afterwards is
/// swapped in.
#[test]
fn an_emptied_shrunk_or_broken_snapshot_is_refused_and_the_old_data_served() {
    let port = free_port();
    let dir = tempdir();
    let snap = dir.path().join("dev.snmprec");
    std::fs::write(
        &snap,
        "1.3.6.1.2.1.1.1.0|4|first version\n1.3.6.1.2.1.1.4.0|4|ops\n\
         1.3.6.1.2.1.1.5.0|4|dev\n1.3.6.1.2.1.1.6.0|4|lab\n",
    )
    .unwrap();
    let yaml = format!(
        "agents:\n  - name: hot\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        snap.display()
    );
    let fleet = Fleet::start(&yaml);
    let target = format!("127.0.0.1:{port}");
    let pid = pid_of(&fleet.status(), "hot");
    let sys_descr = || {
        snmp_ok(
            "snmpget",
            &["-v2c", "-c", "public", &target, ".1.3.6.1.2.1.1.1.0"],
        )
    };
    assert!(sys_descr().contains("first version"));

    let named = format!("snapshot {} not reloaded: ", snap.display());
    // A file without records does not compile: the error names the file.
    let empty = format!(
        "{}: no records: the file is empty or holds only blank lines and comments",
        snap.display()
    );
    let cases: [(&str, &dyn Fn(), &str); 3] = [
        (
            "emptied",
            &|| drop(std::fs::File::create(&snap).unwrap()),
            &empty,
        ),
        (
            "cut to one record of four",
            &|| std::fs::write(&snap, "1.3.6.1.2.1.1.5.0|4|dev\n").unwrap(),
            "it has 1 records where 4 are served: 75.0% lost",
        ),
        (
            "broken",
            &|| std::fs::write(&snap, "1.3.6.1.2.1.1.1.0|4|x\nnot a record\n").unwrap(),
            "dev.snmprec:2",
        ),
    ];
    for (what, damage, why) in cases {
        let since = fleet.next_seq();
        let mark = fleet.stderr().len();
        damage();
        let e = fleet.wait_event(since, &format!("reload-failed: {what}"), |e| {
            is(e, "hot", "reload-failed") && e["reason"].as_str().is_some_and(|r| r.contains(why))
        });
        let reason = e["reason"].as_str().unwrap();
        assert!(reason.starts_with(&named), "{what}: {reason}");
        assert_eq!(e["pid"], pid, "{what}: {e}");
        assert_eq!(e["state"], "running", "{what}: {e}");
        assert!(
            fleet
                .stderr()
                .wait_for(mark, WAIT, |l| l.contains("ERROR") && l.contains(why))
                .is_some(),
            "{what}: no error logged; the log ends with:\n{}",
            fleet.stderr().tail(20)
        );
        assert!(
            sys_descr().contains("first version"),
            "{what}: the old data is still served"
        );
    }
    let refused: Vec<Json> = fleet
        .events()
        .into_iter()
        .filter(|e| is(e, "hot", "data-reloaded"))
        .collect();
    assert!(refused.is_empty(), "nothing was swapped: {refused:?}");

    let since = fleet.next_seq();
    std::fs::write(
        &snap,
        "1.3.6.1.2.1.1.1.0|4|second version\n1.3.6.1.2.1.1.5.0|4|dev\n",
    )
    .unwrap();
    fleet.wait_event(since, "data-reloaded", |e| is(e, "hot", "data-reloaded"));
    assert!(sys_descr().contains("second version"));
    assert_eq!(pid_of(&fleet.status(), "hot"), pid, "no restart");
}

/// A configuration that does not load, reloaded by `agentcluster reload`
/// or by SIGHUP, changes nothing: each time a `reload-failed` event of the
/// supervisor names the file and the problem, the supervisor logs it as
/// an error (saying who asked), and the event reaches the KVP pool too.
#[test]
fn a_refused_configuration_reload_is_published_and_logged_however_asked() {
    let pool_dir = tempdir();
    let pool = pool_dir.path().join("kvp_pool_1");
    let port = free_port();
    let yaml = format!(
        "events:\n  kvp:\n    path: {}\n{}",
        pool.display(),
        agents_yaml(&[("steady", port)])
    );
    let fleet = Fleet::start(&yaml);
    let pid = pid_of(&fleet.status(), "steady");
    let path = fleet.config();
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("  - name: steady", "  - nme: steady")).unwrap();
    let config = path.display().to_string();

    let asks: [(&str, &dyn Fn()); 2] = [
        ("agentcluster reload", &|| {
            let out = agentcluster(&["reload", "--control", &fleet.control()]);
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("unknown field `nme`"),
                "{out:?}"
            );
        }),
        ("SIGHUP", &|| kill(fleet.pid(), Signal::SIGHUP)),
    ];
    for (by, ask) in asks {
        let since = fleet.next_seq();
        let mark = fleet.stderr().len();
        ask();
        let e = fleet.wait_event(since, &format!("reload-failed by {by}"), |e| {
            is(e, "", "reload-failed")
        });
        let reason = e["reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!("configuration {config} not reloaded: "))
                && reason.contains("unknown field `nme`"),
            "{by}: {reason}"
        );
        assert_eq!(e["pid"], fleet.pid(), "{by}: {e}");
        assert!(
            fleet
                .stderr()
                .wait_for(mark, WAIT, |l| l.contains("ERROR")
                    && l.contains("configuration not reloaded")
                    && l.contains(by))
                .is_some(),
            "{by}: no error logged; the log ends with:\n{}",
            fleet.stderr().tail(20)
        );
    }
    assert_eq!(pid_of(&fleet.status(), "steady"), pid, "nothing changed");
    let (status, stderr) = fleet.stop();
    assert!(status.success(), "{status:?}: {stderr}");
    let dump = agentcluster(&["kvp", "dump", &pool.display().to_string()]);
    let text = String::from_utf8_lossy(&dump.stdout);
    let kvp: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("|reload-failed||"))
        .collect();
    assert_eq!(kvp.len(), 2, "{text}");
}
