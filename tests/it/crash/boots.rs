//! snmpEngineBoots only grows, whenever the supervisor or its agents are
//! killed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::harness::imports::Signal;
use crate::harness::{
    EventStream, Process, Rng, alone_among, engine_boots, events, free_ports, is, kill, pid_in,
    pid_of, status, tempdir,
};

use super::{agents_yaml, control_of, tmp_stamps, wait_ports_free, write_config};

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
    let boots = engine_boots(&format!("127.0.0.1:{port}"))
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
    let _siblings = alone_among("crash");
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
