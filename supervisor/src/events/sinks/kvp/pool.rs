//! A pool's bytes: which records are ours, the cap that drops our oldest
//! events, and the rewrite in place that a writer killed at any moment
//! leaves mendable.
//!
//! # A writer killed in the middle of a write
//! A process killed (SIGKILL, the OOM killer) inside `pwrite` leaves a
//! prefix of that write, cut on a page boundary, so in the middle of a
//! record. An append can only leave a partial last record. A rewrite in
//! place goes record by record, changed slots only, each one emptied first
//! (its key's first byte set to NUL), then written after that byte, then
//! given its first byte ([`rewrite_in_place`]): a kill leaves at most one
//! record with an empty key, and, as records only move towards the start,
//! copies of records that were moved but not yet overwritten. No record is
//! ever torn or lost but the new ones of the batch being written. The
//! first write of each run, and any write that finds a partial last record,
//! mends that ([`mend`]): records with an empty key go, a record present
//! twice byte for byte keeps its first copy, and a partial last record is
//! padded when only its padding was cut, dropped when its text was.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::record::{KEY_SIZE, RECORD_SIZE, read_pool};
use super::slices::PREFIX;

/// Where [`rewrite_in_place`] writes: the pool, or memory in tests.
pub(super) trait Slots {
    fn write_at(&mut self, buf: &[u8], at: u64) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

impl Slots for &File {
    fn write_at(&mut self, buf: &[u8], at: u64) -> io::Result<()> {
        self.write_all_at(buf, at)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// Turns the pool `old` (as read: whole records, perhaps a partial last
/// one) into `new` (whole records) in place. `new` must be records of
/// `old` in their order, some left out, then new records: every record
/// moves towards the start or stays. Changed slots are written in order,
/// each emptied first (NUL as its key's first byte), then written after
/// that byte, then given its first byte; records past the old ones are
/// appended in one write; the file is cut to its new length last. A kill
/// at any moment leaves every record of `new` that was in `old` whole, at
/// its old or its new place or both, at most one slot with an empty key,
/// and perhaps a partial last record (see [`mend`]).
pub(super) fn rewrite_in_place(f: &mut impl Slots, old: &[u8], new: &[u8]) -> io::Result<()> {
    let whole = old.len() / RECORD_SIZE;
    let end = whole * RECORD_SIZE;
    let partial = &old[end..];
    if !partial.is_empty() && !new.get(end..).is_some_and(|n| n.starts_with(partial)) {
        // A cut record that does not stay goes before anything is written
        // after it.
        f.set_len(end as u64)?;
    }
    let slots = new.len() / RECORD_SIZE;
    for j in 0..slots.min(whole) {
        let at = j * RECORD_SIZE;
        let (was, rec) = (&old[at..at + RECORD_SIZE], &new[at..at + RECORD_SIZE]);
        if was == rec {
            continue;
        }
        if was[0] != 0 {
            f.write_at(&[0], at as u64)?;
        }
        f.write_at(&rec[1..], at as u64 + 1)?;
        if rec[0] != 0 {
            f.write_at(&rec[..1], at as u64)?;
        }
    }
    if slots > whole {
        f.write_at(&new[end..], end as u64)?;
    }
    f.set_len(new.len() as u64)
}

/// What [`mend`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Mended {
    /// Records with an empty key removed.
    pub(super) emptied: usize,
    /// Second copies of records removed.
    pub(super) duplicates: usize,
    /// A partial last record was dropped (its text was cut).
    pub(super) cut: bool,
    /// A partial last record was padded (only its padding was cut).
    pub(super) padded: bool,
}

/// `pool` without what a writer killed in the middle of a write leaves
/// (see the module doc): records with an empty key (a slot being
/// rewritten; no key, no record), the second copy of a record present
/// twice byte for byte (moved, its old place not yet overwritten), and a
/// partial last record, padded with NULs if its key and value both end
/// within it, dropped otherwise. `None` when there is nothing to mend.
pub(super) fn mend(pool: &[u8]) -> Option<(Vec<u8>, Mended)> {
    let end = pool.len() / RECORD_SIZE * RECORD_SIZE;
    let mut m = Mended::default();
    let mut seen = std::collections::HashSet::new();
    let mut content = Vec::with_capacity(pool.len());
    for r in pool[..end].chunks_exact(RECORD_SIZE) {
        if r[0] == 0 {
            m.emptied += 1;
        } else if !seen.insert(r) {
            m.duplicates += 1;
        } else {
            content.extend_from_slice(r);
        }
    }
    let partial = &pool[end..];
    if !partial.is_empty() {
        let whole_text = partial[0] != 0
            && partial.len() > KEY_SIZE
            && partial[..KEY_SIZE].contains(&0)
            && partial[KEY_SIZE..].contains(&0);
        if whole_text {
            m.padded = true;
            content.extend_from_slice(partial);
            content.resize(content.len() + RECORD_SIZE - partial.len(), 0);
        } else {
            m.cut = true;
        }
    }
    (m != Mended::default()).then_some((content, m))
}

fn is_ours(record: &[u8]) -> bool {
    record.starts_with(PREFIX.as_bytes()) && record.get(PREFIX.len()) == Some(&b'|')
}

pub(super) fn count_ours(pool: &[u8]) -> usize {
    pool.chunks_exact(RECORD_SIZE)
        .filter(|r| is_ours(r))
        .count()
}

/// The key of the event a record of ours belongs to: its key without a
/// slice suffix (our keys have 5 fields, 6 when sliced).
fn base_key(record: &[u8]) -> &[u8] {
    let key = &record[..KEY_SIZE];
    let key = &key[..key.iter().position(|&b| b == 0).unwrap_or(KEY_SIZE)];
    if key.iter().filter(|&&b| b == b'|').count() >= 5
        && let Some(at) = key.iter().rposition(|&b| b == b'|')
    {
        return &key[..at];
    }
    key
}

/// The highest seq that our records in the pool file at `path` carry, of
/// any incarnation; 0 if there are none or the file cannot be read. The
/// supervisor numbers its events after it, so no key repeats even if its
/// own record of the sequence was lost.
pub fn last_seq_in(path: &Path) -> u64 {
    read_pool(path).map_or(0, |pool| last_seq(&pool))
}

/// The highest `<seq>` in the keys of our records, of any incarnation (0
/// if none).
pub(super) fn last_seq(pool: &[u8]) -> u64 {
    pool.chunks_exact(RECORD_SIZE)
        .filter(|r| is_ours(r))
        .filter_map(|r| {
            let key = base_key(r);
            let at = key.iter().rposition(|&b| b == b'|')?;
            std::str::from_utf8(&key[at + 1..])
                .ok()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// The pool rewritten to hold at most `max` of our records.
pub(super) struct Capped {
    pub(super) content: Vec<u8>,
    /// Records of ours removed, old and new.
    pub(super) dropped: usize,
    /// Of those, how many were in the new batch, and of how many events.
    pub(super) dropped_new: usize,
    pub(super) dropped_new_events: usize,
    pub(super) ours: usize,
}

/// Drops our oldest events (all records of each) until our records, old
/// and `new`, fit in `max`; other records stay, in order. If the batch
/// alone is too big, its oldest events go too.
pub(super) fn cap(pool: &[u8], new: &[Vec<u8>], max: usize) -> Capped {
    let records: Vec<&[u8]> = pool.chunks_exact(RECORD_SIZE).collect();
    // Our events in the file, oldest first: (first record index, count).
    let mut events: Vec<(usize, usize)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if !is_ours(r) {
            continue;
        }
        match events.last_mut() {
            Some((start, n)) if *start + *n == i && base_key(records[*start]) == base_key(r) => {
                *n += 1
            }
            _ => events.push((i, 1)),
        }
    }
    let mut ours: usize = events.iter().map(|e| e.1).sum();
    ours += new.iter().map(|g| g.len() / RECORD_SIZE).sum::<usize>();
    let mut dropped = 0;
    let mut gone = vec![false; records.len()];
    for &(start, n) in &events {
        if ours <= max {
            break;
        }
        gone[start..start + n].iter_mut().for_each(|g| *g = true);
        ours -= n;
        dropped += n;
    }
    let mut dropped_new = 0;
    let mut dropped_new_events = 0;
    let mut keep_new = new;
    while ours > max {
        let Some((first, rest)) = keep_new.split_first() else {
            break;
        };
        let n = first.len() / RECORD_SIZE;
        ours -= n;
        dropped_new += n;
        dropped_new_events += 1;
        keep_new = rest;
    }
    let mut content = Vec::with_capacity(pool.len());
    for (r, gone) in records.iter().zip(&gone) {
        if !gone {
            content.extend_from_slice(r);
        }
    }
    for g in keep_new {
        content.extend_from_slice(g);
    }
    Capped {
        content,
        dropped: dropped + dropped_new,
        dropped_new,
        dropped_new_events,
        ours,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::sinks::kvp::record::encode_record;

    #[test]
    fn the_last_seq_is_the_highest_of_ours_in_any_incarnation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        assert_eq!(last_seq_in(&path), 0, "no pool");
        let mut bytes = encode_record("CLOUD_INIT|1|start|x|99999", "x");
        bytes.extend(encode_record("AGENTCLUSTER|1000|ready|a|41", "{}"));
        bytes.extend(encode_record("AGENTCLUSTER|1000|died|a|1234|0", "{}"));
        bytes.extend(encode_record("AGENTCLUSTER|1000|died|a|1234|1", "{}"));
        bytes.extend(encode_record("AGENTCLUSTER|2000|ready||7", "{}"));
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(last_seq_in(&path), 1234);
    }

    /// A pool in memory whose writer is killed: after `ops` calls, the
    /// next write leaves only its first `cut` bytes and fails, like the
    /// kernel's write cut short by SIGKILL.
    struct Killed {
        bytes: Vec<u8>,
        ops: usize,
        cut: usize,
    }

    impl Slots for Killed {
        fn write_at(&mut self, buf: &[u8], at: u64) -> io::Result<()> {
            let (n, killed) = if self.ops == 0 {
                (self.cut.min(buf.len()), true)
            } else {
                self.ops -= 1;
                (buf.len(), false)
            };
            let at = at as usize;
            if self.bytes.len() < at + n {
                self.bytes.resize(at + n, 0);
            }
            self.bytes[at..at + n].copy_from_slice(&buf[..n]);
            if killed {
                return Err(io::Error::other("killed"));
            }
            Ok(())
        }

        fn set_len(&mut self, len: u64) -> io::Result<()> {
            if self.ops == 0 {
                return Err(io::Error::other("killed"));
            }
            self.ops -= 1;
            self.bytes.resize(len as usize, 0);
            Ok(())
        }
    }

    /// Runs `rewrite_in_place(old → new)` killed at every call and at many
    /// cut points of it, mends what is left, and checks that nothing is
    /// torn, lost, repeated or out of order.
    fn kill_everywhere(old: &[u8], new: &[u8]) -> usize {
        let whole: Vec<&[u8]> = old.chunks_exact(RECORD_SIZE).collect();
        let wanted: Vec<&[u8]> = new.chunks_exact(RECORD_SIZE).collect();
        // Records of `new` that were in `old`: these must all survive.
        let kept: Vec<&[u8]> = wanted
            .iter()
            .copied()
            .filter(|r| whole.contains(r))
            .collect();
        let mut cases = 0;
        for ops in 0.. {
            let mut done = false;
            for cut in (0..RECORD_SIZE * 3)
                .step_by(97)
                .chain([1, KEY_SIZE, RECORD_SIZE - 1])
            {
                let mut pool = Killed {
                    bytes: old.to_vec(),
                    ops,
                    cut,
                };
                cases += 1;
                if rewrite_in_place(&mut pool, old, new).is_ok() {
                    assert_eq!(pool.bytes, new, "not killed: exactly the new pool");
                    assert_eq!(mend(&pool.bytes), None);
                    done = true;
                    break;
                }
                let left = pool.bytes.clone();
                let mended = mend(&left).map_or(left.clone(), |(c, _)| c);
                assert_eq!(mended.len() % RECORD_SIZE, 0);
                let records: Vec<&[u8]> = mended.chunks_exact(RECORD_SIZE).collect();
                for r in &records {
                    assert!(
                        whole.contains(r) || wanted.contains(r),
                        "killed after {ops} calls, cut at {cut}: a torn record {:?}",
                        String::from_utf8_lossy(&r[..40])
                    );
                }
                let survivors: Vec<&[u8]> = records
                    .iter()
                    .copied()
                    .filter(|r| kept.contains(r))
                    .collect();
                assert_eq!(survivors, kept, "killed after {ops} calls, cut at {cut}");
                // Mending is itself a rewrite in place, and idempotent.
                assert_eq!(mend(&mended), None);
            }
            if done {
                break;
            }
        }
        cases
    }

    fn pool_of(keys: &[&str]) -> Vec<u8> {
        keys.iter()
            .flat_map(|k| encode_record(k, &format!("{{\"value of\":\"{k}\"}}")))
            .collect()
    }

    #[test]
    fn a_rewrite_killed_anywhere_leaves_no_torn_or_lost_record() {
        // The cap: our two oldest go, a new one comes; others' records
        // move with ours.
        let old = pool_of(&["CI|a", "AC|1", "AC|2", "CI|b", "AC|3", "AC|4", "CI|c"]);
        let new = pool_of(&["CI|a", "CI|b", "AC|3", "AC|4", "CI|c", "AC|5"]);
        assert!(kill_everywhere(&old, &new) > 500);
        // More dropped than added: the file gets shorter.
        let new = pool_of(&["CI|a", "AC|4", "CI|c", "AC|5"]);
        kill_everywhere(&old, &new);
        // A batch of several new records, and an old pool ending in a cut
        // record that goes.
        let mut cut = old.clone();
        cut.extend_from_slice(&pool_of(&["AC|torn"])[..KEY_SIZE + 10]);
        let new = pool_of(&[
            "CI|a", "AC|2", "CI|b", "AC|3", "AC|4", "CI|c", "AC|5", "AC|6", "AC|7",
        ]);
        kill_everywhere(&cut, &new);
        // What mend does after a kill is a rewrite too.
        let mut left = pool_of(&["CI|a", "AC|3", "AC|3", "CI|b"]);
        left[RECORD_SIZE] = 0;
        left.extend_from_slice(&pool_of(&["AC|9"])[..KEY_SIZE + 40]);
        let (mended, m) = mend(&left).unwrap();
        assert_eq!(
            m,
            Mended {
                emptied: 1,
                duplicates: 0,
                cut: false,
                padded: true
            }
        );
        assert_eq!(mended, pool_of(&["CI|a", "AC|3", "CI|b", "AC|9"]));
        kill_everywhere(&left, &mended);
    }
}
