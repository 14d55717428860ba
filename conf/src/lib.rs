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
mod data_dir;
mod duration;
mod endpoint;
mod event_kind;
mod fault;
mod host;
mod legacy;
mod loader;
mod model;
mod plural;
mod problem;
mod raw;
mod recover;
mod size;
mod template;
mod validate;

use std::path::{Path, PathBuf};

pub use account::{resolve_group, resolve_user};
pub use duration::{format_duration, parse_duration};
pub use event_kind::{EventKind, UnknownEventKind};
pub use fault::{FAULT_KINDS, Fault, REBOOT_OUTAGE};
pub use model::*;
pub use plural::{plural, plural_es};
pub use problem::{Problem, Severity};
pub use size::parse_size;
pub use validate::{MAX_SOCKET_PATH, check_socket_path};

/// A fleet that passed validation, and what was worth a warning.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The checked fleet.
    pub fleet: Fleet,
    /// Problems that did not stop the load, sorted by file, line and
    /// column; the caller shows them.
    pub warnings: Vec<Problem>,
}

/// Everything one reading of a configuration found, errors or not: what
/// `agentcluster check` reports, and what it looks further into.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The fleet as far as it could be validated: complete when `problems`
    /// holds no error; otherwise what was read (a bad value replaced by its
    /// default, an agent that could not be read left out, templates not
    /// expanded when the fleet was refused for its size).
    pub fleet: Fleet,
    /// Every error and warning, sorted by file, line and column.
    pub problems: Vec<Problem>,
}

impl Checked {
    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    fn into_loaded(self) -> Result<Loaded, Vec<Problem>> {
        if self.has_errors() {
            Err(self.problems)
        } else {
            Ok(Loaded {
                fleet: self.fleet,
                warnings: self.problems,
            })
        }
    }
}

/// Reads and validates a config file and everything it includes.
///
/// `Err` holds every error found (and the warnings too), sorted by file, line
/// and column.
pub fn load(path: &Path) -> Result<Loaded, Vec<Problem>> {
    load_within(path, &mut |_| Vec::new())
}

/// [`load`], with `fits` asked before any template is expanded: see
/// [`check`].
pub fn load_within(
    path: &Path,
    fits: &mut dyn FnMut(&Fleet) -> Vec<String>,
) -> Result<Loaded, Vec<Problem>> {
    check(path, fits).into_loaded()
}

/// Reads and validates a config file and everything it includes, and
/// returns the fleet with every problem found, errors or not.
///
/// Before any template is expanded, `fits` is shown the fleet as far as it
/// is known then: its settings and [`Counts`], `agents` still empty. What it
/// returns (a capacity check's shortfalls) are errors of the main file, and
/// then no template is expanded; nor is any when the fleet has more than a
/// million agents. So a fleet too big to run is refused in the time and
/// memory of its entries, not of its copies.
pub fn check(path: &Path, fits: &mut dyn FnMut(&Fleet) -> Vec<String>) -> Checked {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut checked = check_with(&text, path, &host::Host::detect(), fits);
            if !checked.has_errors()
                && let Some(w) = readable_secrets(path, &checked.fleet)
            {
                checked.problems.push(w);
            }
            checked
        }
        Err(e) => Checked {
            // Nothing was read: the fleet of an empty file, its problems
            // replaced by the one that matters.
            fleet: check_with("", path, &host::Host::detect(), &mut |_| Vec::new()).fleet,
            problems: vec![Problem {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                severity: Severity::Error,
                message: format!("cannot read the configuration: {e}"),
            }],
        },
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
    check_with(text, source, host, &mut |_| Vec::new()).into_loaded()
}

fn check_with(
    text: &str,
    source: &Path,
    host: &host::Host,
    fits: &mut dyn FnMut(&Fleet) -> Vec<String>,
) -> Checked {
    let mut report = problem::Report::default();
    let tree = loader::load_tree(text, source, &mut report);
    let fleet = validate::validate(&tree, host, &mut report, fits);
    let paths: Vec<PathBuf> = tree.files.iter().map(|f| f.path.clone()).collect();
    Checked {
        fleet,
        problems: report.into_problems(&paths),
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
