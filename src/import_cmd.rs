//! `agentcluster import`: a fleet YAML equivalent to what another simulator
//! serves. `import snmpsim DIR` writes an agent with `data_dir: DIR` and
//! snmpsim's default SNMPv3 user; `import agentcluster ROOT…` reads every
//! `.agent` file under the roots (as the Python agentcluster does with its
//! `--agent-dir`s) through the same loader as `include:`, and writes the
//! checked agents out as YAML. `serve` builds its fleet with the same
//! writer.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use agentcluster_conf::{Agent, Communities, Fleet};

use crate::UserError;

/// What to import.
#[derive(Subcommand)]
pub enum ImportCommand {
    /// Write a fleet YAML that serves an snmpsim data directory as
    /// `snmpsim-command-responder --data-dir=DIR` does.
    Snmpsim(SnmpsimArgs),
    /// Write a fleet YAML equivalent to a tree of legacy (Python
    /// agentcluster) `.agent` files.
    Agentcluster(AgentclusterArgs),
}

/// `import snmpsim`.
#[derive(Args)]
pub struct SnmpsimArgs {
    /// The snmpsim data directory.
    pub dir: PathBuf,
    /// Where the agent listens.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Write to FILE instead of stdout (snapshot paths are then relative
    /// to FILE's directory).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `import agentcluster`.
#[derive(Args)]
pub struct AgentclusterArgs {
    /// Root directories searched recursively for `*.agent` files.
    #[arg(required = true, value_name = "ROOT")]
    pub roots: Vec<PathBuf>,
    /// Write to FILE instead of stdout (snapshot paths are then relative
    /// to FILE's directory).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Where `serve` and `import snmpsim` listen unless told.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1161";

/// snmpsim's SNMPv3 user when it is given none
/// (`snmpsim/commands/responder.py`): `simulator`, MD5 `auctoritas`, DES
/// `privatus`.
pub const SNMPSIM_USER: (&str, &str, &str) = ("simulator", "auctoritas", "privatus");

pub fn run(command: ImportCommand) -> anyhow::Result<ExitCode> {
    let (text, output) = match command {
        ImportCommand::Snmpsim(args) => {
            let dir = absolute(&args.dir)?;
            if !dir.is_dir() {
                return Err(UserError(format!("{} is not a directory", args.dir.display())).into());
            }
            let base = output_dir(args.output.as_deref())?;
            let mut text = header(&format!("import snmpsim {}", args.dir.display()));
            text.push_str("agents:\n");
            text.push_str(&data_dir_agent(
                &name_of(&dir, "snmpsim"),
                args.listen,
                &dir,
                base.as_deref(),
            ));
            (text, args.output)
        }
        ImportCommand::Agentcluster(args) => {
            let base = output_dir(args.output.as_deref())?;
            let fleet = load_legacy(&args.roots)?;
            let mut text = header(&format!(
                "import agentcluster {}",
                args.roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            text.push_str("agents:\n");
            for agent in &fleet.agents {
                text.push_str(&agent_yaml(agent, base.as_deref()));
            }
            (text, args.output)
        }
    };
    match output {
        Some(path) => write_private(&path, &text)?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The first lines of a written fleet.
fn header(what: &str) -> String {
    format!("# Written by `agentcluster {what}`.\n")
}

/// Writes `text` to `path`, readable by its owner only: it holds secrets.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The absolute directory of `output`, which relative snapshot paths are
/// written against; `None` for stdout (paths are then absolute).
fn output_dir(output: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    let Some(output) = output else {
        return Ok(None);
    };
    let abs = absolute(output)?;
    Ok(abs.parent().map(Path::to_path_buf))
}

/// `path` made absolute and lexically clean (no `.`, no `..`).
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let abs =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    Ok(out)
}

/// A device name from a path: its file stem, or `fallback`.
pub fn name_of(path: &Path, fallback: &str) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(|s| {
            s.chars()
                .map(|c| {
                    if c.is_control() || "|/*?[]".contains(c) {
                        '_'
                    } else {
                        c
                    }
                })
                .collect::<String>()
        })
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| fallback.to_string())
}

/// A YAML scalar: a JSON string is a YAML double-quoted one.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `path` as written in a fleet at `base`: relative to it when given,
/// else as it is (absolute).
fn path_text(path: &Path, base: Option<&Path>) -> String {
    let shown = match base {
        Some(base) => relative(path, base),
        None => path.to_path_buf(),
    };
    q(&shown.to_string_lossy())
}

/// `path` relative to the directory `base`, both absolute and clean.
fn relative(path: &Path, base: &Path) -> PathBuf {
    let p: Vec<_> = path.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return path.to_path_buf();
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The YAML of one agent serving an snmpsim data directory: v1/v2c
/// communities and v3 contexts from `data_dir`, and snmpsim's default v3
/// user.
pub fn data_dir_agent(name: &str, listen: SocketAddr, dir: &Path, base: Option<&Path>) -> String {
    let (user, auth, privacy) = SNMPSIM_USER;
    format!(
        "  - name: {}\n    listen: [{}]\n    data_dir: {}\n    snmpv3:\n      users:\n        - name: {user}\n          auth: {{ protocol: MD5, password: {auth} }}\n          priv: {{ protocol: DES, password: {privacy} }}\n",
        q(name),
        q(&listen.to_string()),
        path_text(dir, base),
    )
}

/// The YAML of one agent serving one snapshot file, as `serve FILE` does:
/// community `public` (v1 and v2c), snmpsim's default v3 user on the
/// default context.
pub fn file_agent(name: &str, listen: SocketAddr, file: &Path, base: Option<&Path>) -> String {
    let (user, auth, privacy) = SNMPSIM_USER;
    format!(
        "  - name: {}\n    listen: [{}]\n    data: {}\n    snmpv1: {{ communities: [public] }}\n    snmpv2c: {{ communities: [public] }}\n    snmpv3:\n      users:\n        - name: {user}\n          auth: {{ protocol: MD5, password: {auth} }}\n          priv: {{ protocol: DES, password: {privacy} }}\n",
        q(name),
        q(&listen.to_string()),
        path_text(file, base),
    )
}

/// The YAML of a checked agent, everything it was given spelled out (its
/// snapshots per community and context, its secrets as they are). The
/// limits it took from `cluster` are left out, so it takes the new
/// fleet's.
fn agent_yaml(agent: &Agent, base: Option<&Path>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "  - name: {}", q(&agent.name));
    if !agent.active {
        let _ = writeln!(out, "    active: false");
    }
    let listen: Vec<String> = agent.listen.iter().map(|a| q(&a.to_string())).collect();
    let _ = writeln!(out, "    listen: [{}]", listen.join(", "));
    if let Some(id) = &agent.engine_id {
        let _ = writeln!(out, "    engine_id: {}", q(&format!("0x{}", hex_of(id))));
    }
    for (key, section) in [("snmpv1", &agent.snmpv1), ("snmpv2c", &agent.snmpv2c)] {
        if let Some(c) = section {
            out.push_str(&communities_yaml(key, c, base));
        }
    }
    if let Some(v3) = &agent.snmpv3 {
        let _ = writeln!(out, "    snmpv3:");
        let _ = writeln!(out, "      users:");
        for u in &v3.users {
            let _ = writeln!(out, "        - name: {}", q(&u.name));
            if let Some((p, pass)) = &u.auth {
                let _ = writeln!(
                    out,
                    "          auth: {{ protocol: {}, password: {} }}",
                    p.name(),
                    q(pass.expose())
                );
            }
            if let Some((p, pass)) = &u.privacy {
                let _ = writeln!(
                    out,
                    "          priv: {{ protocol: {}, password: {} }}",
                    p.name(),
                    q(pass.expose())
                );
            }
            if u.write {
                let _ = writeln!(out, "          write: true");
            }
        }
        if !v3.contexts.is_empty() {
            let _ = writeln!(out, "      contexts:");
            for (name, path) in &v3.contexts {
                let _ = writeln!(out, "        {}: {}", q(name), path_text(path, base));
            }
        }
    }
    out
}

fn communities_yaml(key: &str, c: &Communities, base: Option<&Path>) -> String {
    let mut out = format!("    {key}:\n      communities:");
    if c.entries.is_empty() {
        out.push_str(" []\n");
        return out;
    }
    out.push('\n');
    for e in &c.entries {
        let _ = write!(
            out,
            "        {}: {{ data: {}",
            q(e.name.expose()),
            path_text(&e.data, base)
        );
        if e.write {
            out.push_str(", write: true");
        }
        out.push_str(" }\n");
    }
    out
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Every `.agent` file under `roots`, recursively, sorted per root (the
/// Python agentcluster's `--agent-dir` search), checked as a fleet that
/// `include`s them would be.
fn load_legacy(roots: &[PathBuf]) -> anyhow::Result<Fleet> {
    let mut files = Vec::new();
    for root in roots {
        if !root.is_dir() {
            return Err(UserError(format!("{} is not a directory", root.display())).into());
        }
        let before = files.len();
        agent_files(&absolute(root)?, &mut files);
        files[before..].sort();
    }
    if files.is_empty() {
        return Err(UserError(format!(
            "no `.agent` file under {}",
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    let mut text = String::from("include:\n");
    for f in &files {
        let _ = writeln!(text, "  - {}", q(&glob_escape(&f.to_string_lossy())));
    }
    let source = absolute(Path::new("agentcluster-import.yaml"))?;
    match agentcluster_conf::load_str(&text, &source) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            Ok(loaded.fleet)
        }
        Err(problems) => {
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            Err(UserError(text.join("\n")).into())
        }
    }
}

fn agent_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            agent_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "agent") {
            out.push(path);
        }
    }
}

/// `s` as a glob pattern that matches only itself.
fn glob_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '*' | '?' | '[' | ']' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let r = |p: &str, b: &str| relative(Path::new(p), Path::new(b));
        assert_eq!(r("/a/b/c.snmprec", "/a"), PathBuf::from("b/c.snmprec"));
        assert_eq!(r("/a/b/c.snmprec", "/a/d"), PathBuf::from("../b/c.snmprec"));
        assert_eq!(r("/a", "/a"), PathBuf::from("."));
    }

    #[test]
    fn glob_escapes() {
        assert_eq!(glob_escape("/a/b[1]*?.agent"), "/a/b[[]1[]][*][?].agent");
    }

    #[test]
    fn names() {
        assert_eq!(name_of(Path::new("/x/cisco.snmprec"), "d"), "cisco");
        assert_eq!(name_of(Path::new("/"), "d"), "d");
    }
}
