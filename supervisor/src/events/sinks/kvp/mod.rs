//! The Hyper-V KVP sink: every lifecycle event appended to the guest→host
//! pool file that `hv_kvp_daemon` serves to the host, in the layout
//! cloud-init's `HyperVKvpReportingHandler` uses, so both coexist in one pool.
//!
//! # The pool file
//! A sequence of fixed records, a 512-byte key then a 2048-byte value, each a
//! NUL-padded C string (`struct kvp_record` of `hv_kvp_daemon`). We always
//! keep at least one NUL, so at most 511 and 2047 bytes of UTF-8, cut on a
//! character boundary ([`encode_record`]).
//!
//! # Our records
//! Key `AGENTCLUSTER|<incarnation>|<event>|<agent>|<seq>` ([`event_key`]),
//! value the compact JSON of the [`Event`]. The incarnation is the boot time
//! in whole seconds, computed as cloud-init does (`now - /proc/uptime`,
//! truncated; see [`Boot`]). A supervisor restarted within one boot numbers
//! its events from 1 again: in the pool its seqs go on after the highest
//! one earlier runs left there, so keys never repeat.
//!
//! Although a record holds 2047 bytes, the kernel driver (`hv_kvp.c`) hands
//! the host at most `2048/2 - 2` = 1022 UTF-16 units of a value and
//! `512/2 - 2` = 254 of a key; longer ones arrive cut. So, like cloud-init
//! (which slices at its `HV_KVP_AZURE_MAX_VALUE_SIZE` of 1024), we keep every
//! value within [`HOST_VALUE_MAX`] bytes and every key within
//! [`HOST_KEY_MAX`] bytes (a UTF-8 byte count is never below the UTF-16
//! unit count), shortening only the agent part of a key (the value still
//! names the agent in full).
//!
//! # Slices (cloud-init's `_break_down`)
//! A value longer than [`HOST_VALUE_MAX`] becomes several records. Each is
//! the event's JSON without `reason`, followed by `"msg_i":<i>` and
//! `"msg":"<part i of the reason>"`, under the key `<key>|<i>`; the room for
//! the part is `HOST_VALUE_MAX - len(skeleton) - 8`, cloud-init's formula.
//! Unlike cloud-init (which slices the escaped text and may split an escape
//! sequence), we cut between characters, so every slice is valid JSON on its
//! own and its `msg` is a substring of the reason.
//!
//! Reassembly ([`reassemble`]) works for both: take the records `<base>|0`,
//! `<base>|1`, … in order, concatenate the raw (still escaped) text of their
//! `msg` strings, and put it back where the slices carried `msg_i`/`msg`,
//! under `reason` for our keys and `msg` for cloud-init's. Both writers put
//! that member last, so the result is byte for byte the value that was too
//! long.
//!
//! # Writing
//! Each batch is written with the file opened (created 0644 if missing),
//! locked with an OFD `fcntl` write lock (it conflicts with the classic
//! POSIX lock `hv_kvp_daemon` takes) and `flock(LOCK_EX)` (what cloud-init
//! takes), appended, fsync'ed, unlocked and closed. The pool is truncated
//! once per run if it was last modified before this boot (cloud-init's
//! rule). At most `max_records` of *our* records are kept: when a batch
//! would pass that, the file is rewritten without our oldest events (whole
//! events, all their slices), other writers' records untouched and in
//! order. The rewrite is in place, under the same locks: `hv_kvp_daemon`
//! keeps its pool open and locks through that descriptor, and rewrites the
//! file in place itself, so a rename would leave it locking a file nobody
//! uses (and the service user may write the pool, not its directory).
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

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, Flock, FlockArg, fcntl};
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use crate::events::{Bus, Event};

/// Size of a record's key field.
pub const KEY_SIZE: usize = 512;
/// Size of a record's value field.
pub const VALUE_SIZE: usize = 2048;
/// One record: key then value.
pub const RECORD_SIZE: usize = KEY_SIZE + VALUE_SIZE;
/// Longest key stored: one NUL always stays.
pub const KEY_MAX: usize = KEY_SIZE - 1;
/// Longest value stored: one NUL always stays.
pub const VALUE_MAX: usize = VALUE_SIZE - 1;
/// Longest key the host receives whole (UTF-16 units, kernel `hv_kvp.c`).
pub const HOST_KEY_MAX: usize = KEY_SIZE / 2 - 2;
/// Longest value the host receives whole; longer event values are sliced.
pub const HOST_VALUE_MAX: usize = VALUE_SIZE / 2 - 2;
/// First field of our keys.
pub const PREFIX: &str = "AGENTCLUSTER";
/// The guest→host pool `hv_kvp_daemon` serves.
pub const DEFAULT_POOL: &str = "/var/lib/hyperv/.kvp_pool_1";

/// cloud-init's spare room in each slice.
const SLICE_SLACK: usize = 8;
/// Room kept in a key for a slice suffix (`|99999`).
const SUFFIX_ROOM: usize = 6;
/// How long the last batch may take at shutdown before it is given up.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Records

/// `s` up to its first NUL (what a C reader sees), cut to at most `max`
/// bytes on a character boundary.
fn fit(s: &str, max: usize) -> &str {
    let s = s.split('\0').next().unwrap_or_default();
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends one record to `buf`: key and value cut to [`KEY_MAX`] and
/// [`VALUE_MAX`] bytes on character boundaries, NUL-padded.
pub fn push_record(buf: &mut Vec<u8>, key: &str, value: &str) {
    let (k, v) = (fit(key, KEY_MAX), fit(value, VALUE_MAX));
    let start = buf.len();
    buf.resize(start + RECORD_SIZE, 0);
    buf[start..start + k.len()].copy_from_slice(k.as_bytes());
    let at = start + KEY_SIZE;
    buf[at..at + v.len()].copy_from_slice(v.as_bytes());
}

/// One record, [`RECORD_SIZE`] bytes.
pub fn encode_record(key: &str, value: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(RECORD_SIZE);
    push_record(&mut buf, key, value);
    buf
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: String,
}

/// A decoded pool file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pool {
    pub records: Vec<Record>,
    /// Bytes after the last whole record: a write cut short, or not a pool.
    pub trailing: usize,
}

/// A NUL-padded field as text: up to the first NUL, invalid UTF-8 replaced.
fn field(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Decodes any pool file (ours, cloud-init's, `hv_kvp_daemon`'s).
pub fn decode(bytes: &[u8]) -> Pool {
    let chunks = bytes.chunks_exact(RECORD_SIZE);
    let trailing = chunks.remainder().len();
    let records = chunks
        .map(|r| Record {
            key: field(&r[..KEY_SIZE]),
            value: field(&r[KEY_SIZE..]),
        })
        .collect();
    Pool { records, trailing }
}

/// Reads a pool file under shared locks (the same two the writers take), so
/// a rewrite in progress is never seen half done. Where the file cannot be
/// locked it is read anyway.
pub fn read_pool(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let read = |f: &File| {
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut &*f, &mut buf)?;
        Ok(buf)
    };
    if lock(&file, libc::F_RDLCK).is_err() {
        return read(&file);
    }
    match flock(file, FlockArg::LockShared) {
        Ok(locked) => read(&locked),
        Err((file, _)) => read(&file),
    }
    // Closing the file drops both locks.
}

// ---------------------------------------------------------------------------
// Events

/// The key of an event's record: `AGENTCLUSTER|<incarnation>|<event>|<agent>|<seq>`,
/// the agent part shortened when the key would not reach the host whole.
pub fn event_key(incarnation: u64, e: &Event) -> String {
    let head = format!("{PREFIX}|{incarnation}|{}|", e.event);
    let tail = format!("|{}", e.seq);
    let room = HOST_KEY_MAX.saturating_sub(head.len() + tail.len() + SUFFIX_ROOM);
    format!("{head}{}{tail}", fit(&e.agent, room))
}

/// Length of `c` inside a JSON string as serde_json writes it.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        '\0'..='\u{1f}' => 6,
        _ => c.len_utf8(),
    }
}

/// The longest prefix of `s` whose escaped form fits in `room` bytes, but at
/// least one character (so slicing always progresses).
fn take_escaped(s: &str, room: usize) -> usize {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        let n = escaped_len(c);
        if used + n > room && i > 0 {
            return i;
        }
        used += n;
    }
    s.len()
}

/// An event as records `(key, value)`: one, or several slices (see the
/// module doc).
pub fn encode_event(
    incarnation: u64,
    e: &Event,
) -> Result<Vec<(String, String)>, serde_json::Error> {
    let key = event_key(incarnation, e);
    let whole = serde_json::to_string(e)?;
    if whole.len() <= HOST_VALUE_MAX {
        return Ok(vec![(key, whole)]);
    }
    let stripped = Event {
        reason: String::new(),
        ..e.clone()
    };
    let mut head = serde_json::to_string(&stripped)?;
    // `"reason":""` can only be the member itself: inside a JSON string a
    // quote is always escaped.
    if let Some(at) = head.find(",\"reason\":\"\"") {
        head.replace_range(at..at + 12, "");
    } else if let Some(at) = head.find("\"reason\":\"\",") {
        head.replace_range(at..at + 12, "");
    }
    head.pop(); // the closing brace
    let mut rest = e.reason.as_str();
    let mut parts = Vec::new();
    for i in 0usize.. {
        let skeleton = head.len() + format!(",\"msg_i\":{i},\"msg\":\"\"}}").len();
        let room = HOST_VALUE_MAX.saturating_sub(skeleton + SLICE_SLACK);
        let (piece, more) = rest.split_at(take_escaped(rest, room));
        let value = format!(
            "{head},\"msg_i\":{i},\"msg\":{}}}",
            serde_json::to_string(piece)?
        );
        parts.push((format!("{key}|{i}"), value));
        rest = more;
        if rest.is_empty() {
            break;
        }
    }
    Ok(parts)
}

/// A record of the pool after [`reassemble`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// How many records it was made of.
    pub parts: usize,
    /// False for a slice whose siblings are missing (shown as stored).
    pub complete: bool,
}

/// A record that looks like a slice: key `<base>|<i>`, value
/// `<head>,"msg_i":<i>,"msg":"<raw>"}`.
struct Slice<'a> {
    base: &'a str,
    index: u64,
    /// The value before `"msg_i"`, without the comma (`{` when it was first).
    head: &'a str,
    /// The still escaped text of `msg`.
    raw: &'a str,
}

fn slice(r: &Record) -> Option<Slice<'_>> {
    let (base, index) = r.key.rsplit_once('|')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u64 = index.parse().ok()?;
    let v = r.value.as_str();
    // The first `"msg_i":` is the member: earlier string contents cannot
    // hold an unescaped quote.
    let at = v.find("\"msg_i\":")?;
    let head = match &v[..at] {
        "{" => "{",
        h => h.strip_suffix(',')?,
    };
    let after = &v[at + 8..];
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if after[..digits].parse::<u64>().ok()? != index {
        return None;
    }
    let raw = after[digits..]
        .strip_prefix(",\"msg\":\"")?
        .strip_suffix("\"}")?;
    Some(Slice {
        base,
        index,
        head,
        raw,
    })
}

/// Joins sliced values (ours and cloud-init's) back into whole ones; other
/// records pass through. Slices belong together when they follow each other
/// with the same base key and indices 0, 1, 2, …
pub fn reassemble(records: &[Record]) -> Vec<Entry> {
    let mut out = Vec::with_capacity(records.len());
    let mut i = 0;
    while i < records.len() {
        let Some(first) = slice(&records[i]).filter(|s| s.index == 0) else {
            out.push(Entry {
                key: records[i].key.clone(),
                value: records[i].value.clone(),
                parts: 1,
                complete: slice(&records[i]).is_none(),
            });
            i += 1;
            continue;
        };
        let mut raw = String::from(first.raw);
        let mut n = 1;
        while let Some(s) = records.get(i + n).and_then(slice) {
            if s.base != first.base || s.index != n as u64 {
                break;
            }
            raw.push_str(s.raw);
            n += 1;
        }
        let member = if first.base.starts_with(&format!("{PREFIX}|")) {
            "reason"
        } else {
            "msg"
        };
        let sep = if first.head == "{" { "" } else { "," };
        out.push(Entry {
            key: first.base.to_string(),
            value: format!("{}{sep}\"{member}\":\"{raw}\"}}", first.head),
            parts: n,
            complete: true,
        });
        i += n;
    }
    out
}

// ---------------------------------------------------------------------------
// Boot time

/// The current boot, as cloud-init sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boot {
    /// When the machine booted; `None` if unknown (then nothing is truncated).
    pub time: Option<SystemTime>,
    /// The boot time in whole seconds since the epoch, 0 if unknown.
    pub incarnation: u64,
}

impl Boot {
    /// cloud-init's `time.time() - uptime` from `/proc/uptime` (so two runs
    /// in one boot may differ by a second, as cloud-init's do); failing
    /// that, `btime` from `/proc/stat`.
    pub fn current() -> Boot {
        let now = SystemTime::now();
        let from_uptime = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|t| parse_uptime(&t))
            .and_then(|up| now.checked_sub(up));
        let boot = from_uptime.or_else(|| {
            std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|t| parse_btime(&t))
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
        });
        match boot {
            Some(t) => Boot::at(t),
            None => Boot {
                time: None,
                incarnation: 0,
            },
        }
    }

    /// A boot at `time` (tests use a made-up one).
    pub fn at(time: SystemTime) -> Boot {
        let secs = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Boot {
            time: Some(time),
            incarnation: secs,
        }
    }
}

/// The first field of `/proc/uptime`.
fn parse_uptime(text: &str) -> Option<Duration> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// `btime` of `/proc/stat`.
fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

// ---------------------------------------------------------------------------
// Locks

/// A blocking `flock`, retried when a signal interrupts it.
fn flock(mut file: File, arg: FlockArg) -> Result<Flock<File>, (File, Errno)> {
    loop {
        match Flock::lock(file, arg) {
            Err((f, Errno::EINTR)) => file = f,
            other => return other,
        }
    }
}

/// A blocking OFD lock (`F_WRLCK` or `F_RDLCK`) over the whole file. It is
/// held by the open file description, so it goes when the file is closed.
fn lock(file: &File, kind: libc::c_int) -> io::Result<()> {
    let fl = libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    loop {
        match fcntl(file, FcntlArg::F_OFD_SETLKW(&fl)) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Runs `f` with the pool locked for writing: an OFD write lock first, then
/// `flock(LOCK_EX)` (always in this order, so two of our writers cannot
/// deadlock). Both go when the file is dropped at the end: the flock first
/// (`Flock`'s drop), then the OFD lock with the descriptor.
fn with_locks<R>(file: File, f: impl FnOnce(&File) -> io::Result<R>) -> io::Result<R> {
    lock(&file, libc::F_WRLCK)?;
    let locked = flock(file, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))?;
    f(&locked)
}

// ---------------------------------------------------------------------------
// The writer

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
    /// Our older records removed to stay within `max_records`.
    pub dropped: usize,
    /// The pool predated this boot and was emptied first.
    pub truncated: bool,
}

/// What identifies the file as we last left it, so our record count can be
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
    /// What a writer killed mid-write may have left was mended this run.
    mended: bool,
    /// Our record count as of the file's stamp after our last write.
    known: Option<(Stamp, usize)>,
    /// Added to each event's seq (in its key and its value): the highest
    /// seq that earlier runs of this boot (same incarnation) left in the
    /// pool, so a restarted supervisor, whose events count from 1 again,
    /// never repeats a key. Known after the first write has read the pool.
    seq_base: Option<u64>,
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
            seq_base: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `events` in one locked write, dropping our oldest records if
    /// the cap requires it.
    pub fn write(&mut self, events: &[Arc<Event>]) -> Result<Written, WriteError> {
        let file = self.open()?;
        match with_locks(file, |f| self.write_locked(f, events)) {
            Ok(written) => Ok(written),
            Err(cause) => Err(WriteError::Io {
                path: self.path.clone(),
                cause,
            }),
        }
    }

    /// The records of `events`, each event's records together.
    fn encode(&self, events: &[Arc<Event>]) -> Vec<Vec<u8>> {
        let base = self.seq_base.unwrap_or(0);
        let mut groups = Vec::with_capacity(events.len());
        for e in events {
            let renumbered;
            let e = if base == 0 {
                &**e
            } else {
                renumbered = Event {
                    seq: base + e.seq,
                    ..(**e).clone()
                };
                &renumbered
            };
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

    fn dir_missing(&self) -> bool {
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
        let mut len = f.metadata()?.len();
        // The pool as read, when it had to be.
        let mut pool = None;
        if !self.mended || len % RECORD_SIZE as u64 != 0 {
            self.mended = true;
            let old = read_all(f, len)?;
            pool = Some(match mend(&old) {
                Some((content, m)) => {
                    tracing::warn!(
                        pool = %self.path.display(),
                        emptied = m.emptied,
                        duplicates = m.duplicates,
                        cut = m.cut,
                        padded = m.padded,
                        "KVP pool as left by a writer killed in the middle of a write: mended"
                    );
                    rewrite_in_place(&mut slots, &old, &content)?;
                    len = content.len() as u64;
                    content
                }
                None => old,
            });
        }
        if self.seq_base.is_none() {
            let base = match &pool {
                Some(p) => last_seq(p, self.boot.incarnation),
                None => last_seq(&read_all(f, len)?, self.boot.incarnation),
            };
            self.seq_base = Some(base);
        }
        let groups = &self.encode(events);
        let stamp = Stamp::of(&f.metadata()?);
        let ours = match (self.known, &pool) {
            (Some((s, n)), _) if s == stamp => n,
            (_, Some(p)) => count_ours(p),
            (_, None) => count_ours(&read_all(f, len)?),
        };
        let new: usize = groups.iter().map(|g| g.len() / RECORD_SIZE).sum();
        written.records = new;
        written.events = groups.len();
        let ours_after = if ours + new <= self.max_records {
            let batch = groups.concat();
            f.write_all_at(&batch, len)?;
            ours + new
        } else {
            let old = match pool {
                Some(p) => p,
                None => read_all(f, len)?,
            };
            let capped = cap(&old, groups, self.max_records);
            rewrite_in_place(&mut slots, &old, &capped.content)?;
            written.dropped = capped.dropped;
            written.records = new - capped.dropped_new;
            written.events = groups.len() - capped.dropped_new_events;
            capped.ours
        };
        f.sync_all()?;
        self.known = Some((Stamp::of(&f.metadata()?), ours_after));
        Ok(written)
    }
}

/// Where [`rewrite_in_place`] writes: the pool, or memory in tests.
trait Slots {
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
fn rewrite_in_place(f: &mut impl Slots, old: &[u8], new: &[u8]) -> io::Result<()> {
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
struct Mended {
    /// Records with an empty key removed.
    emptied: usize,
    /// Second copies of records removed.
    duplicates: usize,
    /// A partial last record was dropped (its text was cut).
    cut: bool,
    /// A partial last record was padded (only its padding was cut).
    padded: bool,
}

/// `pool` without what a writer killed in the middle of a write leaves
/// (see the module doc): records with an empty key (a slot being
/// rewritten; no key, no record), the second copy of a record present
/// twice byte for byte (moved, its old place not yet overwritten), and a
/// partial last record, padded with NULs if its key and value both end
/// within it, dropped otherwise. `None` when there is nothing to mend.
fn mend(pool: &[u8]) -> Option<(Vec<u8>, Mended)> {
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

fn read_all(f: &File, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len as usize];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

fn is_ours(record: &[u8]) -> bool {
    record.starts_with(PREFIX.as_bytes()) && record.get(PREFIX.len()) == Some(&b'|')
}

fn count_ours(pool: &[u8]) -> usize {
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

/// The highest `<seq>` in the keys of our records of `incarnation` (0 if
/// none).
fn last_seq(pool: &[u8], incarnation: u64) -> u64 {
    let head = format!("{PREFIX}|{incarnation}|");
    pool.chunks_exact(RECORD_SIZE)
        .filter(|r| r.starts_with(head.as_bytes()))
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
struct Capped {
    content: Vec<u8>,
    /// Records of ours removed, old and new.
    dropped: usize,
    /// Of those, how many were in the new batch, and of how many events.
    dropped_new: usize,
    dropped_new_events: usize,
    ours: usize,
}

/// Drops our oldest events (all records of each) until our records, old
/// and `new`, fit in `max`; other records stay, in order. If the batch
/// alone is too big, its oldest events go too.
fn cap(pool: &[u8], new: &[Vec<u8>], max: usize) -> Capped {
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

// ---------------------------------------------------------------------------
// The sink task

/// Counters of the sink, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    events: AtomicU64,
    records: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
    failed: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events written.
    pub events: u64,
    /// Records written (an event may take several).
    pub records: u64,
    /// Our records removed to stay within `max_records` (`kvp-dropped`).
    pub dropped: u64,
    /// Events missed because the sink fell behind the bus.
    pub lost: u64,
    /// Events not written because of an I/O error.
    pub failed: u64,
}

impl Stats {
    pub fn counts(&self) -> Counts {
        Counts {
            events: self.events.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: usize) -> u64 {
        counter.fetch_add(n as u64, Ordering::Relaxed) + n as u64
    }
}

/// Writes every event of `bus` to the pool of `cfg` until `shutdown`, then
/// writes what is left in the channel and returns.
///
/// It subscribes when called (not when first polled) and starts with the
/// events still in the bus's ring, so nothing published before the task
/// runs is missed; call it once per bus. Cancel `shutdown` after the last
/// event (`supervisor-stopping`, the agents' `stopped`) has been published:
/// the final batch gets 5 s, then is given up. Writes happen on a thread of
/// their own; the bus is never waited on (a sink that falls behind counts
/// the events it missed). If the pool's directory does not exist the sink
/// logs it once and idles until `shutdown`.
pub fn run(
    cfg: agentcluster_conf::Kvp,
    bus: Bus,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    run_with_stats(cfg, bus, shutdown, Arc::new(Stats::default()))
}

/// [`run`], with counters the caller can read.
pub fn run_with_stats(
    cfg: agentcluster_conf::Kvp,
    bus: Bus,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
) -> impl Future<Output = ()> + Send + 'static {
    let rx = bus.subscribe();
    let (backlog, _) = bus.replay(0);
    let writer = Writer::new(cfg.path, cfg.max_records as usize, Boot::current());
    sink(writer, rx, backlog, shutdown, stats, bus)
}

/// A batch handed to the writer thread, and where its outcome goes.
type Job = (
    Vec<Arc<Event>>,
    oneshot::Sender<Result<Written, WriteError>>,
);

/// Starts the thread that owns the writer.
fn start_worker(mut writer: Writer) -> io::Result<std::sync::mpsc::Sender<Job>> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("kvp-writer".into())
        .spawn(move || {
            while let Ok((events, reply)) = rx.recv() {
                let _ = reply.send(writer.write(&events));
            }
        })?;
    Ok(tx)
}

/// Events taken from the bus for the next batch, in seq order without
/// duplicates (the ring replayed at the start overlaps the channel), and
/// how many were missed: the seqs skipped, which is exact where the
/// channel's own count (`Lagged`) would include events the ring gave us.
struct Intake {
    batch: Vec<Arc<Event>>,
    last: Option<u64>,
    /// Lagged before any event arrived: nothing to compare seqs with.
    early_lag: u64,
    lost: u64,
}

impl Intake {
    fn new(backlog: Vec<Arc<Event>>) -> Intake {
        let mut intake = Intake {
            batch: Vec::with_capacity(backlog.len()),
            last: None,
            early_lag: 0,
            lost: 0,
        };
        for e in backlog {
            intake.push(e);
        }
        intake
    }

    fn push(&mut self, e: Arc<Event>) {
        match self.last {
            None => self.lost += std::mem::take(&mut self.early_lag),
            Some(last) if e.seq <= last => return,
            Some(last) => self.lost += e.seq - last - 1,
        }
        self.last = Some(e.seq);
        self.batch.push(e);
    }

    fn lagged(&mut self, n: u64) {
        if self.last.is_none() {
            self.early_lag += n;
        }
    }
}

/// Logs and counts what the writer thread reports.
struct Report {
    pool: PathBuf,
    stats: Arc<Stats>,
    /// Where lost events are reported (as `events-dropped`).
    bus: Bus,
    /// The last write failed (the next failures are logged at debug).
    failing: bool,
    /// The cap has been reached before (later drops are logged at debug).
    dropping: bool,
}

impl Report {
    fn lost(&self, n: u64) {
        let total = Stats::add(&self.stats.lost, n as usize);
        tracing::warn!(
            lost = n,
            total,
            "KVP sink fell behind the bus: events not written"
        );
        self.bus.report_dropped("kvp", n);
    }

    /// What a batch of `n` events came to; false when the sink must stop.
    fn outcome(&mut self, n: usize, outcome: Option<Result<Written, WriteError>>) -> bool {
        let pool = self.pool.display();
        match outcome {
            Some(Ok(w)) => {
                Stats::add(&self.stats.events, w.events);
                Stats::add(&self.stats.records, w.records);
                if w.dropped > 0 {
                    let total = Stats::add(&self.stats.dropped, w.dropped);
                    if self.dropping {
                        tracing::debug!(
                            note = "kvp-dropped",
                            dropped = w.dropped,
                            total,
                            "oldest KVP records dropped"
                        );
                    } else {
                        self.dropping = true;
                        tracing::info!(note = "kvp-dropped", dropped = w.dropped, total, pool = %pool, "KVP pool holds max_records of ours: dropping the oldest");
                    }
                }
                if self.failing {
                    self.failing = false;
                    tracing::info!(pool = %pool, "KVP pool writable again");
                }
                true
            }
            Some(Err(WriteError::NoDirectory(_))) => {
                Stats::add(&self.stats.failed, n);
                tracing::warn!(pool = %pool, "KVP sink disabled: its directory is gone");
                false
            }
            Some(Err(e)) => {
                let total = Stats::add(&self.stats.failed, n);
                if self.failing {
                    tracing::debug!(events = n, total, cause = %e, "KVP write failed");
                } else {
                    self.failing = true;
                    tracing::warn!(events = n, total, cause = %e, "KVP write failed: events not written");
                }
                true
            }
            None => {
                Stats::add(&self.stats.failed, n);
                tracing::error!("KVP writer thread is gone: sink disabled");
                false
            }
        }
    }
}

/// Waits for the writer's answer; once `shutdown` is (or gets) cancelled,
/// for [`FLUSH_TIMEOUT`] at most (`Err` then). `None` in the answer: the
/// thread is gone.
async fn answer(
    reply: oneshot::Receiver<Result<Written, WriteError>>,
    shutdown: &CancellationToken,
    done: &mut bool,
) -> Result<Option<Result<Written, WriteError>>, tokio::time::error::Elapsed> {
    let mut reply = reply;
    if !*done {
        tokio::select! {
            r = &mut reply => return Ok(r.ok()),
            _ = shutdown.cancelled() => *done = true,
        }
    }
    tokio::time::timeout(FLUSH_TIMEOUT, reply)
        .await
        .map(Result::ok)
}

async fn sink(
    writer: Writer,
    mut rx: broadcast::Receiver<Arc<Event>>,
    backlog: Vec<Arc<Event>>,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
    bus: Bus,
) {
    let mut report = Report {
        pool: writer.path().to_path_buf(),
        stats,
        bus,
        failing: false,
        dropping: false,
    };
    let worker = if writer.dir_missing() {
        tracing::warn!(pool = %report.pool.display(), "KVP sink disabled: its directory does not exist");
        None
    } else {
        start_worker(writer)
            .inspect_err(|cause| {
                tracing::error!(%cause, "KVP sink disabled: cannot start its thread");
            })
            .ok()
    };
    let Some(worker) = worker else {
        drop(rx);
        shutdown.cancelled().await;
        return;
    };
    let mut intake = Intake::new(backlog);
    let mut done = false;
    loop {
        if intake.batch.is_empty() && !done {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => done = true,
                r = rx.recv() => match r {
                    Ok(e) => intake.push(e),
                    Err(broadcast::error::RecvError::Lagged(n)) => intake.lagged(n),
                    Err(broadcast::error::RecvError::Closed) => done = true,
                },
            }
        }
        // Everything already published goes into this batch.
        loop {
            match rx.try_recv() {
                Ok(e) => intake.push(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => intake.lagged(n),
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Closed) => {
                    done = true;
                    break;
                }
            }
        }
        if intake.lost > 0 {
            report.lost(std::mem::take(&mut intake.lost));
        }
        if !intake.batch.is_empty() {
            let events = std::mem::take(&mut intake.batch);
            let n = events.len();
            let (reply_tx, reply) = oneshot::channel();
            let outcome = match worker.send((events, reply_tx)) {
                Err(_) => None,
                Ok(()) => match answer(reply, &shutdown, &mut done).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        Stats::add(&report.stats.failed, n);
                        tracing::warn!(events = n, pool = %report.pool.display(), "KVP pool still locked or slow at shutdown: last events not written");
                        return;
                    }
                },
            };
            if !report.outcome(n, outcome) {
                drop(rx);
                if !done {
                    shutdown.cancelled().await;
                }
                return;
            }
        }
        if done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, agent: &str, kind: &str, reason: &str) -> Event {
        Event {
            seq,
            ts: "2026-11-22T12:00:00.123Z".into(),
            node: "lab-a".into(),
            agent: agent.into(),
            event: kind.into(),
            pid: Some(4242),
            exit_code: None,
            signal: Some("SIGKILL".into()),
            restarts: 3,
            state: "backoff".into(),
            reason: reason.into(),
        }
    }

    fn record(key: &str, value: &str) -> Record {
        Record {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn records_keep_a_nul_and_cut_on_char_boundaries() {
        let r = encode_record(&"k".repeat(600), &"v".repeat(3000));
        assert_eq!(r.len(), RECORD_SIZE);
        assert_eq!(&r[..KEY_MAX], "k".repeat(511).as_bytes());
        assert_eq!(r[KEY_MAX], 0);
        assert_eq!(
            &r[KEY_SIZE..KEY_SIZE + VALUE_MAX],
            "v".repeat(2047).as_bytes()
        );
        assert_eq!(r[RECORD_SIZE - 1], 0);

        // Exactly at the limit: kept whole.
        let r = decode(&encode_record(&"k".repeat(511), &"v".repeat(2047)));
        assert_eq!(r.records[0].key.len(), 511);
        assert_eq!(r.records[0].value.len(), 2047);

        // 2-byte chars: 511 would split one, so 510.
        let p = decode(&encode_record(&"é".repeat(300), &"é".repeat(1100)));
        assert_eq!(p.records[0].key, "é".repeat(255));
        assert_eq!(p.records[0].value, "é".repeat(1023));
        // 3-byte chars: 2047 = 3 * 682 + 1.
        let p = decode(&encode_record("k", &"€".repeat(1000)));
        assert_eq!(p.records[0].value, "€".repeat(682));
        // A 4-byte char across the key limit: 508 + 4 > 511.
        let key = format!("{}😀x", "a".repeat(508));
        let p = decode(&encode_record(&key, "v"));
        assert_eq!(p.records[0].key, "a".repeat(508));
        // What a C reader would see: a NUL ends the string.
        let p = decode(&encode_record("a\0b", "c\0d"));
        assert_eq!(p.records[0], record("a", "c"));
    }

    #[test]
    fn decode_reports_a_truncated_last_record() {
        let mut pool = encode_record("a", "1");
        pool.extend(encode_record("b", "2"));
        pool.truncate(RECORD_SIZE + 100);
        let p = decode(&pool);
        assert_eq!(p.records, vec![record("a", "1")]);
        assert_eq!(p.trailing, 100);
        assert_eq!(decode(&[]), Pool::default());
        // Invalid UTF-8 is shown, not fatal.
        let mut bad = encode_record("k", "");
        bad[KEY_SIZE] = 0xff;
        assert_eq!(decode(&bad).records[0].value, "\u{fffd}");
    }

    #[test]
    fn keys_name_incarnation_event_agent_and_seq() {
        let e = event(42, "core-sw-1", "died", "killed by SIGKILL");
        assert_eq!(
            event_key(1_795_000_000, &e),
            "AGENTCLUSTER|1795000000|died|core-sw-1|42"
        );
        let s = event(1, "", "supervisor-started", "");
        assert_eq!(event_key(7, &s), "AGENTCLUSTER|7|supervisor-started||1");
        // A long agent name is shortened so the key reaches the host whole,
        // with room for a slice suffix; the seq stays.
        let long = event(123_456, &"ü".repeat(100), "config-changed", "");
        let key = event_key(1_795_000_000, &long);
        assert!(key.len() + SUFFIX_ROOM <= HOST_KEY_MAX, "{}", key.len());
        assert!(key.ends_with("|123456"), "{key}");
        assert!(key.contains("|config-changed|üü"), "{key}");
    }

    #[test]
    fn short_events_are_one_record_of_compact_json() {
        let e = event(42, "core-sw-1", "died", "killed by SIGKILL");
        let parts = encode_event(9, &e).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].0, "AGENTCLUSTER|9|died|core-sw-1|42");
        assert_eq!(parts[0].1, serde_json::to_string(&e).unwrap());
        assert!(parts[0].1.starts_with("{\"seq\":42,\"ts\":"));
        let back: Event = serde_json::from_str(&parts[0].1).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn escaped_len_matches_serde_json() {
        for c in (0u32..0x80)
            .filter_map(char::from_u32)
            .chain(['é', '€', '😀', '\u{7f}', '\u{2028}'])
        {
            let s = serde_json::to_string(&c.to_string()).unwrap();
            assert_eq!(escaped_len(c), s.len() - 2, "{c:?}");
        }
    }

    /// A 5,000-byte reason with 1-, 2-, 3- and 4-byte characters, quotes,
    /// backslashes and control characters.
    fn long_reason() -> String {
        let unit = "exit \"status\" 137 \\ é€😀\n\u{1}tab\t";
        let mut s = String::new();
        while s.len() + unit.len() <= 5000 {
            s.push_str(unit);
        }
        while s.len() < 5000 {
            s.push('x');
        }
        s
    }

    #[test]
    fn a_long_reason_is_sliced_and_reassembles_exactly() {
        let reason = long_reason();
        assert_eq!(reason.len(), 5000);
        let e = event(77, "core-sw-1", "start-failed", &reason);
        let parts = encode_event(1_795_000_000, &e).unwrap();
        assert!(parts.len() >= 5, "{}", parts.len());
        let mut joined = String::new();
        for (i, (k, v)) in parts.iter().enumerate() {
            assert_eq!(
                k,
                &format!("AGENTCLUSTER|1795000000|start-failed|core-sw-1|77|{i}")
            );
            assert!(v.len() <= HOST_VALUE_MAX, "slice {i}: {}", v.len());
            // Each slice is JSON of its own: the event without `reason`,
            // then msg_i and msg, as cloud-init writes them.
            let j: serde_json::Value = serde_json::from_str(v).unwrap();
            assert_eq!(j["msg_i"], i as u64);
            assert_eq!(j["seq"], 77);
            assert_eq!(j["agent"], "core-sw-1");
            assert!(j.get("reason").is_none());
            assert!(v.ends_with(&format!(",\"msg_i\":{i},\"msg\":{}}}", j["msg"])));
            joined.push_str(j["msg"].as_str().unwrap());
        }
        assert_eq!(joined, reason);

        // Through the pool file and back.
        let mut pool = Vec::new();
        push_record(&mut pool, "CLOUD_INIT|1|start|x|u", "{\"msg\":\"other\"}");
        for (k, v) in &parts {
            push_record(&mut pool, k, v);
        }
        let entries = reassemble(&decode(&pool).records);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].value, "{\"msg\":\"other\"}");
        assert_eq!(
            entries[1].key,
            "AGENTCLUSTER|1795000000|start-failed|core-sw-1|77"
        );
        assert_eq!(entries[1].parts, parts.len());
        assert!(entries[1].complete);
        assert_eq!(entries[1].value, serde_json::to_string(&e).unwrap());
    }

    #[test]
    fn metadata_at_the_threshold_still_progresses() {
        // A reason that is nearly all escapes: each `\u0001` is 6 bytes.
        let e = event(1, "a", "died", &"\u{1}".repeat(1000));
        let parts = encode_event(1, &e).unwrap();
        let joined: String = parts
            .iter()
            .map(|(_, v)| {
                let j: serde_json::Value = serde_json::from_str(v).unwrap();
                j["msg"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(joined, e.reason);
        assert!(parts.iter().all(|(_, v)| v.len() <= HOST_VALUE_MAX));
    }

    /// cloud-init's `_break_down`, transcribed: slices of the *escaped*
    /// (ASCII) description, which may split an escape sequence.
    fn cloud_init_slices(key: &str, desc: &str) -> Vec<Record> {
        let escaped = serde_json::to_string(desc).unwrap();
        let mut des: String = escaped[1..escaped.len() - 1]
            .chars()
            .flat_map(|c| {
                if c.is_ascii() {
                    vec![c.to_string()]
                } else {
                    let mut b = [0u16; 2];
                    c.encode_utf16(&mut b)
                        .iter()
                        .map(|u| format!("\\u{u:04x}"))
                        .collect()
                }
            })
            .collect();
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let skeleton = format!(
                "{{\"name\":\"init-network\",\"type\":\"finish\",\"ts\":\"2026-01-01T00:00:00Z\",\"msg_i\":{i},\"msg\":\"\"}}"
            );
            let room = 1024 - skeleton.len() - 8;
            let take = room.min(des.len());
            let value = skeleton.replace("\"msg\":\"\"", &format!("\"msg\":\"{}\"", &des[..take]));
            out.push(record(&format!("{key}|{i}"), &value));
            des.drain(..take);
            i += 1;
            if des.is_empty() {
                break;
            }
        }
        out
    }

    #[test]
    fn cloud_init_slices_reassemble_too() {
        let desc = long_reason();
        let slices = cloud_init_slices("CLOUD_INIT|1795000000|finish|init-network|f00", &desc);
        assert!(slices.len() > 1);
        let entries = reassemble(&slices);
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(
            entries[0].key,
            "CLOUD_INIT|1795000000|finish|init-network|f00"
        );
        let j: serde_json::Value = serde_json::from_str(&entries[0].value).unwrap();
        assert_eq!(j["msg"], desc.as_str());
        assert_eq!(j["name"], "init-network");
        assert!(j.get("msg_i").is_none());
    }

    #[test]
    fn orphan_slices_pass_through_marked_incomplete() {
        let e = event(5, "a", "died", &long_reason());
        let parts = encode_event(1, &e).unwrap();
        let records: Vec<Record> = parts[1..].iter().map(|(k, v)| record(k, v)).collect();
        let entries = reassemble(&records);
        assert_eq!(entries.len(), records.len());
        assert!(entries.iter().all(|e| !e.complete && e.parts == 1));
        // A gap ends a group: 0 alone, then orphans.
        let mut gap: Vec<Record> = vec![record(&parts[0].0, &parts[0].1)];
        gap.extend(records[1..].iter().cloned());
        let entries = reassemble(&gap);
        assert_eq!(entries[0].parts, 1);
        assert!(entries[0].complete);
        assert!(!entries[1].complete);
    }

    #[test]
    fn boot_time_parsing() {
        assert_eq!(
            parse_uptime("350735.47 234388.90\n"),
            Some(Duration::from_secs_f64(350_735.47))
        );
        assert_eq!(parse_uptime("na"), None);
        assert_eq!(parse_uptime("-1 0"), None);
        let stat = "cpu  1 2 3\nintr 5\nbtime 1769000000\nprocesses 9\n";
        assert_eq!(parse_btime(stat), Some(1_769_000_000));
        assert_eq!(parse_btime("cpu 1\n"), None);
        let b = Boot::at(SystemTime::UNIX_EPOCH + Duration::from_millis(1_769_000_000_900));
        assert_eq!(b.incarnation, 1_769_000_000);
        let now = Boot::current();
        assert!(now.incarnation > 1_600_000_000, "{now:?}");
        assert!(now.time.is_some_and(|t| t < SystemTime::now()));
    }

    // ----- the writer, on real files

    fn arc(e: Event) -> Arc<Event> {
        Arc::new(e)
    }

    fn ready(seq: u64) -> Arc<Event> {
        arc(event(seq, &format!("dev-{seq}"), "ready", "ready"))
    }

    /// A boot long ago: nothing is truncated.
    fn old_boot() -> Boot {
        Boot::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
    }

    fn keys(path: &Path) -> Vec<String> {
        let p = decode(&std::fs::read(path).unwrap());
        assert_eq!(p.trailing, 0);
        p.records.into_iter().map(|r| r.key).collect()
    }

    fn seqs(path: &Path) -> Vec<String> {
        keys(path)
            .into_iter()
            .map(|k| match k.strip_prefix("AGENTCLUSTER|") {
                Some(rest) => rest.rsplit('|').next().unwrap().to_string(),
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

    /// A supervisor restarted within one boot numbers its events from 1
    /// again; in the pool they go on after the highest seq its earlier runs
    /// left, so no key repeats (the host keeps one value per key); the
    /// value's seq is the key's.
    #[test]
    fn keys_never_repeat_across_runs_of_one_boot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let mut first = Writer::new(path.clone(), 100, old_boot());
        first.write(&[ready(1), ready(2)]).unwrap();
        let mut long = (*ready(3)).clone();
        long.reason = "x".repeat(3000);
        first.write(&[Arc::new(long)]).unwrap();
        let mut second = Writer::new(path.clone(), 100, old_boot());
        second.write(&[ready(1)]).unwrap();
        second.write(&[ready(2)]).unwrap();
        let p = decode(&std::fs::read(&path).unwrap());
        let keys: Vec<&str> = p.records.iter().map(|r| r.key.as_str()).collect();
        let n = keys.len();
        assert_eq!(
            &keys[n - 2..],
            &[
                "AGENTCLUSTER|1000000000|ready|dev-1|4",
                "AGENTCLUSTER|1000000000|ready|dev-2|5"
            ],
            "{keys:?}"
        );
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), n, "{keys:?}");
        let e: Event = serde_json::from_str(&p.records[n - 1].value).unwrap();
        assert_eq!(e.seq, 5);
        // Another boot starts again from 1.
        let later = Boot::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_100_000_000));
        let mut third = Writer::new(path.clone(), 100, later);
        third.write(&[ready(1)]).unwrap();
        let p = decode(&std::fs::read(&path).unwrap());
        assert_eq!(
            p.records.last().unwrap().key,
            "AGENTCLUSTER|1100000000|ready|dev-1|1"
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

    #[test]
    fn the_cap_drops_our_oldest_and_keeps_others_in_order() {
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

        // One more: the oldest of ours goes, the others' stay where they were.
        let done = w.write(&[ready(4)]).unwrap();
        assert_eq!(done.dropped, 1);
        assert_eq!(seqs(&path), ["CLOUD_INIT|a", "2", "CLOUD_INIT|b", "3", "4"]);

        // A sliced event counts all its records and is dropped whole.
        let big = arc(event(5, "dev-5", "died", &long_reason()));
        let n = encode_event(1, &big).unwrap().len();
        assert!(n > 3);
        let mut w = Writer::new(path.clone(), n + 1, old_boot());
        let done = w.write(std::slice::from_ref(&big)).unwrap();
        assert_eq!(done.dropped, 2); // 2 then 3: 4 + n records fit
        append("CLOUD_INIT|c");
        let done = w.write(&[ready(6)]).unwrap();
        assert_eq!(done.dropped, 1); // 4
        let s = seqs(&path);
        assert_eq!(s[..2], ["CLOUD_INIT|a", "CLOUD_INIT|b"]);
        let entries = reassemble(&decode(&std::fs::read(&path).unwrap()).records);
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "CLOUD_INIT|a",
                "CLOUD_INIT|b",
                // A new writer (a new run): its keys go on after the "4".
                "AGENTCLUSTER|1000000000|died|dev-5|9",
                "CLOUD_INIT|c",
                "AGENTCLUSTER|1000000000|ready|dev-6|10"
            ]
        );
        let renumbered = Event {
            seq: 9,
            ..(*big).clone()
        };
        assert_eq!(
            entries[2].value,
            serde_json::to_string(&renumbered).unwrap()
        );

        // Now the sliced event is the oldest: one more ready drops it whole.
        let done = w.write(&[ready(7)]).unwrap();
        assert_eq!(done.dropped, n);
        assert_eq!(
            seqs(&path),
            ["CLOUD_INIT|a", "CLOUD_INIT|b", "CLOUD_INIT|c", "10", "11"]
        );
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
        // This writer's keys go on after the "1" of the one before it.
        assert_eq!(seqs(&path), ["other", "1", "3", "4"]);
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
        // A new run's keys go on after the earlier run's "2".
        assert_eq!(seqs(&path), ["CLOUD_INIT|x", "2", "5"]);

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

    /// Whether another open file description of `path` sees a conflicting
    /// OFD lock, a classic POSIX lock (what `hv_kvp_daemon` takes) and
    /// flock (what cloud-init takes).
    fn conflicts(path: &Path) -> (bool, bool, bool) {
        let other = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let probe = || libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        let mut ofd = probe();
        fcntl(&other, FcntlArg::F_OFD_GETLK(&mut ofd)).unwrap();
        let mut posix = probe();
        fcntl(&other, FcntlArg::F_GETLK(&mut posix)).unwrap();
        let flocked = match Flock::lock(other, FlockArg::LockExclusiveNonblock) {
            Ok(_) => false,
            Err((_, e)) => {
                assert_eq!(e, Errno::EWOULDBLOCK);
                true
            }
        };
        (
            ofd.l_type == libc::F_WRLCK as libc::c_short,
            posix.l_type == libc::F_WRLCK as libc::c_short,
            flocked,
        )
    }

    #[test]
    fn writes_hold_both_locks_and_release_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        std::fs::write(&path, b"").unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let inside = with_locks(file, |_| Ok(conflicts(&path))).unwrap();
        assert_eq!(inside, (true, true, true));
        assert_eq!(conflicts(&path), (false, false, false));
    }

    /// Waits until `/proc/locks` shows a blocked request of `kind` on the
    /// file (a waiter, not a guess about timing).
    fn wait_for_waiter(path: &Path, kind: &str) -> bool {
        let ino = std::fs::metadata(path).unwrap().ino();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
                return false;
            };
            if locks.lines().any(|l| {
                l.contains("->")
                    && l.contains(kind)
                    && l.split_whitespace()
                        .any(|f| f.ends_with(&format!(":{ino}")))
            }) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn a_writer_waits_for_each_lock() {
        if std::fs::read_to_string("/proc/locks").is_err() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        std::fs::write(&path, encode_record("other", "x")).unwrap();
        for held in ["OFDLCK", "FLOCK"] {
            let holder = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            let guard = if held == "OFDLCK" {
                lock(&holder, libc::F_WRLCK).unwrap();
                None
            } else {
                Some(Flock::lock(holder.try_clone().unwrap(), FlockArg::LockExclusive).unwrap())
            };
            let before = keys(&path);
            let p = path.clone();
            let writer = std::thread::spawn(move || {
                let mut w = Writer::new(p, 10, old_boot());
                w.write(&[ready(1)]).map(|d| d.records)
            });
            assert!(wait_for_waiter(&path, held), "no waiter on {held}");
            assert_eq!(keys(&path), before, "wrote while {held} was held");
            drop(guard);
            drop(holder);
            assert_eq!(writer.join().unwrap().unwrap(), 1);
        }
        // The second writer's key goes on after the first one's.
        assert_eq!(seqs(&path), ["other", "1", "2"]);
    }

    #[test]
    fn read_pool_reads_under_shared_locks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        std::fs::write(&path, encode_record("k", "v")).unwrap();
        assert_eq!(
            decode(&read_pool(&path).unwrap()).records,
            [record("k", "v")]
        );
        assert!(read_pool(&dir.path().join("missing")).is_err());
    }

    // ----- the sink task

    fn kvp(path: &Path, max: u32) -> agentcluster_conf::Kvp {
        agentcluster_conf::Kvp {
            path: path.to_path_buf(),
            max_records: max,
        }
    }

    fn publish(bus: &Bus, agent: &str, kind: &str, reason: &str) {
        bus.publish(crate::events::NewEvent {
            agent: agent.into(),
            event: kind.into(),
            reason: reason.into(),
            ..Default::default()
        });
    }

    #[tokio::test]
    async fn the_sink_writes_earlier_and_later_events_and_flushes_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let bus = Bus::new("lab-a");
        // Published before the sink exists: found in the ring.
        publish(&bus, "", "supervisor-started", "2 agents");
        let shutdown = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(run_with_stats(
            kvp(&path, 100),
            bus.clone(),
            shutdown.clone(),
            stats.clone(),
        ));
        // Published after the call but before the task runs: not duplicated.
        publish(&bus, "dev-a", "ready", "ready");
        publish(&bus, "dev-b", "ready", &long_reason());
        publish(&bus, "", "supervisor-stopping", "SIGTERM");
        shutdown.cancel();
        task.await.unwrap();
        let entries = reassemble(&decode(&std::fs::read(&path).unwrap()).records);
        let got: Vec<(u64, String, String)> = entries
            .iter()
            .map(|e| {
                let ev: Event = serde_json::from_str(&e.value).unwrap();
                assert!(
                    e.key
                        .ends_with(&format!("|{}|{}|{}", ev.event, ev.agent, ev.seq))
                );
                (ev.seq, ev.event, ev.agent)
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, "supervisor-started".into(), "".into()),
                (2, "ready".into(), "dev-a".into()),
                (3, "ready".into(), "dev-b".into()),
                (4, "supervisor-stopping".into(), "".into()),
            ]
        );
        let c = stats.counts();
        assert_eq!(c.events, 4);
        assert!(c.records > 4);
        assert_eq!((c.dropped, c.lost, c.failed), (0, 0, 0));
    }

    #[tokio::test]
    async fn the_sink_counts_events_it_fell_behind_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let bus = Bus::new("lab-a");
        let shutdown = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let fut = run_with_stats(
            kvp(&path, 10_000),
            bus.clone(),
            shutdown.clone(),
            stats.clone(),
        );
        // More than the channel holds before the sink reads anything; the
        // ring (replayed at the start) does not have the first ones either.
        for i in 0..crate::events::bus::RING + 5000 {
            publish(&bus, &format!("d{i}"), "ready", "");
        }
        shutdown.cancel();
        fut.await;
        let c = stats.counts();
        assert!(c.lost > 0, "{c:?}");
        assert_eq!(
            c.events + c.lost,
            (crate::events::bus::RING + 5000) as u64,
            "{c:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pool_locked_forever_does_not_hold_up_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        std::fs::write(&path, b"").unwrap();
        let holder = Flock::lock(File::open(&path).unwrap(), FlockArg::LockExclusive).unwrap();
        let bus = Bus::new("lab-a");
        publish(&bus, "a", "ready", "");
        let shutdown = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(run_with_stats(
            kvp(&path, 10),
            bus.clone(),
            shutdown.clone(),
            stats.clone(),
        ));
        shutdown.cancel();
        // The clock is paused: the flush timeout passes as soon as the
        // runtime has nothing else to do.
        task.await.unwrap();
        assert_eq!(stats.counts().failed, 1);
        drop(holder);
    }

    #[tokio::test]
    async fn a_missing_directory_disables_the_sink() {
        let dir = tempfile::tempdir().unwrap();
        let bus = Bus::new("lab-a");
        let shutdown = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(run_with_stats(
            kvp(&dir.path().join("missing/pool"), 10),
            bus.clone(),
            shutdown.clone(),
            stats.clone(),
        ));
        publish(&bus, "a", "ready", "");
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(stats.counts(), Counts::default());
        assert!(!dir.path().join("missing").exists());
    }
}
