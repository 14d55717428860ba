//! What the KVP tests share: made-up events and records, a pool file read
//! back as keys, and a wait for a writer blocked on a lock.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Boot, Record, decode};
use crate::events::{Event, State};

pub(super) fn event(seq: u64, agent: &str, kind: &str, reason: &str) -> Event {
    Event {
        seq,
        ts: "2026-11-22T12:00:00.123Z".into(),
        node: "lab-a".into(),
        agent: agent.into(),
        event: kind.parse().unwrap(),
        pid: Some(4242),
        exit_code: None,
        signal: Some("SIGKILL".into()),
        restarts: 3,
        state: State::Backoff,
        reason: reason.into(),
    }
}

pub(super) fn record(key: &str, value: &str) -> Record {
    Record {
        key: key.into(),
        value: value.into(),
    }
}

/// A 5,000-byte reason with 1-, 2-, 3- and 4-byte characters, quotes,
/// backslashes and control characters.
pub(super) fn long_reason() -> String {
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

pub(super) fn arc(e: Event) -> Arc<Event> {
    Arc::new(e)
}

pub(super) fn ready(seq: u64) -> Arc<Event> {
    arc(event(seq, &format!("dev-{seq}"), "ready", "ready"))
}

/// A boot long ago: nothing is truncated.
pub(super) fn old_boot() -> Boot {
    Boot::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
}

pub(super) fn keys(path: &Path) -> Vec<String> {
    let p = decode(&std::fs::read(path).unwrap());
    assert_eq!(p.trailing, 0);
    p.records.into_iter().map(|r| r.key).collect()
}

pub(super) fn seqs(path: &Path) -> Vec<String> {
    keys(path)
        .into_iter()
        .map(|k| match k.strip_prefix("AGENTCLUSTER|") {
            Some(rest) => rest.rsplit('|').next().unwrap().to_string(),
            None => k,
        })
        .collect()
}

/// Waits until `/proc/locks` shows a blocked request of `kind` (`FLOCK`,
/// `OFDLCK`) on the file (a waiter, not a guess about timing).
pub(super) fn wait_for_waiter(path: &Path, kind: &str) -> bool {
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
