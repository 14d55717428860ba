//! Store tests: lookups, damaged files, compiling in pieces against the
//! general parser, the merge, and the cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::build::{compile_snmprec, encode, finish_in_memory};
use super::format::HEADER_LEN;
use super::merge::{At, merge};
use super::reader::value_start;
use super::*;
use crate::data::snapshot::{self, Record, Snapshot, SnapshotError, Variation};
use crate::wire::ber;
use crate::wire::value::Value;

fn rec(oid: &[u32], value: Value) -> Record {
    Record {
        oid: oid.to_vec(),
        value,
        variation: None,
        line: 1,
    }
}

fn sample() -> Store {
    let mut records = vec![
        rec(
            &[1, 3, 6, 1, 2, 1, 1, 1, 0],
            Value::OctetString(b"box".to_vec()),
        ),
        rec(&[1, 3, 6, 1, 2, 1, 1, 3, 0], Value::TimeTicks(42)),
        rec(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 10, 1], Value::Counter64(7)),
        rec(
            &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 1],
            Value::OctetString(b"eth0".to_vec()),
        ),
    ];
    records.push(Record {
        variation: Some(Variation {
            name: "writecache".into(),
            params: "value=x".into(),
        }),
        ..rec(&[1, 3, 6, 1, 4, 1, 9, 1], Value::OctetString(b"x".to_vec()))
    });
    records.sort_by(|a, b| a.oid.cmp(&b.oid));
    Store::from_records(&records).unwrap()
}

#[test]
fn lookups_follow_numeric_arc_order() {
    let s = sample();
    assert_eq!(s.len(), 5);
    assert_eq!(s.find(&[1, 3, 6, 1, 2, 1, 1, 1, 0]), Some(0));
    assert_eq!(s.find(&[1, 3, 6, 1, 2, 1, 1, 1]), None);
    assert_eq!(s.next_after(&[1, 3, 6, 1, 2, 1, 1, 1]), 0);
    assert_eq!(s.next_after(&[1, 3, 6, 1, 2, 1, 1, 1, 0]), 1);
    // 2.2.1.2 sorts before 2.2.1.10
    assert_eq!(s.item(2).unwrap().oid, &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 1]);
    assert_eq!(s.next_after(&[1, 3, 6, 1, 4, 1, 9, 1]), 5);
    assert_eq!(s.next_after(&[2]), 5);
    assert!(s.item(5).is_none());
}

#[test]
fn items_carry_preencoded_varbinds_and_flags() {
    let s = sample();
    let up = s.item(1).unwrap();
    assert_eq!(up.flags & FLAG_UPTIME, FLAG_UPTIME);
    assert_eq!(up.value, &[0x43, 0x01, 42]);
    let c64 = s.item(3).unwrap();
    assert_eq!(c64.flags & FLAG_COUNTER64, FLAG_COUNTER64);
    let first = s.item(0).unwrap();
    assert_eq!(
        first.varbind,
        &[
            0x30, 0x0f, 0x06, 0x08, 0x2b, 6, 1, 2, 1, 1, 1, 0, 0x04, 0x03, b'b', b'o', b'x'
        ]
    );
    assert_eq!(s.variation(4), Some(("writecache", "value=x")));
    assert_eq!(s.variation(0), None);
    assert_eq!(s.variations().count(), 1);
}

#[test]
fn values_are_found_behind_long_lengths() {
    let long_oid: Vec<u32> = std::iter::once(1)
        .chain(std::iter::repeat_n(16384, 100))
        .collect();
    let mut records = vec![
        rec(&[1, 3, 6, 1, 1], Value::OctetString(vec![b'a'; 200])),
        rec(&[1, 3, 6, 1, 2], Value::OctetString(vec![b'b'; 70_000])),
        rec(&long_oid, Value::Integer(-5)),
    ];
    records.sort_by(|a, b| a.oid.cmp(&b.oid));
    let s = Store::from_records(&records).unwrap();
    for (i, r) in records.iter().enumerate() {
        let it = s.item(i).unwrap();
        let mut value = Vec::new();
        ber::push_value(&mut value, &r.value);
        assert_eq!(it.value, value, "{i}");
        let mut varbind = Vec::new();
        ber::push_varbind(&mut varbind, &r.oid, &value);
        assert_eq!(it.varbind, varbind, "{i}");
        assert_eq!(it.oid, r.oid);
    }
    assert_eq!(value_start(&[0x30, 0x84, 0xff]), None);
    assert_eq!(value_start(&[0x30, 0x89, 0, 0, 0, 0, 0, 0, 0, 0, 1]), None);
}

#[test]
fn damaged_bytes_never_panic() {
    let mut records = Vec::new();
    for i in 0..50u32 {
        records.push(rec(&[1, 3, 6, 1, i], Value::Integer(i64::from(i))));
    }
    let good = encode(&records, [0; 32]).unwrap();
    for cut in [0, 10, 127, 128, 200, good.len() - 1] {
        assert!(Store::from_bytes(good[..cut].to_vec(), None).is_none());
    }
    // Scribble over the entries: lookups may miss but must not panic.
    let mut bad = good.clone();
    for b in bad.iter_mut().skip(HEADER_LEN).step_by(3) {
        *b = 0xff;
    }
    if let Some(s) = Store::from_bytes(bad, None) {
        for i in 0..60 {
            let _ = s.item(i);
            let _ = s.find(&[1, 3, 6, 1, i as u32]);
            let _ = s.next_after(&[1, 3, 6, 1, i as u32]);
        }
    }
}

/// `.snmprec` text with every kind of record, out of order, with
/// duplicates near and far (three of one OID), and lines that only the
/// general parser reads (variations, escapes, text under a hex tag).
fn mixed_snmprec() -> String {
    let mut t = String::from("# a recording\n\n");
    for i in (0..40u32).rev() {
        t.push_str(&format!("1.3.6.1.2.1.2.2.1.2.{i}|4|eth{i}\n"));
    }
    for i in 0..300u32 {
        t.push_str(&format!(
            "1.3.6.1.2.1.31.1.1.1.6.{i}|70|{}\n",
            u64::MAX - u64::from(i)
        ));
        t.push_str(&format!(
            "1.3.6.1.2.1.31.1.1.1.{}.{}|2|-{i}\n",
            i % 3,
            i * 997
        ));
    }
    t.push_str(concat!(
        "1.3.6.1.2.1.1.3.0|67|6257926\n",
        "1.3.6.1.2.1.1.1.0|4| leading space kept\r\n",
        "  1.3.6.1.2.1.1.4.0|4x|52 \n",
        "1.3.6.1.2.1.1.5.0|4x|4A756e69706572\n",
        "1.3.6.1.2.1.1.6.0|4e|a\\x41\\n\n",
        "1.3.6.1.2.1.1.7.0|2:numeric|min=1,max=9\n",
        "1.3.6.1.2.1.1.8.0|4:writecache|value=abc\n",
        ".1.3.6.1.2.1.1.9.0|6|.1.3.6.1.4.1.2011.2.89.5\n",
        "1.3.6.1.2.1.1.10.0|64|10.0.0.1\n",
        "1.3.6.1.2.1.1.11.0|64x|0a000002\n",
        "1.3.6.1.2.1.1.12.0|64|abcd\n",
        "1.3.6.1.2.1.1.13.0|65|4294967295\n",
        "1.3.6.1.2.1.1.14.0|66|+7\n",
        "1.3.6.1.2.1.1.15.0|68x|0102\n",
        "1.3.6.1.2.1.1.16.0|5|\n",
        "1.3.6.1.2.1.1.17.0|128|\n",
        "1.3.6.1.2.1.1.18.0|129|\n",
        "1.3.6.1.2.1.1.19.0|130|\n",
        "1.3.6.1.2.1.1.20.0|004|a|b|c\n",
        "2.999.4294967295.128.16384.2097152|2|1\n",
        "7|2|1\n",
        "0|4|\n",
        "1.3.6.1.2.1.1.1.0|4|second\n",
    ));
    for i in 0..40u32 {
        t.push_str(&format!("1.3.6.1.2.1.2.2.1.2.{i}|4x|{:02x}\n", i));
    }
    t.push_str("1.3.6.1.2.1.1.1.0|4|third\n");
    t.push_str("1.3.6.1.2.1.1.3.0|67|1");
    t
}

/// A `.snmprec` text compiled in pieces of `piece` bytes, as `compile`
/// does, and the warnings.
fn compiled_in_pieces(text: &str, piece: usize) -> (Store, Vec<String>) {
    let out = Mutex::new(Vec::new());
    let built = compile_snmprec(text.as_bytes(), Path::new("t.snmprec"), &out, piece).unwrap();
    let (bytes, index) = finish_in_memory(out, &built, true, [0; 32]).unwrap();
    let mut warnings = built.warnings.clone();
    warnings.extend(
        index
            .warnings
            .into_iter()
            .map(|(line, message)| snapshot::Diagnostic {
                file: "t.snmprec".into(),
                line,
                message,
            }),
    );
    let store = Store::from_bytes(bytes, None).unwrap();
    (store, warnings.iter().map(|w| w.to_string()).collect())
}

fn assert_same(a: &Store, b: &Store) {
    assert_eq!(a.len(), b.len());
    for i in 0..a.len() {
        let (x, y) = (a.item(i).unwrap(), b.item(i).unwrap());
        assert_eq!(
            (x.oid, x.varbind, x.value, x.flags),
            (y.oid, y.varbind, y.value, y.flags),
            "record {i}"
        );
        assert_eq!(a.variation(i), b.variation(i), "record {i}");
    }
    assert!(a.variations().eq(b.variations()));
}

/// `.snmprec` text as the general parser reads it: the snapshot, its
/// store and its warnings.
fn by_the_general_parser(text: &str) -> (Snapshot, Store, Vec<String>) {
    let snap = snapshot::parse(
        text.as_bytes(),
        snapshot::Format::Snmprec,
        Path::new("t.snmprec"),
    )
    .unwrap();
    let store = Store::from_records(&snap.records).unwrap();
    let warnings = snap.warnings.iter().map(|w| w.to_string()).collect();
    (snap, store, warnings)
}

#[test]
fn snmprec_compiled_in_pieces_is_the_store_of_its_records() {
    let text = mixed_snmprec();
    let (snap, expect, expect_warnings) = by_the_general_parser(&text);
    assert!(expect_warnings.len() > 40, "{expect_warnings:?}");
    for piece in [1, 7, 64, 500, 4096, usize::MAX] {
        let (store, warnings) = compiled_in_pieces(&text, piece);
        assert_same(&store, &expect);
        assert_eq!(warnings, expect_warnings, "pieces of {piece}");
    }
    // Sorted input takes no sort at all, and gives the same store.
    let mut sorted = Vec::new();
    snapshot::write(&snap.records, snapshot::Format::Snmprec, &mut sorted).unwrap();
    let sorted = String::from_utf8(sorted).unwrap();
    for piece in [1, 100, usize::MAX] {
        let (store, warnings) = compiled_in_pieces(&sorted, piece);
        assert_same(&store, &expect);
        assert!(warnings.is_empty());
    }
}

#[test]
fn snmprec_in_any_order_compiled_in_any_pieces_is_the_store_of_its_records() {
    // The same cases every run.
    let mut rng = crate::util::xorshift::Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut rand = move |n: u64| rng.below(n);
    for case in 0..40 {
        let lines = 1 + rand(300);
        let spread = 1 + rand(if case % 2 == 0 { 20 } else { 2000 });
        let mut text = String::new();
        let mut run = rand(spread);
        for n in 0..lines {
            // runs of ascending OIDs from random starting points
            run = if rand(8) == 0 { rand(spread) } else { run + 1 };
            text.push_str(&format!("1.3.6.1.{}.{}|2|{n}\n", run % 7, run));
        }
        let (_, expect, expect_warnings) = by_the_general_parser(&text);
        for _ in 0..4 {
            let piece = 1 + rand(text.len() as u64 / 3 + 1) as usize;
            let (store, warnings) = compiled_in_pieces(&text, piece);
            assert_same(&store, &expect);
            assert_eq!(warnings, expect_warnings, "case {case}, pieces of {piece}");
        }
    }
}

#[test]
fn snmprec_compiled_in_pieces_names_broken_lines_as_parse_does() {
    let mut text = mixed_snmprec();
    text.push_str("\n1.3.6.1.9|2|x\nnot a record\n1.3.6.1.10|99|1\n");
    text.insert_str(0, "1.3..6|2|1\n");
    // A repeat among the good lines: a warning beside the errors.
    text.push_str("1.3.6.1.2.1.1.1.0|4|again\n");
    let Err(SnapshotError::Invalid {
        errors: expect,
        warnings: expect_warnings,
    }) = snapshot::parse(
        text.as_bytes(),
        snapshot::Format::Snmprec,
        Path::new("t.snmprec"),
    )
    else {
        panic!("parses");
    };
    assert_eq!(expect.len(), 4);
    assert!(!expect_warnings.is_empty());
    for piece in [1, 50, usize::MAX] {
        let out = Mutex::new(Vec::new());
        match compile_snmprec(text.as_bytes(), Path::new("t.snmprec"), &out, piece) {
            Err(StoreError::Snapshot(SnapshotError::Invalid { errors, warnings })) => {
                assert_eq!(errors, expect, "pieces of {piece}");
                assert_eq!(warnings, expect_warnings, "pieces of {piece}");
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("compiles"),
        }
    }
}

#[test]
fn the_store_refuses_what_parse_refuses_as_a_whole() {
    // No records, binary data, hex that is not hex: compiled in pieces or
    // through the records, the store fails as the parser does.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cases: [(&str, &[u8]); 6] = [
        ("empty.snmprec", b""),
        ("comments.snmprec", b"# only a comment\n\n"),
        ("empty.snmpwalk", b""),
        (
            "binary.snmprec",
            b"1.3.6.1.2.1.1.1.0|4|a\n\x7fELF\x02\x01\x00\x00\n",
        ),
        ("binary.sapwalk", b"\x00\x01"),
        (
            "hex.snmprec",
            b"1.3.6.1.2.1.1.1.0|4x|Juniper\n1.3.6.1.2.1.1.2.0|64x|zz\n",
        ),
    ];
    for (name, data) in cases {
        let src = dir.path().join(name);
        fs::write(&src, data).unwrap();
        let format = snapshot::Format::from_path(&src).unwrap();
        let Err(SnapshotError::Invalid { errors: expect, .. }) =
            snapshot::parse(data, format, &src)
        else {
            panic!("{name} parses");
        };
        for piece in [1, usize::MAX] {
            let out = Mutex::new(Vec::new());
            if format == snapshot::Format::Snmprec {
                match compile_snmprec(data, &src, &out, piece) {
                    Err(StoreError::Snapshot(SnapshotError::Invalid { errors, .. })) => {
                        assert_eq!(errors, expect, "{name}, pieces of {piece}");
                    }
                    Err(e) => panic!("{name}: {e}"),
                    Ok(_) => panic!("{name} compiles"),
                }
            }
        }
        match compile(&src, &cache) {
            Err(StoreError::Snapshot(SnapshotError::Invalid { errors, .. })) => {
                assert_eq!(errors, expect, "{name}");
            }
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => panic!("{name} compiles"),
        }
    }
}

#[test]
fn merge_moves_only_the_overlap_and_is_stable() {
    let keys: Vec<[u32; 1]> = vec![[5], [1], [3], [3], [2], [4], [9], [3]];
    let key = |(_, i): At| &keys[i as usize][..];
    // runs [1 3 3 5] and [2 3 4 9]
    let mut v: Vec<At> = vec![
        (0, 1),
        (0, 2),
        (0, 3),
        (0, 0),
        (0, 4),
        (0, 7),
        (0, 5),
        (0, 6),
    ];
    let mut tmp = Vec::new();
    merge(&mut v, 4, &mut tmp, key);
    assert_eq!(
        v,
        vec![
            (0, 1),
            (0, 4),
            (0, 2),
            (0, 3),
            (0, 7),
            (0, 5),
            (0, 0),
            (0, 6)
        ]
    );
    let mut w: Vec<At> = vec![(0, 1), (0, 4), (0, 7), (0, 6)];
    merge(&mut w, 2, &mut tmp, key);
    assert_eq!(w, vec![(0, 1), (0, 4), (0, 7), (0, 6)]);
}

/// Compiles every `.snmprec` under `$AGENTCLUSTER_SNAPSHOT_CORPUS`
/// (default `/tmp/sdx`, snmpsim-data unpacked) and checks each store
/// against the one built from the records `snapshot::parse` reads. Run
/// with `cargo test --release -p agentcluster-agent
/// store::tests::corpus_compiles_as_its_records -- --ignored --nocapture`.
#[test]
#[ignore = "needs the snmpsim-data corpus on disk"]
fn corpus_compiles_as_its_records() {
    let dir = std::env::var_os("AGENTCLUSTER_SNAPSHOT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/sdx"));
    let mut files = Vec::new();
    let mut dirs = vec![dir];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "snmprec") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty());
    let cache = tempfile::tempdir().unwrap();
    for f in &files {
        let data = fs::read(f).unwrap();
        let Ok(snap) = snapshot::parse(&data, snapshot::Format::Snmprec, f) else {
            assert!(compile(f, cache.path()).is_err(), "{}", f.display());
            continue;
        };
        let expect = Store::from_records(&snap.records).unwrap();
        let c = compile(f, cache.path()).unwrap();
        let store = Store::open(&c.store_path).unwrap();
        assert_same(&store, &expect);
        assert_eq!(c.warnings, snap.warnings, "{}", f.display());
        println!("ok {:>9} {}", store.len(), f.display());
    }
}

/// A cache written before a file without records was an error may hold
/// the empty store of such a file: it is an error all the same, at start
/// and on reload alike.
#[test]
fn an_empty_store_left_in_the_cache_is_no_records() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("d.snmprec");
    fs::write(&src, "").unwrap();
    let cache = dir.path().join("cache");
    fs::create_dir(&cache).unwrap();
    let hash = super::cache::source_hash(b"", &src);
    let old = cache.join(format!("{}.store", hex::encode(&hash[..16])));
    fs::write(&old, encode(&[], hash).unwrap()).unwrap();
    assert!(Store::open(&old).unwrap().is_empty());
    match compile(&src, &cache) {
        Err(StoreError::Snapshot(SnapshotError::Invalid { errors, warnings })) => {
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].line, 0);
            assert!(errors[0].message.starts_with("no records"), "{errors:?}");
            assert!(warnings.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn compile_reuses_the_cache_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("d.snmprec");
    fs::write(
        &src,
        "1.3.6.1.2.1.1.1.0|4|hello\n1.3.6.1.2.1.1.5.0|4|name\n",
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let a = compile(&src, &cache).unwrap();
    assert!(a.built);
    assert_eq!(a.records, 2);
    assert_eq!(
        store_path(&src, &cache).unwrap(),
        a.store_path,
        "named without compiling"
    );
    // Found in the cache, the store counts as used now (not pruned).
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(90 * 86_400);
    fs::File::open(&a.store_path)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let b = compile(&src, &cache).unwrap();
    assert!(!b.built);
    assert_eq!(a.store_path, b.store_path);
    let used = fs::metadata(&b.store_path).unwrap().modified().unwrap();
    assert!(
        used.elapsed().unwrap() < std::time::Duration::from_secs(3600),
        "{used:?}"
    );
    fs::write(&src, "1.3.6.1.2.1.1.1.0|4|changed\n").unwrap();
    let c = compile(&src, &cache).unwrap();
    assert!(c.built);
    assert_ne!(a.store_path, c.store_path);
    let s = Store::open(&c.store_path).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(
        s.item(0).unwrap().value,
        &[0x04, 7, b'c', b'h', b'a', b'n', b'g', b'e', b'd']
    );
}

#[test]
fn check_says_what_compile_would_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let good = dir.path().join("good.snmprec");
    fs::write(&good, mixed_snmprec()).unwrap();
    let walk = dir.path().join("good.snmpwalk");
    fs::write(
        &walk,
        ".1.3.6.1.2.1.1.5.0 = STRING: \"a\"\n.1.3.6.1.2.1.1.1.0 = STRING: \"b\"\n.1.3.6.1.2.1.1.5.0 = STRING: \"c\"\n",
    )
    .unwrap();
    let broken = dir.path().join("broken.snmprec");
    fs::write(
        &broken,
        "1.3.6.1.2.1.1.5.0|4|a\nbroken\n1.3.6.1.2.1.1.5.0|4|c\n1.3.6.1.2.1.1.6.0|4x|zz\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.snmprec");
    let sources = [
        good.as_path(),
        walk.as_path(),
        broken.as_path(),
        missing.as_path(),
    ];
    let checked = check(&sources);
    assert_eq!(checked.len(), 4);
    assert!(!cache.exists());
    for (source, c) in sources.iter().zip(&checked).take(2) {
        let c = c.as_ref().unwrap_or_else(|e| panic!("{e}"));
        let compiled = compile(source, &cache).unwrap();
        assert_eq!(c.records, compiled.records, "{}", source.display());
        assert_eq!(c.warnings, compiled.warnings, "{}", source.display());
        assert!(!c.warnings.is_empty());
    }
    let (Err(StoreError::Snapshot(SnapshotError::Invalid { errors, warnings })), Err(expect)) =
        (&checked[2], compile(&broken, &cache))
    else {
        panic!("{:?}", checked[2]);
    };
    assert_eq!(
        errors.iter().map(|e| e.line).collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert_eq!(warnings.len(), 1);
    assert_eq!(
        checked[2].as_ref().unwrap_err().to_string(),
        expect.to_string()
    );
    assert!(matches!(&checked[3], Err(StoreError::Io { path, .. }) if *path == missing));
}
