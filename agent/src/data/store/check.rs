//! Snapshots compiled as [`super::compile`] compiles them, but in memory and
//! then dropped: the records and warnings of the stores they would make, or
//! the errors that would stop the start, with nothing written to the cache.
//! What `agentcluster check` does with every snapshot of a fleet.

use std::path::Path;
use std::sync::Mutex;

use super::build::{COMPILE_PIECE, compile_snmprec, diagnostics};
use super::merge::index;
use super::out::Fail;
use super::{StoreError, io_err};
use crate::data::snapshot::{self, Diagnostic, SnapshotError};
use crate::util::lanes::{on_lanes, threads};

/// What compiling a snapshot would give.
#[derive(Debug)]
pub struct Checked {
    /// Records in the store.
    pub records: usize,
    /// The warnings compiling it logs (repeated OIDs).
    pub warnings: Vec<Diagnostic>,
}

/// Compiles each of `sources` in memory, as many files at once as there
/// are cores (a large `.snmprec` is compiled on every core by itself), and
/// returns the outcome of each, in the order given.
pub fn check(sources: &[&Path]) -> Vec<Result<Checked, StoreError>> {
    let n = threads().min(sources.len()).max(1);
    let mut lanes: Vec<Vec<(usize, &Path)>> = (0..n).map(|_| Vec::new()).collect();
    for (k, source) in sources.iter().enumerate() {
        lanes[k % n].push((k, source));
    }
    let mut done: Vec<(usize, Result<Checked, StoreError>)> = on_lanes(lanes, |lane| {
        lane.into_iter()
            .map(|(k, source)| (k, check_one(source)))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    done.sort_by_key(|(k, _)| *k);
    done.into_iter().map(|(_, r)| r).collect()
}

/// One snapshot, compiled as [`super::compile`] would.
fn check_one(source: &Path) -> Result<Checked, StoreError> {
    let format =
        snapshot::Format::from_path(source).ok_or_else(|| SnapshotError::UnknownFormat {
            path: source.to_owned(),
        })?;
    let data = std::fs::read(source).map_err(io_err(source))?;
    if format != snapshot::Format::Snmprec {
        let snap = snapshot::parse(&data, format, source)?;
        return Ok(Checked {
            records: snap.records.len(),
            warnings: snap.warnings,
        });
    }
    let out = Mutex::new(Vec::new());
    let built = compile_snmprec(&data, source, &out, COMPILE_PIECE)?;
    drop(data);
    let index = index(&built.placed, &out, true).map_err(|e| match e {
        Fail::Io(e) => io_err(source)(e),
        Fail::TooLarge => StoreError::TooLarge {
            path: source.to_owned(),
        },
    })?;
    let mut warnings = built.warnings;
    warnings.extend(diagnostics(source, index.warnings));
    Ok(Checked {
        records: index.count,
        warnings,
    })
}
