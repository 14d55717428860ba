//! Stage 2: raw structs → the checked [`crate::model`]. Applies every
//! default, resolves every path against the file that names it, expands
//! templates, and records every problem it finds instead of stopping at the
//! first: the result is only used when the report holds no error.
//!
//! `cluster` checks the `cluster` section, `notify` the notification targets
//! (and USM users, shared with agents), `counts` sizes the fleet before any
//! template is expanded, `agent` the agents and what must be unique across
//! them.
//!
//! Templates are expanded only when the fleet is within [`MAX_AGENTS`] and
//! the caller's `fits` (a capacity check) accepts its counts: a fleet that
//! cannot run is refused in the time of its entries, not of its copies.

mod agent;
mod cluster;
mod counts;
mod notify;
mod scenarios;
mod values;

pub use cluster::{MAX_SOCKET_PATH, check_socket_path};
pub(crate) use counts::MAX_AGENTS;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::data_dir::{self, Scan};
use crate::duration::parse_duration;
use crate::host::Host;
use crate::loader::{SourceFile, Tree};
use crate::model::*;
use crate::problem::{FileId, Pos, Report};
use crate::raw::*;
use crate::size::parse_size;

const MAIN: FileId = 0;

/// Defaults (docs/configuration.md lists them).
mod default {
    use std::time::Duration;
    pub const START_TOKENS: u32 = 8;
    pub const START_TIMEOUT: Duration = Duration::from_secs(10);
    pub const HEARTBEAT: Duration = Duration::from_secs(1);
    pub const INACTIVE_AFTER: Duration = Duration::from_secs(5);
    pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
    pub const CACHE_MAX_AGE: Duration = Duration::from_secs(30 * 86_400);
    pub const AGENTS_PER_PROCESS: u32 = 1;
    pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
    pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
    pub const MAX_RESTARTS: u32 = 10;
    pub const WINDOW: Duration = Duration::from_secs(60);
    pub const PROBE_INTERVAL: Duration = Duration::from_secs(10);
    pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
    pub const COMMUNITY: &str = "public";
    pub const ETCD_ENDPOINT: &str = "http://127.0.0.1:2379";
    pub const ETCD_PREFIX: &str = "/agentcluster";
    pub const LEASE_TTL: Duration = Duration::from_secs(10);
    pub const MAX_VARBINDS: u32 = 1000;
    pub const SNAPSHOT_MAX_LOSS: u8 = 50;
    pub const KVP_PATH: &str = "/var/lib/hyperv/.kvp_pool_1";
    pub const KVP_MAX_RECORDS: u32 = 4096;
    pub const NOTIFY_RETRIES: u32 = 3;
    pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);
}

/// Shortest USM password net-snmp accepts (RFC 3414 §11.2 recommends ≥ 8).
const MIN_PASSWORD: usize = 8;

/// Validates `tree` into a fleet, every problem into `report`. `fits` is
/// shown the fleet before its templates are expanded (`agents` still
/// empty, `counts` known); what it returns are errors, and then no template
/// is expanded.
pub(crate) fn validate(
    tree: &Tree,
    host: &Host,
    report: &mut Report,
    fits: &mut dyn FnMut(&Fleet) -> Vec<String>,
) -> Fleet {
    let mut v = Validator {
        files: &tree.files,
        host,
        report,
        kinds: HashMap::new(),
        dirs: HashMap::new(),
        dirs_reported: std::collections::HashSet::new(),
    };
    let cluster = v.cluster(tree.main.cluster.as_ref());
    let events = v.events(tree.main.events.as_ref());
    let counts = v.counts(tree);
    let mut fleet = Fleet {
        source: tree
            .files
            .first()
            .map(|f| f.path.clone())
            .unwrap_or_default(),
        cluster,
        events,
        agents: Vec::new(),
        counts,
        scenarios: Vec::new(),
    };
    let agents_pos = tree.main.agents.as_ref().map_or(Pos::UNKNOWN, Pos::of);
    let mut expand = true;
    if counts.agents > MAX_AGENTS {
        let templates = v.template_counts(tree);
        v.err(
            MAIN,
            agents_pos,
            format!(
                "the fleet has {} agents ({templates}), more than the {MAX_AGENTS} one supervisor takes; no template was expanded: lower the counts or spread the fleet over several hosts",
                counts.agents
            ),
        );
        expand = false;
    }
    for problem in fits(&fleet) {
        v.err(MAIN, Pos::UNKNOWN, problem);
        expand = false;
    }
    fleet.agents = v.agents(tree, &fleet.cluster, expand);
    fleet.scenarios = v.scenarios(tree.main.scenarios.as_ref(), &fleet.agents, expand);
    fleet
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Missing,
}

struct Validator<'a> {
    files: &'a [SourceFile],
    host: &'a Host,
    report: &'a mut Report,
    /// What each snapshot path is (templates name the same files N times).
    kinds: HashMap<PathBuf, Kind>,
    /// What each `data_dir` holds, read once per load (templates and the
    /// counts name the same directory many times).
    dirs: HashMap<PathBuf, Result<std::rc::Rc<Scan>, String>>,
    /// The `data_dir`s whose problems were reported: once per load, not
    /// once per agent or template copy that names them.
    dirs_reported: std::collections::HashSet<PathBuf>,
}

impl Validator<'_> {
    fn err(&mut self, file: FileId, pos: Pos, msg: impl Into<String>) {
        self.report.error(file, pos, msg);
    }

    fn warn(&mut self, file: FileId, pos: Pos, msg: impl Into<String>) {
        self.report.warning(file, pos, msg);
    }

    fn at(&self, file: FileId, pos: Pos) -> String {
        let path = self
            .files
            .get(file)
            .map(|f| f.path.display().to_string())
            .unwrap_or_default();
        if pos.is_known() {
            format!("{path}:{}:{}", pos.line, pos.column)
        } else {
            path
        }
    }

    // ---- scalars -------------------------------------------------------

    fn uint(
        &mut self,
        file: FileId,
        v: Option<&Spanned<UInt>>,
        default: u32,
        min: u32,
        key: &str,
    ) -> u32 {
        let Some(v) = v else { return default };
        let pos = Pos::of(v);
        match u32::try_from(v.value.0) {
            Ok(n) if n >= min => n,
            Ok(_) => {
                self.err(file, pos, format!("`{key}` must be at least {min}"));
                default
            }
            Err(_) => {
                self.err(
                    file,
                    pos,
                    format!("`{key}` is too large (at most {})", u32::MAX),
                );
                default
            }
        }
    }

    fn duration(
        &mut self,
        file: FileId,
        v: Option<&Spanned<String>>,
        default: Duration,
        key: &str,
        allow_zero: bool,
    ) -> Duration {
        let Some(v) = v else { return default };
        match parse_duration(&v.value) {
            Some(d) if d.is_zero() && !allow_zero => {
                self.err(file, Pos::of(v), format!("`{key}` must be longer than 0"));
                default
            }
            Some(d) => d,
            None => {
                self.err(
                    file,
                    Pos::of(v),
                    format!(
                        "`{key}`: `{}` is not a duration (write e.g. 500ms, 10s, 1.5s, 5m, 1h)",
                        v.value
                    ),
                );
                default
            }
        }
    }

    /// A size in bytes (`memory_max`); 0 is an error.
    fn size(
        &mut self,
        file: FileId,
        v: Option<&Spanned<String>>,
        default: Option<u64>,
        key: &str,
    ) -> Option<u64> {
        let Some(v) = v else { return default };
        match parse_size(&v.value) {
            Some(0) => {
                self.err(file, Pos::of(v), format!("`{key}` must be larger than 0"));
                default
            }
            Some(n) => Some(n),
            None => {
                self.err(
                    file,
                    Pos::of(v),
                    format!(
                        "`{key}`: `{}` is not a size (write e.g. 512K, 64M, 64MiB, 1.5GiB, 100MB, or a number of bytes)",
                        v.value
                    ),
                );
                default
            }
        }
    }

    /// A path as written: `~/` is the home directory, relative paths are
    /// relative to the directory of the file that names them.
    fn path(&self, file: FileId, s: &str) -> PathBuf {
        let joined = if let (Some(rest), Some(home)) = (s.strip_prefix("~/"), &self.host.home) {
            home.join(rest)
        } else if Path::new(s).is_absolute() {
            PathBuf::from(s)
        } else {
            match self.files.get(file) {
                Some(f) => f.dir.join(s),
                None => PathBuf::from(s),
            }
        };
        normalize(&joined)
    }

    fn dir_path(
        &mut self,
        file: FileId,
        v: Option<&Spanned<String>>,
        key: &str,
    ) -> Option<PathBuf> {
        let v = v?;
        if v.value.trim().is_empty() {
            self.err(file, Pos::of(v), format!("`{key}` is empty"));
            return None;
        }
        Some(self.path(file, &v.value))
    }

    /// What the `data_dir` at `path` (resolved) holds, read on first use.
    /// Its warnings are reported by the caller that expands it.
    fn scan_dir(&mut self, path: &Path) -> Result<std::rc::Rc<Scan>, String> {
        self.dirs
            .entry(path.to_path_buf())
            .or_insert_with(|| data_dir::scan(path).map(std::rc::Rc::new))
            .clone()
    }

    /// A snapshot path, resolved and checked to be an existing file.
    fn snapshot(&mut self, file: FileId, v: &Spanned<String>) -> PathBuf {
        let pos = Pos::of(v);
        if v.value.trim().is_empty() {
            self.err(file, pos, "empty snapshot path");
            return PathBuf::new();
        }
        let path = self.path(file, &v.value);
        let kind =
            *self
                .kinds
                .entry(path.clone())
                .or_insert_with(|| match std::fs::metadata(&path) {
                    Ok(m) if m.is_dir() => Kind::Dir,
                    Ok(_) => Kind::File,
                    Err(_) => Kind::Missing,
                });
        match kind {
            Kind::Missing => self.err(
                file,
                pos,
                format!("snapshot file not found: {}", path.display()),
            ),
            Kind::Dir => self.err(
                file,
                pos,
                format!("snapshot is a directory, not a file: {}", path.display()),
            ),
            Kind::File => {
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                // `run` cannot compile it: an error here, not at the start.
                if !matches!(ext, "snmprec" | "snmpwalk" | "sapwalk") {
                    self.err(
                        file,
                        pos,
                        format!(
                            "`{}` is not a known snapshot format (.snmprec, .snmpwalk, .sapwalk)",
                            path.display()
                        ),
                    );
                }
            }
        }
        path
    }
}

/// `a/./b/../c` → `a/c`, lexically (like Go's `filepath.Clean`), so one
/// snapshot named two ways is one path (it is compiled once per path).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `/..` is `/`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Agent and node names end up in event ids (`node|component|event|agent`),
/// file names and command-line globs.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > 200 {
        return Err(format!("`{name}` is longer than 200 bytes"));
    }
    if name.trim() != name {
        return Err(format!("`{name}` has leading or trailing blanks"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || "|/*?[]".contains(*c))
    {
        return Err(format!(
            "`{}` contains {:?}: names may not contain | / * ? [ ] or control characters",
            name.escape_debug(),
            c
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/a/b/../../../c")), PathBuf::from("/c"));
        assert_eq!(normalize(Path::new("../x/./y")), PathBuf::from("../x/y"));
    }

    #[test]
    fn names() {
        assert!(check_name("core-sw-1").is_ok());
        assert!(check_name("Mixed device").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a|b").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name(" a").is_err());
    }
}
