//! What the cache directory holds, and removing what nothing uses any more.
//!
//! A store's modification time is when it was last used: compiling sets it
//! (a new store) or refreshes it (a store found in the cache), and a
//! running supervisor refreshes it for every store it serves, more often
//! than the age after which stores are pruned. A store unused for longer
//! than that, and not named by whoever prunes, is removed; it is only a
//! cache, and a fleet that names its snapshot again compiles it again.
//!
//! The temporary file of a compile that died (`.tmp-PID-N.store`) is
//! removed once it is an hour old and its process is gone, or a day old.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A temporary file younger than this is never removed: its compile may
/// still be writing it (in another PID namespace its process is not seen).
const TEMP_GRACE: Duration = Duration::from_secs(3600);
/// A temporary file older than this is removed even if a process of its
/// PID runs (the PID was reused).
const TEMP_MAX: Duration = Duration::from_secs(86_400);

/// A compiled store in the cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// The store file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// When it was last compiled, found in the cache, or refreshed by a
    /// supervisor serving it.
    pub used: SystemTime,
}

/// What [`prune`] removed (or, dry, would remove).
#[derive(Debug, Default)]
pub struct Pruned {
    /// Stores removed, oldest use first.
    pub removed: Vec<Cached>,
    /// Stores left in place.
    pub kept: usize,
    /// Temporary files of compiles that died.
    pub temporaries: Vec<PathBuf>,
}

impl Pruned {
    /// Bytes the removed stores and temporary files took.
    pub fn bytes(&self) -> u64 {
        self.removed.iter().map(|c| c.bytes).sum()
    }
}

/// Marks the store at `path` as used now. Fails if it is not there, or
/// the cache directory belongs to someone else.
pub fn touch(path: &Path) -> io::Result<()> {
    fs::File::open(path)?.set_modified(SystemTime::now())
}

/// Whether `name` is a store's file name: 32 lowercase hex digits and
/// `.store`.
fn is_store(name: &OsStr) -> bool {
    let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".store")) else {
        return false;
    };
    stem.len() == 32
        && stem
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The PID of a compile's temporary file name (`.tmp-PID-N.store`).
fn temporary_pid(name: &OsStr) -> Option<i32> {
    let rest = name
        .to_str()?
        .strip_prefix(".tmp-")?
        .strip_suffix(".store")?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Every store in `cache_dir`, oldest use first; none when the directory
/// is not there.
pub fn cached(cache_dir: &Path) -> io::Result<Vec<Cached>> {
    Ok(listing(cache_dir)?.0)
}

/// A compile's temporary file: its path, the PID in its name, and when it
/// was last written.
type Temporary = (PathBuf, i32, SystemTime);

/// What one reading of `cache_dir` finds: its stores, oldest use first,
/// and the temporary files of compiles.
fn listing(cache_dir: &Path) -> io::Result<(Vec<Cached>, Vec<Temporary>)> {
    let (mut stores, mut temporaries) = (Vec::new(), Vec::new());
    let entries = match fs::read_dir(cache_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((stores, temporaries)),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let pid = temporary_pid(&name);
        if pid.is_none() && !is_store(&name) {
            continue;
        }
        // Gone since the listing: another pruner's.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        match pid {
            Some(pid) => temporaries.push((entry.path(), pid, meta.modified()?)),
            None => stores.push(Cached {
                path: entry.path(),
                bytes: meta.len(),
                used: meta.modified()?,
            }),
        }
    }
    stores.sort_by(|a, b| a.used.cmp(&b.used).then_with(|| a.path.cmp(&b.path)));
    Ok((stores, temporaries))
}

/// Removes from `cache_dir` the stores last used more than `unused_for`
/// before `now` that `keep` does not name (by file name), and the
/// temporary files of compiles that died. With `dry`, removes nothing and
/// says what it would remove.
pub fn prune(
    cache_dir: &Path,
    keep: &[PathBuf],
    unused_for: Duration,
    now: SystemTime,
    dry: bool,
) -> io::Result<Pruned> {
    let kept_names: Vec<&OsStr> = keep.iter().filter_map(|p| p.file_name()).collect();
    let mut pruned = Pruned::default();
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    let (stores, temporaries) = listing(cache_dir)?;
    for store in stores {
        let named = store
            .path
            .file_name()
            .is_some_and(|n| kept_names.contains(&n));
        if named || age(store.used) <= unused_for {
            pruned.kept += 1;
            continue;
        }
        // Looked at again just before it goes: a compile may have found
        // it in the cache since the listing, and marked it as used.
        let used = fs::metadata(&store.path).and_then(|m| m.modified());
        if used.is_ok_and(|t| age(t) <= unused_for) {
            pruned.kept += 1;
            continue;
        }
        if !dry && let Err(e) = fs::remove_file(&store.path) {
            // Another pruner was first.
            if e.kind() == io::ErrorKind::NotFound {
                continue;
            }
            return Err(io::Error::new(
                e.kind(),
                format!("{}: {e}", store.path.display()),
            ));
        }
        pruned.removed.push(store);
    }
    for (path, pid, modified) in temporaries {
        let old = age(modified);
        if old <= TEMP_GRACE || (old <= TEMP_MAX && alive(pid)) {
            continue;
        }
        if dry || fs::remove_file(&path).is_ok() {
            pruned.temporaries.push(path);
        }
    }
    Ok(pruned)
}

/// Whether a process of this PID runs (one we may not signal counts).
fn alive(pid: i32) -> bool {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn store(dir: &Path, name: &str, bytes: usize, used: SystemTime) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, vec![0u8; bytes]).unwrap();
        fs::File::open(&p).unwrap().set_modified(used).unwrap();
        p
    }

    fn names(stores: &[Cached]) -> Vec<String> {
        stores
            .iter()
            .map(|c| c.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    const A: &str = "0123456789abcdef0123456789abcdef.store";
    const B: &str = "fedcba9876543210fedcba9876543210.store";
    const C: &str = "00000000000000000000000000000000.store";

    #[test]
    fn only_store_names_are_stores() {
        for good in [A, B, C] {
            assert!(is_store(OsStr::new(good)), "{good}");
        }
        for bad in [
            "0123456789ABCDEF0123456789abcdef.store",
            "0123456789abcdef0123456789abcde.store",
            "0123456789abcdef0123456789abcdef0.store",
            "0123456789abcdef0123456789abcdef.snmprec",
            ".tmp-12-0.store",
            "notes.txt",
        ] {
            assert!(!is_store(OsStr::new(bad)), "{bad}");
        }
        assert_eq!(temporary_pid(OsStr::new(".tmp-4321-7.store")), Some(4321));
        assert_eq!(temporary_pid(OsStr::new(".tmp-4321.store")), None);
        assert_eq!(temporary_pid(OsStr::new(A)), None);
    }

    #[test]
    fn stores_unused_for_longer_go_unless_kept_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let a = store(dir.path(), A, 100, now - 40 * DAY);
        let b = store(dir.path(), B, 200, now - 40 * DAY);
        let c = store(dir.path(), C, 300, now - DAY);
        store(dir.path(), "notes.txt", 10, now - 400 * DAY);
        assert_eq!(names(&cached(dir.path()).unwrap()), [A, B, C]);

        // Dry: says what would go, removes nothing.
        let dry = prune(dir.path(), std::slice::from_ref(&b), 30 * DAY, now, true).unwrap();
        assert_eq!(names(&dry.removed), [A]);
        assert_eq!((dry.kept, dry.bytes()), (2, 100));
        assert!(a.exists());

        let pruned = prune(dir.path(), std::slice::from_ref(&b), 30 * DAY, now, false).unwrap();
        assert_eq!(names(&pruned.removed), [A]);
        assert_eq!(pruned.kept, 2);
        assert!(!a.exists() && b.exists() && c.exists());
        assert!(
            dir.path().join("notes.txt").exists(),
            "not a store: left alone"
        );

        // Touched: used now, so young.
        touch(&b).unwrap();
        let pruned = prune(dir.path(), &[], 30 * DAY, now + DAY, false).unwrap();
        assert!(pruned.removed.is_empty() && b.exists());
        // A zero age removes everything not kept.
        let pruned = prune(
            dir.path(),
            std::slice::from_ref(&c),
            Duration::ZERO,
            now + DAY,
            false,
        )
        .unwrap();
        assert_eq!(names(&pruned.removed), [B]);
        assert_eq!(names(&cached(dir.path()).unwrap()), [C]);
    }

    #[test]
    fn a_missing_cache_directory_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("never");
        assert!(cached(&gone).unwrap().is_empty());
        let pruned = prune(&gone, &[], Duration::ZERO, SystemTime::now(), false).unwrap();
        assert!(pruned.removed.is_empty() && pruned.temporaries.is_empty());
    }

    #[test]
    fn temporaries_of_dead_compiles_go_after_an_hour_and_any_after_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let me = std::process::id();
        // No process has a PID above pid_max (at most 2^22).
        let dead = 1 << 23;
        let fresh_dead = store(dir.path(), &format!(".tmp-{dead}-0.store"), 1, now);
        let old_dead = store(
            dir.path(),
            &format!(".tmp-{dead}-1.store"),
            1,
            now - 2 * TEMP_GRACE,
        );
        let old_alive = store(
            dir.path(),
            &format!(".tmp-{me}-0.store"),
            1,
            now - 2 * TEMP_GRACE,
        );
        let ancient_alive = store(
            dir.path(),
            &format!(".tmp-{me}-1.store"),
            1,
            now - 2 * TEMP_MAX,
        );
        let pruned = prune(dir.path(), &[], 30 * DAY, now, false).unwrap();
        let mut gone = pruned.temporaries.clone();
        gone.sort();
        let mut want = vec![old_dead.clone(), ancient_alive.clone()];
        want.sort();
        assert_eq!(gone, want);
        assert!(fresh_dead.exists() && old_alive.exists());
        assert!(!old_dead.exists() && !ancient_alive.exists());
    }
}
