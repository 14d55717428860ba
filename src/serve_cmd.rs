//! `agentcluster serve PATH…`: the snmpsim one-liner. Each path is one
//! device on consecutive ports from `--listen`: a snapshot file with
//! community `public`, a directory served as snmpsim serves a data
//! directory (`data_dir`). Every device also has snmpsim's default SNMPv3
//! user. The fleet is written as YAML (the same writer as `import snmpsim`)
//! into the cache directory and run by the same supervisor as `run`, so a
//! `reload` reads the directories again.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use agentcluster_conf::Fleet;

use crate::UserError;
use crate::import_cmd::{self, DEFAULT_LISTEN, SNMPSIM_USER};
use agentcluster_conf::plural;

/// `serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Snapshot files (.snmprec, .snmpwalk, .sapwalk) or snmpsim data
    /// directories, one device each.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Where the first device listens; the next ones take the next ports.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Compiled snapshots (default: `cluster.cache_dir`'s default).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// snmpEngineBoots and the like (default: `cluster.state_dir`'s default).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// How many communities of one device the ready block shows.
const SHOWN: usize = 10;

pub fn serve(args: ServeArgs, control: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut text = String::from("# Written by `agentcluster serve`: the fleet it runs.\n");
    let mut cluster = String::new();
    let cache_dir = match &args.cache_dir {
        Some(d) => import_cmd::absolute(d)?,
        None => default_cache_dir()?,
    };
    let _ = writeln!(cluster, "  cache_dir: {}", json(&cache_dir));
    if let Some(d) = &args.state_dir {
        let _ = writeln!(cluster, "  state_dir: {}", json(&import_cmd::absolute(d)?));
    }
    let _ = write!(text, "cluster:\n{cluster}agents:\n");
    let mut names = HashSet::new();
    for (i, path) in args.paths.iter().enumerate() {
        let listen = nth_port(args.listen, i)?;
        let abs = import_cmd::absolute(path)?;
        let meta =
            std::fs::metadata(&abs).map_err(|e| UserError(format!("{}: {e}", path.display())))?;
        let mut name = import_cmd::name_of(&abs, "device");
        let mut n = 2;
        while !names.insert(name.clone()) {
            name = format!("{}-{n}", import_cmd::name_of(&abs, "device"));
            n += 1;
        }
        if meta.is_dir() {
            text.push_str(&import_cmd::data_dir_agent(&name, listen, &abs, None));
        } else {
            text.push_str(&import_cmd::file_agent(&name, listen, &abs, None));
        }
    }
    let dir = cache_dir.join("serve");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join(format!(
        "serve-{}-{}.yaml",
        args.listen.ip().to_string().replace(':', "_"),
        args.listen.port()
    ));
    import_cmd::write_private(&file, &text)?;
    let fleet = crate::load_fleet(&file)?;
    let hints = hints(&fleet);
    crate::supervise(fleet, control, move |node, ready, files| {
        print_ready(node, ready, &hints, files);
    })
}

/// The `i`th device's endpoint: the port `i` after `first`'s.
fn nth_port(first: SocketAddr, i: usize) -> anyhow::Result<SocketAddr> {
    if first.port() == 0 {
        return Ok(first);
    }
    let port = u16::try_from(i)
        .ok()
        .and_then(|i| first.port().checked_add(i))
        .ok_or_else(|| UserError(format!("too many paths for the ports after {first}")))?;
    let mut addr = first;
    addr.set_port(port);
    Ok(addr)
}

/// The cache directory a fleet gets when it names none.
fn default_cache_dir() -> anyhow::Result<PathBuf> {
    let source = import_cmd::absolute(Path::new("serve.yaml"))?;
    agentcluster_conf::load_str("agents: []\n", &source)
        .map(|l| l.fleet.cluster.cache_dir)
        .map_err(|p| anyhow::anyhow!("cannot work out the default cache directory: {p:?}"))
}

fn json(p: &Path) -> String {
    serde_json::Value::String(p.to_string_lossy().into_owned()).to_string()
}

/// Per agent: how to reach it, one net-snmp command a line.
fn hints(fleet: &Fleet) -> Vec<(String, Vec<String>)> {
    let (user, auth, privacy) = SNMPSIM_USER;
    fleet
        .agents
        .iter()
        .map(|a| {
            let ep = a
                .listen
                .first()
                .map(|e| e.to_string())
                .unwrap_or_default();
            let communities: Vec<&str> = a
                .snmpv2c
                .iter()
                .flat_map(|c| c.entries.iter().map(|e| e.name.expose()))
                .collect();
            let mut lines: Vec<String> = communities
                .iter()
                .take(SHOWN)
                .map(|c| format!("snmpwalk -v2c -c {} -On {ep} 1.3.6.1.2.1.1", shell(c)))
                .collect();
            if communities.len() > SHOWN {
                lines.push(format!(
                    "… and {} more communities (`agentcluster import snmpsim` lists them)",
                    communities.len() - SHOWN
                ));
            }
            let context = a
                .snmpv3
                .as_ref()
                .and_then(|v3| v3.contexts.first())
                .map(|(c, _)| c.as_str());
            if let Some(context) = context {
                let n = if context.is_empty() {
                    String::new()
                } else {
                    format!(" -n {}", shell(context))
                };
                lines.push(format!(
                    "snmpwalk -v3 -l authPriv -u {user} -a MD5 -A {auth} -x DES -X {privacy}{n} -On {ep} 1.3.6.1.2.1.1"
                ));
            }
            (a.name.clone(), lines)
        })
        .collect()
}

/// `s` quoted for a POSIX shell when it needs it.
fn shell(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn print_ready(
    node: &str,
    ready: &agentcluster_supervisor::Ready,
    hints: &[(String, Vec<String>)],
    files: &crate::ready::Files,
) {
    use std::io::Write as _;
    let n = ready.agents.len();
    let mut out = std::io::stdout().lock();
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
    for (name, lines) in hints {
        if !ready.agents.iter().any(|a| &a.name == name) {
            continue;
        }
        let _ = writeln!(out, "{name}:");
        for l in lines {
            let _ = writeln!(out, "  {l}");
        }
    }
    let _ = write!(out, "{}", files.block());
    let _ = writeln!(out, "Stop with Ctrl-C.");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ports() {
        let a: SocketAddr = "127.0.0.1:1161".parse().unwrap();
        assert_eq!(nth_port(a, 2).unwrap().port(), 1163);
        let top: SocketAddr = "127.0.0.1:65535".parse().unwrap();
        assert!(nth_port(top, 1).is_err());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell("network/switch/x"), "network/switch/x");
        assert_eq!(shell("a b"), "'a b'");
        assert_eq!(shell("it's"), r"'it'\''s'");
    }
}
