//! Tests of the snapshot parsers and writers: tricky lines of each format,
//! every error path, sorting, duplicates, round trips, and (ignored by
//! default) the snmpsim-data corpus and a parse-speed measurement.

mod corpus;
mod round_trip;
mod sapwalk;
mod snmprec;
mod snmpwalk;

use std::path::{Path, PathBuf};

use super::*;

fn file() -> &'static Path {
    Path::new("t.snap")
}

fn ok(text: &str, format: Format) -> Snapshot {
    match parse(text.as_bytes(), format, file()) {
        Ok(s) => s,
        Err(e) => panic!("unexpected error:\n{e}"),
    }
}

/// The single record of `text`.
fn one(text: &str, format: Format) -> Record {
    let s = ok(text, format);
    assert_eq!(s.records.len(), 1, "{:?}", s.records);
    s.records.into_iter().next().unwrap()
}

fn value(text: &str, format: Format) -> Value {
    one(text, format).value
}

/// The `(line, message)` pairs of a parse that must fail.
fn errors(text: &str, format: Format) -> Vec<(usize, String)> {
    failed(text, format).0
}

/// The errors and the warnings of a parse that must fail, as `(line,
/// message)` pairs.
type Messages = Vec<(usize, String)>;
fn failed(text: &str, format: Format) -> (Messages, Messages) {
    match parse(text.as_bytes(), format, file()) {
        Ok(s) => panic!("expected errors, got {:?}", s.records),
        Err(SnapshotError::Invalid { errors, warnings }) => {
            assert!(!errors.is_empty());
            let pairs = |d: Vec<Diagnostic>| -> Messages {
                d.into_iter()
                    .map(|d| {
                        assert_eq!(d.file, file());
                        (d.line, d.message)
                    })
                    .collect()
            };
            (pairs(errors), pairs(warnings))
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

/// Asserts one error, on `line`, whose message contains `needle`.
fn error_at(text: &str, format: Format, line: usize, needle: &str) {
    let e = errors(text, format);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, line, "{e:?}");
    assert!(e[0].1.contains(needle), "{:?} lacks {needle:?}", e[0].1);
}

/// A dotted OID (`1.3.6.1` or `.1.3.6.1`).
fn oid(s: &str) -> Oid {
    let s = s.strip_prefix('.').unwrap_or(s);
    s.split('.').map(|a| a.parse::<u32>().unwrap()).collect()
}

fn os(b: &[u8]) -> Value {
    Value::OctetString(b.to_vec())
}

fn rec(o: &str, value: Value) -> Record {
    Record {
        oid: oid(o),
        value,
        variation: None,
        line: 0,
    }
}

/// Writes `records` (sorted, distinct OIDs) and parses them back.
fn round_trip(records: &[Record], format: Format) {
    let mut out = Vec::new();
    write(records, format, &mut out).unwrap();
    let back = match parse(&out, format, file()) {
        Ok(s) => s,
        Err(e) => panic!("{e}\n--- written:\n{}", String::from_utf8_lossy(&out)),
    };
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    assert_eq!(back.records.len(), records.len());
    for (a, b) in back.records.iter().zip(records) {
        assert_eq!(
            (&a.oid, &a.value, &a.variation),
            (&b.oid, &b.value, &b.variation),
            "\n--- written:\n{}",
            String::from_utf8_lossy(&out)
        );
    }
}

fn testdata(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/data/snapshot/testdata")
        .join(name);
    std::fs::read(&path).unwrap()
}

/// Every snapshot file under `dir`, recursively.
fn snapshot_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            snapshot_files(&p, out);
        } else if Format::from_path(&p).is_some() {
            out.push(p);
        }
    }
}

const REC: Format = Format::Snmprec;
const WALK: Format = Format::Snmpwalk;
const SAP: Format = Format::Sapwalk;

// ------------------------------------------------- sorting and duplicates

#[test]
fn sorted_by_numeric_arcs() {
    for (format, lines) in [
        (
            REC,
            [
                "1.3.6.1.2.1.10|2|1",
                "1.3.6.1.2.1.2|2|2",
                "1.3.6.1.2.1.2.1|2|3",
                "1.3.6.1.2|2|4",
            ],
        ),
        (
            WALK,
            [
                ".1.3.6.1.2.1.10 = INTEGER: 1",
                ".1.3.6.1.2.1.2 = INTEGER: 2",
                ".1.3.6.1.2.1.2.1 = INTEGER: 3",
                ".1.3.6.1.2 = INTEGER: 4",
            ],
        ),
        (
            SAP,
            [
                "1.3.6.1.2.1.10, Integer, 1",
                "1.3.6.1.2.1.2, Integer, 2",
                "1.3.6.1.2.1.2.1, Integer, 3",
                "1.3.6.1.2, Integer, 4",
            ],
        ),
    ] {
        let s = ok(&lines.join("\n"), format);
        let got: Vec<(String, usize)> = s
            .records
            .iter()
            .map(|r| (DisplayOid(&r.oid).to_string(), r.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("1.3.6.1.2".to_string(), 4),
                ("1.3.6.1.2.1.2".to_string(), 2),
                ("1.3.6.1.2.1.2.1".to_string(), 3),
                ("1.3.6.1.2.1.10".to_string(), 1),
            ],
            "{format:?}"
        );
        assert!(s.warnings.is_empty());
    }
}

#[test]
fn duplicates_last_wins_with_a_warning() {
    for (format, text) in [
        (
            REC,
            "1.3.6.1.2.1.1.1.0|4|first\n1.3.6.1.9|2|1\n1.3.6.1.2.1.1.1.0|4|second\n1.3.6.1.2.1.1.1.0|4|third\n",
        ),
        (
            WALK,
            ".1.3.6.1.2.1.1.1.0 = STRING: \"first\"\n.1.3.6.1.9 = INTEGER: 1\n.1.3.6.1.2.1.1.1.0 = STRING: \"second\"\n.1.3.6.1.2.1.1.1.0 = STRING: \"third\"\n",
        ),
        (
            SAP,
            "1.3.6.1.2.1.1.1.0, OctetString, first\n1.3.6.1.9, Integer, 1\n1.3.6.1.2.1.1.1.0, OctetString, second\n1.3.6.1.2.1.1.1.0, OctetString, third\n",
        ),
    ] {
        let s = ok(text, format);
        assert_eq!(s.records.len(), 2);
        assert_eq!((s.records[0].line, &s.records[0].value), (4, &os(b"third")));
        let w: Vec<(usize, &str)> = s
            .warnings
            .iter()
            .map(|w| (w.line, w.message.as_str()))
            .collect();
        assert_eq!(
            w,
            vec![
                (3, "duplicate OID 1.3.6.1.2.1.1.1.0: line 3 replaces line 1"),
                (4, "duplicate OID 1.3.6.1.2.1.1.1.0: line 4 replaces line 3"),
            ],
            "{format:?}"
        );
        assert_eq!(s.warnings[0].file, file());
    }
}

// ------------------------------------------------------------------ load

#[test]
fn load_picks_the_format_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dev.snmpwalk");
    std::fs::write(&p, ".1.3.6.1.2.1.1.5.0 = STRING: \"dev\"\n").unwrap();
    assert_eq!(load(&p).unwrap().records[0].value, os(b"dev"));
    let p = dir.path().join("dev.sapwalk");
    std::fs::write(&p, "1.3.6.1.2.1.1.5.0, OctetString, dev\n").unwrap();
    assert_eq!(load(&p).unwrap().records[0].value, os(b"dev"));
    let p = dir.path().join("dev.snmprec");
    std::fs::write(&p, "1.3.6.1.2.1.1.5.0|4|dev\n").unwrap();
    assert_eq!(load(&p).unwrap().records[0].value, os(b"dev"));
    let p = dir.path().join("dev.txt");
    std::fs::write(&p, "").unwrap();
    assert!(matches!(load(&p), Err(SnapshotError::UnknownFormat { .. })));
    let missing = dir.path().join("missing.snmprec");
    match load(&missing) {
        Err(SnapshotError::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_snapshot_without_records_is_an_error() {
    // Empty, blank, or comments only: in every format, one error about the
    // whole file (line 0, which the message leaves out).
    for format in [Format::Snmprec, Format::Snmpwalk, Format::Sapwalk] {
        for text in ["", "\n\n", "# nothing here\n\n"] {
            let e = errors(text, format);
            assert_eq!(e.len(), 1, "{format:?} {text:?}: {e:?}");
            assert_eq!(e[0].0, 0, "{e:?}");
            assert!(e[0].1.starts_with("no records"), "{e:?}");
        }
    }
    let err = parse(b"", Format::Snmprec, file()).unwrap_err().to_string();
    assert!(err.starts_with("t.snap: no records"), "{err}");
}

#[test]
fn binary_data_is_one_error_at_its_first_nul() {
    let mut data = b"1.3.6.1.2.1.1.1.0|4|ok\n1.3.6.1.2.1.1.2.0|4|a".to_vec();
    data.extend_from_slice(&[0, 1, 2, 0xff, b'\n']);
    data.extend_from_slice(b"garbage\n\x7fELF\0\0\n");
    for format in [Format::Snmprec, Format::Snmpwalk, Format::Sapwalk] {
        match parse(&data, format, file()) {
            Err(SnapshotError::Invalid { errors, warnings }) => {
                assert_eq!(errors.len(), 1, "{format:?}: {errors:?}");
                assert_eq!(errors[0].line, 2);
                assert!(errors[0].message.starts_with("binary data"), "{errors:?}");
                assert!(warnings.is_empty());
            }
            other => panic!("{format:?}: {other:?}"),
        }
    }
}

#[test]
fn the_warnings_of_a_broken_file_come_with_its_errors() {
    let text = "1.3.6.1.2.1.1.5.0|4|a\n1.3.6.1.2.1.1.1.0|4|b\nbroken\n1.3.6.1.2.1.1.5.0|4|c\n";
    let (errors, warnings) = failed(text, Format::Snmprec);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, 3);
    assert_eq!(
        warnings,
        vec![(
            4,
            "duplicate OID 1.3.6.1.2.1.1.5.0: line 4 replaces line 1".to_string()
        )]
    );
}

#[test]
fn shipped_sample_snapshots_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mibs");
    let mut files = Vec::new();
    snapshot_files(&dir, &mut files);
    for f in files {
        let snap = load(&f).unwrap_or_else(|e| panic!("{e}"));
        assert!(!snap.records.is_empty(), "{}", f.display());
    }
}

#[test]
fn a_large_snmprec_parsed_in_halves_equals_one_pass() {
    // Past the size where two threads parse it, with a duplicate that
    // straddles the halves and a broken line in the second half.
    let mut text = String::new();
    for i in 0..120_000u32 {
        text.push_str(&format!(
            "1.3.6.1.4.1.9.{}.{}|4|value number {i}\n",
            i % 7,
            i
        ));
    }
    text.push_str("1.3.6.1.4.1.9.0.0|4|last wins\n");
    let data = text.as_bytes();
    assert!(data.len() >= super::PARALLEL_FROM);
    let whole = super::parse(data, Format::Snmprec, Path::new("big.snmprec")).unwrap();
    // the same records through the one-pass parser
    let mut sink = super::Sink {
        records: Vec::new(),
        errors: Vec::new(),
        subtrees: Vec::new(),
    };
    super::snmprec::parse(data, &mut sink);
    let mut one = sink.records;
    let mut warnings = super::sort_dedup(&mut one);
    warnings.sort();
    assert_eq!(whole.records, one);
    assert_eq!(whole.warnings.len(), warnings.len());
    assert_eq!(whole.warnings[0].line, 120_001, "{:?}", whole.warnings);
    let mut broken = text.clone();
    broken.push_str("not a record\n");
    match super::parse(broken.as_bytes(), Format::Snmprec, Path::new("big.snmprec")) {
        Err(SnapshotError::Invalid { errors, warnings }) => {
            assert_eq!(errors[0].line, 120_002);
            // The repeats of the good lines, as for the good file.
            assert_eq!(warnings, whole.warnings);
        }
        other => panic!("{other:?}"),
    }
}
