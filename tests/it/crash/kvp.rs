//! The KVP pool stays whole when the supervisor is killed in the middle of
//! writing it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Process, Rng, alone_among, free_ports, poll_until, tempdir};

use super::pool::{PoolState, inspect_pool, planted_pool, read_pool_locked};
use super::{Churn, agents_yaml, control_of, wait_ports_free, write_config};

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
    assert!(
        state.foreign_intact,
        "{what}: the planted records are gone or moved"
    );
    assert!(
        state.ours <= max_records,
        "{what}: {} of ours, over max_records {max_records}",
        state.ours
    );
    state
}

/// Waits (at most `limit`) until the pool is seen being written in place:
/// modified while its length stays (at the cap a batch takes our oldest
/// slots and appends nothing), so that the kill that follows falls in, or
/// close to, a batch's slot writes and fsync. True if seen.
fn wait_mid_rewrite(pool: &Path, limit: Duration) -> bool {
    use std::os::unix::fs::MetadataExt;
    let look = || {
        std::fs::metadata(pool)
            .ok()
            .map(|m| (m.len(), m.mtime(), m.mtime_nsec()))
    };
    let until = Instant::now() + limit;
    let mut before = look();
    while Instant::now() < until {
        let now = look();
        if let (Some((len0, ..)), Some((len, ..))) = (before, now)
            && len0 == len
            && before != now
        {
            return true;
        }
        before = now;
        std::thread::yield_now();
    }
    false
}

/// KVP pool: a fleet of 10 agents whose events go to a pool that already
/// holds another writer's records, three first and one behind records of
/// ours of an earlier boot ([`planted_pool`]), restarted in a loop
/// (`restart '*'`, so events come in a steady stream) and with
/// `max_records` small enough that most writes are at the cap: they take
/// the slots of our oldest records in place. The supervisor is killed at
/// random: during its start, at a random moment of the churn, or aimed at
/// a write in place ([`wait_mid_rewrite`]). What its `kvp-writer` thread
/// was doing is read from `/proc/PID/task/TID/syscall` just before each
/// kill and counted.
///
/// Guaranteed and checked, right after every kill: the planted records are
/// intact at their index (no record moves), no record is torn (every record
/// with a key decodes: NUL-padded UTF-8 with nothing after the NUL, ours
/// with a JSON value that agrees with its key), none is there twice, at
/// most one record has an empty key (a slot being rewritten). What a kill
/// may leave until the next start, and what is counted and printed: that
/// record with an empty key, a partial last record of a cut append (readers
/// skip it). Once a restarted supervisor has written to the pool (its
/// `supervisor-started` record): whole records only, all decode, none
/// twice, none with an empty key, the planted ones at their index, ours
/// within `max_records`; the same after the last, clean stop.
#[test]
fn kvp_pool_is_whole_after_kill9_mid_write() {
    let _siblings = alone_among("crash");
    const AGENTS: usize = 10;
    const MAX_RECORDS: usize = 800;
    const ITERATIONS: usize = 24;
    const BUDGET: Duration = Duration::from_secs(30);
    let mut rng = Rng::from_env("CRASH_SEED", "kvp");
    let dir = tempdir();
    let pool = dir.path().join("kvp_pool_1");
    std::fs::write(&pool, planted_pool()).expect("plant records");
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
    let (mut partial_after, mut emptied_after, mut free_after) = (0, 0, 0);
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
            "{what}: the planted records are gone or moved after the kill"
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
        assert_eq!(
            state.duplicates, 0,
            "{what}: records there twice after the kill (a record moved?)"
        );
        partial_after += usize::from(state.partial > 0);
        emptied_after += usize::from(state.emptied > 0);
        free_after = free_after.max(state.free);
        if state.partial > 0 || state.emptied > 0 {
            eprintln!(
                "{what}: killed in syscall {doing:?}: partial record of {} bytes, {} emptied",
                state.partial, state.emptied
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
        "kvp: {kills} kills in {:.1} s ({early} during the start, {aimed} aimed at a write \
         in place, {rewrite_seen} of them seen during one, \
         {in_pwrite} with the writer inside pwrite64, {running} with it running), {restarts} \
         restart '*' commands; after the kill: {partial_after} with a partial last record, \
         {emptied_after} with a record emptied, up to {free_after} free slots, none torn, \
         none moved; pool up to {max_len} bytes, {} of ours at the end",
        begun.elapsed().as_secs_f64(),
        state.ours
    );
}
