//! `agentcluster check`: every problem `run` would meet before its first
//! agent starts, found at once: the configuration's (with the host's
//! capacity, worked out before any template is expanded), each snapshot's
//! (compiled as the start compiles it, each distinct file once, on every
//! core, nothing written to the cache), the control socket's path, and
//! the listen addresses the host lacks.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agentcluster_agent::snapshot::{Format, SnapshotError};
use agentcluster_agent::store::{self, Store, StoreError};
use agentcluster_agent::values::{self, ValueSpec, Values};
use agentcluster_conf::{Fleet, Problem, Severity};

use crate::EXIT_USER;
use agentcluster_conf::plural;

pub fn check(path: &Path, control: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut capacity = None;
    let checked = agentcluster_conf::check(path, &mut |fleet| {
        let (problems, summary) = agentcluster_supervisor::check_capacity(fleet);
        capacity = Some(summary);
        problems
    });
    let mut problems = checked.problems;
    problems.extend(snapshot_problems(&checked.fleet));
    problems.extend(value_problems(path, &checked.fleet));
    problems.extend(control_socket_problem(path, &checked.fleet, control));
    let (address_problem, address_note) = address_problem(path, &checked.fleet);
    problems.extend(address_problem);
    let mut out = std::io::stdout().lock();
    for p in &problems {
        writeln!(out, "{p}")?;
    }
    if let Some(summary) = capacity {
        writeln!(out, "{summary}")?;
    }
    if let Some(note) = address_note {
        writeln!(out, "{note}")?;
    }
    for line in data_dir_lines(&checked.fleet) {
        println!("{line}");
    }
    if problems.iter().any(|p| p.severity == Severity::Error) {
        return Ok(ExitCode::from(EXIT_USER));
    }
    writeln!(
        out,
        "{}: ok, {}",
        path.display(),
        plural(checked.fleet.agents.len(), "agent")
    )?;
    Ok(ExitCode::SUCCESS)
}

/// What each agent's `data_dir` expanded to (the first ten agents that
/// have one; a template's copies would say the same N times).
fn data_dir_lines(fleet: &Fleet) -> Vec<String> {
    const SHOWN: usize = 10;
    let with_dir: Vec<_> = fleet
        .agents
        .iter()
        .filter_map(|a| a.data_dir.as_ref().map(|d| (a, d)))
        .collect();
    let mut out: Vec<String> = with_dir
        .iter()
        .take(SHOWN)
        .map(|(a, dir)| {
            let files = a.snapshots().len();
            let communities = a.snmpv2c.as_ref().map_or(0, |c| c.entries.len());
            let contexts = a.snmpv3.as_ref().map_or(0, |v3| v3.contexts.len());
            format!(
                "agent `{}`: data_dir {} expands to {files} snapshot file{}: {communities} communit{} (v1 and v2c), {contexts} SNMPv3 context{}",
                a.name,
                dir.display(),
                if files == 1 { "" } else { "s" },
                if communities == 1 { "y" } else { "ies" },
                if contexts == 1 { "" } else { "s" },
            )
        })
        .collect();
    if with_dir.len() > SHOWN {
        out.push(format!(
            "… and {} more agents with a data_dir",
            with_dir.len() - SHOWN
        ));
    }
    out
}

/// Every problem of the fleet's snapshots that the start would meet. Files
/// the configuration's own checks refused (missing, a directory, an
/// unknown format) are left to those.
fn snapshot_problems(fleet: &Fleet) -> Vec<Problem> {
    let mut files = fleet.snapshots();
    files.retain(|p| p.is_file() && Format::from_path(p).is_some());
    let sources: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let mut out = Vec::new();
    for (file, checked) in sources.iter().zip(store::check(&sources)) {
        let problem = |line: usize, severity: Severity, message: String| Problem {
            file: file.to_path_buf(),
            line,
            column: 0,
            severity,
            message,
        };
        match checked {
            Ok(c) => out.extend(
                c.warnings
                    .into_iter()
                    .map(|w| problem(w.line, Severity::Warning, w.message)),
            ),
            Err(StoreError::Snapshot(SnapshotError::Invalid { errors, warnings })) => {
                let mut all: Vec<Problem> = errors
                    .into_iter()
                    .map(|e| problem(e.line, Severity::Error, e.message))
                    .chain(
                        warnings
                            .into_iter()
                            .map(|w| problem(w.line, Severity::Warning, w.message)),
                    )
                    .collect();
                all.sort_by_key(|p| p.line);
                out.extend(all);
            }
            Err(
                StoreError::Io { source, .. }
                | StoreError::Snapshot(SnapshotError::Io { source, .. }),
            ) => {
                out.push(problem(
                    0,
                    Severity::Error,
                    format!("cannot read the snapshot: {source}"),
                ));
            }
            Err(StoreError::TooLarge { .. }) => out.push(problem(
                0,
                Severity::Error,
                "too large for the store format".into(),
            )),
            Err(e) => out.push(problem(0, Severity::Error, e.to_string())),
        }
    }
    out
}

/// A snapshot, and the OID of a value that does not fit its type there.
type Misfit<'a> = (&'a PathBuf, Vec<u32>);

/// Every agent's plain values (`values:` without a type) that do not fit
/// the type their snapshot records for the OID: an agent process would
/// refuse to start with them. Reported once per snapshot and OID, with the
/// first agent and how many more have it. Snapshots that do not load are
/// left to [`snapshot_problems`].
fn value_problems(config: &Path, fleet: &Fleet) -> Vec<Problem> {
    let mut stores: HashMap<&PathBuf, Option<Store>> = HashMap::new();
    // The first agent's message, and how many agents, by snapshot and OID.
    let mut found: Vec<(Misfit, String, usize)> = Vec::new();
    for agent in &fleet.agents {
        let plain = Values {
            entries: agent
                .values
                .iter()
                .filter(|v| v.kind.is_none())
                .map(|v| ValueSpec {
                    oid: v.oid.clone(),
                    kind: None,
                    value: v.value.clone(),
                })
                .collect(),
            identity: None,
        };
        if plain.is_empty() {
            continue;
        }
        for path in agent.snapshots() {
            let store = stores.entry(path).or_insert_with(|| {
                let snap = agentcluster_agent::snapshot::load(path).ok()?;
                Store::from_records(&snap.records)
            });
            let Some(store) = store else { continue };
            if let Err((oid, why)) = values::check(store, &plain) {
                let dotted: Vec<String> = oid.iter().map(u32::to_string).collect();
                let dotted = dotted.join(".");
                let key = (path, oid);
                match found.iter_mut().find(|(k, _, _)| *k == key) {
                    Some((_, _, n)) => *n += 1,
                    None => found.push((
                        key,
                        format!(
                            "agent `{}`: `values` {dotted}: {why}, in {}",
                            agent.name,
                            path.display()
                        ),
                        1,
                    )),
                }
            }
        }
    }
    found
        .into_iter()
        .map(|(_, message, n)| Problem {
            file: config.to_path_buf(),
            line: 0,
            column: 0,
            severity: Severity::Error,
            message: match n {
                1 => message,
                n => format!("{message} (and {} more agents)", n - 1),
            },
        })
        .collect()
}

/// The control socket `run` would bind, when its path is too long for a
/// Unix socket. A `cluster.control_socket` of the file is checked with the
/// file; `--control` and the default path are checked here.
fn control_socket_problem(config: &Path, fleet: &Fleet, control: Option<&Path>) -> Option<Problem> {
    let (path, given) = match (control, &fleet.cluster.control_socket) {
        (Some(p), _) => (p.to_path_buf(), "--control"),
        (None, Some(_)) => return None,
        (None, None) => (
            agentcluster_supervisor::protocol::default_control_socket(),
            "the default control socket",
        ),
    };
    let e = agentcluster_conf::check_socket_path(&path).err()?;
    Some(Problem {
        file: config.to_path_buf(),
        line: 0,
        column: 0,
        severity: Severity::Error,
        message: format!("{given}: {e}"),
    })
}

/// The listen addresses the host lacks: without `cluster.addresses` a
/// warning (`run` would fail to bind them, unless they are added before it
/// starts); with it, a note of what `run` would add, and a warning if the
/// interface is absent and would not be created.
fn address_problem(config: &Path, fleet: &Fleet) -> (Option<Problem>, Option<String>) {
    let missing = agentcluster_supervisor::missing_addresses(fleet);
    if missing.is_empty() {
        return (None, None);
    }
    let shown: Vec<String> = missing
        .iter()
        .take(5)
        .map(|(ip, agent)| format!("{ip} (agent {agent})"))
        .collect();
    let mut list = shown.join(", ");
    if missing.len() > shown.len() {
        list += &format!(" and {} more", missing.len() - shown.len());
    }
    let warning = |message: String| Problem {
        file: config.to_path_buf(),
        line: 0,
        column: 0,
        severity: Severity::Warning,
        message,
    };
    match &fleet.cluster.addresses {
        None => (
            Some(warning(format!(
                "{} not on this host: {list}: run would fail to bind {}; add {} to an interface, or set cluster.addresses to have {} added",
                agentcluster_conf::plural_es(missing.len(), "listen address"),
                if missing.len() == 1 { "it" } else { "them" },
                if missing.len() == 1 { "it" } else { "them" },
                if missing.len() == 1 { "it" } else { "them" }
            ))),
            None,
        ),
        Some(a) => {
            let absent = !Path::new("/sys/class/net").join(&a.interface).exists();
            let problem = (absent && !a.create).then(|| {
                warning(format!(
                    "cluster.addresses: interface `{}` does not exist: create it, name an existing interface such as lo, or set `create: true`",
                    a.interface
                ))
            });
            let note = format!(
                "addresses: {} not on this host will be added to {}: {list}",
                agentcluster_conf::plural_es(missing.len(), "listen address"),
                a.interface
            );
            (problem, Some(note))
        }
    }
}
