//! What `agentcluster run` prints once its agents serve: how many, how to
//! query them with net-snmp (numeric OIDs: Debian's net-snmp ships no MIB
//! files, so `system` would be an unknown object), where its files are, and
//! an `agentcluster status` command line that reaches it as printed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use agentcluster_conf::{plural, plural_es};
use agentcluster_supervisor::protocol::default_control_socket;

/// The OID the hints walk: the system group (`1.3.6.1.2.1.1`).
const SYSTEM: &str = "1.3.6.1.2.1.1";

/// Where a running supervisor keeps its files, and how to reach it.
pub struct Files {
    cache: PathBuf,
    state: PathBuf,
    control: PathBuf,
    kvp: Option<PathBuf>,
    status: String,
}

impl Files {
    /// The files of `fleet` run with its control socket at `control`.
    pub fn of(fleet: &agentcluster_conf::Fleet, control: &Path) -> Files {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let control = absolute(control);
        let status = if control == absolute(&default_control_socket()) {
            "agentcluster status".to_string()
        } else {
            format!(
                "agentcluster status --control {}",
                shell_word(&control.to_string_lossy())
            )
        };
        Files {
            cache: absolute(&fleet.cluster.cache_dir),
            state: absolute(&fleet.cluster.state_dir),
            control,
            kvp: fleet.events.kvp.as_ref().map(|k| absolute(&k.path)),
            status,
        }
    }
}

/// Prints the ready block on stdout; its last line is `Stop with Ctrl-C.`.
pub fn print(node: &str, ready: &agentcluster_supervisor::Ready, default: bool, files: &Files) {
    let _ = std::io::stdout()
        .lock()
        .write_all(text(node, ready, default, files).as_bytes());
    let _ = std::io::stdout().flush();
}

fn text(
    node: &str,
    ready: &agentcluster_supervisor::Ready,
    default: bool,
    files: &Files,
) -> String {
    use std::fmt::Write as _;
    let n = ready.agents.len();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "agentcluster: {} ready on node {node}",
        plural(n, "agent")
    );
    if !ready.failed.is_empty() {
        let _ = writeln!(
            out,
            "agentcluster: {} failed to start: {}",
            plural(ready.failed.len(), "agent"),
            ready.failed.join(", ")
        );
    }
    if let Some(interface) = &ready.interface
        && !ready.added.is_empty()
    {
        let added: Vec<String> = ready.added.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "agentcluster: added {} to {interface} (removed at shutdown): {}",
            plural_es(added.len(), "listen address"),
            added.join(", ")
        );
    }
    if default {
        let _ = writeln!(out, "Query them with net-snmp, for example:");
    }
    for a in ready
        .agents
        .iter()
        .take(if default { usize::MAX } else { 10 })
    {
        for ep in &a.endpoints {
            // net-snmp reads `[::1]:161` as a host name; `udp6:` says IPv6.
            let target = if ep.is_ipv6() {
                format!("udp6:{ep}")
            } else {
                ep.to_string()
            };
            let _ = writeln!(
                out,
                "  snmpwalk -v2c -c public {target} {SYSTEM}    # {}",
                a.name
            );
        }
    }
    if !default && n > 10 {
        let _ = writeln!(out, "  … and {} more ({})", n - 10, files.status);
    }
    out.push_str(&files.block());
    let _ = writeln!(out, "Stop with Ctrl-C.");
    out
}

impl Files {
    /// The `Files:` lines and the `Status:` command line.
    pub fn block(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "Files:");
        let _ = writeln!(out, "  cache:          {}", self.cache.display());
        let _ = writeln!(out, "  state:          {}", self.state.display());
        let _ = writeln!(out, "  control socket: {}", self.control.display());
        if let Some(kvp) = &self.kvp {
            let _ = writeln!(out, "  KVP pool:       {}", kvp.display());
        }
        let _ = writeln!(out, "Status: {}", self.status);
        out
    }
}

/// `s` as one word for a POSIX shell: as it is when it needs no quoting,
/// else in single quotes.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_the_shell_needs_it() {
        assert_eq!(
            shell_word("/run/agentcluster/control.sock"),
            "/run/agentcluster/control.sock"
        );
        assert_eq!(shell_word("/tmp/my dir/c.sock"), "'/tmp/my dir/c.sock'");
        assert_eq!(shell_word("/tmp/it's"), r"'/tmp/it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
