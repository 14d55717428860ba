//! `docs/troubleshooting.md`, reproduced: each entry's situation is
//! provoked here, and what the user sees must still contain the text the
//! entry quotes under **You see** (its `…` stand for the parts that vary).
//! So the page cannot drift from the messages.

use std::net::UdpSocket;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use crate::harness::{
    BIN, Fleet, WAIT, agentcluster, free_port, is, mib, output, repo_file, snmp, snmp_ok, tempdir,
    text,
};

/// Every entry of the page, by the name in its `<!-- test: NAME -->`
/// marker; each has a test of the same name below.
const ENTRIES: [&str; 13] = [
    "port_in_use",
    "privileged_port",
    "address_not_on_host",
    "snapshot_not_found",
    "unknown_key",
    "open_files",
    "cannot_reach",
    "timeout_community",
    "v3_auth",
    "unknown_oid",
    "agent_failed",
    "reload_failed",
    "kvp_disabled",
];

/// The entries of the page: marker name → the lines quoted under "You see".
fn entries() -> Vec<(String, Vec<String>)> {
    let page = std::fs::read_to_string(repo_file("docs/troubleshooting.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix("<!-- test: ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        let block: Vec<String> = lines
            .by_ref()
            .skip_while(|l| *l != "```text")
            .skip(1)
            .take_while(|l| *l != "```")
            .map(str::to_string)
            .collect();
        assert!(!block.is_empty(), "entry {name} quotes nothing");
        out.push((name.to_string(), block));
    }
    out
}

/// Asserts that `output` shows what entry `name` quotes: each quoted line,
/// cut at its `…`, appears in one line of `output` with its pieces in
/// order.
fn shows(name: &str, output: &str) {
    let (_, quoted) = entries()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("docs/troubleshooting.md has no entry {name}"));
    for q in &quoted {
        let pieces: Vec<&str> = q
            .split('…')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let found = output.lines().any(|line| {
            let mut rest = line;
            pieces.iter().all(|p| match rest.find(p) {
                Some(at) => {
                    rest = &rest[at + p.len()..];
                    true
                }
                None => false,
            })
        });
        assert!(
            found,
            "entry {name}: the page quotes\n  {q}\nbut the output was:\n{output}"
        );
    }
}

#[test]
fn every_entry_of_the_page_has_its_test() {
    let names: Vec<String> = entries().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names, ENTRIES,
        "docs/troubleshooting.md's entries and ENTRIES differ"
    );
}

/// A fleet file of one agent on `listen` serving `data`, with everything
/// else in `dir`.
fn one_agent(dir: &std::path::Path, listen: &str, data: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("fleet.yaml");
    std::fs::write(
        &path,
        format!(
            "cluster:\n  cache_dir: {d}/cache\n  state_dir: {d}/state\n  control_socket: {d}/control.sock\n\
             agents:\n  - name: dev\n    listen: [\"{listen}\"]\n    data: {data}\n    \
             snmpv2c: {{ communities: [public] }}\n{extra}",
            d = dir.display()
        ),
    )
    .unwrap();
    path
}

fn linux_host() -> String {
    mib("linux-host.snmprec").display().to_string()
}

#[test]
fn port_in_use() {
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let dir = tempdir();
    let fleet = one_agent(dir.path(), &taken.to_string(), &linux_host(), "");
    let out = agentcluster(&["run", "-c", fleet.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    shows("port_in_use", &text(&out));
    assert!(
        text(&out).contains(&format!("sport = :{}", taken.port())),
        "{}",
        text(&out)
    );
}

#[test]
fn privileged_port() {
    // As root the supervisor may bind port 161: run it as `nobody`, in a
    // directory of nobody's own (the control socket refuses others).
    let dir = tempdir();
    let mut cmd = Command::new("setpriv");
    if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        let ids: Vec<u32> = passwd
            .lines()
            .find_map(|l| l.strip_prefix("nobody:"))
            .map(|l| {
                l.split(':')
                    .skip(1)
                    .take(2)
                    .map(|n| n.parse().unwrap())
                    .collect()
            })
            .expect("a nobody account");
        std::os::unix::fs::chown(dir.path(), Some(ids[0]), Some(ids[1])).unwrap();
        cmd.arg(format!("--reuid={}", ids[0]))
            .arg(format!("--regid={}", ids[1]))
            .arg("--clear-groups");
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fleet = one_agent(dir.path(), "127.0.0.1:161", &linux_host(), "");
    cmd.arg(BIN)
        .args(["run", "-c"])
        .arg(&fleet)
        .env("HOME", dir.path())
        .env_remove("XDG_RUNTIME_DIR");
    let out = output(&mut cmd).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    shows("privileged_port", &text(&out));
}

#[test]
fn address_not_on_host() {
    // 192.0.2.0/24 is for documentation: on no host.
    let dir = tempdir();
    let fleet = one_agent(dir.path(), "192.0.2.7:1161", &linux_host(), "");
    let out = agentcluster(&["check", "-c", fleet.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "a warning only: {}", text(&out));
    assert!(text(&out).contains("192.0.2.7"), "{}", text(&out));
    let out = agentcluster(&["run", "-c", fleet.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    shows("address_not_on_host", &text(&out));
}

#[test]
fn snapshot_not_found() {
    let dir = tempdir();
    let missing = dir.path().join("missing.snmprec");
    let fleet = one_agent(
        dir.path(),
        "127.0.0.1:1161",
        &missing.display().to_string(),
        "",
    );
    for command in ["check", "run"] {
        let out = agentcluster(&[command, "-c", fleet.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", text(&out));
        shows("snapshot_not_found", &text(&out));
    }
}

#[test]
fn unknown_key() {
    let dir = tempdir();
    let path = dir.path().join("fleet.yaml");
    std::fs::write(
        &path,
        format!(
            "agents:\n  - name: dev\n    listen: 127.0.0.1:1161\n    data: {}\n    snmpv2c: {{comunities: [public]}}\n",
            linux_host()
        ),
    )
    .unwrap();
    let out = agentcluster(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    shows("unknown_key", &text(&out));
}

#[test]
fn open_files() {
    let dir = tempdir();
    let path = dir.path().join("fleet.yaml");
    std::fs::write(
        &path,
        format!(
            "agents:\n  - name: dev-{{i}}\n    count: 300\n    listen: 127.0.0.1:{{i+30000}}\n    data: {}\n    snmpv2c: {{communities: [public]}}\n",
            linux_host()
        ),
    )
    .unwrap();
    let script = format!("ulimit -n 600 && exec {BIN} check -c {}", path.display());
    let out = output(Command::new("sh").args(["-c", &script])).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    shows("open_files", &text(&out));
    // The fix the page gives first works: 300 agents in 6 processes fit in
    // 600 descriptors where 300 processes need about 730 in the supervisor
    // (the socket holders keep the 300 sockets).
    let packed = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("cluster:\n  agents_per_process: 50\n{packed}"),
    )
    .unwrap();
    let out = output(Command::new("sh").args(["-c", &script])).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn cannot_reach() {
    let dir = tempdir();
    let socket = dir.path().join("control.sock");
    let out = agentcluster(&["status", "--control", socket.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    shows("cannot_reach", &text(&out));
}

/// A running fleet of one agent `dev` (community `public`) and its
/// address: `cluster` goes on the fleet's `cluster:` mapping (indented
/// lines), `extra` after the agent (its own keys, or top-level ones).
fn serving(cluster: &str, extra: &str) -> (Fleet, String) {
    let port = free_port();
    let fleet = Fleet::start(&format!(
        "{cluster}agents:\n  - name: dev\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    \
         snmpv2c: {{ communities: [public] }}\n{extra}",
        linux_host()
    ));
    (fleet, format!("127.0.0.1:{port}"))
}

#[test]
fn timeout_community() {
    let (_fleet, target) = serving("", "");
    let out = snmp(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "privat",
            "-r",
            "0",
            "-t",
            "1",
            &target,
            "1.3.6.1.2.1.1.5.0",
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    shows("timeout_community", &text(&out));
    // The counter the page points at counted it.
    let bad = snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-Oqv",
            &target,
            "1.3.6.1.2.1.11.4.0",
        ],
    );
    assert!(
        bad.trim().parse::<u64>().unwrap() >= 1,
        "snmpInBadCommunityNames: {bad}"
    );
}

#[test]
fn v3_auth() {
    let (_fleet, target) = serving(
        "",
        "    snmpv3:\n      users:\n        - name: alice\n          auth: { protocol: SHA, password: alice-pass }\n",
    );
    let get = |user: &str, proto: &str, pass: &str| {
        let out = snmp(
            "snmpget",
            &[
                "-v3",
                "-l",
                "authNoPriv",
                "-u",
                user,
                "-a",
                proto,
                "-A",
                pass,
                "-r",
                "0",
                &target,
                "1.3.6.1.2.1.1.5.0",
            ],
        );
        assert!(!out.status.success(), "{}", text(&out));
        text(&out)
    };
    let both = format!(
        "{}\n{}\n{}",
        get("alice", "SHA", "wrong-pass"),
        get("alice", "MD5", "alice-pass"),
        get("bob", "SHA", "alice-pass")
    );
    shows("v3_auth", &both);
    // And the right ones answer.
    snmp_ok(
        "snmpget",
        &[
            "-v3",
            "-l",
            "authNoPriv",
            "-u",
            "alice",
            "-a",
            "SHA",
            "-A",
            "alice-pass",
            &target,
            "1.3.6.1.2.1.1.5.0",
        ],
    );
}

#[test]
fn unknown_oid() {
    let (_fleet, target) = serving("", "");
    // `snmp` runs net-snmp without MIB files, as Debian ships it.
    let out = snmp("snmpwalk", &["-v2c", "-c", "public", &target, "system"]);
    assert!(!out.status.success(), "{}", text(&out));
    shows("unknown_oid", &text(&out));
    let walked = snmp_ok(
        "snmpwalk",
        &["-v2c", "-c", "public", &target, "1.3.6.1.2.1.1"],
    );
    assert!(walked.lines().count() >= 5, "{walked}");
}

#[test]
fn agent_failed() {
    // An agent process needs more than 1 MiB: each run ends unresponsive,
    // and the second restart within the window is one too many.
    let (fleet, _) = serving(
        "  heartbeat: 200ms\n  restart: { max_restarts: 1, backoff: 10ms..20ms }\n",
        "    memory_max: 1M\n",
    );
    fleet.wait_event(1, "failed", |e| is(e, "dev", "failed"));
    let events = agentcluster(&["events", "--control", &fleet.control()]);
    shows("agent_failed", &text(&events));
    assert!(
        text(&events).contains("over the limit of 1048576"),
        "{}",
        text(&events)
    );
    let status = agentcluster(&["status", "--control", &fleet.control()]);
    assert!(text(&status).contains("failed"), "{}", text(&status));
}

#[test]
fn reload_failed() {
    let dir = tempdir();
    let snap = dir.path().join("dev.snmprec");
    std::fs::copy(mib("linux-host.snmprec"), &snap).unwrap();
    let port = free_port();
    let fleet = Fleet::start(&format!(
        "agents:\n  - name: dev\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    \
         snmpv2c: {{ communities: [public] }}\n",
        snap.display()
    ));
    let since = fleet.next_seq();
    std::fs::File::create(&snap).unwrap();
    fleet.wait_event(since, "reload-failed", |e| is(e, "dev", "reload-failed"));
    let out = agentcluster(&["events", "--control", &fleet.control()]);
    shows("reload_failed", &text(&out));
}

#[test]
fn kvp_disabled() {
    let dir = tempdir();
    let pool = dir.path().join("no-such-dir").join("pool");
    let (fleet, _) = serving(
        "",
        &format!("events:\n  kvp:\n    path: {}\n", pool.display()),
    );
    let at = fleet
        .stderr()
        .wait_for(0, WAIT, |l| l.contains("KVP sink disabled"))
        .unwrap_or_else(|| {
            panic!(
                "no warning; the log ends with:\n{}",
                fleet.stderr().tail(20)
            )
        });
    shows("kvp_disabled", &fleet.stderr().get(at).unwrap());
}
