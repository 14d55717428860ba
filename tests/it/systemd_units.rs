//! The shipped systemd files: the service unit read as INI and checked for
//! what the supervisor relies on (readiness, watchdog, kill mode, the one
//! capability, reload), its account and directories matching the sysusers
//! and tmpfiles snippets, and — where `systemd-analyze` is installed — a
//! `systemd-analyze verify` of the unit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use crate::harness::{BIN, output, repo_file, tempdir};

fn file(name: &str) -> (PathBuf, String) {
    let path = repo_file("systemd").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path, text)
}

/// A unit file: section → key → every value it was given, in order (keys
/// may repeat). Comments (`#`, `;`) and blank lines are skipped, a trailing
/// `\` continues a line.
type Unit = HashMap<String, HashMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section: Option<String> = None;
    let mut pending = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with(['#', ';'])) {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let full = std::mem::take(&mut pending) + line;
        if let Some(name) = full.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
            unit.entry(name.to_string()).or_default();
            continue;
        }
        let (key, value) = full
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {raw}", n + 1));
        let section = section
            .as_ref()
            .unwrap_or_else(|| panic!("line {}: outside a section: {raw}", n + 1));
        unit.entry(section.clone())
            .or_default()
            .entry(key.trim().to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    assert!(pending.is_empty(), "the file ends in a continuation");
    unit
}

/// The one value of `key` in `section`.
fn one<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    match unit
        .get(section)
        .and_then(|s| s.get(key))
        .map(Vec::as_slice)
    {
        Some([v]) => v,
        Some(many) => panic!("[{section}] {key} set {} times: {many:?}", many.len()),
        None => panic!("[{section}] {key} is missing"),
    }
}

/// Every word of every value of a list-valued `key`.
fn words<'a>(unit: &'a Unit, section: &str, key: &str) -> Vec<&'a str> {
    unit.get(section)
        .and_then(|s| s.get(key))
        .map(|vs| vs.iter().flat_map(|v| v.split_whitespace()).collect())
        .unwrap_or_default()
}

/// A systemd time span in seconds (`30s`, `5min`, `1min 30s`, `90`).
fn seconds(span: &str) -> u64 {
    span.split_whitespace()
        .map(|part| {
            let digits = part
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(part.len());
            let (n, unit) = part.split_at(digits);
            let n: u64 = n
                .parse()
                .unwrap_or_else(|_| panic!("bad time span {span:?}"));
            n * match unit {
                "" | "s" | "sec" => 1,
                "min" | "m" => 60,
                "h" => 3600,
                other => panic!("unit {other:?} in {span:?}"),
            }
        })
        .sum()
}

fn service() -> Unit {
    parse_unit(&file("agentcluster.service").1)
}

#[test]
fn the_parser_reads_what_systemd_reads() {
    let u = parse_unit(
        "# c\n[Unit]\nDescription=x = y\n; c\n[Service]\nExecStart=/bin/a \\\n  -b\nEnvironment=A=1\nEnvironment=B=2\n",
    );
    assert_eq!(one(&u, "Unit", "Description"), "x = y");
    assert_eq!(one(&u, "Service", "ExecStart"), "/bin/a  -b");
    assert_eq!(words(&u, "Service", "Environment"), ["A=1", "B=2"]);
    assert_eq!(seconds("30s"), 30);
    assert_eq!(seconds("5min"), 300);
    assert_eq!(seconds("1min 30s"), 90);
}

#[test]
fn the_service_notifies_readiness_and_has_a_watchdog() {
    let u = service();
    assert_eq!(one(&u, "Service", "Type"), "notify");
    // Agent processes inherit NOTIFY_SOCKET; only the supervisor counts.
    assert_eq!(one(&u, "Service", "NotifyAccess"), "main");
    let watchdog = seconds(one(&u, "Service", "WatchdogSec"));
    assert!(
        (2..=300).contains(&watchdog),
        "WatchdogSec={watchdog}s: the supervisor pings every half of it"
    );
}

#[test]
fn the_service_is_stopped_by_the_supervisor_and_restarted_on_failure() {
    let u = service();
    assert_eq!(one(&u, "Service", "KillMode"), "mixed");
    assert_eq!(one(&u, "Service", "Restart"), "on-failure");
    // An OOM-killed agent must not stop the whole fleet.
    assert_eq!(one(&u, "Service", "OOMPolicy"), "continue");
    let reload = one(&u, "Service", "ExecReload");
    assert!(
        reload.contains("kill") && reload.contains("-HUP") && reload.contains("$MAINPID"),
        "ExecReload={reload}"
    );
    let nofile: u64 = one(&u, "Service", "LimitNOFILE").parse().expect("a number");
    assert!(nofile >= 65_536, "LimitNOFILE={nofile}");
}

#[test]
fn the_service_runs_as_its_own_user_with_one_capability() {
    let u = service();
    let user = one(&u, "Service", "User");
    assert_eq!(user, "agentcluster");
    assert_eq!(one(&u, "Service", "Group"), "agentcluster");
    assert!(words(&u, "Service", "AmbientCapabilities").contains(&"CAP_NET_BIND_SERVICE"));
    // Not root: nothing but the port capability, not even to give away.
    assert_eq!(
        words(&u, "Service", "CapabilityBoundingSet"),
        ["CAP_NET_BIND_SERVICE"]
    );
    assert_eq!(one(&u, "Service", "NoNewPrivileges"), "yes");
    assert_eq!(one(&u, "Service", "ProtectSystem"), "strict");
    assert_eq!(one(&u, "Service", "ProtectHome"), "yes");
    assert_eq!(one(&u, "Service", "PrivateTmp"), "yes");
    assert!(
        words(&u, "Service", "ReadWritePaths")
            .iter()
            .any(|p| p.trim_start_matches('-') == "/var/lib/hyperv"),
        "the KVP pool must stay writable"
    );

    // The account is the one sysusers creates.
    let (_, sysusers) = file("agentcluster.sysusers");
    let account: Vec<&str> = sysusers.lines().filter(|l| l.starts_with("u ")).collect();
    assert_eq!(account.len(), 1, "{sysusers}");
    assert_eq!(account[0].split_whitespace().nth(1), Some(user));
    assert!(account[0].ends_with(" /var/lib/agentcluster"), "{sysusers}");
}

#[test]
fn the_control_socket_lives_in_the_runtime_directory() {
    let u = service();
    for key in ["StateDirectory", "CacheDirectory", "RuntimeDirectory"] {
        assert_eq!(one(&u, "Service", key), "agentcluster", "{key}");
    }
    let exec: Vec<&str> = one(&u, "Service", "ExecStart").split_whitespace().collect();
    assert_eq!(exec[0], "/usr/bin/agentcluster");
    assert_eq!(exec[1], "run");
    let control = exec
        .iter()
        .position(|w| *w == "--control")
        .and_then(|i| exec.get(i + 1))
        .expect("ExecStart names --control");
    assert_eq!(*control, "/run/agentcluster/control.sock");

    // tmpfiles makes the same three directories for the same user.
    let (_, tmpfiles) = file("agentcluster.tmpfiles");
    for dir in [
        "/var/lib/agentcluster",
        "/var/cache/agentcluster",
        "/run/agentcluster",
    ] {
        let line = tmpfiles
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() >= 5 && f[0] == "d" && f[1] == dir)
            .unwrap_or_else(|| panic!("no `d {dir}` in tmpfiles:\n{tmpfiles}"));
        assert_eq!(line[3..5], ["agentcluster", "agentcluster"], "{dir}");
    }
}

/// `systemd-analyze verify` on the unit, with ExecStart pointing at the
/// binary just built. Skipped (saying so) where systemd is not installed.
#[test]
fn systemd_analyze_verifies_the_unit() {
    let probe = output(Command::new("systemd-analyze").arg("--version"));
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("systemd-analyze not installed: verify skipped");
        return;
    }
    let (_, text) = file("agentcluster.service");
    let dir = tempdir();
    let unit = dir.path().join("agentcluster.service");
    std::fs::write(&unit, text.replace("/usr/bin/agentcluster", BIN)).expect("write unit");
    let out = output(Command::new("systemd-analyze").arg("verify").arg(&unit))
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("agentcluster.service:"),
        "warnings about the unit: {stderr}"
    );
}
