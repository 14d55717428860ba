//! Crash consistency (issue 7, item 4), with the real binary, SIGKILL and
//! net-snmp: the supervisor is killed with `kill -9` at random moments
//! (seeded; each test prints its seed, `CRASH_SEED=N` repeats a run) while
//! it writes the KVP pool, persists snmpEngineBoots and spools informs, and
//! is started again on the same files each time.
//!
//! Waits are on the supervisor's ready line, its event stream, snmptrapd's
//! log and process exits; on bounded polls only for what nothing announces
//! (the pool and the spool as the supervisor writes them, ports the kernel
//! frees). The sleeps, and the spins that aim a kill at a write in
//! progress, are the random moments of the kills themselves.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value as Json;

use crate::harness::imports::{DEFAULT_MIB_ROOT, Signal, crc32};
use crate::harness::trapd::Trapd;
use crate::harness::{
    EventStream, Process, Rng, agentcluster, alone, events, free_port, free_ports, is, kill, mib,
    pid_in, pid_of, poll_until, snmp, status, tempdir,
};

/// Waits until every agent port can be bound again: the agent processes of
/// a killed supervisor go (PR_SET_PDEATHSIG), so the next one can bind.
/// Only a bind shows that the kernel let go of a port.
fn wait_ports_free(ports: &[u16]) {
    poll_until(
        "the agents of the killed supervisor to free their ports",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            let held: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|p| UdpSocket::bind(("127.0.0.1", *p)).is_err())
                .collect();
            if held.is_empty() {
                Ok(())
            } else {
                Err(format!("ports still held: {held:?}"))
            }
        },
    );
}

/// A fleet file in `dir` (state, cache and control socket there too).
fn write_config(dir: &Path, node: &str, cluster: &str, rest: &str) -> PathBuf {
    let path = dir.join("fleet.yaml");
    let text = format!(
        "cluster:\n  node: {node}\n  cache_dir: {}\n  state_dir: {}\n  control_socket: {}\n{cluster}{rest}",
        dir.join("cache").display(),
        dir.join("state").display(),
        dir.join("control.sock").display(),
    );
    std::fs::write(&path, text).expect("write the fleet");
    path
}

/// `agents:` with one agent per port, named `<prefix><i>`, sending no
/// notifications of their own; `extra` is added to each.
fn agents_yaml(prefix: &str, ports: &[u16], extra: &str) -> String {
    let mut y = String::from("agents:\n");
    for (i, port) in ports.iter().enumerate() {
        y += &format!(
            "  - name: {prefix}{i}\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    notify: none\n{extra}",
            mib("linux-host.snmprec").display()
        );
    }
    y
}

fn control_of(dir: &Path) -> String {
    dir.join("control.sock").display().to_string()
}

/// `agentcluster restart --control C '*'` in a loop until stopped: a steady
/// stream of lifecycle events (stopping, stopped, starting, ready, …).
struct Churn {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl Churn {
    fn start(control: String, pause: Duration) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut done = 0;
            while !flag.load(Ordering::Relaxed) {
                let out = agentcluster(&["restart", "--control", &control, "*"]);
                if out.status.success() {
                    done += 1;
                }
                // Pace of the load, not a wait for anything.
                std::thread::sleep(pause);
            }
            done
        });
        Churn {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the loop; how many restarts were accepted.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().unwrap_or(0))
            .unwrap_or(0)
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- what a thread of the supervisor is doing ----------------------------------

#[cfg(target_arch = "x86_64")]
const SYS_PWRITE64: &str = "18";
#[cfg(target_arch = "aarch64")]
const SYS_PWRITE64: &str = "68";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYS_PWRITE64: &str = "pwrite64";

/// The thread of process `pid` named `comm`.
fn thread_of(pid: u32, comm: &str) -> Option<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|t| {
        let name = std::fs::read_to_string(t.path().join("comm")).ok()?;
        (name.trim() == comm).then(|| t.path().join("syscall").display().to_string())
    })
}

/// The system call a thread is blocked in (first field of its
/// `/proc/…/syscall`: a number, or `running`).
fn syscall_of(path: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

// ---- the KVP pool, decoded here (not with the library) -----------------------

const KEY: usize = 512;
const VALUE: usize = 2048;
const RECORD: usize = KEY + VALUE;

/// Another writer's records (cloud-init's layout), planted before the
/// first run: they must stay, first and intact.
const FOREIGN: [(&str, &str); 3] = [
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

fn encode_record(key: &str, value: &str) -> Vec<u8> {
    let mut r = vec![0u8; RECORD];
    r[..key.len()].copy_from_slice(key.as_bytes());
    r[KEY..KEY + value.len()].copy_from_slice(value.as_bytes());
    r
}

/// A NUL-padded field: text up to the first NUL, only NULs after it.
fn field(bytes: &[u8]) -> Result<String, String> {
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
fn ours(key: &str, value: &str) -> Result<Json, String> {
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
struct PoolState {
    /// Bytes of a record cut short at the end.
    partial: usize,
    /// Records that do not decode, or ours that do not agree with their key.
    torn: Vec<String>,
    /// Records present twice, byte for byte (no two events are equal: each
    /// has its own time stamp).
    duplicates: usize,
    /// Records with an empty key: a slot a killed writer was rewriting.
    emptied: usize,
    /// Keys of ours present more than once (not as copies of one record):
    /// a restarted supervisor must not number its records over those of
    /// an earlier run of the boot.
    repeated_keys: usize,
    ours: usize,
    foreign_intact: bool,
    /// Our events, decoded.
    events: Vec<Json>,
}

fn inspect_pool(bytes: &[u8]) -> PoolState {
    let mut state = PoolState {
        partial: bytes.len() % RECORD,
        ..PoolState::default()
    };
    let mut seen = HashSet::new();
    let mut keys: HashMap<String, Vec<u8>> = HashMap::new();
    let mut foreign = 0;
    for (i, r) in bytes.chunks_exact(RECORD).enumerate() {
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
        if i < FOREIGN.len() && (key.as_str(), value.as_str()) == FOREIGN[i] {
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
    state.foreign_intact = foreign == FOREIGN.len();
    state
}

/// The pool as a reader that takes the writers' flock sees it (shared, so
/// never in the middle of one of their writes).
fn read_pool_locked(pool: &Path) -> Vec<u8> {
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

/// Once the supervisor `pid` has written its `supervisor-started` record:
/// the pool it left is whole and clean (its first write repaired whatever
/// the kill before left). Only reading the pool shows when the record is
/// there.
fn assert_clean_after_restart(pool: &Path, pid: u32, max_records: usize, what: &str) -> PoolState {
    let state = poll_until(
        &format!("{what}: supervisor {pid} to write supervisor-started to the pool"),
        Duration::from_secs(15),
        Duration::from_millis(50),
        || {
            let state = inspect_pool(&read_pool_locked(pool));
            let started = state
                .events
                .iter()
                .any(|e| e["event"] == "supervisor-started" && e["pid"] == pid);
            if started {
                Ok(state)
            } else {
                Err(format!("{} records of ours", state.ours))
            }
        },
    );
    assert_eq!(
        state.partial, 0,
        "{what}: a partial record is left: {state:?}"
    );
    assert!(
        state.torn.is_empty(),
        "{what}: torn records: {:?}",
        state.torn
    );
    assert_eq!(state.duplicates, 0, "{what}: duplicated records");
    assert_eq!(state.emptied, 0, "{what}: records with an empty key");
    assert_eq!(state.repeated_keys, 0, "{what}: keys used twice");
    assert!(state.foreign_intact, "{what}: the planted records are gone");
    assert!(
        state.ours <= max_records,
        "{what}: {} of ours, over max_records {max_records}",
        state.ours
    );
    state
}

/// Waits (at most `limit`) until the pool is seen in the middle of a
/// rewrite: its first record of ours (after the planted ones) has changed
/// while its length and last record have not yet. True if seen.
fn wait_mid_rewrite(pool: &Path, limit: Duration) -> bool {
    use std::os::unix::fs::FileExt;
    let look = || -> Option<(u64, Vec<u8>, Vec<u8>)> {
        let f = std::fs::File::open(pool).ok()?;
        let len = f.metadata().ok()?.len();
        let last = (len / RECORD as u64).checked_sub(1)? * RECORD as u64;
        let mut first = vec![0; KEY];
        let mut tail = vec![0; KEY];
        f.read_exact_at(&mut first, (FOREIGN.len() * RECORD) as u64)
            .ok()?;
        f.read_exact_at(&mut tail, last).ok()?;
        Some((len, first, tail))
    };
    let until = Instant::now() + limit;
    let mut before = look();
    while Instant::now() < until {
        let now = look();
        if let (Some((len0, first0, last0)), Some((len, first, last))) = (&before, &now)
            && len0 == len
            && first0 != first
            && last0 == last
        {
            return true;
        }
        if now != before {
            before = now;
        }
        std::thread::yield_now();
    }
    false
}

/// KVP pool: a fleet of 10 agents whose events go to a pool that already
/// holds another writer's records, restarted in a loop (`restart '*'`, so
/// events come in a steady stream) and with `max_records` small enough
/// that most writes rewrite the whole pool in place (the cap). The
/// supervisor is killed at random: during its start, at a random moment of
/// the churn, or aimed at a rewrite in progress ([`wait_mid_rewrite`]).
/// What its `kvp-writer` thread was doing is read from
/// `/proc/PID/task/TID/syscall` just before each kill and counted.
///
/// Guaranteed and checked, right after every kill: the planted records are
/// still first and intact, no record is torn (every record with a key
/// decodes: NUL-padded UTF-8 with nothing after the NUL, ours with a JSON
/// value that agrees with its key), at most one record has an empty key (a
/// slot being rewritten). What a kill may leave until the next start, and
/// what is counted and printed: that record with an empty key, copies of
/// records that a rewrite had moved (byte for byte the same), a partial
/// last record of a cut append (readers skip it). Once a restarted
/// supervisor has written to the pool (its `supervisor-started` record):
/// whole records only, all decode, none twice, none with an empty key, the
/// planted ones first, ours within `max_records`; the same after the last,
/// clean stop.
#[test]
fn kvp_pool_is_whole_after_kill9_mid_write() {
    let _alone = alone();
    const AGENTS: usize = 10;
    const MAX_RECORDS: usize = 800;
    const ITERATIONS: usize = 24;
    const BUDGET: Duration = Duration::from_secs(30);
    let mut rng = Rng::from_env("CRASH_SEED", "kvp");
    let dir = tempdir();
    let pool = dir.path().join("kvp_pool_1");
    let planted: Vec<u8> = FOREIGN
        .iter()
        .flat_map(|(k, v)| encode_record(k, v))
        .collect();
    std::fs::write(&pool, &planted).expect("plant records");
    let ports = free_ports(AGENTS);
    let config = write_config(
        dir.path(),
        "crash-kvp",
        "",
        &format!(
            "events:\n  kvp:\n    path: {}\n    max_records: {MAX_RECORDS}\n{}",
            pool.display(),
            agents_yaml("kvp-", &ports, "    snmpv2c: { communities: [public] }\n")
        ),
    );
    let control = control_of(dir.path());

    let begun = Instant::now();
    let (mut kills, mut in_pwrite, mut running, mut aimed, mut early) = (0, 0, 0, 0, 0);
    let mut rewrite_seen = 0;
    let (mut partial_after, mut emptied_after, mut dup_after) = (0, 0, 0);
    let mut restarts = 0;
    let mut max_len = 0;
    while kills < ITERATIONS && begun.elapsed() < BUDGET {
        let mut sup = Process::run(&config);
        let what = format!("run {kills}");
        let mut churn = None;
        let writer;
        if rng.below(4) == 0 {
            // During the start: the first write of a run (which checks
            // the pool) and the starting/ready events.
            early += 1;
            std::thread::sleep(rng.millis(0, 600));
            writer = thread_of(sup.pid(), "kvp-writer");
        } else {
            sup.assert_ready(&what);
            assert_clean_after_restart(&pool, sup.pid(), MAX_RECORDS, &what);
            churn = Some(Churn::start(control.clone(), Duration::from_millis(150)));
            std::thread::sleep(rng.millis(100, 700));
            writer = thread_of(sup.pid(), "kvp-writer");
            if rng.below(3) > 0 {
                aimed += 1;
                rewrite_seen += usize::from(wait_mid_rewrite(&pool, Duration::from_secs(2)));
            }
        }
        let doing = writer.as_deref().map(syscall_of).unwrap_or_default();
        sup.kill();
        kills += 1;
        match doing.as_str() {
            SYS_PWRITE64 => in_pwrite += 1,
            "running" => running += 1,
            _ => {}
        }
        if let Some(c) = churn {
            restarts += c.finish();
        }
        let bytes = std::fs::read(&pool).expect("read the pool");
        max_len = max_len.max(bytes.len());
        let state = inspect_pool(&bytes);
        assert!(
            state.foreign_intact,
            "{what}: the planted records are gone after the kill"
        );
        assert!(
            state.torn.is_empty(),
            "{what}: torn records after the kill (writer in syscall {doing:?}): {:?}",
            state.torn
        );
        assert!(
            state.emptied <= 1,
            "{what}: {} records with an empty key after the kill",
            state.emptied
        );
        partial_after += usize::from(state.partial > 0);
        emptied_after += usize::from(state.emptied > 0);
        dup_after += usize::from(state.duplicates > 0);
        if state.partial > 0 || state.emptied > 0 || state.duplicates > 0 {
            eprintln!(
                "{what}: killed in syscall {doing:?}: partial record of {} bytes, {} emptied, {} repeated",
                state.partial, state.emptied, state.duplicates
            );
        }
        wait_ports_free(&ports);
    }

    // The last start on the pool left by the last kill, then a clean stop.
    let sup = Process::run(&config);
    sup.assert_ready("last run");
    assert_clean_after_restart(&pool, sup.pid(), MAX_RECORDS, "last run");
    let (status, _) = sup.stop();
    assert!(status.success(), "last run: {status:?}");
    let state = inspect_pool(&std::fs::read(&pool).expect("read the pool"));
    assert_eq!(state.partial, 0, "{state:?}");
    assert!(state.torn.is_empty(), "{:?}", state.torn);
    assert_eq!((state.duplicates, state.emptied), (0, 0));
    assert!(state.foreign_intact);
    assert!(
        state
            .events
            .iter()
            .any(|e| e["event"] == "supervisor-stopping"),
        "the clean stop was written"
    );
    eprintln!(
        "kvp: {kills} kills in {:.1} s ({early} during the start, {aimed} aimed at a rewrite, \
         {rewrite_seen} of them seen in the middle of one, \
         {in_pwrite} with the writer inside pwrite64, {running} with it running), {restarts} \
         restart '*' commands; after the kill: {partial_after} with a partial last record, \
         {emptied_after} with a record emptied, {dup_after} with repeated records, none torn; \
         pool up to {max_len} bytes, {} of ours at the end",
        begun.elapsed().as_secs_f64(),
        state.ours
    );
}

// ---- engine boots --------------------------------------------------------------

/// snmpEngineBoots of the agent on `port`, as net-snmp reads it
/// (SNMP-FRAMEWORK-MIB::snmpEngineBoots.0, noAuthNoPriv user `plain`).
fn engine_boots(port: u16) -> Option<u32> {
    let target = format!("127.0.0.1:{port}");
    let out = snmp(
        "snmpget",
        &[
            "-v3",
            "-l",
            "noAuthNoPriv",
            "-u",
            "plain",
            "-On",
            "-Ov",
            &target,
            "1.3.6.1.6.3.10.2.1.2.0",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().strip_prefix("INTEGER: ")?.parse().ok()
}

/// Every boots file under `state/engine`: name → value. A file that is not
/// a counter (`<digits>\n`) fails the test.
fn boots_files(state: &Path, what: &str) -> (BTreeMap<String, u32>, Vec<PathBuf>) {
    let mut values = BTreeMap::new();
    let mut tmp = Vec::new();
    let Ok(dir) = std::fs::read_dir(state.join("engine")) else {
        return (values, tmp);
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(agent) = name.strip_suffix(".boots") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let value = text
                .strip_suffix('\n')
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("{what}: {name} is not a counter: {text:?}"));
            values.insert(agent.to_string(), value);
        } else {
            tmp.push(entry.path());
        }
    }
    (values, tmp)
}

/// Identity of the temporary files present now (to tell a new one).
fn tmp_stamps(paths: &[PathBuf]) -> HashSet<(PathBuf, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .filter_map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((p.clone(), m.ino(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}

/// (pid, snmpEngineBoots) of agent `name` once it runs a process other
/// than `not`: its last event is `ready`, which names the process (waited
/// for on the event stream if it is not yet); that process is still the
/// one running after the query (so both belong to one process).
fn observe(control: &str, name: &str, port: u16, not: Option<u32>) -> (u32, u32) {
    let wanted = |e: &Json| is(e, name, "ready") && Some(pid_in(e)) != not;
    let kept = events::events(control);
    let pid = match kept.iter().rev().find(|e| e["agent"] == name) {
        Some(e) if wanted(e) => pid_in(e),
        _ => {
            let since = kept
                .last()
                .and_then(|e| e["seq"].as_u64())
                .map_or(1, |s| s + 1);
            pid_in(&EventStream::follow(control, since).wait(&format!("{name} ready"), wanted))
        }
    };
    let boots = engine_boots(port)
        .unwrap_or_else(|| panic!("{name} (pid {pid}) does not answer snmpEngineBoots"));
    assert_eq!(
        pid_of(&status(control), name),
        pid,
        "{name} changed its process while it was asked"
    );
    (pid, boots)
}

/// Engine boots: 12 SNMPv3 agents. The supervisor is killed during its
/// start (half the time aimed at the moment a new `*.boots.tmp` appears,
/// i.e. in the middle of persisting one), or after agents were killed
/// (`kill -9` of agent processes, each restart persisting one boot more),
/// sometimes right after such an agent kill.
///
/// Guaranteed and checked: after every kill each boots file is a whole
/// counter (`<digits>\n`, never empty or cut) and none is lower than
/// before; every agent process answers (net-snmp `snmpget -v3` of
/// snmpEngineBoots.0) with a boots value above every value any earlier
/// process of that agent had (higher than the file held before its
/// supervisor started, higher than the previous process observed): boots
/// never go backwards and never repeat.
#[test]
fn engine_boots_only_grow_across_kill9() {
    let _alone = alone();
    const AGENTS: usize = 12;
    const ITERATIONS: usize = 25;
    const BUDGET: Duration = Duration::from_secs(40);
    let mut rng = Rng::from_env("CRASH_SEED", "boots");
    let dir = tempdir();
    let state_dir = dir.path().join("state");
    let ports = free_ports(AGENTS);
    let config = write_config(
        dir.path(),
        "crash-boots",
        "  restart: { backoff: 10ms..200ms, max_restarts: 1000, window: 60s }\n",
        &agents_yaml(
            "v3-",
            &ports,
            "    snmpv3:\n      users:\n        - name: plain\n",
        ),
    );
    let control = control_of(dir.path());
    let name = |i: usize| format!("v3-{i}");

    // Per agent: the last process observed and its boots.
    let mut last: HashMap<String, (u32, u32)> = HashMap::new();
    let mut files: BTreeMap<String, u32> = BTreeMap::new();
    let begun = Instant::now();
    let (mut kills, mut early, mut aimed, mut tmp_left, mut agent_kills, mut observed) =
        (0, 0, 0, 0, 0, 0);
    // `before`: the boots files when this supervisor started; each of the
    // agent's processes until then had at most that.
    let mut check = |name: &str, (pid, boots): (u32, u32), before: &BTreeMap<String, u32>| {
        let floor = before.get(name).copied().unwrap_or(0);
        match last.get(name) {
            Some(&(p, b)) if p == pid => assert_eq!(b, boots, "{name} pid {pid}: boots changed"),
            Some(&(p, b)) => assert!(
                boots > b,
                "{name}: process {pid} has boots {boots}, not above {b} of process {p}"
            ),
            None => {}
        }
        assert!(
            boots > floor,
            "{name} pid {pid}: boots {boots}, not above {floor} held before this supervisor"
        );
        last.insert(name.to_string(), (pid, boots));
    };
    while kills < ITERATIONS && begun.elapsed() < BUDGET {
        let what = format!("run {kills}");
        let (before, tmps) = boots_files(&state_dir, &what);
        let old_tmp = tmp_stamps(&tmps);
        let mut sup = Process::run(&config);
        match rng.below(3) {
            0 => {
                early += 1;
                if rng.below(2) == 0 {
                    // Aim: kill as soon as a boots counter is being written.
                    aimed += 1;
                    let until = Instant::now() + Duration::from_secs(3);
                    loop {
                        let (_, now) = boots_files(&state_dir, &what);
                        if tmp_stamps(&now).difference(&old_tmp).next().is_some()
                            || Instant::now() > until
                        {
                            break;
                        }
                        std::thread::yield_now();
                    }
                } else {
                    std::thread::sleep(rng.millis(0, 500));
                }
            }
            mode => {
                sup.assert_ready(&what);
                for _ in 0..2 {
                    let i = rng.below(AGENTS as u64) as usize;
                    observed += 1;
                    check(
                        &name(i),
                        observe(&control, &name(i), ports[i], None),
                        &before,
                    );
                }
                for _ in 0..1 + rng.below(3) {
                    let i = rng.below(AGENTS as u64) as usize;
                    let seen = observe(&control, &name(i), ports[i], None);
                    observed += 1;
                    check(&name(i), seen, &before);
                    let pid = seen.0;
                    kill(pid, Signal::SIGKILL);
                    agent_kills += 1;
                    if mode == 1 {
                        // Kill the supervisor while it restarts that agent.
                        std::thread::sleep(rng.millis(0, 30));
                        break;
                    }
                    let seen = observe(&control, &name(i), ports[i], Some(pid));
                    observed += 1;
                    check(&name(i), seen, &before);
                }
                if mode == 2 {
                    std::thread::sleep(rng.millis(0, 200));
                }
            }
        }
        sup.kill();
        kills += 1;
        let (after, tmps) = boots_files(&state_dir, &what);
        tmp_left += usize::from(tmp_stamps(&tmps).difference(&old_tmp).next().is_some());
        for (agent, value) in &after {
            let old = files.get(agent).copied().unwrap_or(0);
            assert!(
                *value >= old,
                "{what}: {agent}.boots went back from {old} to {value}"
            );
        }
        files = after;
        wait_ports_free(&ports);
    }

    // A last start: every agent answers above everything before.
    let sup = Process::run(&config);
    sup.assert_ready("last run");
    for (i, port) in ports.iter().enumerate() {
        observed += 1;
        check(&name(i), observe(&control, &name(i), *port, None), &files);
    }
    let (status, _) = sup.stop();
    assert!(status.success(), "last run: {status:?}");
    let (after, _) = boots_files(&state_dir, "after the last run");
    eprintln!(
        "boots: {kills} supervisor kills in {:.1} s ({early} during the start, {aimed} of them \
         aimed at a boots file being written, {tmp_left} left a boots.tmp behind: killed \
         between writing and renaming), {agent_kills} agent kills, {observed} snmpEngineBoots \
         reads, boots at the end {:?}",
        begun.elapsed().as_secs_f64(),
        after.values().collect::<Vec<_>>()
    );
}

// ---- informs -------------------------------------------------------------------

/// An event told apart from every other: node, time stamp, kind, agent.
type Ident = (String, String, String, String);

fn ident(e: &Json) -> Ident {
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    (s("node"), s("ts"), s("event"), s("agent"))
}

/// What the inform spool holds: the events of its `add` lines, as
/// (node, seq); how many `ack` lines; how many lines are damaged (a torn
/// last line), and whether a temporary file was left.
#[derive(Debug, Default)]
struct Spool {
    adds: Vec<(String, u64)>,
    /// The same events as (node, ts, event, agent): how the KVP pool's
    /// records of them are found (the pool numbers a boot's runs on, so its
    /// seq is not the run's).
    idents: Vec<Ident>,
    acks: usize,
    damaged: usize,
    /// Damaged lines that are not the last of their file.
    damaged_inside: usize,
    /// Temporary files (a rewrite in progress).
    tmp: Vec<PathBuf>,
}

fn read_spool(state: &Path) -> Spool {
    let mut spool = Spool::default();
    let Ok(dir) = std::fs::read_dir(state.join("informs")) else {
        return spool;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".jsonl") {
            spool.tmp.push(entry.path());
            continue;
        }
        let bytes = std::fs::read(entry.path()).expect("read the spool");
        let lines: Vec<&[u8]> = bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        for (i, line) in lines.iter().enumerate() {
            let parsed = std::str::from_utf8(line).ok().and_then(|l| {
                let (crc, json) = l.split_once(' ')?;
                (u32::from_str_radix(crc, 16).ok()? == crc32(json.as_bytes()))
                    .then(|| serde_json::from_str::<Json>(json).ok())
                    .flatten()
            });
            match parsed {
                Some(j) if j["op"] == "add" => {
                    let e = &j["event"];
                    spool.adds.push((
                        e["node"].as_str().unwrap_or_default().to_string(),
                        e["seq"].as_u64().unwrap_or(0),
                    ));
                    spool.idents.push(ident(e));
                }
                Some(j) if j["op"] == "ack" => spool.acks += 1,
                _ if i + 1 < lines.len() => spool.damaged_inside += 1,
                _ => spool.damaged += 1,
            }
        }
    }
    spool
}

/// Milliseconds since the epoch of an event's `ts`
/// (`2026-11-22T12:00:00.123Z`).
fn ts_millis(ts: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, min, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + min * 60 + s) * 1000) + ms)
}

/// How long a published event may wait before it is in the spool, at
/// most. It goes in as soon as the sink has it (one append and fsync, for
/// all events that came together), also while a delivery round to a target
/// that does not answer is in progress; the margin is for a loaded machine.
const SPOOL_LAG_MAX: Duration = Duration::from_secs(1);

/// (node, seq) of an AGENTCLUSTER-MIB notification logged by snmptrapd.
fn notified(line: &str) -> Option<(String, u64)> {
    let arcs: Vec<String> = DEFAULT_MIB_ROOT.iter().map(u32::to_string).collect();
    let root = format!(".{}", arcs.join("."));
    let value = |n: u32| {
        let prefix = format!("{root}.1.1.{n}.0 = ");
        line.split('\t').find_map(|vb| {
            vb.split('|')
                .next_back()?
                .strip_prefix(&prefix)
                .map(str::to_string)
        })
    };
    let node = value(8)?
        .strip_prefix("STRING: \"")?
        .strip_suffix('"')?
        .to_string();
    let seq = value(9)?.strip_prefix("Gauge32: ")?.parse().ok()?;
    Some((node, seq))
}

/// Informs: 5 agents restarted in a loop, every event an inform to a v2c
/// target that is down (retries 1, timeout 1 s: each delivery round takes
/// 2 s), and a KVP pool as the fsynced record of what was published. The
/// supervisor is killed at random (during its start or during the churn),
/// each run under its own node name (`run-N`, so every event is told apart
/// at the receiver by node and seq). Then snmptrapd comes up on the target
/// port and one more supervisor starts.
///
/// Guaranteed and checked: every inform that was in the spool after a kill
/// (an `add` line with a good checksum) reaches snmptrapd afterwards, at
/// least once (duplicates are allowed: informs are at-least-once); and
/// every event in the KVP pool that is older than [`SPOOL_LAG_MAX`] at the
/// kill was in the spool. So an inform is lost at a `kill -9` only for an
/// event published in the last moment before it (one that no sink may have
/// written either); an event waits for the spool neither behind a delivery
/// round nor behind the other sinks.
#[test]
fn spooled_informs_survive_kill9_and_all_arrive() {
    let _alone = alone();
    const AGENTS: usize = 5;
    const RUNS: usize = 14;
    const BUDGET: Duration = Duration::from_secs(35);
    let mut rng = Rng::from_env("CRASH_SEED", "informs");
    let dir = tempdir();
    let state_dir = dir.path().join("state");
    let pool = dir.path().join("kvp_pool_1");
    let target = free_port();
    let ports = free_ports(AGENTS);
    let events = format!(
        "events:\n  kvp:\n    path: {}\n    max_records: 100000\n  notify:\n    - {{ target: \"127.0.0.1:{target}\", version: 2c, community: public, type: inform, retries: 1, timeout: 1s }}\n",
        pool.display()
    );
    let agents = agents_yaml("inf-", &ports, "    snmpv2c: { communities: [public] }\n");
    let control = control_of(dir.path());

    let mut spooled: HashSet<(String, u64)> = HashSet::new();
    let mut spooled_ids: HashSet<Ident> = HashSet::new();
    let begun = Instant::now();
    let (mut runs, mut early, mut aimed, mut damaged, mut tmp_left, mut published) =
        (0, 0, 0, 0, 0, 0);
    let mut unspooled = 0;
    let mut worst_lag = Duration::ZERO;
    while runs < RUNS && begun.elapsed() < BUDGET {
        let node = format!("run-{runs}");
        let config = write_config(dir.path(), &node, "", &format!("{events}{agents}"));
        let old_tmp = tmp_stamps(&read_spool(&state_dir).tmp);
        let mut sup = Process::run(&config);
        let mut churn = None;
        if rng.below(3) == 0 {
            early += 1;
            if runs > 0 && rng.below(3) > 0 {
                // Aim: kill while the start rewrites the spool (a
                // temporary file, then a rename).
                aimed += 1;
                let until = Instant::now() + Duration::from_secs(3);
                while tmp_stamps(&read_spool(&state_dir).tmp).is_subset(&old_tmp)
                    && Instant::now() < until
                {
                    std::thread::yield_now();
                }
            } else {
                std::thread::sleep(rng.millis(0, 800));
            }
        } else {
            sup.assert_ready(&node);
            churn = Some(Churn::start(control.clone(), Duration::from_millis(300)));
            std::thread::sleep(rng.millis(200, 1800));
        }
        let killed_at = SystemTime::now();
        sup.kill();
        drop(churn);
        runs += 1;

        let spool = read_spool(&state_dir);
        assert_eq!(spool.acks, 0, "{node}: an ack from a target that is down?");
        assert_eq!(
            spool.damaged_inside, 0,
            "{node}: damaged lines before the last one"
        );
        damaged += spool.damaged;
        tmp_left += usize::from(!tmp_stamps(&spool.tmp).is_subset(&old_tmp));
        spooled.extend(spool.adds);
        spooled_ids.extend(spool.idents);
        // What this run published (as far as the pool knows): spooled
        // unless it was published in the last moment.
        let killed_ms = killed_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        let state = inspect_pool(&std::fs::read(&pool).unwrap_or_default());
        for e in state.events.iter().filter(|e| e["node"] == node.as_str()) {
            published += 1;
            if spooled_ids.contains(&ident(e)) {
                continue;
            }
            unspooled += 1;
            let ts = e["ts"].as_str().and_then(ts_millis).unwrap_or(0);
            let lag = Duration::from_millis((killed_ms - ts).max(0) as u64);
            worst_lag = worst_lag.max(lag);
            assert!(
                lag <= SPOOL_LAG_MAX,
                "{node}: event {e} was published {lag:?} before the kill but never spooled"
            );
        }
        wait_ports_free(&ports);
    }

    // The target comes up; the next supervisor sends what was kept.
    let trapd = Trapd::start_on("authCommunity log public\n", target);
    let config = write_config(dir.path(), "final", "", &format!("{events}{agents}"));
    let sup = Process::run(&config);
    sup.assert_ready("final run");
    let mut arrived: HashMap<(String, u64), usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let missing = |arrived: &HashMap<(String, u64), usize>| {
        spooled.iter().filter(|k| !arrived.contains_key(*k)).count()
    };
    while missing(&arrived) > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(line) = trapd.next(left) else {
            let mut lost: Vec<_> = spooled
                .iter()
                .filter(|k| !arrived.contains_key(*k))
                .collect();
            lost.sort();
            panic!(
                "{} spooled informs never arrived, e.g. {:?}",
                lost.len(),
                &lost[..lost.len().min(10)]
            );
        };
        if line.contains("INFORM, SNMP v2c")
            && let Some(id) = notified(&line)
        {
            *arrived.entry(id).or_default() += 1;
        }
    }
    // Acknowledged informs leave the spool: once the last run's own ones
    // are out too, it is gone. Only reading the spool shows when.
    poll_until(
        "the spool to empty once every spooled inform arrived",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || match read_spool(&state_dir).adds.len() {
            0 => Ok(()),
            left => Err(format!("{left} informs in the spool")),
        },
    );
    let (status, _) = sup.stop();
    assert!(status.success(), "final run: {status:?}");
    let repeats: usize = arrived.values().map(|n| n - 1).sum();
    eprintln!(
        "informs: {runs} kills in {:.1} s ({early} during the start, {aimed} of them aimed at \
         the spool's rewrite); {published} events \
         published by the killed runs (per the pool), {} spooled, {unspooled} not spooled at \
         the kill (published at most {worst_lag:?} before it); {damaged} damaged spool lines and \
         {tmp_left} kills left a new temporary file; all {} spooled informs arrived, \
         {repeats} more than once",
        begun.elapsed().as_secs_f64(),
        spooled.len(),
        spooled.len()
    );
}

#[test]
fn event_times_and_notifications_parse() {
    assert_eq!(ts_millis("1970-01-01T00:00:00.000Z"), Some(0));
    assert_eq!(
        ts_millis("2026-11-22T12:00:00.123Z"),
        Some(1_795_348_800_123)
    );
    assert_eq!(ts_millis("2000-02-29T00:00:00.000Z"), Some(951_782_400_000));
    let arcs: Vec<String> = DEFAULT_MIB_ROOT.iter().map(u32::to_string).collect();
    let root = format!(".{}", arcs.join("."));
    let line = format!(
        "127.0.0.1|x|y|z|w|.1.3.6.1.2.1.1.3.0 = Timeticks: (1) 0:00:00.01\t{root}.1.1.8.0 = STRING: \"run-3\"\t{root}.1.1.9.0 = Gauge32: 17"
    );
    assert_eq!(notified(&line), Some(("run-3".to_string(), 17)));
}
