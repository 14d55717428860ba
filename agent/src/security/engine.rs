//! SNMP engine identity: a stable snmpEngineID derived from the node and
//! agent names when none is configured, and snmpEngineBoots persisted per
//! agent in the state directory so that every (re)start is one boot more,
//! never fewer, exactly like a real device (RFC 3414 §2.2).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The IANA enterprise number in derived engine IDs: net-snmp's (8072), as
/// the engine IDs in the example configuration.
pub(crate) const ENTERPRISE: u32 = 8072;

/// RFC 3411 SnmpEngineID format 5: administratively assigned octets.
const FORMAT_OCTETS: u8 = 5;

/// The largest snmpEngineBoots (RFC 3414 §2.2.2): once reached it stays,
/// and every authenticated request is outside the time window.
pub(crate) const MAX_BOOTS: u32 = 2_147_483_647;

/// A stable engine ID for `agent` on `node`: `80 00 1f 88 05` (RFC 3411
/// enterprise format, octets) followed by 12 bytes of SHA-256 over the two
/// names. Pure, so the same on every restart and every host; distinct per
/// (node, agent) name pair.
pub fn derive_engine_id(node: &str, agent: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"agentcluster engine id\0");
    h.update(node.as_bytes());
    h.update([0]);
    h.update(agent.as_bytes());
    let digest = h.finalize();
    let mut id = Vec::with_capacity(17);
    id.extend_from_slice(&(0x8000_0000 | ENTERPRISE).to_be_bytes());
    id.push(FORMAT_OCTETS);
    id.extend_from_slice(&digest[..12]);
    id
}

/// Where the boots counter of `agent` lives: `state_dir/engine/<name>.boots`
/// with every byte of the name outside `[A-Za-z0-9._-]` percent-encoded (so
/// no name can escape the directory or collide with another).
pub fn boots_path(state_dir: &Path, agent: &str) -> PathBuf {
    let mut file = String::with_capacity(agent.len() + 6);
    for b in agent.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !file.is_empty()) {
            file.push(b as char);
        } else {
            file.push_str(&format!("%{b:02X}"));
        }
    }
    file.push_str(".boots");
    state_dir.join("engine").join(file)
}

/// Reads `agent`'s snmpEngineBoots, adds one (up to `MAX_BOOTS`), writes
/// it durably (temporary file, fsync, rename, fsync of the directory) and
/// returns the new value. The first boot is 1. An unreadable or corrupt
/// counter is an error naming the file: guessing could make boots go
/// backwards, which managers take for a replay.
pub fn next_boots(state_dir: &Path, agent: &str) -> io::Result<u32> {
    let current = current_boots(state_dir, agent)?;
    let next = current.saturating_add(1).min(MAX_BOOTS);
    write_boots(state_dir, agent, next)?;
    Ok(next)
}

/// `agent`'s snmpEngineBoots as counted in `state_dir` now (0: it never
/// started here). An unreadable or corrupt counter is an error naming the
/// file.
pub fn current_boots(state_dir: &Path, agent: &str) -> io::Result<u32> {
    let path = boots_path(state_dir, agent);
    match File::open(&path) {
        Ok(mut f) => {
            let mut text = String::new();
            f.read_to_string(&mut text)?;
            text.trim().parse::<u32>().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: not a snmpEngineBoots counter; fix or remove it",
                        path.display()
                    ),
                )
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Raises `agent`'s counter in `state_dir` to at least `floor` (never
/// lowers it), durably: an agent that moved here from another host boots
/// past every boot it had there (docs/scale-out.md). Returns the counter.
pub fn raise_boots(state_dir: &Path, agent: &str, floor: u32) -> io::Result<u32> {
    let current = current_boots(state_dir, agent)?;
    if current >= floor {
        return Ok(current);
    }
    let floor = floor.min(MAX_BOOTS);
    write_boots(state_dir, agent, floor)?;
    Ok(floor)
}

/// Writes `agent`'s counter durably (temporary file, fsync, rename, fsync
/// of the directory).
fn write_boots(state_dir: &Path, agent: &str, boots: u32) -> io::Result<()> {
    let path = boots_path(state_dir, agent);
    let dir = path.parent().unwrap_or(state_dir);
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("boots.tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        writeln!(f, "{boots}")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boots_are_raised_never_lowered() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(current_boots(dir.path(), "a").unwrap(), 0);
        assert_eq!(raise_boots(dir.path(), "a", 40).unwrap(), 40);
        assert_eq!(next_boots(dir.path(), "a").unwrap(), 41);
        assert_eq!(raise_boots(dir.path(), "a", 7).unwrap(), 41);
        assert_eq!(current_boots(dir.path(), "a").unwrap(), 41);
    }

    #[test]
    fn derived_ids_are_stable_distinct_and_well_formed() {
        let a = derive_engine_id("lab-a", "core-sw-1");
        assert_eq!(a, derive_engine_id("lab-a", "core-sw-1"));
        assert_ne!(a, derive_engine_id("lab-a", "core-sw-2"));
        assert_ne!(a, derive_engine_id("lab-b", "core-sw-1"));
        // no ambiguity between ("a", "bc") and ("ab", "c")
        assert_ne!(derive_engine_id("a", "bc"), derive_engine_id("ab", "c"));
        assert_eq!(a.len(), 17);
        assert_eq!(&a[..5], &[0x80, 0x00, 0x1f, 0x88, 0x05]);
        // a known value, so a change of the derivation is noticed
        assert_eq!(
            hex::encode(derive_engine_id("node", "agent")),
            "80001f8805e7b2b5795a2046b1a37215b4"
        );
    }

    #[test]
    fn boots_count_up_and_survive() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_boots(dir.path(), "sw/1").unwrap(), 1);
        assert_eq!(next_boots(dir.path(), "sw/1").unwrap(), 2);
        assert_eq!(next_boots(dir.path(), "sw-1").unwrap(), 1);
        let p = boots_path(dir.path(), "sw/1");
        assert!(p.ends_with("engine/sw%2F1.boots"), "{}", p.display());
        assert_eq!(fs::read_to_string(&p).unwrap(), "2\n");
        assert!(!p.with_extension("boots.tmp").exists());
        assert!(boots_path(dir.path(), "..").ends_with("engine/%2E..boots"));
    }

    #[test]
    fn boots_stop_at_the_maximum_and_corruption_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = boots_path(dir.path(), "x");
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("{MAX_BOOTS}\n")).unwrap();
        assert_eq!(next_boots(dir.path(), "x").unwrap(), MAX_BOOTS);
        fs::write(&p, "garbage").unwrap();
        let e = next_boots(dir.path(), "x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(fs::read_to_string(&p).unwrap(), "garbage", "left alone");
    }
}
