//! Reading the main file and everything it includes (globs, nested includes,
//! legacy `.agent` files) into raw agents tagged with the file they came
//! from. The only module that touches the file system besides the snapshot
//! existence checks.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use crate::problem::{FileId, Pos, Report};
use crate::raw::{OneOrMany, RawAgent, RawFile};
use crate::recover::parse_yaml;
use crate::{legacy, recover};

/// One file that took part in the load.
#[derive(Debug)]
pub(crate) struct SourceFile {
    /// As given or as matched (what problems show).
    pub path: PathBuf,
    /// Absolute directory that relative paths in this file are resolved in.
    pub dir: PathBuf,
    pub text: String,
}

/// An `agents[]` entry (or a legacy file's one agent) and where it is.
#[derive(Debug)]
pub(crate) struct AgentEntry {
    pub file: FileId,
    pub raw: Spanned<RawAgent>,
}

#[derive(Debug, Default)]
pub(crate) struct Tree {
    /// `files[0]` is the main file.
    pub files: Vec<SourceFile>,
    /// The main file (its `agents` and `include` taken out).
    pub main: RawFile,
    /// Main file's agents first, then each include's, depth first, in glob
    /// order.
    pub agents: Vec<AgentEntry>,
    /// The main file is a cluster node's: `cluster.etcd`, and neither
    /// `agents` nor `include` (its share comes from etcd).
    pub node: bool,
}

pub(crate) fn load_tree(text: &str, source: &Path, report: &mut Report) -> Tree {
    let mut loader = Loader {
        tree: Tree::default(),
        visited: HashSet::new(),
        report,
    };
    if let Ok(canon) = std::fs::canonicalize(source) {
        loader.visited.insert(canon);
    }
    loader.tree.files.push(SourceFile {
        path: source.to_path_buf(),
        dir: absolute_dir(source),
        text: text.to_string(),
    });
    let parsed = parse_yaml(text);
    for (pos, msg) in &parsed.errors {
        loader.report.error(0, *pos, msg.clone());
    }
    if let Some(mut main) = parsed.file {
        // A node of a fleet shared through etcd (docs/scale-out.md) has
        // no agents of its own: its share comes from etcd.
        let node = main
            .cluster
            .as_ref()
            .is_some_and(|c| c.value.etcd.is_some());
        loader.tree.node = node && main.agents.is_none() && main.include.is_none();
        if main.agents.is_none() && main.include.is_none() && !node {
            loader.report.error(
                0,
                Pos::new(1, 1),
                "no `agents`: list the fleet's agents here or in `include`d files",
            );
        }
        let agents = main.agents.take();
        let include = main.include.take();
        loader.tree.main = main;
        loader.agents(0, agents, &parsed.dropped_agents);
        loader.includes(0, include);
    }
    loader.tree
}

struct Loader<'r> {
    tree: Tree,
    /// Canonical paths already read: an include cycle or a file matched
    /// twice is read once.
    visited: HashSet<PathBuf>,
    report: &'r mut Report,
}

impl Loader<'_> {
    fn agents(
        &mut self,
        file: FileId,
        agents: Option<Spanned<Vec<Spanned<Option<RawAgent>>>>>,
        dropped: &[usize],
    ) {
        let Some(agents) = agents else { return };
        for (idx, item) in agents.value.into_iter().enumerate() {
            let pos = Pos::of(&item);
            match item.value {
                Some(raw) => self.tree.agents.push(AgentEntry {
                    file,
                    raw: Spanned::new(raw, item.referenced, item.defined),
                }),
                None if dropped.contains(&idx) => {}
                None => self.report.error(file, pos, "empty entry in `agents`"),
            }
        }
    }

    fn includes(&mut self, from: FileId, include: Option<Spanned<OneOrMany<Spanned<String>>>>) {
        let Some(include) = include else { return };
        let list_pos = Pos::of(&include);
        for pattern in include.value.0 {
            let pos = Pos::of_or(&pattern, list_pos);
            self.include(from, &pattern.value, pos);
        }
    }

    fn include(&mut self, from: FileId, pattern: &str, pos: Pos) {
        if pattern.trim().is_empty() {
            self.report.error(from, pos, "empty `include` pattern");
            return;
        }
        let full = if Path::new(pattern).is_absolute() {
            pattern.to_string()
        } else {
            let base = self.tree.files[from]
                .path
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if base.is_empty() {
                pattern.to_string()
            } else {
                format!("{}/{}", glob::Pattern::escape(&base), pattern)
            }
        };
        let paths = match glob::glob(&full) {
            Ok(paths) => paths,
            Err(e) => {
                self.report.error(
                    from,
                    pos,
                    format!("bad `include` pattern `{pattern}`: {}", e.msg),
                );
                return;
            }
        };
        let mut matches = Vec::new();
        for entry in paths {
            match entry {
                Ok(p) if p.is_file() => matches.push(p),
                Ok(_) => {}
                Err(e) => self.report.warning(
                    from,
                    pos,
                    format!(
                        "`include` cannot look into {}: {}",
                        e.path().display(),
                        e.error()
                    ),
                ),
            }
        }
        matches.sort();
        if matches.is_empty() {
            if glob::Pattern::escape(pattern) == pattern {
                self.report
                    .error(from, pos, format!("included file not found: {full}"));
            } else {
                self.report.warning(
                    from,
                    pos,
                    format!("`include` pattern `{pattern}` matches no file"),
                );
            }
            return;
        }
        for path in matches {
            self.file(from, path, pos);
        }
    }

    fn file(&mut self, from: FileId, path: PathBuf, pos: Pos) {
        let canon = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !self.visited.insert(canon) {
            self.report.warning(
                from,
                pos,
                format!(
                    "{} is already part of the configuration: not read again",
                    path.display()
                ),
            );
            return;
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                self.report
                    .error(from, pos, format!("cannot read {}: {e}", path.display()));
                return;
            }
        };
        let id = self.tree.files.len();
        self.tree.files.push(SourceFile {
            dir: absolute_dir(&path),
            path: path.clone(),
            text,
        });
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if ext == "agent" || ext == "json" {
            let text = &self.tree.files[id].text;
            if let Some(raw) = legacy::parse(text, id, self.report) {
                self.tree.agents.push(AgentEntry { file: id, raw });
            }
            return;
        }
        let parsed = recover::parse_yaml(&self.tree.files[id].text);
        for (p, msg) in &parsed.errors {
            self.report.error(id, *p, msg.clone());
        }
        let Some(mut raw) = parsed.file else { return };
        if let Some(c) = &raw.cluster {
            self.report.error(
                id,
                Pos::of(c),
                "`cluster` is only allowed in the main configuration file",
            );
        }
        if let Some(e) = &raw.events {
            self.report.error(
                id,
                Pos::of(e),
                "`events` is only allowed in the main configuration file",
            );
        }
        if let Some(s) = &raw.scenarios {
            self.report.error(
                id,
                Pos::of(s),
                "`scenarios` is only allowed in the main configuration file",
            );
        }
        let agents = raw.agents.take();
        self.agents(id, agents, &parsed.dropped_agents);
        self.includes(id, raw.include.take());
    }
}

/// The absolute directory of `file` (which need not exist).
fn absolute_dir(file: &Path) -> PathBuf {
    let abs = std::path::absolute(file)
        .or_else(|_| std::env::current_dir().map(|d| d.join(file)))
        .unwrap_or_else(|_| file.to_path_buf());
    abs.parent().map(Path::to_path_buf).unwrap_or(abs)
}
