//! The operator commands (`status`, `restart`, …) when no supervisor can be
//! reached: exit 3, naming the socket that was tried. The commands against a
//! live supervisor are tested end to end with the supervisor itself.

use std::process::{Command, Output};

use crate::harness::{BIN, output, tempdir};

fn run(args: &[&str]) -> Output {
    output(Command::new(BIN).args(args).env_remove("XDG_RUNTIME_DIR")).expect("run agentcluster")
}

#[test]
fn status_without_a_supervisor_exits_3_naming_the_socket() {
    let out = run(&["status", "--control", "/nonexistent/x.sock"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("/nonexistent/x.sock"), "{stderr}");
    assert!(stderr.contains("--control"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn every_operator_command_exits_3_on_a_stale_socket() {
    let dir = tempdir();
    let path = dir.path().join("control.sock");
    // a socket file nobody listens on: connection refused
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let p = path.to_str().expect("utf-8 temp path");
    for args in [
        &["--control", p, "status", "--json"][..],
        &["restart", "--control", p, "a*"],
        &["stop", "--control", p, "a"],
        &["start", "--control", p, "a"],
        &["reload", "--control", p],
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains(p), "{args:?}: {stderr}");
    }
}
