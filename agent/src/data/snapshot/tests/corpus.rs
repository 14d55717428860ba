//! Measurements over the snmpsim-data corpus, ignored by default.

use std::path::PathBuf;
use std::time::Instant;

use super::*;

/// Parses every snapshot under `$AGENTCLUSTER_SNAPSHOT_CORPUS` (default
/// `/tmp/sdx`: the snmpsim-data `data/` tree with its `.bz2` files
/// unpacked), checks each round-trips through the snmprec writer, and prints
/// the parse rate. Run with
/// `cargo test --release -p agentcluster-agent snapshot::tests::corpus::corpus -- --ignored --nocapture`.
#[test]
#[ignore = "needs the snmpsim-data corpus on disk"]
fn corpus() {
    let dir = std::env::var_os("AGENTCLUSTER_SNAPSHOT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/sdx"));
    let mut files = Vec::new();
    snapshot_files(&dir, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no snapshots under {}", dir.display());
    let (mut total_records, mut total_bytes, mut total_secs) = (0usize, 0usize, 0f64);
    let mut total_warnings = 0usize;
    let mut failures = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let format = Format::from_path(f).unwrap();
        let t = Instant::now();
        let parsed = parse(&data, format, f);
        let secs = t.elapsed().as_secs_f64();
        match parsed {
            Ok(snap) => {
                total_records += snap.records.len();
                total_warnings += snap.warnings.len();
                total_bytes += data.len();
                total_secs += secs;
                let mut out = Vec::new();
                write(&snap.records, Format::Snmprec, &mut out).unwrap();
                let again = parse(&out, Format::Snmprec, f).unwrap();
                assert!(
                    again.warnings.is_empty(),
                    "{}: rewritten file has duplicates",
                    f.display()
                );
                let same = again.records.len() == snap.records.len()
                    && again.records.iter().zip(&snap.records).all(|(a, b)| {
                        a.oid == b.oid && a.value == b.value && a.variation == b.variation
                    });
                assert!(same, "{}: snmprec round trip differs", f.display());
                for w in snap.warnings.iter().take(3) {
                    println!("warning: {w}");
                }
                println!(
                    "ok {:>9} records {:>6} warnings {:>8.3}s {}",
                    snap.records.len(),
                    snap.warnings.len(),
                    secs,
                    f.display()
                );
            }
            Err(e) => failures.push(format!("{}: {e}", f.display())),
        }
    }
    println!(
        "{} files, {} records, {} warnings, {:.1} MB in {:.2}s: {:.2} M records/s, {:.0} MB/s",
        files.len(),
        total_records,
        total_warnings,
        total_bytes as f64 / 1e6,
        total_secs,
        total_records as f64 / total_secs / 1e6,
        total_bytes as f64 / total_secs / 1e6
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Parse speed on one big recording: `$AGENTCLUSTER_SNAPSHOT_BENCH` (default
/// snmpsim-data's `network/switch/cisco-c3750.snmprec`, unpacked). Run with
/// `cargo test --release -p agentcluster-agent snapshot::tests::corpus::parse_speed -- --ignored --nocapture`.
#[test]
#[ignore = "measurement; needs a large snapshot on disk"]
fn parse_speed() {
    let path = std::env::var_os("AGENTCLUSTER_SNAPSHOT_BENCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/sdx/network/switch/cisco-c3750.snmprec"));
    let data = std::fs::read(&path).unwrap();
    let format = Format::from_path(&path).unwrap();
    let mut runs = 0u32;
    let mut records = 0usize;
    let mut parsing = 0f64;
    let start = Instant::now();
    while runs < 3 || start.elapsed().as_secs_f64() < 2.0 {
        let t = Instant::now();
        let snap = parse(&data, format, &path).unwrap();
        parsing += t.elapsed().as_secs_f64();
        records = snap.records.len();
        drop(snap);
        runs += 1;
    }
    let secs = parsing / f64::from(runs);
    println!(
        "{}: {} records, {:.1} MB, {:.2} ms a parse: {:.2} M records/s, {:.0} MB/s",
        path.display(),
        records,
        data.len() as f64 / 1e6,
        secs * 1e3,
        records as f64 / secs / 1e6,
        data.len() as f64 / secs / 1e6
    );
}
