//! The compiled stores a fleet needs: every distinct snapshot compiled
//! once into the cache directory. Blocking (file I/O and CPU): callers on
//! the runtime run it on the blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use agentcluster_agent::snapshot::SnapshotError;
use agentcluster_agent::store;
use agentcluster_conf::Fleet;

use crate::error::Error;

/// Compiles every distinct snapshot of the fleet once. Returns, for each
/// source file, the compiled store file.
pub fn compile_stores(fleet: &Fleet) -> Result<HashMap<PathBuf, PathBuf>, Error> {
    compile_stores_counted(fleet, &mut |_| {})
}

/// How far [`compile_stores_counted`] has come.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    /// Files compiled (or found in the cache) so far.
    pub done: usize,
    /// Distinct snapshot files of the fleet.
    pub total: usize,
    /// Records in the files done so far.
    pub records: usize,
}

/// [`compile_stores`], telling `counted` before the first file and after
/// each one.
pub fn compile_stores_counted(
    fleet: &Fleet,
    counted: &mut dyn FnMut(Counted),
) -> Result<HashMap<PathBuf, PathBuf>, Error> {
    let files = fleet.snapshots();
    let mut progress = Counted {
        done: 0,
        total: files.len(),
        records: 0,
    };
    counted(progress);
    let mut stores = HashMap::new();
    for path in files {
        let compiled = store::compile(path, &fleet.cluster.cache_dir)?;
        for w in &compiled.warnings {
            tracing::warn!("{w}");
        }
        tracing::debug!(
            snapshot = %path.display(),
            records = compiled.records,
            built = compiled.built,
            "store ready"
        );
        stores.insert(path.clone(), compiled.store_path);
        progress.done += 1;
        progress.records += compiled.records;
        counted(progress);
    }
    Ok(stores)
}

/// The cache directory's upkeep, run once an hour (blocking: file I/O):
/// marks the stores `served` now as used, so that neither this supervisor
/// nor another one sharing the directory prunes them, then removes the
/// stores unused for longer than `max_age` (zero: none) and the temporary
/// files of compiles that died. Returns the stores served that are gone
/// (deleted by hand), to be compiled again.
pub fn tend_cache(cache_dir: &Path, served: &[PathBuf], max_age: Duration) -> Vec<PathBuf> {
    let mut gone = Vec::new();
    for s in served {
        match store::touch(s) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => gone.push(s.clone()),
            // Someone else's cache directory: it still serves.
            Err(e) => tracing::debug!(store = %s.display(), cause = %e, "store not marked as used"),
        }
    }
    if !max_age.is_zero() {
        prune(cache_dir, served, max_age);
    }
    gone
}

/// Removes the stores of `cache_dir` unused for longer than `max_age`
/// but those `served`, logging what went.
fn prune(cache_dir: &Path, served: &[PathBuf], max_age: Duration) {
    match store::prune(cache_dir, served, max_age, SystemTime::now(), false) {
        Ok(p) if p.removed.is_empty() && p.temporaries.is_empty() => {}
        Ok(p) => tracing::info!(
            dir = %cache_dir.display(),
            stores = p.removed.len(),
            mib = format!("{:.1}", p.bytes() as f64 / (1 << 20) as f64),
            temporaries = p.temporaries.len(),
            unused_for = %agentcluster_conf::format_duration(max_age),
            "cache: removed stores unused for longer than cluster.cache_max_age"
        ),
        Err(e) => tracing::warn!(dir = %cache_dir.display(), cause = %e, "cache: not pruned"),
    }
}

/// Why a recompiled snapshot of `records` records must not replace the
/// store served now, of `served` records (`None`: not known), when at most
/// `max_loss` percent of the records may go (`cluster.snapshot_max_loss`;
/// 100: any share). An empty snapshot is always refused: that is what a
/// file truncated by accident, or caught in the middle of a rewrite in
/// place, looks like (a file without records does not even compile, so
/// this only keeps an empty store from ever being swapped in). `None`: it
/// may replace it.
pub fn refusal(records: usize, served: Option<usize>, max_loss: u8) -> Option<String> {
    if records == 0 {
        return Some("it has no records".to_string());
    }
    let served = served?;
    let lost = served.checked_sub(records).filter(|&l| l > 0)?;
    // lost / served > max_loss / 100, in integers.
    if (lost as u128) * 100 <= u128::from(max_loss) * (served as u128) {
        return None;
    }
    let share = lost as f64 * 100.0 / served as f64;
    Some(format!(
        "it has {records} records where {served} are served: {share:.1}% lost, more than \
         cluster.snapshot_max_loss ({max_loss}%)"
    ))
}

/// Whether `store`, just compiled from `source` with `records` records,
/// may replace the stores `served` now for it: `Err` says why not. A
/// source not served now, or a store that is already served, is not
/// checked. Blocking (opens the served stores).
pub fn check_swap(
    source: &Path,
    store: &Path,
    records: usize,
    served: &[PathBuf],
    max_loss: u8,
) -> Result<(), String> {
    if served.is_empty() || served.iter().any(|s| s == store) {
        return Ok(());
    }
    let before = served.iter().filter_map(|s| records_in(s)).max();
    match refusal(records, before, max_loss) {
        Some(why) => Err(format!("snapshot {} not reloaded: {why}", source.display())),
        None => Ok(()),
    }
}

/// `e` in one line: of a snapshot with broken records, the first one and
/// how many more there are (a file overwritten with something else can
/// have thousands, and the reason is repeated for every agent); its
/// warnings are left out. A file without records is its one error
/// (`FILE: no records: …`).
pub fn brief(e: &store::StoreError) -> String {
    match e {
        store::StoreError::Snapshot(SnapshotError::Invalid { errors, .. }) if errors.len() > 1 => {
            let first = errors.first().map(ToString::to_string).unwrap_or_default();
            format!("{first} (and {} more broken records)", errors.len() - 1)
        }
        e => e.to_string(),
    }
}

/// The records of a compiled store, if it can be opened. Blocking.
pub fn records_in(store: &Path) -> Option<usize> {
    store::Store::open(store).ok().map(|s| s.len())
}

#[cfg(test)]
mod tests {
    use super::{refusal, tend_cache};
    use std::time::{Duration, SystemTime};

    /// The upkeep marks what is served as used, so that it survives any
    /// prune, and removes only what is old and not served; with a zero
    /// age it removes nothing.
    #[test]
    fn the_upkeep_marks_the_served_stores_and_prunes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(400 * 86_400);
        let store = |name: &str| {
            let p = dir.path().join(format!("{name:0>32}.store"));
            std::fs::write(&p, b"x").unwrap();
            std::fs::File::open(&p)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
            p
        };
        let (served, unused) = (store("1"), store("2"));
        let gone = tend_cache(dir.path(), std::slice::from_ref(&served), Duration::ZERO);
        assert!(unused.exists(), "a zero age prunes nothing");
        assert!(gone.is_empty());
        let used = std::fs::metadata(&served).unwrap().modified().unwrap();
        assert!(
            used.elapsed().unwrap() < Duration::from_secs(3600),
            "marked as used"
        );

        std::fs::File::open(&served)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let gone = tend_cache(
            dir.path(),
            std::slice::from_ref(&served),
            Duration::from_secs(30 * 86_400),
        );
        assert!(served.exists() && !unused.exists());
        assert!(gone.is_empty());
        // A served store gone from the cache is given back, to be compiled
        // again.
        std::fs::remove_file(&served).unwrap();
        let gone = tend_cache(
            dir.path(),
            std::slice::from_ref(&served),
            Duration::from_secs(30 * 86_400),
        );
        assert_eq!(gone, [served]);
    }

    #[test]
    fn an_empty_snapshot_is_refused_whatever_the_limit() {
        for max_loss in [0, 50, 100] {
            assert_eq!(
                refusal(0, Some(10), max_loss).as_deref(),
                Some("it has no records")
            );
            assert!(refusal(0, None, max_loss).is_some());
            assert!(refusal(0, Some(0), max_loss).is_some());
        }
    }

    #[test]
    fn losing_more_than_the_share_is_refused_and_up_to_it_is_not() {
        // 50%: half may go, one more is too many.
        assert_eq!(refusal(5, Some(10), 50), None);
        let why = refusal(4, Some(10), 50).expect("refused");
        assert!(
            why.contains("4 records where 10 are served")
                && why.contains("60.0% lost")
                && why.contains("(50%)"),
            "{why}"
        );
        // Rounding never lets a loss over the limit through.
        assert_eq!(refusal(1_000_000, Some(2_000_000), 50), None);
        assert!(refusal(999_999, Some(2_000_000), 50).is_some());
        assert_eq!(refusal(2, Some(3), 34), None);
        assert!(refusal(2, Some(3), 33).is_some());
        // 0%: not one record may go.
        assert_eq!(refusal(10, Some(10), 0), None);
        assert!(refusal(9, Some(10), 0).is_some());
        // 100%: any loss but all of it.
        assert_eq!(refusal(1, Some(1_000_000), 100), None);
    }

    #[test]
    fn growing_or_an_unknown_served_store_is_never_a_loss() {
        assert_eq!(refusal(11, Some(10), 0), None);
        assert_eq!(refusal(1, Some(0), 0), None);
        assert_eq!(refusal(1, None, 0), None);
    }
}
