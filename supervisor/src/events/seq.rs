//! Event numbers that survive the supervisor: `seq` goes on across
//! restarts, so one event has one number in the stream, the KVP pool, the
//! journal and the traps, and a number is never given twice.
//!
//! The numbers are reserved in blocks, kept in `state_dir/events.seq`: the
//! file holds the first number not reserved yet, and a number is used only
//! once the file says it is reserved (written to a temporary file, fsynced,
//! renamed, the directory fsynced). So a supervisor killed at any moment
//! loses at most the rest of its block (the next run starts after it) and
//! never repeats a number, while writing the file once per [`BLOCK`]
//! events, not once per event. A clean stop writes the exact next number,
//! so it skips none.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Numbers reserved at a time.
pub const BLOCK: u64 = 1000;

/// The file in `state_dir` that keeps the sequence.
pub const FILE: &str = "events.seq";

/// The numbers of one supervisor run.
#[derive(Debug)]
pub struct Numbers {
    /// Where the reservations go; `None`: in memory only (tests, tools).
    path: Option<PathBuf>,
    next: u64,
    /// Numbers below this are reserved.
    limit: u64,
    /// The last reservation failed (it is retried at the next block, and
    /// logged once until one succeeds).
    failing: bool,
}

impl Numbers {
    /// Numbers from 1, kept nowhere (tests).
    #[cfg(test)]
    pub fn in_memory() -> Numbers {
        Numbers {
            path: None,
            next: 1,
            limit: u64::MAX,
            failing: false,
        }
    }

    /// The sequence kept in `state_dir` (created if missing), going on
    /// where the last run left it, and at `floor` at least (numbers an
    /// earlier run left elsewhere, e.g. in the KVP pool, if the state was
    /// lost). Reserves the first block before returning; an unreadable or
    /// damaged file is an error naming it, never a guess that could repeat
    /// numbers.
    pub fn open(state_dir: &Path, floor: u64) -> io::Result<Numbers> {
        fs::create_dir_all(state_dir)?;
        let path = state_dir.join(FILE);
        let kept = match File::open(&path) {
            Ok(mut f) => {
                let mut text = String::new();
                f.read_to_string(&mut text)?;
                text.trim().parse::<u64>().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: not an event sequence number; fix it, or remove it to number events anew",
                            path.display()
                        ),
                    )
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => 1,
            Err(e) => {
                return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())));
            }
        };
        let next = kept.max(floor).max(1);
        let mut numbers = Numbers {
            path: Some(path),
            next,
            limit: next,
            failing: false,
        };
        numbers.reserve(next.saturating_add(BLOCK))?;
        Ok(numbers)
    }

    /// The number the next event gets.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Takes the next number, reserving a new block first when this one is
    /// used up. A block that cannot be reserved (disk full, read-only) is
    /// logged and numbering goes on: a crash before the next successful
    /// reservation could then repeat those numbers.
    pub fn take(&mut self) -> u64 {
        if self.next >= self.limit {
            let want = self.next.saturating_add(BLOCK);
            match self.reserve(want) {
                Ok(()) => {
                    if std::mem::take(&mut self.failing) {
                        tracing::info!("event sequence kept on disk again");
                    }
                }
                Err(cause) => {
                    if !std::mem::replace(&mut self.failing, true) {
                        tracing::error!(%cause, "cannot keep the event sequence on disk: a crash could repeat event numbers");
                    }
                    self.limit = want;
                }
            }
        }
        let n = self.next;
        self.next = self.next.saturating_add(1);
        n
    }

    /// At a clean stop: the next run starts with the next number, none
    /// skipped. Events published after this reserve a block again.
    pub fn close(&mut self) {
        if let Err(cause) = self.reserve(self.next) {
            tracing::warn!(%cause, "cannot keep the event sequence on disk: the next run skips the rest of this block");
        }
    }

    /// Records durably that numbers below `limit` may be in use.
    fn reserve(&mut self, limit: u64) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        write_durably(path, &format!("{limit}\n"))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        self.limit = limit;
        Ok(())
    }
}

/// Replaces `path` with `text`: a temporary file (named after this
/// process, so a second supervisor on the same directory cannot rename it
/// away under us), fsynced, renamed over it, the directory fsynced.
fn write_durably(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension(format!("seq.{}.tmp", std::process::id()));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(dir: &Path) -> String {
        fs::read_to_string(dir.join(FILE)).unwrap()
    }

    #[test]
    fn numbers_go_on_across_runs_and_a_crash_skips_but_never_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut run = Numbers::open(&state, 0).unwrap();
        assert_eq!(kept(&state), "1001\n", "the first block is reserved first");
        assert_eq!((run.take(), run.take()), (1, 2));
        // A clean stop: the next run takes the next number.
        run.close();
        assert_eq!(kept(&state), "3\n");
        let mut run = Numbers::open(&state, 0).unwrap();
        assert_eq!(run.take(), 3);
        // Killed (no close): the next run starts after the block.
        for _ in 0..BLOCK + 5 {
            run.take();
        }
        assert_eq!(run.next(), BLOCK + 9);
        assert_eq!(kept(&state), format!("{}\n", 2 * BLOCK + 3));
        drop(run);
        let mut run = Numbers::open(&state, 0).unwrap();
        assert_eq!(run.take(), 2 * BLOCK + 3);
        let left: Vec<_> = fs::read_dir(&state)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, [FILE], "no temporary file is left");
    }

    #[test]
    fn a_floor_from_elsewhere_wins_over_a_lower_or_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = Numbers::open(dir.path(), 42).unwrap();
        assert_eq!(run.take(), 42);
        run.close();
        let mut run = Numbers::open(dir.path(), 7).unwrap();
        assert_eq!(run.take(), 43);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), "many\n").unwrap();
        let e = Numbers::open(dir.path(), 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("events.seq"), "{e}");
    }

    #[test]
    fn in_memory_numbers_start_at_one() {
        let mut n = Numbers::in_memory();
        assert_eq!((n.take(), n.take(), n.next()), (1, 2, 3));
        n.close();
        assert_eq!(n.take(), 3);
    }
}
