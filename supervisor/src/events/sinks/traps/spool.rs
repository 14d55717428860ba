//! The inform spool: one target's unacknowledged informs, kept on disk in
//! `state_dir/informs/<target-hash>.jsonl` so they survive a supervisor
//! restart, even a `kill -9`. The file is an append-only log of lines
//! `<crc32 hex> <json>`, one `add` per inform and one `ack` per inform
//! that needs no more sending, each write fsynced; a torn or damaged line
//! is recognized by its checksum and skipped. When most lines are dead the
//! log is compacted by write-then-rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use agentcluster_agent::notify::Target;
use serde::{Deserialize, Serialize};

use crate::events::Event;

/// CRC-32 (IEEE 802.3, the zlib one) of a record line, so a torn or
/// damaged line is recognized and skipped.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// One inform waiting for its acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Pending {
    /// Unique in its file (event seqs restart with the supervisor).
    pub(super) id: u64,
    /// sysUpTime when the event happened, sent again unchanged.
    pub(super) uptime: u32,
    pub(super) event: Event,
}

/// One line of the log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum Line {
    Add {
        /// Who the inform is for, for a person reading the file.
        target: String,
        #[serde(flatten)]
        pending: Box<Pending>,
    },
    Ack {
        id: u64,
    },
}

fn encode_line(line: &Line) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(line).map_err(io::Error::other)?;
    let mut out = format!("{:08x} ", crc32(&json)).into_bytes();
    out.extend_from_slice(&json);
    out.push(b'\n');
    Ok(out)
}

fn decode_line(text: &str) -> Option<Line> {
    let (crc, json) = text.split_once(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    (crc32(json.as_bytes()) == crc)
        .then(|| serde_json::from_str(json).ok())
        .flatten()
}

/// The durable list of one target's unacknowledged informs.
#[derive(Debug)]
pub(super) struct InformStore {
    path: PathBuf,
    label: String,
    file: Option<File>,
    /// Lines in the file, to know when compaction pays.
    lines: usize,
    next_id: u64,
}

impl InformStore {
    /// Opens (creating the directory) the store at `path` and returns the
    /// pending informs it holds, oldest first. Damaged lines (a crash in
    /// mid-write) are skipped with a warning; the file is then rewritten
    /// with only what is pending.
    pub(super) fn open(path: &Path, label: &str) -> io::Result<(InformStore, Vec<Pending>)> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut pending: Vec<Pending> = Vec::new();
        let mut damaged = 0usize;
        match File::open(path) {
            Ok(f) => {
                for line in BufReader::new(f).split(b'\n') {
                    let line = line?;
                    if line.is_empty() {
                        continue;
                    }
                    match std::str::from_utf8(&line).ok().and_then(decode_line) {
                        Some(Line::Add { pending: p, .. }) => {
                            pending.retain(|q| q.id != p.id);
                            pending.push(*p);
                        }
                        Some(Line::Ack { id }) => pending.retain(|q| q.id != id),
                        None => damaged += 1,
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if damaged > 0 {
            tracing::warn!(
                file = %path.display(),
                damaged,
                "pending informs: damaged records skipped"
            );
        }
        pending.sort_by_key(|p| p.id);
        let mut store = InformStore {
            path: path.to_path_buf(),
            label: label.to_string(),
            file: None,
            lines: 0,
            next_id: pending.last().map_or(1, |p| p.id + 1),
        };
        store.rewrite(&pending)?;
        Ok((store, pending))
    }

    /// Replaces the file by one holding exactly `pending` (temporary file,
    /// fsync, rename, fsync of the directory), or removes it when empty.
    pub(super) fn rewrite(&mut self, pending: &[Pending]) -> io::Result<()> {
        self.file = None;
        if pending.is_empty() {
            match fs::remove_file(&self.path) {
                Ok(()) => sync_dir(&self.path)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.lines = 0;
            return Ok(());
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        {
            let mut f = File::create(&tmp)?;
            let mut buf = Vec::new();
            for p in pending {
                buf.extend(encode_line(&Line::Add {
                    target: self.label.clone(),
                    pending: Box::new(p.clone()),
                })?);
            }
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        sync_dir(&self.path)?;
        self.lines = pending.len();
        Ok(())
    }

    fn append(&mut self, line: &Line) -> io::Result<()> {
        self.append_lines(&encode_line(line)?, 1)
    }

    /// Appends `n` encoded lines in one write, then fsyncs.
    fn append_lines(&mut self, bytes: &[u8], n: usize) -> io::Result<()> {
        if self.file.is_none() {
            let created = !self.path.exists();
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
            if created {
                sync_dir(&self.path)?;
            }
        }
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::other("inform store not open"));
        };
        f.write_all(bytes)?;
        f.sync_data()?;
        self.lines += n;
        Ok(())
    }

    /// Records new pending informs, `(uptime, event)` each, durably with
    /// one write and one fsync, and returns them in order.
    pub(super) fn add_all(&mut self, items: Vec<(u32, Event)>) -> io::Result<Vec<Pending>> {
        let mut added = Vec::with_capacity(items.len());
        let mut bytes = Vec::new();
        for (uptime, event) in items {
            let p = Pending {
                id: self.next_id + added.len() as u64,
                uptime,
                event,
            };
            bytes.extend(encode_line(&Line::Add {
                target: self.label.clone(),
                pending: Box::new(p.clone()),
            })?);
            added.push(p);
        }
        if added.is_empty() {
            return Ok(added);
        }
        self.append_lines(&bytes, added.len())?;
        self.next_id += added.len() as u64;
        Ok(added)
    }

    /// Records that `id` needs no more sending (acknowledged or given up).
    pub(super) fn ack(&mut self, id: u64) -> io::Result<()> {
        self.append(&Line::Ack { id })
    }

    /// Whether, with `remaining` informs left, the file should rather be
    /// rewritten ([`InformStore::rewrite`]) than appended an ack: when
    /// nothing is left (the file goes away) or most lines are dead.
    pub(super) fn wants_rewrite(&self, remaining: usize) -> bool {
        remaining == 0 || self.lines > 2 * remaining + 64
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// FNV-1a, 64 bits: stable across builds and versions, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The file name of each target's pending informs: a hash of address,
/// version, type and user name (no secret), with the position among equal
/// targets added for duplicates, so a reordered configuration keeps its
/// files.
pub(super) fn store_names(targets: &[Target]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    targets
        .iter()
        .map(|t| {
            let user = t
                .user
                .as_ref()
                .map(|u| String::from_utf8_lossy(&u.name).into_owned())
                .unwrap_or_default();
            let key = format!("{}\0{:?}\0{:?}\0{user}", t.address, t.version, t.kind);
            let dup = seen.iter().filter(|k| **k == key).count();
            seen.push(key.clone());
            let key = if dup == 0 {
                key
            } else {
                format!("{key}\0{dup}")
            };
            format!("{:016x}.jsonl", fnv1a(key.as_bytes()))
        })
        .collect()
}

/// Warns about pending-inform files of targets no longer configured.
pub(super) fn warn_orphans(dir: &Path, names: &[String]) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".jsonl") && !names.contains(&name) {
            tracing::warn!(
                file = %entry.path().display(),
                "pending informs of a target no longer configured; left in place"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use agentcluster_conf::{NotifyType, Secret};

    use super::*;
    use crate::events::sinks::traps::testutil::conf_target;
    use crate::events::testutil::died;

    impl InformStore {
        /// Records one new pending inform, durably, and returns it.
        fn add(&mut self, uptime: u32, event: Event) -> io::Result<Pending> {
            let mut added = self.add_all(vec![(uptime, event)])?;
            added
                .pop()
                .ok_or_else(|| io::Error::other("inform not added"))
        }
    }

    #[test]
    fn crc32_is_the_zlib_one() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn store_names_are_stable_and_hold_no_secret() {
        let t = |addr: &str, kind| crate::events::targets::target(&conf_target(addr, kind, None));
        let names = store_names(&[
            t("127.0.0.1:162", NotifyType::Inform),
            t("127.0.0.1:163", NotifyType::Inform),
            t("127.0.0.1:162", NotifyType::Inform),
            t("127.0.0.1:162", NotifyType::Trap),
        ]);
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), 4, "{names:?}");
        assert!(names.iter().all(|n| n.len() == 22 && n.ends_with(".jsonl")));
        // Stable: the same target keeps its file when others move.
        let again = store_names(&[t("127.0.0.1:162", NotifyType::Inform)]);
        assert_eq!(again[0], names[0]);
        // The community is not part of it (no secret in a file name).
        let mut other = conf_target("127.0.0.1:162", NotifyType::Inform, None);
        other.community = Some(Secret::new("another"));
        assert_eq!(
            store_names(&[crate::events::targets::target(&other)])[0],
            names[0]
        );
    }

    #[test]
    fn the_inform_store_survives_reopening_and_skips_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("informs/x.jsonl");
        let (mut s, pending) = InformStore::open(&path, "t").unwrap();
        assert!(pending.is_empty());
        assert!(!path.exists(), "no file until something is pending");
        let a = s.add(1, died()).unwrap();
        let b = s.add(2, Event { seq: 43, ..died() }).unwrap();
        let c = s
            .add(
                3,
                Event {
                    seq: 44,
                    reason: "ünïcödé | \n quoted \"x\"".into(),
                    ..died()
                },
            )
            .unwrap();
        assert_eq!((a.id, b.id, c.id), (1, 2, 3));
        s.ack(b.id).unwrap();
        drop(s);
        // A torn last line, as a crash in mid-write leaves it.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"1234abcd {\"op\":\"add\",\"id\":9").unwrap();
        drop(f);
        let (mut s, pending) = InformStore::open(&path, "t").unwrap();
        assert_eq!(pending, vec![a.clone(), c.clone()]);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().count(),
            2,
            "rewritten without dead lines: {text}"
        );
        assert!(text.contains("\"target\":\"t\""), "{text}");
        // New ids continue after the highest one kept.
        assert_eq!(s.add(4, died()).unwrap().id, 4);
        // A changed byte breaks the checksum: that record is skipped.
        drop(s);
        let text = fs::read_to_string(&path)
            .unwrap()
            .replacen("core-sw-1", "core-sw-2", 1);
        fs::write(&path, text).unwrap();
        let (mut s, pending) = InformStore::open(&path, "t").unwrap();
        assert_eq!(pending.iter().map(|p| p.id).collect::<Vec<_>>(), [3, 4]);
        // Nothing left: the file goes away.
        assert!(s.wants_rewrite(0));
        s.rewrite(&[]).unwrap();
        assert!(!path.exists());
        assert!(!path.with_extension("jsonl.tmp").exists());
    }

    #[test]
    fn the_inform_store_compacts_when_mostly_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let (mut s, _) = InformStore::open(&path, "t").unwrap();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        for i in 0..200 {
            pending.push_back(s.add(i, died()).unwrap());
            if pending.len() > 2 {
                let p = pending.pop_front().unwrap();
                if s.wants_rewrite(pending.len()) {
                    s.rewrite(&pending.iter().cloned().collect::<Vec<_>>())
                        .unwrap();
                } else {
                    s.ack(p.id).unwrap();
                }
            }
        }
        let lines = fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 2 * 2 + 64 + 2, "{lines} lines for 2 pending");
        let (_, kept) = InformStore::open(&path, "t").unwrap();
        assert_eq!(kept, pending.into_iter().collect::<Vec<_>>());
    }
}
