//! Test fixtures: a temp dir with snapshot files, config files written into
//! it, and helpers to look for problems.

use std::path::{Path, PathBuf};

use agentcluster_conf::{Loaded, Problem, Severity, load};

pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    /// A temp dir with empty snapshots `mibs/a.snmprec`, `mibs/b.snmprec`,
    /// `mibs/c.snmpwalk` (validation only checks that they exist).
    pub fn new() -> Dir {
        let tmp = tempfile::tempdir().expect("temp dir");
        let d = Dir { tmp };
        for f in ["mibs/a.snmprec", "mibs/b.snmprec", "mibs/c.snmpwalk"] {
            d.write(f, "");
        }
        d
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    /// Writes `fleet.yaml` and loads it.
    pub fn load(&self, text: &str) -> Result<Loaded, Vec<Problem>> {
        let p = self.write("fleet.yaml", text);
        load(&p)
    }

    /// Loads `text`, expecting success.
    pub fn ok(&self, text: &str) -> Loaded {
        match self.load(text) {
            Ok(l) => l,
            Err(ps) => panic!("expected success, got:\n{}", show(&ps)),
        }
    }

    /// Loads `text`, expecting failure.
    pub fn fails(&self, text: &str) -> Vec<Problem> {
        match self.load(text) {
            Ok(l) => panic!("expected errors; warnings: {}", show(&l.warnings)),
            Err(ps) => ps,
        }
    }
}

pub fn show(ps: &[Problem]) -> String {
    ps.iter().map(|p| format!("  {p}\n")).collect()
}

/// The one problem whose message contains `needle`.
pub fn find<'a>(ps: &'a [Problem], needle: &str) -> &'a Problem {
    let hits: Vec<&Problem> = ps.iter().filter(|p| p.message.contains(needle)).collect();
    match hits.as_slice() {
        [one] => one,
        [] => panic!("no problem mentions {needle:?} in:\n{}", show(ps)),
        _ => panic!("several problems mention {needle:?} in:\n{}", show(ps)),
    }
}

/// Asserts an error mentioning `needle` at `line:column` of `file`'s name.
pub fn error_at(ps: &[Problem], file: &str, line: usize, column: usize, needle: &str) {
    let p = find(ps, needle);
    assert_eq!(p.severity, Severity::Error, "{p}");
    assert!(
        p.file.ends_with(file),
        "{p}: expected in {file}\nall:\n{}",
        show(ps)
    );
    assert_eq!(
        (p.line, p.column),
        (line, column),
        "{p}\nall:\n{}",
        show(ps)
    );
}

pub fn errors(ps: &[Problem]) -> Vec<&Problem> {
    ps.iter()
        .filter(|p| p.severity == Severity::Error)
        .collect()
}

pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
