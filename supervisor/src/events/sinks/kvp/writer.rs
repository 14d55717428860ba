//! The writer: batches of events written to one pool file, each in one
//! locked, fsync'ed write.
//!
//! # Writing
//! Each batch is written with the file opened (created 0644 if missing),
//! locked with an OFD `fcntl` write lock (it conflicts with the classic
//! POSIX lock `hv_kvp_daemon` takes) and `flock(LOCK_EX)` (what cloud-init
//! takes), placed, fsync'ed, unlocked and closed. The pool is truncated
//! once per run if it was last modified before this boot (cloud-init's
//! rule). At most `max_records` of *our* records are kept: a batch takes
//! free slots and goes at the end of the file while under that, and the
//! slots of our oldest events (whole events, all their slices) at it; no
//! record ever moves, so the host, which enumerates the pool by index,
//! never misses one (see `pool`). The writes are in place, under the same
//! locks: `hv_kvp_daemon` keeps its pool open and locks through that
//! descriptor, so a rename would leave it locking a file nobody uses (and
//! the service user may write the pool, not its directory).
//!
//! Where our records and the free slots are is read from the pool, and
//! kept while the file is as this writer left it (same inode, length and
//! mtime), so a batch does not read the pool again.
//!
//! A writer killed in the middle of a write leaves nothing that the next
//! one cannot mend (see `pool`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::boot::Boot;
use super::lock::with_locks;
use super::pool::{Layout, apply, mend};
use super::record::{RECORD_SIZE, push_record};
use super::slices::encode_event;
use crate::events::Event;

/// Why a batch was not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The pool's directory does not exist: the sink turns itself off.
    #[error("{}: the directory does not exist (is this a Hyper-V guest with hv_kvp_daemon?)", .0.display())]
    NoDirectory(PathBuf),
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Events now in the pool (a batch over the cap loses its oldest).
    pub events: usize,
    pub records: usize,
    /// Our records removed to stay within `max_records` (older ones given
    /// way, and the oldest of a batch bigger than the cap).
    pub dropped: usize,
    /// The pool predated this boot and was emptied first.
    pub truncated: bool,
}

/// What identifies the file as we last left it, so its layout can be
/// trusted without reading it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }
}

/// Writes batches of events to one pool file (blocking I/O).
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    max_records: usize,
    boot: Boot,
    truncate_checked: bool,
    /// What a writer killed mid-write may have left was mended this run
    /// (and no write of ours failed since).
    mended: bool,
    /// The pool's layout as of the file's stamp after our last write.
    known: Option<(Stamp, Layout)>,
}

impl Writer {
    pub fn new(path: PathBuf, max_records: usize, boot: Boot) -> Writer {
        Writer {
            path,
            max_records: max_records.max(1),
            boot,
            truncate_checked: false,
            mended: false,
            known: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `events` in one locked write, in place of our oldest records
    /// if the cap requires it.
    pub fn write(&mut self, events: &[Arc<Event>]) -> Result<Written, WriteError> {
        let file = self.open()?;
        match with_locks(file, |f| self.write_locked(f, events)) {
            Ok(written) => Ok(written),
            Err(cause) => {
                // A write that failed half way may have left a slot
                // without a key: the next one reads the pool and mends it.
                self.known = None;
                self.mended = false;
                Err(WriteError::Io {
                    path: self.path.clone(),
                    cause,
                })
            }
        }
    }

    /// The records of `events`, each event's records together. Keys carry
    /// the bus's seq, which no run repeats ([`crate::events::seq`]).
    fn encode(&self, events: &[Arc<Event>]) -> Vec<Vec<u8>> {
        let mut groups = Vec::with_capacity(events.len());
        for e in events {
            match encode_event(self.boot.incarnation, e) {
                Ok(parts) => {
                    let mut buf = Vec::with_capacity(parts.len() * RECORD_SIZE);
                    for (k, v) in &parts {
                        push_record(&mut buf, k, v);
                    }
                    groups.push(buf);
                }
                Err(cause) => tracing::warn!(seq = e.seq, %cause, "cannot encode event for KVP"),
            }
        }
        groups
    }

    fn open(&self) -> Result<File, WriteError> {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&self.path)
        {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.dir_missing() => {
                Err(WriteError::NoDirectory(self.path.clone()))
            }
            Err(cause) => Err(WriteError::Io {
                path: self.path.clone(),
                cause,
            }),
        }
    }

    pub(super) fn dir_missing(&self) -> bool {
        self.path
            .parent()
            .is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir())
    }

    fn write_locked(&mut self, f: &File, events: &[Arc<Event>]) -> io::Result<Written> {
        let mut written = Written::default();
        if !self.truncate_checked {
            // Once per run, even if it fails, like cloud-init.
            self.truncate_checked = true;
            if let Some(boot) = self.boot.time
                && f.metadata()?.modified()? < boot
            {
                f.set_len(0)?;
                written.truncated = true;
                tracing::info!(pool = %self.path.display(), "KVP pool predates this boot: emptied");
            }
        }
        let mut slots = f;
        let stamp = Stamp::of(&f.metadata()?);
        let incarnation = self.boot.incarnation;
        let known = self.known.take().filter(|(s, _)| *s == stamp);
        let mut layout = match known {
            Some((_, layout)) => layout,
            None => {
                let mut pool = read_all(f, stamp.len)?;
                let mut mended = None;
                if !self.mended || pool.len() % RECORD_SIZE != 0 {
                    self.mended = true;
                    if let Some((plan, content, m)) = mend(&pool) {
                        apply(&mut slots, &plan)?;
                        pool = content;
                        mended = Some(m);
                    }
                }
                let layout = Layout::of(&pool, incarnation);
                if mended.is_some() || layout.keyless() > 0 {
                    let m = mended.unwrap_or_default();
                    tracing::warn!(
                        pool = %self.path.display(),
                        keyless = layout.keyless(),
                        duplicates = m.duplicates,
                        cut = m.cut,
                        padded = m.padded,
                        "KVP pool as left by a writer killed in the middle of a write: mended"
                    );
                }
                layout
            }
        };
        let groups = &self.encode(events);
        let new: usize = groups.iter().map(|g| g.len() / RECORD_SIZE).sum();
        let placed = layout.place(groups, self.max_records);
        apply(&mut slots, &placed.plan)?;
        f.sync_all()?;
        written.records = new - placed.dropped_new;
        written.events = groups.len() - placed.dropped_new_events;
        written.dropped = placed.dropped;
        self.known = Some((Stamp::of(&f.metadata()?), layout));
        Ok(written)
    }
}

fn read_all(f: &File, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len as usize];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::events::sinks::kvp::record::{KEY_SIZE, decode, encode_record};
    use crate::events::sinks::kvp::slices::reassemble;
    use crate::events::sinks::kvp::testutil::{
        arc, event, keys, long_reason, old_boot, ready, seqs,
    };

    /// [`seqs`], slices as `<seq>|<i>`.
    fn seqs_sliced(path: &Path) -> Vec<String> {
        keys(path)
            .into_iter()
            .map(|k| match k.strip_prefix("AGENTCLUSTER|") {
                Some(rest) => {
                    let f: Vec<&str> = rest.split('|').collect();
                    f[3..].join("|")
                }
                None => k,
            })
            .collect()
    }

    #[test]
    fn writes_batches_and_creates_the_file_0644() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let mut w = Writer::new(path.clone(), 100, old_boot());
        let done = w.write(&[ready(1), ready(2)]).unwrap();
        assert_eq!(
            done,
            Written {
                events: 2,
                records: 2,
                dropped: 0,
                truncated: false
            }
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o022, 0o644 & !0o022, "{mode:o}");
        w.write(&[ready(3)]).unwrap();
        let p = decode(&std::fs::read(&path).unwrap());
        assert_eq!(p.records.len(), 3);
        assert_eq!(p.records[2].key, "AGENTCLUSTER|1000000000|ready|dev-3|3");
        let e: Event = serde_json::from_str(&p.records[2].value).unwrap();
        assert_eq!(e, *ready(3));
    }

    /// Keys and values carry the bus's seq as it is: the bus numbers on
    /// across runs ([`crate::events::seq`]), so a second run of one boot
    /// adds its keys after the first run's, none repeated; another boot
    /// has keys of its own incarnation.
    #[test]
    fn keys_carry_the_seq_of_the_bus_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let mut first = Writer::new(path.clone(), 100, old_boot());
        first.write(&[ready(1), ready(2)]).unwrap();
        let mut second = Writer::new(path.clone(), 100, old_boot());
        second.write(&[ready(1003)]).unwrap();
        let p = decode(&std::fs::read(&path).unwrap());
        let keys: Vec<&str> = p.records.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "AGENTCLUSTER|1000000000|ready|dev-1|1",
                "AGENTCLUSTER|1000000000|ready|dev-2|2",
                "AGENTCLUSTER|1000000000|ready|dev-1003|1003"
            ]
        );
        let e: Event = serde_json::from_str(&p.records[2].value).unwrap();
        assert_eq!(e, *ready(1003));
        let later = Boot::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_100_000_000));
        let mut third = Writer::new(path.clone(), 100, later);
        third.write(&[ready(1004)]).unwrap();
        let p = decode(&std::fs::read(&path).unwrap());
        assert_eq!(
            p.records.last().unwrap().key,
            "AGENTCLUSTER|1100000000|ready|dev-1004|1004"
        );
    }

    #[test]
    fn a_missing_directory_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::new(dir.path().join("nope/pool"), 10, old_boot());
        assert!(matches!(
            w.write(&[ready(1)]),
            Err(WriteError::NoDirectory(_))
        ));
    }

    /// At the cap our oldest events give way in place: no record moves (the
    /// host enumerates the pool by index), other writers' records keep
    /// theirs.
    #[test]
    fn the_cap_reuses_our_oldest_slots_and_moves_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let append = |key: &str| {
            let mut f = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .unwrap();
            io::Write::write_all(&mut f, &encode_record(key, "foreign")).unwrap();
        };
        append("CLOUD_INIT|a");
        let mut w = Writer::new(path.clone(), 3, old_boot());
        w.write(&[ready(1), ready(2)]).unwrap();
        append("CLOUD_INIT|b");
        w.write(&[ready(3)]).unwrap();
        assert_eq!(seqs(&path), ["CLOUD_INIT|a", "1", "2", "CLOUD_INIT|b", "3"]);

        // One more: the oldest of ours gives its slot, nothing moves.
        let done = w.write(&[ready(4)]).unwrap();
        assert_eq!(done.dropped, 1);
        assert_eq!(seqs(&path), ["CLOUD_INIT|a", "4", "2", "CLOUD_INIT|b", "3"]);

        // A new writer (a new run, whose bus numbered on: 5). A sliced
        // event counts all its records; the oldest by seq give way (2,
        // then 3), its slices take their slots, lowest first, and the rest
        // go at the end.
        let big = arc(event(5, "dev-5", "died", &long_reason()));
        let n = encode_event(1, &big).unwrap().len();
        assert!(n > 3);
        let mut w = Writer::new(path.clone(), n + 1, old_boot());
        let done = w.write(std::slice::from_ref(&big)).unwrap();
        assert_eq!(done.dropped, 2);
        let slices = |from: usize, to: usize| (from..to).map(|i| format!("5|{i}"));
        let mut want: Vec<String> = vec!["CLOUD_INIT|a".into(), "4".into(), "5|0".into()];
        want.push("CLOUD_INIT|b".into());
        want.extend(slices(1, n));
        assert_eq!(seqs_sliced(&path), want);
        append("CLOUD_INIT|c");
        let done = w.write(&[ready(6)]).unwrap();
        assert_eq!(done.dropped, 1); // 4
        want[1] = "6".into();
        want.push("CLOUD_INIT|c".into());
        assert_eq!(seqs_sliced(&path), want);
        let entries = reassemble(&decode(&std::fs::read(&path).unwrap()).records);
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "CLOUD_INIT|a",
                "AGENTCLUSTER|1000000000|ready|dev-6|6",
                "AGENTCLUSTER|1000000000|died|dev-5|5",
                "CLOUD_INIT|b",
                "CLOUD_INIT|c",
            ]
        );
        assert_eq!(entries[2].value, serde_json::to_string(&*big).unwrap());
        assert!(entries[2].complete);

        // Now the sliced event is the oldest: one more ready drops it whole,
        // takes its first slot and empties the others, which the next
        // events take first.
        let done = w.write(&[ready(7)]).unwrap();
        assert_eq!(done.dropped, n);
        let mut want: Vec<String> = ["CLOUD_INIT|a", "6", "7", "CLOUD_INIT|b"]
            .map(String::from)
            .to_vec();
        want.extend(std::iter::repeat_n(String::new(), n - 1));
        want.push("CLOUD_INIT|c".into());
        assert_eq!(seqs(&path), want);
        let done = w.write(&[ready(8)]).unwrap();
        assert_eq!(done.dropped, 0);
        want[4] = "8".into();
        assert_eq!(seqs(&path), want);
    }

    #[test]
    fn a_batch_bigger_than_the_cap_keeps_its_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let mut w = Writer::new(path.clone(), 2, old_boot());
        let done = w.write(&[ready(1), ready(2), ready(3), ready(4)]).unwrap();
        assert_eq!(done.dropped, 2);
        assert_eq!((done.events, done.records), (2, 2));
        assert_eq!(seqs(&path), ["3", "4"]);
    }

    #[test]
    fn a_foreign_rewrite_is_noticed() {
        // Our count is cached; someone else emptying the pool must not
        // make us drop records we no longer have.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let mut w = Writer::new(path.clone(), 2, old_boot());
        w.write(&[ready(1), ready(2)]).unwrap();
        std::fs::write(&path, encode_record("other", "x")).unwrap();
        let done = w.write(&[ready(3)]).unwrap();
        assert_eq!(done.dropped, 0);
        assert_eq!(seqs(&path), ["other", "3"]);
    }

    #[test]
    fn a_partial_record_is_padded_when_whole_and_dropped_when_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        // Cut in its padding: its text is whole, so it stays, padded.
        let mut bytes = encode_record("other", "x");
        bytes.extend_from_slice(&encode_record("whole", "text")[..KEY_SIZE + 100]);
        std::fs::write(&path, &bytes).unwrap();
        let mut w = Writer::new(path.clone(), 10, old_boot());
        w.write(&[ready(1)]).unwrap();
        assert_eq!(seqs(&path), ["other", "whole", "1"]);
        let p = decode(&std::fs::read(&path).unwrap());
        assert_eq!(p.records[1].value, "text");
        // Cut in its key or in its value: a torn record, dropped.
        let torn = encode_record("torn-key", "torn-value");
        for cut in [4, KEY_SIZE + 2] {
            let mut bytes = encode_record("other", "x");
            bytes.extend_from_slice(&torn[..cut]);
            std::fs::write(&path, &bytes).unwrap();
            let mut w = Writer::new(path.clone(), 10, old_boot());
            w.write(&[ready(1)]).unwrap();
            assert_eq!(seqs(&path), ["other", "1"], "cut at {cut}");
        }
        // Also in the middle of a run: another writer may be the one killed.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        io::Write::write_all(&mut f, &torn[..KEY_SIZE + 2]).unwrap();
        let mut w = Writer::new(path.clone(), 10, old_boot());
        w.write(&[ready(2)]).unwrap();
        io::Write::write_all(&mut f, &torn[..4]).unwrap();
        w.write(&[ready(3)]).unwrap();
        assert_eq!(seqs(&path), ["other", "1", "2", "3"]);
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.set_modified(t).unwrap();
    }

    #[test]
    fn a_pool_older_than_the_boot_is_truncated_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let boot = SystemTime::now() - Duration::from_secs(3600);
        std::fs::write(&path, encode_record("CLOUD_INIT|last-boot", "x")).unwrap();
        set_mtime(&path, boot - Duration::from_secs(10));
        let mut w = Writer::new(path.clone(), 10, Boot::at(boot));
        assert!(w.write(&[ready(1)]).unwrap().truncated);
        assert_eq!(seqs(&path), ["1"]);

        // Once per run: older again (clock games), still not truncated.
        std::fs::write(&path, encode_record("CLOUD_INIT|x", "x")).unwrap();
        set_mtime(&path, boot - Duration::from_secs(10));
        assert!(!w.write(&[ready(2)]).unwrap().truncated);
        assert_eq!(seqs(&path), ["CLOUD_INIT|x", "2"]);

        // Modified since boot: kept.
        let mut w = Writer::new(path.clone(), 10, Boot::at(boot));
        set_mtime(&path, boot + Duration::from_secs(1));
        assert!(!w.write(&[ready(3)]).unwrap().truncated);
        assert_eq!(seqs(&path), ["CLOUD_INIT|x", "2", "3"]);

        // Boot time unknown: never truncated.
        set_mtime(&path, SystemTime::UNIX_EPOCH + Duration::from_secs(1));
        let unknown = Boot {
            time: None,
            incarnation: 0,
        };
        let mut w = Writer::new(path.clone(), 10, unknown);
        assert!(!w.write(&[ready(4)]).unwrap().truncated);
        assert_eq!(keys(&path).len(), 4);
    }
}
