//! Device snapshots: `.snmprec`, `.snmpwalk` and `.sapwalk` files parsed into
//! sorted, de-duplicated records, and written back in any of the formats.

use std::path::{Path, PathBuf};

use crate::value::{Oid, Value};

/// A variation tag attached to a record (snmprec `TAG:variation|params`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variation {
    /// The module name, e.g. `numeric`, `writecache`.
    pub name: String,
    /// The raw parameter text after the second `|`, e.g. `min=1,max=2,wrap=1`.
    pub params: String,
}

/// One managed object instance of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub oid: Oid,
    /// The static value: the recorded value, or for a variation the value it
    /// starts from (`value=` of writecache, `initial` of numeric).
    pub value: Value,
    pub variation: Option<Variation>,
    /// 1-based line in the source file, for messages.
    pub line: usize,
}

/// A message about one place in a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// The file formats we read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Snmprec,
    Snmpwalk,
    Sapwalk,
}

impl Format {
    /// The format named by a file's extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "snmprec" => Some(Format::Snmprec),
            "snmpwalk" => Some(Format::Snmpwalk),
            "sapwalk" => Some(Format::Sapwalk),
            _ => None,
        }
    }
}

/// A parsed snapshot: records sorted by OID with duplicates removed (the last
/// one in the file wins, and each duplicate is reported in `warnings`).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub records: Vec<Record>,
    pub warnings: Vec<Diagnostic>,
}

/// Why a snapshot could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: unknown snapshot format (expected .snmprec, .snmpwalk or .sapwalk)", path.display())]
    UnknownFormat { path: PathBuf },
    /// Every broken record of the file, each naming its line.
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}
