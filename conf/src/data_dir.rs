//! snmpsim data directories (`data_dir`): every snapshot file under a
//! directory, named as snmpsim names it. The community (and SNMPv3 context)
//! of a file is its path relative to the directory, `/`-separated, without
//! its extension: `network/switch/cisco-c3750.snmprec` is served as
//! `network/switch/cisco-c3750`. As snmpsim does, a leading `self/`
//! directory is dropped and a top-level `self.EXT` is the empty name (served
//! as the default SNMPv3 context only); a context name longer than 32
//! characters (RFC 3411's limit) is replaced by the MD5 hex digest of the
//! name, which snmpsim also registers for every file.
//!
//! Unlike snmpsim, the walk is sorted, so when two files give one name (the
//! same stem in two formats, or `self/x` beside `x`) the first in path order
//! wins, with a warning; snmpsim keeps whichever the file system lists first.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use md5::{Digest as _, Md5};

/// Extensions read, as snmpsim spells them (case matters, as there).
const READ: &[&str] = &["snmprec", "snmpwalk", "sapwalk"];

/// Extensions snmpsim reads and we do not (compressed `.snmprec`, its own
/// `.dump`/`.MVC` formats): reported, never served.
const NOT_READ: &[&str] = &["snmprec.bz2", "dump", "MVC"];

/// The longest SNMPv3 context name (RFC 3411 SnmpAdminString (SIZE(0..32))).
const MAX_CONTEXT: usize = 32;

/// What one directory holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scan {
    /// Name → snapshot file, sorted by file path; no name twice. The name
    /// may be empty (a top-level `self.EXT`).
    pub entries: Vec<(String, PathBuf)>,
    /// What is worth a warning: names given twice, files in formats that
    /// are not read, directories that could not be read.
    pub warnings: Vec<String>,
    /// Total size of the files in `entries`, in bytes.
    pub bytes: u64,
}

impl Scan {
    /// The v1/v2c communities: every name but the empty one.
    pub fn communities(&self) -> impl Iterator<Item = &(String, PathBuf)> {
        self.entries.iter().filter(|(n, _)| !n.is_empty())
    }

    /// The SNMPv3 contexts: every name, or its MD5 digest when it is longer
    /// than a context name may be.
    pub fn contexts(&self) -> Vec<(String, PathBuf)> {
        self.entries
            .iter()
            .map(|(n, p)| (context_name(n), p.clone()))
            .collect()
    }
}

/// The SNMPv3 context snmpsim serves a name as: the name itself when it
/// fits, else its MD5 hex digest.
pub(crate) fn context_name(name: &str) -> String {
    if name.chars().count() <= MAX_CONTEXT {
        name.to_string()
    } else {
        hex::encode(Md5::digest(name.as_bytes()))
    }
}

/// Reads `dir` recursively (following symbolic links, each directory once).
/// `Err` when it is missing, not a directory, or holds no snapshot file.
pub(crate) fn scan(dir: &Path) -> Result<Scan, String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("`data_dir` is not a directory: {}", dir.display())),
        Err(e) => {
            return Err(format!("`data_dir` not found: {} ({e})", dir.display()));
        }
    }
    let mut walk = Walk::default();
    walk.dir(dir, &[]);
    let mut scan = Scan::default();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for (rel, path) in walk.files {
        let name = name_of(&rel);
        if let Some(first) = names.get(&name) {
            scan.warnings.push(format!(
                "`data_dir`: {} and {} are both served as `{name}`: the first is used",
                first.display(),
                path.display()
            ));
            continue;
        }
        names.insert(name.clone(), path.clone());
        scan.bytes += std::fs::metadata(&path).map_or(0, |m| m.len());
        scan.entries.push((name, path));
    }
    scan.warnings.extend(walk.warnings);
    if !walk.not_read.is_empty() {
        let n = walk.not_read.len();
        scan.warnings.push(format!(
            "`data_dir` {}: {n} file{} in formats agentcluster does not read (`.snmprec.bz2`: decompress with bunzip2; `.dump`/`.MVC`: convert with snmpsim's tools) are not served, e.g. {}",
            dir.display(),
            if n == 1 { "" } else { "s" },
            walk.not_read[0].display()
        ));
    }
    if scan.entries.is_empty() {
        return Err(format!(
            "`data_dir` {} holds no snapshot file (.snmprec, .snmpwalk, .sapwalk){}",
            dir.display(),
            if walk.not_read.is_empty() {
                String::new()
            } else {
                format!(
                    ", only {} in formats agentcluster does not read (decompress `.snmprec.bz2` with bunzip2)",
                    walk.not_read.len()
                )
            }
        ));
    }
    Ok(scan)
}

#[derive(Default)]
struct Walk {
    /// (path components relative to the root, full path), in sorted order.
    files: Vec<(Vec<String>, PathBuf)>,
    not_read: Vec<PathBuf>,
    warnings: Vec<String>,
    /// Canonical directories already walked: a link loop is walked once.
    seen: HashSet<PathBuf>,
}

impl Walk {
    fn dir(&mut self, dir: &Path, rel: &[String]) {
        if let Ok(canon) = std::fs::canonicalize(dir)
            && !self.seen.insert(canon)
        {
            return;
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                self.warnings
                    .push(format!("`data_dir`: cannot read {}: {e}", dir.display()));
                return;
            }
        };
        let mut names: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .collect();
        names.sort();
        for (name, path) in names {
            // `metadata` follows links, as snmpsim does.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let mut sub = rel.to_vec();
            sub.push(name.clone());
            if meta.is_dir() {
                self.dir(&path, &sub);
            } else if meta.is_file() {
                if READ.iter().any(|ext| has_ext(&name, ext)) {
                    self.files.push((sub, path));
                } else if NOT_READ.iter().any(|ext| has_ext(&name, ext)) {
                    self.not_read.push(path);
                }
            }
        }
    }
}

fn has_ext(name: &str, ext: &str) -> bool {
    name.len() > ext.len() + 1
        && name.ends_with(ext)
        && name.as_bytes()[name.len() - ext.len() - 1] == b'.'
}

/// snmpsim's name for a file at `rel` (components, the last the file name).
fn name_of(rel: &[String]) -> String {
    let mut rel: Vec<&str> = rel.iter().map(String::as_str).collect();
    if rel.len() > 1 && rel[0] == "self" {
        rel.remove(0);
    }
    let joined = rel.join("/");
    let stem = match joined.rfind('.') {
        Some(dot) => &joined[..dot],
        None => joined.as_str(),
    };
    if rel.len() == 1 && stem == "self" {
        return String::new();
    }
    stem.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(p: &str) -> Vec<String> {
        p.split('/').map(str::to_string).collect()
    }

    #[test]
    fn names_as_snmpsim_gives_them() {
        assert_eq!(name_of(&rel("public.snmprec")), "public");
        assert_eq!(
            name_of(&rel("network/switch/cisco-c3750.snmprec")),
            "network/switch/cisco-c3750"
        );
        assert_eq!(name_of(&rel("self/foo.snmpwalk")), "foo");
        assert_eq!(name_of(&rel("self.snmprec")), "");
        assert_eq!(name_of(&rel("self/self.snmprec")), "");
        assert_eq!(name_of(&rel("a.b/c.d.sapwalk")), "a.b/c.d");
    }

    #[test]
    fn extensions_need_their_dot() {
        assert!(has_ext("a.snmprec", "snmprec"));
        assert!(!has_ext("asnmprec", "snmprec"));
        assert!(!has_ext(".snmprec", "snmprec"));
        assert!(has_ext("a.snmprec.bz2", "snmprec.bz2"));
        assert!(!has_ext("a.snmprec.bz2", "snmprec"));
        assert!(!has_ext("a.SNMPREC", "snmprec"));
    }

    #[test]
    fn long_context_names_become_their_digest() {
        assert_eq!(context_name("foundry/switch"), "foundry/switch");
        let long = "network/appliance/vss-monitoring-optimizer-2400-span";
        // md5 of the name, as snmpsim registers it.
        assert_eq!(
            context_name(long),
            hex::encode(Md5::digest(long.as_bytes()))
        );
        assert_eq!(context_name(long).len(), 32);
    }
}
