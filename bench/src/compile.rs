//! Snapshot compile rate and warm open, through the agent crate's own
//! store functions (the code the supervisor and agents run).

use std::path::Path;
use std::time::Instant;

use agentcluster_agent::store::{self, Store};
use serde::Serialize;

/// One snapshot's compile and open times; the body of a `compile` record,
/// so its field names are keys the report reads.
#[derive(Debug, Clone, Serialize)]
pub struct Compile {
    /// Records in the snapshot.
    pub records: usize,
    /// Size of the snapshot file.
    pub source_bytes: u64,
    /// Size of the compiled store.
    pub store_bytes: u64,
    /// Parse, sort, encode and write (with fsync) from an empty cache.
    pub cold_s: f64,
    /// `records` over `cold_s`.
    pub records_per_s: f64,
    /// `compile` again with the store already cached (reads and hashes the
    /// source, opens the store): the supervisor's per-snapshot start cost.
    pub cached_check_ms: f64,
    /// Opening (mapping) the compiled store and one lookup: the agent's
    /// part of a warm start. Median of `opens`.
    pub open_ms: f64,
    /// How many opens `open_ms` is the median of.
    pub opens: usize,
}

/// Compiles `source` into `cache` (emptied first), compiles it again from
/// the cache, then opens the store `opens` times (at least once).
pub fn run(source: &Path, cache: &Path, opens: usize) -> anyhow::Result<Compile> {
    if cache.exists() {
        std::fs::remove_dir_all(cache)?;
    }
    let source_bytes = std::fs::metadata(source)?.len();
    let t = Instant::now();
    let c = store::compile(source, cache)?;
    let cold_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let again = store::compile(source, cache)?;
    let cached_check_ms = t.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(!again.built, "the second compile did not reuse the cache");
    let mut times = Vec::with_capacity(opens.max(1));
    let probe = [1u32, 3, 6, 1, 2, 1, 1, 5, 0];
    for _ in 0..opens.max(1) {
        let t = Instant::now();
        let s = Store::open(&c.store_path)?;
        std::hint::black_box(s.lower_bound(&probe));
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(Compile {
        records: c.records,
        source_bytes,
        store_bytes: std::fs::metadata(&c.store_path)?.len(),
        cold_s,
        records_per_s: c.records as f64 / cold_s.max(1e-9),
        cached_check_ms,
        open_ms: times[times.len() / 2],
        opens: times.len(),
    })
}
