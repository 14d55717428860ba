//! `agentcluster check`: every problem `run` would meet before its first
//! agent starts, found at once: the configuration's (with the host's
//! capacity, worked out before any template is expanded), each snapshot's
//! (compiled as the start compiles it, each distinct file once, on every
//! core, nothing written to the cache), and the control socket's path.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agentcluster_agent::snapshot::{Format, SnapshotError};
use agentcluster_agent::store::{self, StoreError};
use agentcluster_conf::{Fleet, Problem, Severity};

use crate::EXIT_USER;

pub fn check(path: &Path, control: Option<&Path>) -> ExitCode {
    let mut capacity = None;
    let checked = agentcluster_conf::check(path, &mut |fleet| {
        let (problems, summary) = agentcluster_supervisor::check_capacity(fleet);
        capacity = Some(summary);
        problems
    });
    let mut problems = checked.problems;
    problems.extend(snapshot_problems(&checked.fleet));
    problems.extend(control_socket_problem(path, &checked.fleet, control));
    for p in &problems {
        println!("{p}");
    }
    if let Some(summary) = capacity {
        println!("{summary}");
    }
    for line in data_dir_lines(&checked.fleet) {
        println!("{line}");
    }
    if problems.iter().any(|p| p.severity == Severity::Error) {
        return ExitCode::from(EXIT_USER);
    }
    let n = checked.fleet.agents.len();
    println!(
        "{}: ok, {n} agent{}",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
    ExitCode::SUCCESS
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
    let mut seen: HashSet<&PathBuf> = HashSet::new();
    let mut files: Vec<&PathBuf> = Vec::new();
    for agent in &fleet.agents {
        for p in agent.snapshots() {
            if seen.insert(p) {
                files.push(p);
            }
        }
    }
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
