//! A pool's bytes: which records are ours and how old they are, where a
//! batch goes (within the cap, in place of our oldest events), and writing
//! slots so that a writer killed at any moment leaves a pool the next
//! write mends.
//!
//! # No record moves
//! `hv_kvp_daemon` hands the pool to the host one record at a time, by
//! index: the host asks for record 0, 1, 2, … in separate requests and the
//! daemon reads the file again for each. A record that moves between two
//! requests is missed or seen twice, so no record ever moves: another
//! writer's record keeps its index for as long as it is there, and so does
//! one of ours until it is dropped. A batch ([`Layout::place`]) takes free
//! slots (all NULs) first, then goes at the end of the file, while our
//! records stay within `max_records`; at the cap it takes, in place, the
//! slots of our oldest events. Oldest by key ([`Age`]): this boot's
//! incarnation after any other, then by seq; the pool's order no longer
//! says it once slots are reused. An event gives way whole, all its slices,
//! and the batch's records take the slots so freed lowest first, so a new
//! event's slices come in order, perhaps with other records between them
//! (`reassemble` joins them across those). Slots freed and not taken are
//! emptied (all NULs) and taken first by the next batch; free slots at the
//! end of the file are cut off.
//!
//! # One slot rewritten
//! [`put`] sets the key's first byte to NUL (the record is gone: no key),
//! then the value's first byte (the value reads as empty), writes the rest
//! of the new record, then the value's first byte, then the key's. Each
//! step is one write, and a reader sees the slot (as the C strings the
//! daemon passes on) as the old record, as a record without a key whose
//! value is empty, the old one or the new one, or as the new record: never
//! one record's key with another's value, never a value half written. A
//! batch appends first, then rewrites slots in the order of what they held,
//! free ones first, then our oldest events', and empties slots without a
//! key last: so the newest record of ours is the last to go, when a newer
//! one is already there, and the highest seq of ours in the pool
//! ([`last_seq`]) never goes down. The bus numbers its events above it
//! (and above its own record of the sequence in `state_dir`, see
//! [`crate::events::seq`]), so a key the host has seen is never given
//! again, even when that record was lost.
//!
//! # A writer killed in the middle of a write
//! A process killed (SIGKILL, the OOM killer) inside `pwrite` leaves a
//! prefix of that write, cut on a page boundary. An append can only leave a
//! partial last record; a slot rewrite, one slot without a key (see
//! above). No record is ever torn, lost or moved but those of the batch
//! being written and the one slot being rewritten. A slot without a key is
//! free: the next batch takes it like any free slot, or empties it once its
//! own records are in (the rest of its key may be the only trace of our
//! highest seq, see [`last_seq`]). The first write of each run, and any
//! write that finds a partial last record, mends the rest ([`mend`]), in
//! place: a partial last record is padded when only its padding was cut
//! and dropped when its text was, and a record present twice byte for byte
//! (left by an older version, which moved records) keeps its first copy,
//! the second slot emptied.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::record::{KEY_SIZE, RECORD_SIZE, read_pool};
use super::slices::PREFIX;

/// Where [`apply`] writes: the pool, or memory in tests.
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

/// What one write does to the pool, in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// The file is first cut to this length: a partial last record that
    /// goes.
    pub(super) cut: Option<u64>,
    /// Bytes written at this offset, the end of the file: new records, or
    /// the padding of a partial last record.
    pub(super) append: Option<(u64, Vec<u8>)>,
    /// Slots rewritten in place ([`put`]), in this order, each with its new
    /// record; all NULs empties the slot.
    pub(super) puts: Vec<(usize, Vec<u8>)>,
    /// The file's length at the end, when it shrinks (free slots at the
    /// end cut off).
    pub(super) len: Option<u64>,
}

/// Carries out `plan` (see the module doc for why in this order).
pub(super) fn apply(f: &mut impl Slots, plan: &Plan) -> io::Result<()> {
    if let Some(len) = plan.cut {
        f.set_len(len)?;
    }
    if let Some((at, bytes)) = &plan.append {
        f.write_at(bytes, *at)?;
    }
    for (slot, record) in &plan.puts {
        put(f, *slot, record)?;
    }
    if let Some(len) = plan.len {
        f.set_len(len)?;
    }
    Ok(())
}

/// Rewrites slot `slot` with `record` so that a reader never sees a mix of
/// the two (see the module doc).
fn put(f: &mut impl Slots, slot: usize, record: &[u8]) -> io::Result<()> {
    let at = (slot * RECORD_SIZE) as u64;
    let value = at + KEY_SIZE as u64;
    f.write_at(&[0], at)?;
    f.write_at(&[0], value)?;
    let mut rest = record[1..].to_vec();
    rest[KEY_SIZE - 1] = 0;
    f.write_at(&rest, at + 1)?;
    if record[KEY_SIZE] != 0 {
        f.write_at(&record[KEY_SIZE..=KEY_SIZE], value)?;
    }
    if record[0] != 0 {
        f.write_at(&record[..1], at)?;
    }
    Ok(())
}

/// What [`mend`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Mended {
    /// Second copies of records emptied.
    pub(super) duplicates: usize,
    /// A partial last record was dropped (its text was cut).
    pub(super) cut: bool,
    /// A partial last record was padded (only its padding was cut).
    pub(super) padded: bool,
}

/// How to mend what a writer killed in the middle of a write left in
/// `pool` (see the module doc), and the pool as it is then. `None` when
/// there is nothing to mend.
pub(super) fn mend(pool: &[u8]) -> Option<(Plan, Vec<u8>, Mended)> {
    let end = pool.len() / RECORD_SIZE * RECORD_SIZE;
    let mut m = Mended::default();
    let mut plan = Plan::default();
    let mut content = pool[..end].to_vec();
    // Records by key (cheaper to hash than whole records).
    let mut seen: HashMap<&[u8], Vec<&[u8]>> = HashMap::new();
    for (i, r) in pool[..end].chunks_exact(RECORD_SIZE).enumerate() {
        if r[0] == 0 {
            continue;
        }
        let copies = seen
            .entry(key_text(r).unwrap_or(&r[..KEY_SIZE]))
            .or_default();
        if !copies.contains(&r) {
            copies.push(r);
            continue;
        }
        m.duplicates += 1;
        content[i * RECORD_SIZE..(i + 1) * RECORD_SIZE].fill(0);
        plan.puts.push((i, vec![0; RECORD_SIZE]));
    }
    let partial = &pool[end..];
    if !partial.is_empty() {
        let whole_text = partial[0] != 0
            && partial.len() > KEY_SIZE
            && partial[..KEY_SIZE].contains(&0)
            && partial[KEY_SIZE..].contains(&0);
        if whole_text {
            m.padded = true;
            plan.append = Some((pool.len() as u64, vec![0; RECORD_SIZE - partial.len()]));
            content.extend_from_slice(partial);
            content.resize(end + RECORD_SIZE, 0);
        } else {
            m.cut = true;
            plan.cut = Some(end as u64);
        }
    }
    if m == Mended::default() {
        return None;
    }
    let mut slots = content.len() / RECORD_SIZE;
    while slots > 0 && is_free(&content[(slots - 1) * RECORD_SIZE..slots * RECORD_SIZE]) {
        slots -= 1;
    }
    if slots * RECORD_SIZE < content.len() {
        content.truncate(slots * RECORD_SIZE);
        plan.len = Some(content.len() as u64);
        plan.puts.retain(|(s, _)| *s < slots);
    }
    Some((plan, content, m))
}

/// A slot of all NULs: free.
fn is_free(record: &[u8]) -> bool {
    record.iter().all(|&b| b == 0)
}

fn is_ours(record: &[u8]) -> bool {
    record.starts_with(PREFIX.as_bytes()) && record.get(PREFIX.len()) == Some(&b'|')
}

/// The text of the key at the start of `bytes` (up to its NUL), if it ends
/// within them.
fn key_text(bytes: &[u8]) -> Option<&[u8]> {
    let key = &bytes[..bytes.len().min(KEY_SIZE)];
    key.iter().position(|&b| b == 0).map(|end| &key[..end])
}

/// The key of the event a key of ours belongs to: without a slice suffix
/// (our keys have 5 fields, 6 when sliced; agent names hold no `|`).
fn base_key(key: &[u8]) -> &[u8] {
    if key.iter().filter(|&&b| b == b'|').count() >= 5
        && let Some(at) = key.iter().rposition(|&b| b == b'|')
    {
        return &key[..at];
    }
    key
}

fn number(field: &[u8]) -> Option<u64> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// The `<seq>` of an event key of ours.
fn seq_of(base: &[u8]) -> Option<u64> {
    number(base.rsplit(|&b| b == b'|').next()?)
}

/// The highest seq that our records in the pool file at `path` carry, of
/// any incarnation (as [`last_seq`] counts them); 0 if there are none or
/// the file cannot be read. The supervisor numbers its events after it, so
/// no key repeats even if its own record of the sequence was lost.
pub fn last_seq_in(path: &Path) -> u64 {
    read_pool(path).map_or(0, |pool| last_seq(&pool))
}

/// The highest `<seq>` in the keys of our records, of any incarnation (0
/// if none), counting the slot a killed writer left without a key (the rest
/// of its key is there, old or new, and the host may have seen the old
/// one) and a partial last record whose key is whole.
pub(super) fn last_seq(pool: &[u8]) -> u64 {
    let head = format!("{PREFIX}|");
    let head = head.as_bytes();
    pool.chunks(RECORD_SIZE)
        .filter_map(|r| {
            let key = if r.first() == Some(&0) {
                let key = key_text(r.get(1..)?)?;
                key.starts_with(&head[1..]).then_some(key)?
            } else {
                let key = key_text(r)?;
                key.starts_with(head).then_some(key)?
            };
            seq_of(base_key(key))
        })
        .max()
        .unwrap_or(0)
}

/// How old one of our events is, from its key: events of this boot's
/// incarnation are newer than any other (a run may compute its boot time a
/// second off), then by incarnation and seq; the key itself breaks ties.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Age {
    this_boot: bool,
    incarnation: u64,
    seq: u64,
    key: Vec<u8>,
}

impl Age {
    fn of(base: &[u8], incarnation: u64) -> Age {
        let of_boot = base
            .split(|&b| b == b'|')
            .nth(1)
            .and_then(number)
            .unwrap_or(0);
        Age {
            this_boot: of_boot == incarnation,
            incarnation: of_boot,
            seq: seq_of(base).unwrap_or(0),
            key: base.to_vec(),
        }
    }
}

/// What a batch needs to know of the pool: where the free slots and our
/// events are. Read from the pool ([`Layout::of`]), then kept up to date by
/// [`Layout::place`] while the file is as the writer left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    /// This boot's incarnation (see [`Age`]).
    incarnation: u64,
    /// Whole records in the file.
    slots: usize,
    /// Free slots: all NULs, or without a key (a write killed half way).
    free: BTreeSet<usize>,
    /// Of those, the slots without a key: emptied once a batch's records
    /// are in, not before (see [`last_seq`]).
    keyless: BTreeSet<usize>,
    /// Our events, oldest first, with the slots of their records.
    events: BTreeMap<Age, Vec<usize>>,
    /// Our records.
    ours: usize,
}

/// What a batch does: the writes, and what it dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Placed {
    pub(super) plan: Plan,
    /// Records of ours dropped, old and new.
    pub(super) dropped: usize,
    /// Of those, how many were in the new batch, and of how many events.
    pub(super) dropped_new: usize,
    pub(super) dropped_new_events: usize,
}

impl Layout {
    /// The layout of `pool` (its whole records).
    pub(super) fn of(pool: &[u8], incarnation: u64) -> Layout {
        let mut layout = Layout {
            incarnation,
            slots: pool.len() / RECORD_SIZE,
            free: BTreeSet::new(),
            keyless: BTreeSet::new(),
            events: BTreeMap::new(),
            ours: 0,
        };
        for (i, r) in pool.chunks_exact(RECORD_SIZE).enumerate() {
            if is_free(r) {
                layout.free.insert(i);
            } else if r[0] == 0 {
                layout.free.insert(i);
                layout.keyless.insert(i);
            } else if is_ours(r)
                && let Some(key) = key_text(r)
            {
                let age = Age::of(base_key(key), incarnation);
                layout.events.entry(age).or_default().push(i);
                layout.ours += 1;
            }
        }
        layout
    }

    /// Our records in the pool.
    #[cfg(test)]
    pub(super) fn ours(&self) -> usize {
        self.ours
    }

    /// Slots without a key (a writer was killed rewriting them).
    pub(super) fn keyless(&self) -> usize {
        self.keyless.len()
    }

    /// Where the batch `new` (each event's records, oldest event first)
    /// goes so that at most `max` of our records are in the pool: free
    /// slots, then the slots of our oldest events (all records of each),
    /// lowest first, then the end of the file (see the module doc). If the
    /// batch alone is too big, its oldest events go too. `self` becomes
    /// the layout after the batch.
    pub(super) fn place(&mut self, new: &[Vec<u8>], max: usize) -> Placed {
        let mut keep = new;
        let mut incoming: usize = new.iter().map(|g| g.len() / RECORD_SIZE).sum();
        let (mut dropped_new, mut dropped_new_events) = (0, 0);
        while incoming > max {
            let Some((first, rest)) = keep.split_first() else {
                break;
            };
            let n = first.len() / RECORD_SIZE;
            incoming -= n;
            dropped_new += n;
            dropped_new_events += 1;
            keep = rest;
        }
        // The slots the batch may take, each with the rank of its write
        // (free ones 0, then our events oldest first).
        let mut open: BTreeMap<usize, usize> = self.free.iter().map(|&s| (s, 0)).collect();
        let mut dropped = 0;
        let mut rank = 0;
        while self.ours + incoming > max {
            let Some((_, slots)) = self.events.pop_first() else {
                break;
            };
            rank += 1;
            self.ours -= slots.len();
            dropped += slots.len();
            open.extend(slots.into_iter().map(|s| (s, rank)));
        }
        let mut puts = Vec::new();
        let mut append = Vec::new();
        let end = self.slots;
        for group in keep {
            let mut taken = Vec::with_capacity(group.len() / RECORD_SIZE);
            for record in group.chunks_exact(RECORD_SIZE) {
                let slot = match open.pop_first() {
                    Some((slot, rank)) => {
                        puts.push((rank, slot, record.to_vec()));
                        self.free.remove(&slot);
                        self.keyless.remove(&slot);
                        slot
                    }
                    None => {
                        append.extend_from_slice(record);
                        self.slots += 1;
                        self.slots - 1
                    }
                };
                taken.push(slot);
            }
            self.ours += taken.len();
            if let Some(key) = key_text(group) {
                let age = Age::of(base_key(key), self.incarnation);
                self.events.entry(age).or_default().extend(taken);
            }
        }
        // Slots freed and not taken are emptied, and slots without a key
        // last, once a record of the batch is in; free slots at the end go.
        let wrote = keep.iter().any(|g| !g.is_empty());
        for (slot, rank) in open {
            if rank > 0 {
                puts.push((rank, slot, vec![0; RECORD_SIZE]));
                self.free.insert(slot);
            } else if wrote && self.keyless.remove(&slot) {
                puts.push((usize::MAX, slot, vec![0; RECORD_SIZE]));
            }
        }
        let mut len = None;
        while let Some(&last) = self.free.last()
            && last + 1 == self.slots
            && (wrote || !self.keyless.contains(&last))
        {
            self.free.pop_last();
            self.keyless.remove(&last);
            self.slots -= 1;
            len = Some((self.slots * RECORD_SIZE) as u64);
        }
        puts.retain(|(_, slot, _)| *slot < self.slots);
        puts.sort_by_key(|(rank, _, _)| *rank);
        Placed {
            plan: Plan {
                cut: None,
                append: (!append.is_empty()).then(|| ((end * RECORD_SIZE) as u64, append)),
                puts: puts.into_iter().map(|(_, s, r)| (s, r)).collect(),
                len,
            },
            dropped: dropped + dropped_new,
            dropped_new,
            dropped_new_events,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::events::sinks::kvp::record::{decode, encode_record, push_record};
    use crate::events::sinks::kvp::slices::{encode_event, reassemble};
    use crate::events::sinks::kvp::testutil::{event, long_reason};

    const INC: u64 = 1_000_000_000;

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
    /// kernel's write cut short by SIGKILL. With `pages`, the cut falls on
    /// the page boundary at or before it, as it does in the kernel.
    struct Killed {
        bytes: Vec<u8>,
        ops: usize,
        cut: usize,
        pages: bool,
    }

    impl Slots for Killed {
        fn write_at(&mut self, buf: &[u8], at: u64) -> io::Result<()> {
            let at = at as usize;
            let (n, killed) = if self.ops == 0 {
                let n = if self.pages {
                    ((at + self.cut) / 4096 * 4096).saturating_sub(at)
                } else {
                    self.cut
                };
                (n.min(buf.len()), true)
            } else {
                self.ops -= 1;
                (buf.len(), false)
            };
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

    fn run(old: &[u8], plan: &Plan) -> Vec<u8> {
        let mut pool = Killed {
            bytes: old.to_vec(),
            ops: usize::MAX,
            cut: 0,
            pages: false,
        };
        apply(&mut pool, plan).unwrap();
        pool.bytes
    }

    fn slot(pool: &[u8], i: usize) -> &[u8] {
        const FREE: [u8; RECORD_SIZE] = [0; RECORD_SIZE];
        pool.get(i * RECORD_SIZE..(i + 1) * RECORD_SIZE)
            .unwrap_or(&FREE)
    }

    /// What a C reader of the slot sees: the key and the value up to their
    /// first NUL.
    fn seen(record: &[u8]) -> (&[u8], &[u8]) {
        fn text(f: &[u8]) -> &[u8] {
            let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
            &f[..end]
        }
        (text(&record[..KEY_SIZE]), text(&record[KEY_SIZE..]))
    }

    /// Other writers' records of `pool`: their slots, and their key and
    /// value as a reader sees them.
    fn foreign(pool: &[u8]) -> Vec<(usize, String)> {
        pool.chunks_exact(RECORD_SIZE)
            .enumerate()
            .filter(|(_, r)| r[0] != 0 && !is_ours(r))
            .map(|(i, r)| {
                let (k, v) = seen(r);
                let text = String::from_utf8_lossy;
                (i, format!("{} = {}", text(k), text(v)))
            })
            .collect()
    }

    /// Runs `plan` on `old` killed at every call and at many cut points of
    /// it (anywhere, and on page boundaries), and checks what is left, and
    /// what mending it leaves: every slot holds its old record, its new
    /// one, nothing, or (one slot at most, before mending) a record without
    /// a key whose value reads as empty, old or new; other writers' records
    /// are all there, once, at their index; a record of `old` that the plan
    /// does not touch is where it was; the highest seq of ours in a whole
    /// record does not go down
    /// (keys cut on page boundaries). What mending leaves is checked the
    /// same way. Returns the cases run.
    fn kill_everywhere(old: &[u8], plan: &Plan) -> usize {
        let new = run(old, plan);
        assert_eq!(new.len() % RECORD_SIZE, 0);
        assert_eq!(mend(&new), None, "a plan leaves nothing to mend");
        // Other writers' records among the old whole ones (a partial last
        // record may be padded into one).
        let old_slots = old.len() / RECORD_SIZE;
        let others = |pool: &[u8]| -> Vec<(usize, String)> {
            let mut all = foreign(pool);
            all.retain(|(i, _)| *i < old_slots);
            all
        };
        let before = others(old);
        // The highest seq the host may have seen: in whole records.
        let top = last_seq(&old[..old_slots * RECORD_SIZE]);
        let touched: HashSet<usize> = plan.puts.iter().map(|(s, _)| *s).collect();
        let mut cases = 0;
        for ops in 0.. {
            let mut done = false;
            for pages in [false, true] {
                // On page boundaries only a few cuts differ.
                let cuts: Vec<usize> = if pages {
                    vec![0, 4096, 8192]
                } else {
                    (0..RECORD_SIZE * 3)
                        .step_by(97)
                        .chain([1, KEY_SIZE, RECORD_SIZE - 1])
                        .collect()
                };
                for cut in cuts {
                    let mut pool = Killed {
                        bytes: old.to_vec(),
                        ops,
                        cut,
                        pages,
                    };
                    cases += 1;
                    let at = format!("killed after {ops} calls, cut at {cut} (pages: {pages})");
                    if apply(&mut pool, plan).is_ok() {
                        assert_eq!(pool.bytes, new, "not killed: exactly the new pool");
                        done = true;
                        break;
                    }
                    let left = pool.bytes;
                    let whole = left.len() / RECORD_SIZE;
                    let mut keyless = 0;
                    for i in 0..whole {
                        let (r, was, will) = (slot(&left, i), slot(old, i), slot(&new, i));
                        if r == was || r == will || is_free(r) {
                            continue;
                        }
                        assert_eq!(r[0], 0, "{at}: slot {i} torn");
                        keyless += 1;
                        let value = seen(r).1;
                        assert!(
                            value.is_empty() || value == seen(was).1 || value == seen(will).1,
                            "{at}: slot {i} without a key shows a torn value"
                        );
                    }
                    assert!(keyless <= 1, "{at}: {keyless} slots without a key");
                    for i in
                        (0..whole.min(old.len() / RECORD_SIZE)).filter(|i| !touched.contains(i))
                    {
                        if plan.cut.is_none_or(|c| (i * RECORD_SIZE) < c as usize) {
                            assert_eq!(slot(&left, i), slot(old, i), "{at}: slot {i} changed");
                        }
                    }
                    assert_eq!(others(&left), before, "{at}: other writers' records");
                    if pages {
                        assert!(last_seq(&left) >= top, "{at}: our highest seq went down");
                    }
                    // What the next write mends: the same, without the
                    // slot without a key, and nothing left to mend.
                    let mended = match mend(&left) {
                        Some((fix, content, _)) => {
                            assert_eq!(run(&left, &fix), content, "{at}: mend's plan");
                            content
                        }
                        None => left.clone(),
                    };
                    assert_eq!(mended.len() % RECORD_SIZE, 0);
                    for (i, r) in mended.chunks_exact(RECORD_SIZE).enumerate() {
                        assert!(
                            r == slot(old, i)
                                || r == slot(&new, i)
                                || is_free(r)
                                || (r[0] == 0 && r == slot(&left, i)),
                            "{at}: mended slot {i}"
                        );
                    }
                    assert_eq!(others(&mended), before, "{at}: mended, others' records");
                    assert_eq!(mend(&mended), None, "{at}: mended twice");
                }
                if done {
                    break;
                }
            }
            if done {
                break;
            }
        }
        cases
    }

    /// One of our events of `INC` as records, sliced when `long`.
    fn ours(seq: u64, long: bool) -> Vec<u8> {
        let reason = if long { long_reason() } else { "ready".into() };
        let e = event(seq, &format!("dev-{seq}"), "ready", &reason);
        let mut buf = Vec::new();
        for (k, v) in encode_event(INC, &e).unwrap() {
            push_record(&mut buf, &k, &v);
        }
        buf
    }

    fn other(name: &str) -> Vec<u8> {
        encode_record(
            &format!("CLOUD_INIT|{name}"),
            &format!("{{\"msg\":\"{name}\"}}"),
        )
    }

    /// A pool of other writers' records (`CI|<name>`) and our events
    /// (`<seq>`, `<seq>+` sliced), in this order.
    fn pool_of(items: &[&str]) -> Vec<u8> {
        items
            .iter()
            .flat_map(|item| match item.strip_prefix("CI|") {
                Some(name) => other(name),
                None => match item.strip_suffix('+') {
                    Some(seq) => ours(seq.parse().unwrap(), true),
                    None => ours(item.parse().unwrap(), false),
                },
            })
            .collect()
    }

    /// The pool as keys: `CI|<name>`, our seqs (`<seq>|<i>` for slices),
    /// `-` for a free slot.
    fn layout_of(pool: &[u8]) -> Vec<String> {
        decode(pool)
            .records
            .into_iter()
            .map(
                |r| match r.key.strip_prefix("AGENTCLUSTER|1000000000|ready|") {
                    Some(rest) => rest.split_once('|').unwrap().1.to_string(),
                    None if r.key.is_empty() => "-".into(),
                    None => r.key.replace("CLOUD_INIT", "CI"),
                },
            )
            .collect()
    }

    /// Places `batch` (seqs; `+` sliced) in `pool` with `max`: the plan,
    /// checked against the layout read back.
    fn place(pool: &[u8], batch: &[&str], max: usize) -> (Plan, Vec<u8>, Placed) {
        let mut layout = Layout::of(pool, INC);
        let groups: Vec<Vec<u8>> = batch.iter().map(|s| pool_of(&[s])).collect();
        let placed = layout.place(&groups, max);
        let after = run(pool, &placed.plan);
        assert_eq!(
            layout,
            Layout::of(&after, INC),
            "the layout kept up to date"
        );
        (placed.plan.clone(), after, placed)
    }

    #[test]
    fn the_cap_reuses_our_oldest_slots_and_moves_nothing() {
        // Under the cap: appended.
        let pool = pool_of(&["CI|a", "1", "2", "CI|b"]);
        let (_, after, p) = place(&pool, &["3"], 3);
        assert_eq!(layout_of(&after), ["CI|a", "1", "2", "CI|b", "3"]);
        assert_eq!(p.dropped, 0);
        // At the cap: the oldest one's slot, in place.
        let (_, after, p) = place(&after, &["4"], 3);
        assert_eq!(layout_of(&after), ["CI|a", "4", "2", "CI|b", "3"]);
        assert_eq!(p.dropped, 1);
        // Oldest by seq, not by place: 2, then 3.
        let (_, after, _) = place(&after, &["5", "6"], 3);
        assert_eq!(layout_of(&after), ["CI|a", "4", "5", "CI|b", "6"]);
        // A sliced event gives way whole; a shorter one takes the lowest of
        // its slots, the others are emptied (and cut off at the end).
        let pool = pool_of(&["CI|a", "1+", "CI|b", "2", "3"]);
        let n = ours(1, true).len() / RECORD_SIZE;
        assert!(n >= 3, "{n}");
        let (_, after, p) = place(&pool, &["4"], n + 2);
        assert_eq!(p.dropped, n);
        let mut want = vec!["CI|a".to_string(), "4".into()];
        want.extend(std::iter::repeat_n("-".to_string(), n - 1));
        want.extend(["CI|b".into(), "2".into(), "3".into()]);
        assert_eq!(layout_of(&after), want);
        // Free slots are taken first, then the end of the file; a sliced
        // event's slices in order, other records between them.
        let (_, after, p) = place(&after, &["5+"], 100);
        assert_eq!(p.dropped, 0);
        let got = layout_of(&after);
        let mut want = vec!["CI|a".to_string(), "4".into()];
        want.extend((0..n - 1).map(|i| format!("5|{i}")));
        want.extend(["CI|b".into(), "2".into(), "3".into()]);
        want.extend((n - 1..n).map(|i| format!("5|{i}")));
        assert_eq!(got[..want.len()], want[..]);
        let entries = reassemble(&decode(&after).records);
        let five = entries.iter().find(|e| e.key.ends_with("|5")).unwrap();
        assert!(five.complete && five.parts == n);
        let whole = event(5, "dev-5", "ready", &long_reason());
        assert_eq!(five.value, serde_json::to_string(&whole).unwrap());
        // Emptied slots at the end of the file are cut off.
        let pool = pool_of(&["CI|a", "1", "2+"]);
        let (plan, after, _) = place(&pool, &["3"], 2);
        assert_eq!(layout_of(&after), ["CI|a", "3"]);
        assert_eq!(plan.len, Some(2 * RECORD_SIZE as u64));
        // A batch bigger than the cap keeps its newest.
        let (_, after, p) = place(&pool_of(&["CI|a", "1"]), &["2", "3", "4"], 2);
        assert_eq!(layout_of(&after), ["CI|a", "3", "4"]);
        assert_eq!((p.dropped, p.dropped_new, p.dropped_new_events), (2, 1, 1));
    }

    /// The host enumerates the pool by index: a record of another writer
    /// behind ours keeps its index through any number of rewrites at the
    /// cap, and the pool always holds our newest events, whole.
    #[test]
    fn others_records_keep_their_index_through_rewrites_at_the_cap() {
        let max = 12;
        let mut pool = pool_of(&["CI|a", "1", "2", "CI|behind", "3", "4+", "5", "CI|last"]);
        let others = foreign(&pool);
        assert_eq!(others[1].0, 3);
        let mut layout = Layout::of(&pool, INC);
        let mut seq = 5;
        let mut events: Vec<(u64, bool)> =
            vec![(1, false), (2, false), (3, false), (4, true), (5, false)];
        for round in 0..200 {
            // Batches of 1 to 4 events, some sliced.
            let batch: Vec<(u64, bool)> = (0..1 + round % 4)
                .map(|k| {
                    seq += 1;
                    (seq, (round + k) % 7 == 0)
                })
                .collect();
            let groups: Vec<Vec<u8>> = batch.iter().map(|&(s, long)| ours(s, long)).collect();
            let placed = layout.place(&groups, max);
            let before = pool.clone();
            pool = run(&pool, &placed.plan);
            assert_eq!(layout, Layout::of(&pool, INC), "round {round}");
            assert_eq!(
                foreign(&pool),
                others,
                "round {round}: others' records moved"
            );
            assert!(
                layout.ours() <= max,
                "round {round}: {} of ours",
                layout.ours()
            );
            if round % 25 == 0 {
                kill_everywhere(&before, &placed.plan);
            }
            events.extend(batch);
            // Ours: exactly the newest events that fit, whole.
            let mut fit = Vec::new();
            let mut room = max;
            for &(s, long) in events.iter().rev() {
                let n = ours(s, long).len() / RECORD_SIZE;
                if n > room {
                    break;
                }
                room -= n;
                fit.push(s);
            }
            fit.reverse();
            let entries = reassemble(&decode(&pool).records);
            let mut got: Vec<u64> = entries
                .iter()
                .filter(|e| e.key.starts_with("AGENTCLUSTER|"))
                .map(|e| {
                    assert!(e.complete, "round {round}: {}", e.key);
                    let ev: crate::events::Event = serde_json::from_str(&e.value).unwrap();
                    ev.seq
                })
                .collect();
            got.sort_unstable();
            assert_eq!(got, fit, "round {round}");
        }
    }

    #[test]
    fn a_write_killed_anywhere_moves_nothing_and_tears_nothing() {
        // At the cap: one slot of ours reused, others' records around and
        // behind it.
        let pool = pool_of(&["CI|a", "1", "2", "CI|b", "3", "4", "CI|c"]);
        let (plan, _, _) = place(&pool, &["5"], 4);
        assert!(kill_everywhere(&pool, &plan) > 150);
        // Several records: slots reused, a sliced event given way for
        // shorter ones (a slot emptied), some appended.
        let pool = pool_of(&["CI|a", "1", "2+", "CI|b", "3"]);
        let (plan, _, _) = place(&pool, &["4", "5"], 20);
        kill_everywhere(&pool, &plan);
        let (plan, after, _) = place(&pool, &["4", "5"], 3);
        assert!(layout_of(&after).contains(&"-".to_string()));
        kill_everywhere(&pool, &plan);
        let (plan, _, _) = place(&pool, &["4+", "5", "6"], 12);
        assert!(plan.append.is_some() && !plan.puts.is_empty());
        kill_everywhere(&pool, &plan);
        // Emptied slots at the end cut off.
        let pool = pool_of(&["CI|a", "1", "2+"]);
        let (plan, _, _) = place(&pool, &["3"], 2);
        kill_everywhere(&pool, &plan);
        // Every record of ours replaced, the newest last: one slot, and
        // a batch as big as the cap.
        let pool = pool_of(&["CI|a", "7", "CI|b"]);
        let (plan, _, _) = place(&pool, &["8"], 1);
        kill_everywhere(&pool, &plan);
        let pool = pool_of(&["CI|a", "7", "CI|b", "6", "5"]);
        let (plan, _, _) = place(&pool, &["8", "9", "10"], 3);
        kill_everywhere(&pool, &plan);
        // Free slots taken, under the cap.
        let mut pool = pool_of(&["CI|a", "1", "2", "CI|b"]);
        pool[RECORD_SIZE..2 * RECORD_SIZE].fill(0);
        let (plan, after, _) = place(&pool, &["3", "4"], 10);
        assert_eq!(layout_of(&after), ["CI|a", "3", "2", "CI|b", "4"]);
        kill_everywhere(&pool, &plan);
    }

    #[test]
    fn mending_pads_cuts_and_empties_in_place() {
        // A second copy, a partial last record whose text is whole.
        let mut left = pool_of(&["CI|a", "3", "CI|b", "4", "3", "CI|c"]);
        left.extend_from_slice(&other("z")[..KEY_SIZE + 40]);
        let (plan, mended, m) = mend(&left).unwrap();
        assert_eq!(
            m,
            Mended {
                duplicates: 1,
                cut: false,
                padded: true
            }
        );
        assert_eq!(
            layout_of(&mended),
            ["CI|a", "3", "CI|b", "4", "-", "CI|c", "CI|z"]
        );
        assert_eq!(run(&left, &plan), mended);
        kill_everywhere(&left, &plan);
        // What is emptied at the end is cut off, with a partial record
        // whose text was cut.
        let mut left = pool_of(&["CI|a", "3", "CI|b", "3"]);
        left.extend_from_slice(&pool_of(&["9"])[..100]);
        let (plan, mended, m) = mend(&left).unwrap();
        assert_eq!((m.duplicates, m.cut), (1, true));
        assert_eq!(layout_of(&mended), ["CI|a", "3", "CI|b"]);
        kill_everywhere(&left, &plan);
        // Free slots are not damage; a slot without a key is left to the
        // next batch.
        assert_eq!(mend(&pool_of(&["CI|a", "1"])), None);
        let mut free = pool_of(&["CI|a", "1", "CI|b", "2"]);
        free[RECORD_SIZE..2 * RECORD_SIZE].fill(0);
        free[3 * RECORD_SIZE] = 0;
        assert_eq!(mend(&free), None);
    }

    /// A slot that a killed writer left without a key may hold the rest
    /// of the key of our newest record: the next batch takes it, or
    /// empties it only once its own records are in.
    #[test]
    fn a_slot_without_a_key_is_taken_or_emptied_after_the_batch() {
        let mut pool = pool_of(&["CI|a", "7", "CI|b", "5"]);
        pool[RECORD_SIZE] = 0;
        let layout = Layout::of(&pool, INC);
        assert_eq!((layout.ours(), layout.keyless()), (1, 1));
        let (plan, after, p) = place(&pool, &["8"], 1);
        assert_eq!(layout_of(&after), ["CI|a", "8", "CI|b"]);
        assert_eq!(p.dropped, 1);
        kill_everywhere(&pool, &plan);
        // Not taken: emptied last, here cut off with the end of the file.
        let mut pool = pool_of(&["CI|a", "1", "CI|b", "7"]);
        pool[RECORD_SIZE..2 * RECORD_SIZE].fill(0);
        pool[3 * RECORD_SIZE] = 0;
        let (plan, after, _) = place(&pool, &["8"], 5);
        assert_eq!(layout_of(&after), ["CI|a", "8", "CI|b"]);
        assert_eq!(plan.puts.len(), 1);
        kill_everywhere(&pool, &plan);
        // Not at the end: emptied after the batch's records.
        let mut pool = pool_of(&["CI|a", "1", "CI|b", "7", "CI|c"]);
        pool[RECORD_SIZE..2 * RECORD_SIZE].fill(0);
        pool[3 * RECORD_SIZE] = 0;
        let (plan, after, _) = place(&pool, &["8"], 5);
        assert_eq!(layout_of(&after), ["CI|a", "8", "CI|b", "-", "CI|c"]);
        assert_eq!(
            plan.puts.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [1, 3]
        );
        kill_everywhere(&pool, &plan);
    }

    #[test]
    fn the_highest_seq_counts_a_slot_being_rewritten() {
        let mut pool = pool_of(&["CI|a", "7", "5"]);
        assert_eq!(last_seq(&pool), 7);
        // 7 lost its key's first byte: the rest says 7.
        pool[RECORD_SIZE] = 0;
        assert_eq!(last_seq(&pool), 7);
        // So it does in a record of another incarnation, and through the
        // file the bus's numbers are seeded from.
        let mut other = encode_record("AGENTCLUSTER|1000|ready|a|9", "{}");
        other[0] = 0;
        pool.extend_from_slice(&other);
        assert_eq!(last_seq(&pool), 9);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        std::fs::write(&path, &pool).unwrap();
        assert_eq!(last_seq_in(&path), 9);
        // Free slots and other writers' records, with or without their
        // key, say nothing.
        let mut free = pool_of(&["CI|a", "3"]);
        free.extend_from_slice(&[0; RECORD_SIZE]);
        free[0] = 0;
        assert_eq!(last_seq(&free), 3);
        // A partial last record whose key is whole counts; one whose key
        // was cut does not.
        let mut cut = pool_of(&["5"]);
        cut.extend_from_slice(&pool_of(&["12"])[..KEY_SIZE]);
        assert_eq!(last_seq(&cut), 12);
        cut.truncate(RECORD_SIZE + 20);
        assert_eq!(last_seq(&cut), 5);
        // Sliced: the seq before the slice number.
        assert_eq!(last_seq(&pool_of(&["CI|a", "9+"])), 9);
    }

    /// Slots reused in place at the cap: the highest seq is still that of
    /// our newest event wherever its slot is, and a write killed at any
    /// point leaves it readable (in a slot without a key, too), so a bus
    /// seeded from the pool never gives a number the host may have seen.
    #[test]
    fn the_highest_seq_survives_slots_reused_in_place() {
        /// Places one event after another (every fifth sliced when
        /// `sliced`), checking the highest seq after each and after a kill
        /// at every step of its write (cut on page boundaries).
        fn events(pool: &mut Vec<u8>, seqs: std::ops::Range<u64>, max: usize, sliced: bool) {
            let mut layout = Layout::of(pool, INC);
            for seq in seqs {
                let batch = [ours(seq, sliced && seq % 5 == 0)];
                let placed = layout.place(&batch, max);
                let before = std::mem::replace(pool, run(pool, &placed.plan));
                assert_eq!(last_seq(pool), seq, "after {seq}");
                'kills: for ops in 0.. {
                    for cut in [0, 4096, 8192] {
                        let mut killed = Killed {
                            bytes: before.clone(),
                            ops,
                            cut,
                            pages: true,
                        };
                        if apply(&mut killed, &placed.plan).is_ok() {
                            break 'kills;
                        }
                        assert!(
                            last_seq(&killed.bytes) >= seq - 1,
                            "{seq}: killed after {ops} calls, cut at {cut}"
                        );
                    }
                }
            }
        }
        // Room for a sliced event and two more.
        let max = ours(1, true).len() / RECORD_SIZE + 2;
        let mut pool = pool_of(&["CI|a", "1", "2", "CI|b", "3"]);
        events(&mut pool, 4..40, max, true);
        // Slots were reused: our events are not in the order of their seqs.
        let seqs: Vec<u64> = decode(&pool)
            .records
            .iter()
            .filter_map(|r| r.key.strip_prefix("AGENTCLUSTER|"))
            .filter_map(|k| k.split('|').nth(3)?.parse().ok())
            .collect();
        assert!(!seqs.is_sorted(), "{seqs:?}");
        // One record of ours: each event takes the slot of the newest, so a
        // kill may leave the highest seq only in a slot without a key.
        let mut pool = pool_of(&["CI|a", "1", "CI|b"]);
        events(&mut pool, 2..8, 1, false);
        assert_eq!(layout_of(&pool), ["CI|a", "7", "CI|b"]);
    }
}
