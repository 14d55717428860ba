//! Spooled informs survive `kill -9` and all arrive once the target is up.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value as Json;

use crate::harness::imports::{DEFAULT_MIB_ROOT, crc32};
use crate::harness::trapd::Trapd;
use crate::harness::{
    Process, Rng, alone_among, free_port, free_ports, poll_until, tempdir, ts_millis,
};

use super::pool::inspect_pool;
use super::{Churn, agents_yaml, control_of, tmp_stamps, wait_ports_free, write_config};

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
    /// records of them are found.
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
    let _siblings = alone_among("crash");
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
