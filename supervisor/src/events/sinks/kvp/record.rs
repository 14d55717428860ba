//! The pool's record: a 512-byte key then a 2048-byte value, each a
//! NUL-padded C string; encoding one, decoding any pool file, and reading
//! one under the writers' locks.

use std::fs::File;
use std::io;
use std::path::Path;

use nix::fcntl::FlockArg;

use super::lock::{flock, lock};

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

/// `s` up to its first NUL (what a C reader sees), cut to at most `max`
/// bytes on a character boundary.
pub(super) fn fit(s: &str, max: usize) -> &str {
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
#[cfg(test)]
pub fn encode_record(key: &str, value: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(RECORD_SIZE);
    push_record(&mut buf, key, value);
    buf
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The key, up to its first NUL.
    pub key: String,
    /// The value, up to its first NUL.
    pub value: String,
}

/// A decoded pool file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pool {
    /// Every whole record, in file order.
    pub records: Vec<Record>,
    /// Bytes after the last whole record: a write cut short, or not a pool.
    pub trailing: usize,
    /// Records that break the layout, by index, with what is wrong: a file
    /// with any is not a KVP pool (or a damaged one).
    pub malformed: Vec<(usize, &'static str)>,
}

/// What is wrong with a record's layout, if anything: each field is text
/// up to a NUL and NULs after it, and a record has a key.
fn malformed(record: &[u8]) -> Option<&'static str> {
    let (key, value) = record.split_at(KEY_SIZE);
    let padded = |f: &[u8]| match f.iter().position(|&b| b == 0) {
        Some(end) => f[end..].iter().all(|&b| b == 0),
        None => false,
    };
    if !padded(key) {
        Some("its key is not NUL-terminated text with NUL padding")
    } else if !padded(value) {
        Some("its value is not NUL-terminated text with NUL padding")
    } else if key[0] == 0 && value[0] != 0 {
        Some("it has a value but no key")
    } else {
        None
    }
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
    let mut malformed_records = Vec::new();
    let records = chunks
        .enumerate()
        .map(|(i, r)| {
            if let Some(why) = malformed(r) {
                malformed_records.push((i, why));
            }
            Record {
                key: field(&r[..KEY_SIZE]),
                value: field(&r[KEY_SIZE..]),
            }
        })
        .collect();
    Pool {
        records,
        trailing,
        malformed: malformed_records,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::sinks::kvp::testutil::record;

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
        assert!(decode(&pool).malformed.is_empty());
    }

    #[test]
    fn decode_names_records_that_break_the_layout() {
        // Text is no pool: no NUL ends its "key".
        let text = "1.3.6.1.2.1.1.1.0|4|a line of a snapshot\n".repeat(100);
        let p = decode(text.as_bytes());
        assert_eq!(p.records.len(), 1);
        assert_eq!(
            p.malformed,
            [(0, "its key is not NUL-terminated text with NUL padding")]
        );
        // Bytes after the end of a field.
        let mut junk = encode_record("a", "1");
        junk[KEY_SIZE + 100] = b'x';
        let mut keyless = encode_record("", "orphan value");
        keyless.extend(encode_record("b", "2"));
        junk.extend(keyless);
        let p = decode(&junk);
        assert_eq!(
            p.malformed,
            [
                (0, "its value is not NUL-terminated text with NUL padding"),
                (1, "it has a value but no key")
            ]
        );
        // An all-NUL record is an empty slot, not damage.
        assert!(decode(&vec![0; RECORD_SIZE]).malformed.is_empty());
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
}
