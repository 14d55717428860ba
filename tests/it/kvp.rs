//! The Hyper-V KVP sink and `agentcluster kvp dump`, checked with a decoder
//! of our own here (the layout cloud-init and hv_kvp_daemon use: records of
//! a 512-byte key and a 2048-byte value, NUL-padded), not the library's.

use std::path::Path;

use serde_json::Value as Json;

use crate::harness::{Fleet, agentcluster, free_port, is, mib, tempdir};

const KEY: usize = 512;
const VALUE: usize = 2048;
const RECORD: usize = KEY + VALUE;

/// A NUL-padded field, which must keep at least one NUL.
fn field(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .unwrap_or_else(|| panic!("a field without NUL: {:?}", String::from_utf8_lossy(bytes)));
    assert!(bytes[end..].iter().all(|&b| b == 0), "bytes after the NUL");
    String::from_utf8(bytes[..end].to_vec()).expect("UTF-8")
}

fn decode(bytes: &[u8]) -> Vec<(String, String)> {
    assert_eq!(
        bytes.len() % RECORD,
        0,
        "not whole records: {}",
        bytes.len()
    );
    bytes
        .chunks(RECORD)
        .map(|r| (field(&r[..KEY]), field(&r[KEY..])))
        .collect()
}

fn encode(key: &str, value: &str) -> Vec<u8> {
    assert!(key.len() < KEY && value.len() < VALUE);
    let mut r = vec![0u8; RECORD];
    r[..key.len()].copy_from_slice(key.as_bytes());
    r[KEY..KEY + value.len()].copy_from_slice(value.as_bytes());
    r
}

/// The boot time from /proc/stat.
fn btime() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .expect("btime")
}

fn stdout_lines(args: &[&str]) -> (Vec<String>, String) {
    let out = agentcluster(args);
    assert!(out.status.success(), "{args:?}: {out:?}");
    (
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const FOREIGN_KEY: &str = "CLOUD_INIT|1769000000|finish|init-network|6f1d";
const FOREIGN_VALUE: &str = r#"{"name":"init-network","type":"finish","ts":"2026-01-01T00:00:00.000Z","result":"SUCCESS","msg":"ok"}"#;

#[test]
fn supervisor_events_reach_the_pool() {
    let pool_dir = tempdir();
    let pool = pool_dir.path().join("kvp_pool_1");
    // Another writer's record, written this boot: it must survive.
    std::fs::write(&pool, encode(FOREIGN_KEY, FOREIGN_VALUE)).unwrap();

    let mut yaml = format!(
        "events:\n  kvp:\n    path: {}\n    max_records: 100\nagents:\n",
        pool.display()
    );
    for name in ["dev-a", "dev-b"] {
        yaml += &format!(
            "  - name: {name}\n    listen: [\"127.0.0.1:{}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            free_port(),
            mib("linux-host.snmprec").display()
        );
    }
    let fleet = Fleet::start(&yaml);
    let pid = fleet.pid();
    // The sink flushes at shutdown: after exit every event is on disk.
    let (status, stderr) = fleet.stop();
    assert!(status.success(), "{status:?}: {stderr}");

    let records = decode(&std::fs::read(&pool).unwrap());
    assert_eq!(
        records[0],
        (FOREIGN_KEY.to_string(), FOREIGN_VALUE.to_string())
    );
    let ours: Vec<(Vec<String>, Json)> = records[1..]
        .iter()
        .map(|(k, v)| {
            let fields: Vec<String> = k.split('|').map(str::to_string).collect();
            assert_eq!(fields.len(), 5, "{k}");
            assert_eq!(fields[0], "AGENTCLUSTER", "{k}");
            let value: Json = serde_json::from_str(v).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(fields[2], value["event"].as_str().unwrap(), "{k} {v}");
            assert_eq!(fields[3], value["agent"].as_str().unwrap(), "{k} {v}");
            assert_eq!(fields[4], value["seq"].to_string(), "{k} {v}");
            (fields, value)
        })
        .collect();
    // Incarnation: the boot time (cloud-init's now - uptime, so within a
    // second or two of btime), the same for every record of the run.
    let incarnation: u64 = ours[0].0[1].parse().unwrap();
    assert!(
        incarnation.abs_diff(btime()) <= 2,
        "{incarnation} vs {}",
        btime()
    );
    assert!(ours.iter().all(|(f, _)| f[1] == ours[0].0[1]));
    let seqs: Vec<u64> = ours
        .iter()
        .map(|(_, v)| v["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    let started = &ours[0].1;
    assert_eq!(started["event"], "supervisor-started", "{started}");
    assert_eq!(started["agent"], "");
    assert_eq!(started["seq"], 1);
    assert_eq!(started["pid"].as_u64(), Some(u64::from(pid)), "{started}");
    for name in ["dev-a", "dev-b"] {
        let ready = ours
            .iter()
            .find(|(_, v)| v["event"] == "ready" && v["agent"] == name)
            .unwrap_or_else(|| panic!("no ready of {name}: {records:?}"));
        assert_eq!(ready.1["state"], "running", "{}", ready.1);
        assert!(ready.1["pid"].as_u64().is_some(), "{}", ready.1);
        assert!(ready.1["ts"].as_str().unwrap().ends_with('Z'));
    }

    // `kvp dump` prints each record as KEY = VALUE, and as JSON.
    let path = pool.display().to_string();
    let (lines, _) = stdout_lines(&["kvp", "dump", &path]);
    assert_eq!(lines.len(), records.len(), "{lines:?}");
    for ((k, v), line) in records.iter().zip(&lines) {
        assert_eq!(line, &format!("{k} = {v}"));
    }
    let (lines, _) = stdout_lines(&["kvp", "dump", "--json", &path]);
    for ((k, v), line) in records.iter().zip(&lines) {
        let j: Json = serde_json::from_str(line).unwrap();
        assert_eq!(
            (j["key"].as_str().unwrap(), j["value"].as_str().unwrap()),
            (k.as_str(), v.as_str())
        );
    }
}

/// cloud-init's record that it appended after an earlier run's records of
/// ours.
const BEHIND_KEY: &str = "CLOUD_INIT|1769000000|finish|modules-final|9c2e";
const BEHIND_VALUE: &str = r#"{"name":"modules-final","type":"finish","ts":"2026-01-01T00:00:09.000Z","result":"SUCCESS","msg":"late"}"#;

/// The host (hv_kvp_daemon) enumerates the pool by index, one request per
/// record: a record that moves during an enumeration is missed. At the cap
/// our oldest records give their slots to new ones in place, so another
/// writer's record behind ours keeps its index, intact, however often our
/// records wrap, and the pool ends with our newest events.
#[test]
fn at_the_cap_no_record_of_another_writer_moves() {
    const MAX: usize = 8;
    const PLANTED: u64 = 5;
    let pool_dir = tempdir();
    let pool = pool_dir.path().join("kvp_pool_1");
    // cloud-init's record, an earlier run's records of ours, then
    // cloud-init's record appended behind them (`push_record`: whole
    // records at the end of the file).
    let mut planted = encode(FOREIGN_KEY, FOREIGN_VALUE);
    for seq in 1..=PLANTED {
        let value = serde_json::json!({
            "seq": seq, "ts": "2026-01-01T00:00:05.000Z", "node": "earlier",
            "agent": format!("old-{seq}"), "event": "ready", "pid": 1,
            "exit_code": null, "signal": null, "restarts": 0,
            "state": "running", "reason": "ready",
        });
        let key = format!("AGENTCLUSTER|{}|ready|old-{seq}|{seq}", btime());
        planted.extend(encode(&key, &value.to_string()));
    }
    let behind = 1 + PLANTED as usize;
    planted.extend(encode(BEHIND_KEY, BEHIND_VALUE));
    std::fs::write(&pool, &planted).unwrap();
    // The key at each of the two places, if the record there is the one
    // planted, whole; else what is there.
    let others = |bytes: &[u8]| -> Vec<Result<(), String>> {
        [0, behind]
            .iter()
            .map(|&i| match bytes.get(i * RECORD..(i + 1) * RECORD) {
                Some(r) if r == &planted[i * RECORD..(i + 1) * RECORD] => Ok(()),
                Some(r) => Err(format!(
                    "record {i} is now {:?}",
                    String::from_utf8_lossy(&r[..KEY]).trim_end_matches('\0')
                )),
                None => Err(format!("record {i} is gone")),
            })
            .collect()
    };
    let want = vec![Ok(()), Ok(())];

    let yaml = format!(
        "events:\n  kvp:\n    path: {}\n    max_records: {MAX}\nagents:\n  - name: dev-a\n    listen: [\"127.0.0.1:{}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        pool.display(),
        free_port(),
        mib("linux-host.snmprec").display()
    );
    let fleet = Fleet::start(&yaml);
    let control = fleet.control();
    let mut events = fleet.follow(1);
    events.wait("dev-a ready", |e| is(e, "dev-a", "ready"));
    // Each restart is three events (restarting, starting, ready): the cap
    // is passed several times over.
    for n in 1..=12 {
        let out = agentcluster(&["restart", "--control", &control, "dev-a"]);
        assert!(out.status.success(), "{out:?}");
        events.wait(&format!("dev-a ready after restart {n}"), |e| {
            is(e, "dev-a", "ready") && e["restarts"] == n
        });
        // Whatever the writer is doing now, those two never change.
        assert_eq!(
            others(&std::fs::read(&pool).unwrap()),
            want,
            "after restart {n}: another writer's record moved or changed"
        );
    }
    let (status, stderr) = fleet.stop();
    assert!(status.success(), "{status:?}: {stderr}");

    let records = decode(&std::fs::read(&pool).unwrap());
    assert_eq!(
        records[0],
        (FOREIGN_KEY.to_string(), FOREIGN_VALUE.to_string())
    );
    assert_eq!(
        records[behind],
        (BEHIND_KEY.to_string(), BEHIND_VALUE.to_string()),
        "{records:#?}"
    );
    // Every other record is ours: the cap's worth, no more, no gaps (the
    // file did not grow past them).
    let ours: Vec<&(String, String)> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 0 && *i != behind)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(ours.len(), MAX, "{records:#?}");
    assert!(
        ours.iter().all(|(k, _)| k.starts_with("AGENTCLUSTER|")),
        "{records:#?}"
    );

    // `kvp dump --reassemble`: the same records, in place, and ours are the
    // newest events: consecutive seqs, the earlier run's gone, the last
    // ones those of the stop.
    let path = pool.display().to_string();
    let (lines, _) = stdout_lines(&["kvp", "dump", "--reassemble", "--json", &path]);
    let entries: Vec<Json> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), records.len(), "{lines:#?}");
    assert_eq!(entries[behind]["key"], BEHIND_KEY);
    let mut newest: Vec<Json> = entries
        .iter()
        .filter(|e| e["key"].as_str().unwrap().starts_with("AGENTCLUSTER|"))
        .map(|e| serde_json::from_str(e["value"].as_str().unwrap()).unwrap())
        .collect();
    newest.sort_by_key(|e| e["seq"].as_u64().unwrap());
    let seqs: Vec<u64> = newest.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "not the newest events: {seqs:?}"
    );
    assert!(newest.iter().all(|e| e["node"] != "earlier"), "{newest:#?}");
    assert!(
        newest.iter().all(|e| e["event"] != "supervisor-started"),
        "the pool did not wrap: {newest:#?}"
    );
    assert!(
        newest.iter().any(|e| e["event"] == "supervisor-stopping"),
        "the last events are missing: {newest:#?}"
    );
}

#[test]
fn dump_decodes_any_pool() {
    let dir = tempdir();
    let pool = dir.path().join("pool");
    let mut bytes = encode(FOREIGN_KEY, FOREIGN_VALUE);
    // A free slot (all NULs): no record, not shown.
    bytes.extend(vec![0u8; RECORD]);
    // cloud-init's slices: its escaped (ASCII) message cut anywhere, even
    // inside an escape, under `<key>|<i>` with msg_i.
    let head = r#"{"name":"init-local","type":"start","ts":"2026-01-01T00:00:00Z""#;
    bytes.extend(encode(
        "CLOUD_INIT|1769000000|start|init-local|ab|0",
        &format!(r#"{head},"msg_i":0,"msg":"caf\u00"}}"#),
    ));
    bytes.extend(encode(
        "CLOUD_INIT|1769000000|start|init-local|ab|1",
        &format!(r#"{head},"msg_i":1,"msg":"e9 \"ok\""}}"#),
    ));
    // Ours, sliced the same way (each slice whole characters), with a
    // record of another writer between two slices (a batch takes free
    // slots where they are).
    let ours = r#"{"seq":9,"ts":"2026-11-22T12:00:00.123Z","node":"lab-a","agent":"dev-a","event":"died","pid":1,"exit_code":null,"signal":"SIGKILL","restarts":0,"state":"backoff""#;
    bytes.extend(encode(
        "AGENTCLUSTER|1769000000|died|dev-a|9|0",
        &format!(r#"{ours},"msg_i":0,"msg":"killed é "}}"#),
    ));
    bytes.extend(encode(BEHIND_KEY, BEHIND_VALUE));
    bytes.extend(encode(
        "AGENTCLUSTER|1769000000|died|dev-a|9|1",
        &format!(r#"{ours},"msg_i":1,"msg":"by \"SIGKILL\"\n😀"}}"#),
    ));
    std::fs::write(&pool, &bytes).unwrap();
    let path = pool.display().to_string();

    let (lines, stderr) = stdout_lines(&["kvp", "dump", &path]);
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(lines[0], format!("{FOREIGN_KEY} = {FOREIGN_VALUE}"));
    assert!(lines[3].starts_with("AGENTCLUSTER|1769000000|died|dev-a|9|0 = {\"seq\":9,"));
    assert_eq!(lines[4], format!("{BEHIND_KEY} = {BEHIND_VALUE}"));
    assert!(stderr.is_empty(), "{stderr}");

    // Joined: a value takes the place of its first slice.
    let (lines, _) = stdout_lines(&["kvp", "dump", "--reassemble", "--json", &path]);
    assert_eq!(lines.len(), 4, "{lines:?}");
    let entries: Vec<Json> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        entries[1]["key"],
        "CLOUD_INIT|1769000000|start|init-local|ab"
    );
    assert_eq!(entries[1]["parts"], 2);
    let msg: Json = serde_json::from_str(entries[1]["value"].as_str().unwrap()).unwrap();
    assert_eq!(msg["msg"], "café \"ok\"");
    assert_eq!(entries[2]["key"], "AGENTCLUSTER|1769000000|died|dev-a|9");
    let value = entries[2]["value"].as_str().unwrap();
    assert_eq!(
        value,
        format!(r#"{ours},"reason":"killed é by \"SIGKILL\"\n😀"}}"#)
    );
    let event: Json = serde_json::from_str(value).unwrap();
    assert_eq!(event["reason"], "killed é by \"SIGKILL\"\n😀");
    assert_eq!(entries[3]["key"], BEHIND_KEY);

    // A record cut short is reported, the whole ones still shown.
    bytes.extend_from_slice(&encode("cut", "short")[..700]);
    std::fs::write(&pool, &bytes).unwrap();
    let (lines, stderr) = stdout_lines(&["kvp", "dump", &path]);
    assert_eq!(lines.len(), 6);
    assert!(stderr.contains("truncated (700 of 2560 bytes)"), "{stderr}");

    // An empty pool is no error; a missing one is (exit 1).
    std::fs::write(&pool, b"").unwrap();
    let (lines, _) = stdout_lines(&["kvp", "dump", &path]);
    assert!(lines.is_empty());
    let missing = dir.path().join("missing").display().to_string();
    let out = agentcluster(&["kvp", "dump", &missing]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

/// `kvp dump` without a path reads the Hyper-V pool (exit 1 where there is
/// none, which is every machine but a Hyper-V guest).
#[test]
fn dump_defaults_to_the_hyperv_pool() {
    let out = agentcluster(&["kvp", "dump"]);
    if Path::new("/var/lib/hyperv/.kvp_pool_1").exists() {
        assert!(out.status.success(), "{out:?}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("/var/lib/hyperv/.kvp_pool_1"),
            "{out:?}"
        );
    }
}

/// A file that is not a pool is said to be one no more: a snapshot, a
/// shorter text, and a pool with one damaged record among good ones.
#[test]
fn dump_says_when_a_file_is_not_a_pool() {
    let snapshot = mib("linux-host.snmprec").display().to_string();
    let out = agentcluster(&["kvp", "dump", &snapshot]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a KVP pool"), "{err}");
    assert!(out.stdout.is_empty(), "nothing decoded: {out:?}");

    let dir = tempdir();
    let short = dir.path().join("short");
    std::fs::write(&short, b"cluster:\n  node: x\n").unwrap();
    let out = agentcluster(&["kvp", "dump", &short.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("less than one 2560-byte record"));

    // A real pool with one record damaged: the others are shown.
    let mut pool = Vec::new();
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        let mut r = vec![0u8; RECORD];
        r[..k.len()].copy_from_slice(k.as_bytes());
        r[KEY..KEY + v.len()].copy_from_slice(v.as_bytes());
        pool.extend(r);
    }
    pool[RECORD + KEY + 10] = b'x'; // junk after b's value
    let path = dir.path().join("pool");
    std::fs::write(&path, &pool).unwrap();
    let out = agentcluster(&["kvp", "dump", &path.display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a = 1\nc = 3\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("record 2 (bytes 2560..5120) is damaged"),
        "{out:?}"
    );
}
