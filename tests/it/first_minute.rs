//! The first minute of a new user on stock Debian: `agentcluster run` of
//! the default fleet starts without a warning, and every command line its
//! ready block prints (the net-snmp hints, `agentcluster status`) works
//! exactly as printed — with a net-snmp that has no MIB files, as Debian's
//! has none. README's object counts are what `snapshot check` reports.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::{BIN, Fleet, agentcluster, free_port, mib, output, repo_file, tempdir, text};

/// Runs a printed command line (words split on blanks, the `# …` comment
/// dropped) as a shell would, with `agentcluster` found on PATH and
/// net-snmp as Debian ships it: no MIB modules, no MIB files, no config.
fn run_printed(line: &str, env: &[(&str, &Path)]) -> Output {
    let command = line.split('#').next().unwrap_or_default().trim();
    let nomibs = tempdir();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("timeout");
    cmd.arg("120")
        .arg("sh")
        .arg("-c")
        .arg(command)
        .env("PATH", path)
        .env("MIBS", "")
        .env("MIBDIRS", nomibs.path())
        .env("SNMPCONFPATH", "/dev/null");
    for (k, v) in env {
        cmd.env(k, v);
    }
    output(&mut cmd).unwrap()
}

/// The default fleet binds fixed ports (10161-10163); this is the only test
/// that uses them.
#[test]
fn the_default_fleet_starts_quietly_and_its_hints_work_as_printed() {
    let dir = tempdir();
    let (cache, state, run) = (
        dir.path().join("cache"),
        dir.path().join("state"),
        dir.path().join("run"),
    );
    let env = [
        ("XDG_CACHE_HOME", cache.as_path()),
        ("XDG_STATE_HOME", state.as_path()),
        ("XDG_RUNTIME_DIR", run.as_path()),
    ];
    let mut cmd = Command::new(BIN);
    cmd.arg("run");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let fleet = Fleet::spawn(cmd, dir);
    let banner = fleet.banner.join("\n");
    assert!(banner.contains("3 agents ready"), "{banner}");

    // Every hint, run as printed, answers the system group.
    let hints: Vec<&String> = fleet
        .banner
        .iter()
        .filter(|l| l.trim_start().starts_with("snmpwalk "))
        .collect();
    assert_eq!(hints.len(), 3, "{banner}");
    for port in [10161, 10162, 10163] {
        let hint = hints
            .iter()
            .find(|h| h.contains(&format!("127.0.0.1:{port} ")))
            .unwrap_or_else(|| panic!("no hint for port {port}: {banner}"));
        let out = run_printed(hint, &env);
        let t = text(&out);
        assert!(out.status.success(), "{hint}: {t}");
        // sysDescr.0, numeric as net-snmp without MIBs prints it.
        assert!(t.contains("iso.3.6.1.2.1.1.1.0 = "), "{hint}: {t}");
        assert!(!t.contains("Unknown Object Identifier"), "{hint}: {t}");
    }

    // Where its files are, and how to reach it: as printed.
    // (As root the defaults are /var/cache and /var/lib, else under the
    // XDG directories: absolute, and there.)
    for label in ["cache:", "state:"] {
        let line = fleet
            .banner
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} line: {banner}"));
        let path = Path::new(line.trim());
        assert!(path.is_absolute() && path.is_dir(), "{label} {line}");
    }
    let socket = run.join("agentcluster/control.sock");
    assert!(
        banner.contains(&format!("control socket: {}", socket.display())),
        "{banner}"
    );
    let status = fleet
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("Status: "))
        .unwrap_or_else(|| panic!("no Status: line: {banner}"));
    assert_eq!(status, "agentcluster status");
    let out = run_printed(status, &env);
    let t = text(&out);
    assert!(out.status.success(), "{status}: {t}");
    for name in ["core-switch", "linux-host", "ups"] {
        assert!(t.contains(name), "{status}: {t}");
    }

    // Nothing to warn about, and no colour codes in a log that is a pipe.
    let (exit, stderr) = fleet.stop();
    assert!(exit.success(), "exit {exit:?}: {stderr}");
    assert!(
        !stderr.contains("WARN") && !stderr.to_lowercase().contains("warning"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "escape codes on a pipe: {stderr:?}"
    );
}

/// A fleet with `control_socket` of its own: the printed status command
/// names it, and works as printed from anywhere.
#[test]
fn the_printed_status_command_reaches_a_fleet_with_its_own_socket() {
    let fleet = Fleet::start(&format!(
        "agents:\n  - name: solo\n    listen: [\"127.0.0.1:{}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        free_port(),
        mib("linux-host.snmprec").display()
    ));
    let status = fleet
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("Status: "))
        .unwrap_or_else(|| panic!("no Status: line: {:?}", fleet.banner));
    assert_eq!(
        status,
        format!("agentcluster status --control {}", fleet.control())
    );
    // Elsewhere, with a default socket that is not this one.
    let elsewhere = tempdir();
    let out = run_printed(status, &[("XDG_RUNTIME_DIR", elsewhere.path())]);
    let t = text(&out);
    assert!(out.status.success(), "{status}: {t}");
    assert!(t.contains("solo") && t.contains("running"), "{t}");
    assert!(
        fleet
            .banner
            .iter()
            .any(|l| l.contains("snmpwalk -v2c -c public") && l.contains(" 1.3.6.1.2.1.1 ")),
        "{:?}",
        fleet.banner
    );
}

/// README.md and mibs/README.md give each shipped snapshot's object count:
/// the count `snapshot check` reports, with no warning.
#[test]
fn readme_object_counts_match_snapshot_check() {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let table = std::fs::read_to_string(repo_file("mibs/README.md")).unwrap();
    let count = |s: &str| s.replace(',', "").parse::<usize>().ok();
    for file in [
        "cisco-c3750.snmprec",
        "linux-host.snmprec",
        "apc-ups.snmprec",
    ] {
        let out = agentcluster(&["snapshot", "check", mib(file).to_str().unwrap()]);
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        let checked = t
            .lines()
            .find_map(|l| l.split(": ok, ").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(count)
            .unwrap_or_else(|| panic!("no count in {t}"));
        assert!(
            t.contains(": ok, ") && t.contains(", 0 warnings"),
            "{file}: {t}"
        );
        // README: "(`FILE`, N objects)" (the text may wrap after the comma).
        let at = readme
            .find(&format!("`{file}`,"))
            .unwrap_or_else(|| panic!("{file} not in README.md"));
        let said = readme[at + file.len() + 3..]
            .split_whitespace()
            .next()
            .and_then(count);
        assert_eq!(said, Some(checked), "README.md on {file}");
        // mibs/README.md: "| `FILE` | device | N | from |".
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| `{file}` |")))
            .unwrap_or_else(|| panic!("{file} not in mibs/README.md"));
        let said = row.split('|').nth(3).map(str::trim).and_then(count);
        assert_eq!(said, Some(checked), "mibs/README.md on {file}");
    }
}
