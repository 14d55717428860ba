//! Supervision end to end: real agent processes, real signals, the control
//! socket, net-snmp clients. Waits are on answers (an SNMP request that the
//! kernel holds until the restarted agent reads it), on the event stream,
//! on log lines and on process exits, never on sleeps.

mod faults;
mod holders;
mod memory;
mod operators;
mod processes;
mod responsive;
mod scale;
mod start;

use std::path::Path;

use crate::harness::imports::procs;
use crate::harness::mib;

fn agents_yaml(names: &[(&str, u16)]) -> String {
    let mut y = String::from("agents:\n");
    for (name, port) in names {
        y += &format!(
            "  - name: {name}\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            mib("linux-host.snmprec").display()
        );
    }
    y
}

/// A stand-in agent program, for handshakes that go wrong.
fn fake_agent(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// Children of `parent`: pid, argv joined by spaces, run state.
fn children(parent: u32) -> Vec<(u32, String, char)> {
    procs::children(parent)
        .into_iter()
        .map(|pid| (pid, procs::cmdline(pid), procs::state(pid).unwrap_or('?')))
        .collect()
}
