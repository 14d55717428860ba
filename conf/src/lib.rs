//! agentcluster fleet configuration: the YAML of docs/configuration.md parsed into raw
//! serde structs, then validated into the checked model (a [`Fleet`]),
//! reporting every problem at once with file:line:column.
//!
//! The way through: `loader` reads the main file and its `include`s (YAML, or
//! legacy `.agent` JSON through `legacy`); `recover` deserializes each YAML
//! file into the `raw` structs; `validate` expands templates (`template`),
//! applies defaults and checks everything into a [`Fleet`], collecting
//! [`Problem`]s as it goes.
//!
//! All semantic problems are reported in one run. serde stops at a
//! document's first type error or unknown key; `recover` then re-reads each
//! top-level section and each `agents` entry on its own, so stage-1 errors
//! come one per section or agent entry, and every other part is still
//! validated.
//!
//! ```no_run
//! let loaded = agentcluster_conf::load(std::path::Path::new("fleet.yaml"));
//! match loaded {
//!     Ok(l) => println!("{} agents", l.fleet.agents.len()),
//!     Err(problems) => problems.iter().for_each(|p| eprintln!("{p}")),
//! }
//! ```

mod account;
mod duration;
mod endpoint;
mod event_kind;
mod host;
mod legacy;
mod loader;
mod model;
mod problem;
mod raw;
mod recover;
mod size;
mod template;
mod validate;

use std::path::{Path, PathBuf};

pub use account::{resolve_group, resolve_user};
pub use duration::parse_duration;
pub use event_kind::{EventKind, UnknownEventKind};
pub use model::*;
pub use problem::{Problem, Severity};
pub use size::parse_size;

/// A fleet that passed validation, and what was worth a warning.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The checked fleet.
    pub fleet: Fleet,
    /// Problems that did not stop the load, sorted by file, line and
    /// column; the caller shows them.
    pub warnings: Vec<Problem>,
}

/// Reads and validates a config file and everything it includes.
///
/// `Err` holds every error found (and the warnings too), sorted by file, line
/// and column.
pub fn load(path: &Path) -> Result<Loaded, Vec<Problem>> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, path).map(|mut loaded| {
            if let Some(w) = readable_secrets(path, &loaded.fleet) {
                loaded.warnings.push(w);
            }
            loaded
        }),
        Err(e) => Err(vec![Problem {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            severity: Severity::Error,
            message: format!("cannot read the configuration: {e}"),
        }]),
    }
}

/// A warning when a file that holds secrets (SNMPv3 passwords, or a
/// community other than `public`) can be read by other users.
fn readable_secrets(path: &Path, fleet: &Fleet) -> Option<Problem> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    if mode & 0o004 == 0 {
        return None;
    }
    let community_secret = |c: &Option<Communities>| {
        c.iter()
            .flat_map(|l| &l.entries)
            .any(|e| e.name.expose() != "public")
    };
    let has_secrets =
        fleet.agents.iter().any(|a| {
            a.snmpv3.as_ref().is_some_and(|v3| !v3.users.is_empty())
                || community_secret(&a.snmpv1)
                || community_secret(&a.snmpv2c)
        }) || fleet.events.notify.iter().any(|t| {
            t.user.is_some() || t.community.as_ref().is_some_and(|c| c.expose() != "public")
        });
    has_secrets.then(|| Problem {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        severity: Severity::Warning,
        message: format!(
            "this file holds secrets (communities or SNMPv3 passwords) and every user can read it (mode {:o}); chmod o-r it",
            mode & 0o777
        ),
    })
}

/// Same as [`load`] from text: `source` names the file in messages, and
/// relative paths (snapshots, includes, directories) resolve against
/// `source.parent()`.
pub fn load_str(text: &str, source: &Path) -> Result<Loaded, Vec<Problem>> {
    load_with(text, source, &host::Host::detect())
}

pub(crate) fn load_with(
    text: &str,
    source: &Path,
    host: &host::Host,
) -> Result<Loaded, Vec<Problem>> {
    let mut report = problem::Report::default();
    let tree = loader::load_tree(text, source, &mut report);
    let fleet = validate::validate(&tree, host, &mut report);
    let paths: Vec<PathBuf> = tree.files.iter().map(|f| f.path.clone()).collect();
    let failed = report.has_errors();
    let problems = report.into_problems(&paths);
    if failed {
        Err(problems)
    } else {
        Ok(Loaded {
            fleet,
            warnings: problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use host::Host;

    fn host(root: bool) -> Host {
        Host {
            hostname: "box-7".into(),
            root,
            home: Some(PathBuf::from("/home/u")),
            xdg_state_home: Some(PathBuf::from("/xdg/state")),
            xdg_cache_home: None,
        }
    }

    #[test]
    fn defaults_follow_the_host() {
        let src = Path::new("/nonexistent/fleet.yaml");
        let l = load_with("agents: []\n", src, &host(false)).unwrap_or_else(|p| panic!("{p:?}"));
        let c = &l.fleet.cluster;
        assert_eq!(c.node, "box-7");
        assert_eq!(c.state_dir, PathBuf::from("/xdg/state/agentcluster"));
        assert_eq!(c.cache_dir, PathBuf::from("/home/u/.cache/agentcluster"));
        let l = load_with("agents: []\n", src, &host(true)).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(
            l.fleet.cluster.state_dir,
            PathBuf::from("/var/lib/agentcluster")
        );
        assert_eq!(
            l.fleet.cluster.cache_dir,
            PathBuf::from("/var/cache/agentcluster")
        );
    }

    #[test]
    fn home_relative_paths() {
        let src = Path::new("/etc/agentcluster/fleet.yaml");
        let text = "cluster: { state_dir: ~/st, cache_dir: ../c }\nagents: []\n";
        let l = load_with(text, src, &host(false)).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(l.fleet.cluster.state_dir, PathBuf::from("/home/u/st"));
        assert_eq!(l.fleet.cluster.cache_dir, PathBuf::from("/etc/c"));
    }
}
