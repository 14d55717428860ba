//! The store: a snapshot compiled once into a sorted, BER-pre-encoded binary
//! file in the cache directory and memory-mapped read-only by every agent
//! process that serves it, so the page cache holds one copy for all of them.
//!
//! - `format`: the file's layout (header, data region, entries, variations);
//! - `part`: records of a piece of source being compiled, and their placing;
//! - `build`: the parallel builder, which writes a store file or buffer;
//! - `merge`: the index, merged into OID order on every core;
//! - `reader`: the read-only mapping agents answer from;
//! - `cache`: stores named by their source's content in the cache directory;
//! - `prune`: what the cache directory holds, and removing what is unused;
//! - `check`: a store compiled in memory and dropped, for `agentcluster check`.
//!
//! GET is a binary search over the entries; GETNEXT/GETBULK walk them.
//!
//! Depends on [`crate::data::snapshot`] (records, parsing), `crate::wire`
//! (BER), `crate::util` (threads) and [`crate::sys`] (the mapping).

use std::path::{Path, PathBuf};

use crate::data::snapshot::SnapshotError;

mod build;
mod cache;
mod check;
mod format;
mod merge;
mod out;
mod part;
mod prune;
mod reader;
#[cfg(test)]
mod tests;

pub use cache::{Compiled, compile, load, store_path};
pub use check::{Checked, check};
pub(crate) use format::{FLAG_COUNTER64, FLAG_EXCEPTION, FLAG_UPTIME};
pub use prune::{Cached, Pruned, cached, prune, touch};
pub use reader::{Item, Store};

/// Why a store could not be built or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The snapshot could not be read or parsed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (the source, the store or the cache directory).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is no store of this format version.
    #[error("{}: not a store of this version (recompile it)", path.display())]
    Format {
        /// The store file.
        path: PathBuf,
    },
    /// An offset or a length outgrew the format's integers.
    #[error("{}: too large for the store format", path.display())]
    TooLarge {
        /// The snapshot source.
        path: PathBuf,
    },
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}
