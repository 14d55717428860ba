//! The KVP pool as the crash tests read it, decoded here (not with the
//! library): records of a 512-byte key and a 2048-byte value, NUL-padded.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

pub(super) const KEY: usize = 512;
pub(super) const VALUE: usize = 2048;
pub(super) const RECORD: usize = KEY + VALUE;

/// Another writer's records (cloud-init's layout), planted before the
/// first run, first in the pool: they must stay, intact, at their index.
pub(super) const FOREIGN: [(&str, &str); 3] = [
    (
        "CLOUD_INIT|1769000000|start|init-local|0a1b",
        r#"{"name":"init-local","type":"start","ts":"2026-01-01T00:00:00.000Z"}"#,
    ),
    (
        "CLOUD_INIT|1769000000|finish|init-local|0a1c",
        r#"{"name":"init-local","type":"finish","ts":"2026-01-01T00:00:01.000Z","result":"SUCCESS"}"#,
    ),
    (
        "PROVISIONING_REPORT",
        "result=success|agent=cloud-init|pps_type=None",
    ),
];

/// Records of ours that an earlier boot's run left after [`FOREIGN`].
pub(super) const EARLIER: usize = 20;

/// Another writer's record appended after [`EARLIER`]: the host enumerates
/// the pool by index, so it must stay at its index, intact, whatever our
/// records do in front of it.
pub(super) const BEHIND: (&str, &str) = (
    "CLOUD_INIT|1769000000|finish|modules-final|0a1d",
    r#"{"name":"modules-final","type":"finish","ts":"2026-01-01T00:00:09.000Z","result":"SUCCESS"}"#,
);

/// The index of [`BEHIND`].
pub(super) const BEHIND_AT: usize = FOREIGN.len() + EARLIER;

/// The pool the crash tests start from: [`FOREIGN`], [`EARLIER`] records
/// of ours (an earlier boot's: the first our cap drops), [`BEHIND`].
pub(super) fn planted_pool() -> Vec<u8> {
    let mut pool: Vec<u8> = FOREIGN
        .iter()
        .flat_map(|(k, v)| encode_record(k, v))
        .collect();
    for seq in 1..=EARLIER {
        let value = serde_json::json!({
            "seq": seq, "ts": "2026-01-01T00:00:05.000Z", "node": "earlier",
            "agent": format!("earlier-{seq}"), "event": "ready", "pid": 1,
            "exit_code": null, "signal": null, "restarts": 0,
            "state": "running", "reason": "ready",
        });
        let key = format!("AGENTCLUSTER|1769000000|ready|earlier-{seq}|{seq}");
        pool.extend(encode_record(&key, &value.to_string()));
    }
    pool.extend(encode_record(BEHIND.0, BEHIND.1));
    pool
}

pub(super) fn encode_record(key: &str, value: &str) -> Vec<u8> {
    let mut r = vec![0u8; RECORD];
    r[..key.len()].copy_from_slice(key.as_bytes());
    r[KEY..KEY + value.len()].copy_from_slice(value.as_bytes());
    r
}

/// A NUL-padded field: text up to the first NUL, only NULs after it.
pub(super) fn field(bytes: &[u8]) -> Result<String, String> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or("no NUL in the field")?;
    if bytes[end..].iter().any(|&b| b != 0) {
        return Err(format!(
            "bytes after the NUL (a torn record?): {:?}",
            String::from_utf8_lossy(&bytes[..end])
        ));
    }
    String::from_utf8(bytes[..end].to_vec()).map_err(|e| format!("not UTF-8: {e}"))
}

/// One of our records: key `AGENTCLUSTER|inc|event|agent|seq[|i]` and a
/// JSON value that agrees with it. The event's JSON when it does.
pub(super) fn ours(key: &str, value: &str) -> Result<Json, String> {
    let fields: Vec<&str> = key.split('|').collect();
    if !(fields.len() == 5 || fields.len() == 6) {
        return Err(format!("key of {} fields: {key}", fields.len()));
    }
    let v: Json =
        serde_json::from_str(value).map_err(|e| format!("{key}: value not JSON ({e}): {value}"))?;
    let agrees = v["event"] == fields[2]
        && v["agent"] == fields[3]
        && fields[4].parse::<u64>().ok() == v["seq"].as_u64()
        && (fields.len() == 5 || fields[5].parse::<u64>().ok() == v["msg_i"].as_u64());
    if !agrees {
        return Err(format!("key and value disagree: {key} = {value}"));
    }
    Ok(v)
}

/// What a pool file holds.
#[derive(Debug, Default)]
pub(super) struct PoolState {
    /// Bytes of a record cut short at the end.
    pub(super) partial: usize,
    /// Records that do not decode, or ours that do not agree with their key.
    pub(super) torn: Vec<String>,
    /// Records present twice, byte for byte (no two events are equal: each
    /// has its own time stamp).
    pub(super) duplicates: usize,
    /// Records with an empty key: a slot a killed writer was rewriting.
    pub(super) emptied: usize,
    /// Free slots (all NULs): where a sliced event gave way to a shorter
    /// one, or a slot a killed writer left without a key was emptied.
    pub(super) free: usize,
    /// Keys of ours present more than once (not as copies of one record):
    /// a restarted supervisor must not number its records over those of
    /// an earlier run of the boot.
    pub(super) repeated_keys: usize,
    pub(super) ours: usize,
    /// Every planted record of another writer is at its index, intact
    /// ([`FOREIGN`], [`BEHIND`]), and no other record is another writer's.
    pub(super) foreign_intact: bool,
    /// Our events, decoded.
    pub(super) events: Vec<Json>,
}

pub(super) fn inspect_pool(bytes: &[u8]) -> PoolState {
    let mut state = PoolState {
        partial: bytes.len() % RECORD,
        ..PoolState::default()
    };
    let mut seen = HashSet::new();
    let mut keys: HashMap<String, Vec<u8>> = HashMap::new();
    let mut foreign = 0;
    for (i, r) in bytes.chunks_exact(RECORD).enumerate() {
        if r.iter().all(|&b| b == 0) {
            state.free += 1;
            continue;
        }
        if r[0] == 0 {
            state.emptied += 1;
            continue;
        }
        let (key, value) = match (field(&r[..KEY]), field(&r[KEY..])) {
            (Ok(k), Ok(v)) => (k, v),
            (Err(e), _) | (_, Err(e)) => {
                state.torn.push(format!("record {i}: {e}"));
                continue;
            }
        };
        if !seen.insert(r.to_vec()) {
            state.duplicates += 1;
        }
        let planted = match i {
            i if i < FOREIGN.len() => Some(FOREIGN[i]),
            BEHIND_AT => Some(BEHIND),
            _ => None,
        };
        if planted == Some((key.as_str(), value.as_str())) {
            foreign += 1;
            continue;
        }
        if !key.starts_with("AGENTCLUSTER|") {
            state
                .torn
                .push(format!("record {i}: not ours, not planted: {key:?}"));
            continue;
        }
        state.ours += 1;
        if let Some(other) = keys.insert(key.clone(), r.to_vec())
            && other != r
        {
            state.repeated_keys += 1;
        }
        match ours(&key, &value) {
            Ok(v) => state.events.push(v),
            Err(e) => state.torn.push(format!("record {i}: {e}")),
        }
    }
    state.foreign_intact = foreign == FOREIGN.len() + 1;
    state
}

/// The pool as a reader that takes the writers' flock sees it (shared, so
/// never in the middle of one of their writes).
pub(super) fn read_pool_locked(pool: &Path) -> Vec<u8> {
    let out = Command::new("flock")
        .arg("-s")
        .arg(pool)
        .arg("cat")
        .arg(pool)
        .output()
        .expect("flock (util-linux)");
    assert!(out.status.success(), "flock -s cat: {out:?}");
    out.stdout
}
