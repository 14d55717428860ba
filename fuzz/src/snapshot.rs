//! The snapshot parsers over any bytes. A parse either fails naming the
//! broken lines (or the whole file: no records), or gives at least one
//! record, sorted by OID without repeats, that compile into a store, and
//! that the writer of the same format writes back to the same records (the
//! promise of `agent/src/snapshot/write.rs`).

use std::path::Path;

use agentcluster_agent::snapshot::{self, Format, SnapshotError};
use agentcluster_agent::store::Store;

/// Runs one fuzz input through the parser of `format`.
pub fn run(data: &[u8], format: Format) {
    let file = Path::new(match format {
        Format::Snmprec => "fuzz.snmprec",
        Format::Snmpwalk => "fuzz.snmpwalk",
        Format::Sapwalk => "fuzz.sapwalk",
    });
    let lines = data.split(|&b| b == b'\n').count();
    let snap = match snapshot::parse(data, format, file) {
        Ok(s) => s,
        Err(SnapshotError::Invalid { errors, warnings }) => {
            assert!(!errors.is_empty(), "a failed parse says why");
            // Line 0 is the whole file: a file without records, said alone.
            if let [only] = errors.as_slice()
                && only.line == 0
            {
                assert!(warnings.is_empty(), "no records, no repeats");
                return;
            }
            for p in errors.iter().chain(&warnings) {
                assert!(
                    (1..=lines).contains(&p.line),
                    "line {} of {lines}: {}",
                    p.line,
                    p.message
                );
            }
            return;
        }
        Err(e) => panic!("parsing bytes is not I/O: {e}"),
    };
    let records = &snap.records;
    assert!(!records.is_empty(), "a snapshot without records is an error");
    assert!(
        records.windows(2).all(|w| w[0].oid < w[1].oid),
        "records sorted, no repeats"
    );
    if let Some(store) = Store::from_records(records) {
        assert_eq!(store.len(), records.len());
        for (i, r) in records.iter().enumerate() {
            assert_eq!(store.find(&r.oid), Some(i), "the store finds every record");
        }
    }
    let mut written = Vec::new();
    if snapshot::write(records, format, &mut written).is_err() {
        // A record this format cannot hold (said by the writer's docs).
        return;
    }
    let again = match snapshot::parse(&written, format, file) {
        Ok(s) => s,
        Err(e) => panic!(
            "what the writer wrote does not parse: {e}\n{}",
            String::from_utf8_lossy(&written)
        ),
    };
    assert_eq!(
        again.records.len(),
        records.len(),
        "round trip keeps every record"
    );
    for (a, b) in records.iter().zip(&again.records) {
        assert_eq!(
            (&a.oid, &a.value, &a.variation),
            (&b.oid, &b.value, &b.variation),
            "round trip of line {}",
            a.line
        );
    }
}
