//! Chaos under load (issue 7): 100 agents, each on its own snapshot file,
//! under a steady, checked GET load from the project's load generator
//! (`agentcluster-bench`, in process) while, for 60 s, random agents are
//! SIGKILLed, SIGSTOPped then SIGCONTed, and have their snapshot rewritten.
//!
//! What must hold at the end:
//! - every client request got its exact expected answer within its retry
//!   budget (1 s per try, 4 tries): no wrong answer, no request left
//!   unanswered;
//! - every agent answers, and serves its last rewritten snapshot;
//! - no agent is `failed`; each one's restart count is the number of
//!   SIGKILLs it got, plus the SIGSTOPs the supervisor caught (a process
//!   found stopped, state T, is a fault: `unresponsive`, stopped and
//!   restarted) — each of those is counted from its `unresponsive` event,
//!   which must name a process this test had stopped;
//! - the event log has, per kill, `died` (with the pid and SIGKILL) →
//!   `restarting` → `starting` → `ready` for that agent, in order; per
//!   caught stop the same after `unresponsive`; and nothing else (no extra
//!   `died`).
//!
//! The run is reproducible from its seed: `AGENTCLUSTER_CHAOS_SEED=N`
//! (printed at the start) and `AGENTCLUSTER_CHAOS_SECONDS=S` (default 60).
//! The pacing of the faults is the point of this test, so the chaos loop
//! sleeps between them. The fleet settling afterwards is waited on in its
//! event stream; what each agent serves in the end only asking it shows (a
//! bounded poll).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::harness::imports::snmp::{self, Expect, Op, Request, Security};
use crate::harness::imports::{Client, Signal, ber, load, procs};
use crate::harness::{Fleet, Rng, alone, free_ports, poll_until, tempdir};

const AGENTS: usize = 100;
/// What the load asks every agent: sysName.0, the same in every snapshot
/// and in every rewrite of it, so every answer is checked byte for byte.
const LOAD_OID: &str = "1.3.6.1.2.1.1.5.0";
const LOAD_VALUE: &str = "chaos-device";
/// Changes at every rewrite: `gen-N`.
const MARKER_OID: &str = "1.3.6.1.4.1.99999.1.0";
/// The restart policy's window: a run this long is stable, so the next
/// failure restarts at once (no backoff) and max_restarts is never near.
const WINDOW: Duration = Duration::from_secs(3);
/// The supervisor looks at /proc every heartbeat: a stop that spans a look
/// is caught.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// Each try of a request waits this long; `RETRIES` more tries follow.
const TIMEOUT: Duration = Duration::from_secs(1);
const RETRIES: u32 = 3;
/// New requests per second over the whole fleet (20 per agent).
const RATE: f64 = 2000.0;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn name(i: usize) -> String {
    format!("chaos-{i}")
}

/// Snapshot generation `generation` of agent `i`: the load's object never
/// changes, the marker does, and the rest (sysDescr, a table of 15–30
/// random integers) changes shape and values. No generation has less than
/// half the records of another (18 to 33), so the default
/// `cluster.snapshot_max_loss` (50%) lets every rewrite in.
fn snapshot(i: usize, generation: u32, rng: &mut Rng) -> String {
    let mut s = format!(
        "1.3.6.1.2.1.1.1.0|4|chaos device {i}, generation {generation}\n\
         {LOAD_OID}|4|{LOAD_VALUE}\n\
         {MARKER_OID}|4|gen-{generation}\n"
    );
    for k in 0..15 + rng.below(16) {
        s += &format!("1.3.6.1.4.1.99999.2.{k}|2|{}\n", rng.below(1 << 31));
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Stop,
}

/// What the chaos did to one agent.
#[derive(Default)]
struct Chaos {
    /// SIGKILLs and SIGSTOPs delivered, in order, with the pid they hit.
    faults: Vec<(Fault, u32)>,
    /// The snapshot generation on disk.
    generation: u32,
    last_rewrite: Option<Instant>,
    /// A SIGCONT due at this time, for this pid.
    stopped: Option<(Instant, u32)>,
}

impl Chaos {
    fn kills(&self) -> usize {
        self.faults
            .iter()
            .filter(|(f, _)| *f == Fault::Kill)
            .count()
    }
}

#[derive(Default, Debug)]
struct Tally {
    kills: u64,
    stops: u64,
    rewrites_renamed: u64,
    rewrites_in_place: u64,
    /// Picks that found no eligible agent.
    idle: u64,
}

fn by_name(s: &[Json]) -> HashMap<String, &Json> {
    s.iter()
        .filter_map(|a| Some((a["name"].as_str()?.to_string(), a)))
        .collect()
}

fn write_snapshot(path: &Path, text: &str, in_place: bool) {
    if in_place {
        std::fs::write(path, text).expect("rewrite snapshot in place");
    } else {
        // As editors and `snapshot sort` do: a new file renamed over the old.
        let tmp = path.with_extension("snmprec.tmp");
        std::fs::write(&tmp, text).expect("write new snapshot");
        std::fs::rename(&tmp, path).expect("rename snapshot");
    }
}

/// Whether an event kind is about an agent's data, not its process. A
/// rewrite in place can be compiled while it is half written: that store
/// is refused (`reload-failed`, too few records) or swapped in, and the
/// rewrite's own change is compiled right after, so what each agent
/// serves in the end is the check that counts.
fn is_data(kind: &str) -> bool {
    kind == "data-reloaded" || kind == "reload-failed"
}

/// Reads a GET answer's values as strings (OCTET STRING contents).
fn strings(varbinds: &[u8]) -> Vec<String> {
    snmp::VarBinds::new(varbinds)
        .map(|vb| {
            let (_, value) = vb.expect("well-formed varbind");
            if value.tag == ber::OCTET_STRING {
                String::from_utf8_lossy(value.value).into_owned()
            } else {
                format!("<tag 0x{:02x}>", value.tag)
            }
        })
        .collect()
}

#[test]
fn a_hundred_agents_survive_kills_stops_and_rewrites_under_load() {
    let _alone = alone();
    let seconds = env_u64("AGENTCLUSTER_CHAOS_SECONDS").unwrap_or(60);
    eprintln!("chaos: {seconds} s (AGENTCLUSTER_CHAOS_SECONDS={seconds})");
    let mut rng = Rng::from_env("AGENTCLUSTER_CHAOS_SEED", "chaos");

    // --- the fleet: one snapshot file per agent --------------------------
    let data = tempdir();
    let ports = free_ports(AGENTS);
    let paths: Vec<PathBuf> = (0..AGENTS)
        .map(|i| data.path().join(format!("{}.snmprec", name(i))))
        .collect();
    let mut yaml = format!(
        "  heartbeat: {}ms\n  inactive_after: 5s\n  stop_timeout: 1s\n  \
         restart: {{ policy: always, backoff: 100ms..2s, max_restarts: 10, window: {}s }}\nagents:\n",
        HEARTBEAT.as_millis(),
        WINDOW.as_secs()
    );
    for (i, path) in paths.iter().enumerate() {
        std::fs::write(path, snapshot(i, 0, &mut rng)).expect("write snapshot");
        yaml += &format!(
            "  - name: {}\n    listen: [\"127.0.0.1:{}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            name(i),
            ports[i],
            path.display()
        );
    }
    let fleet = Fleet::start(&yaml);
    let targets: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();

    // --- the load: a steady, checked GET of sysName.0 over every agent ---
    let req = Request::new(Op::Get, &[ber::parse_oid(LOAD_OID).expect("load OID")]);
    let expect = Expect::Exact(snmp::exact_bindings(
        &req,
        &[snmp::parse_value(&format!("s:{LOAD_VALUE}")).expect("value")],
    ));
    let settle = Duration::from_secs(3);
    let plan = load::Plan {
        targets: targets.clone(),
        inflight: 64,
        count: None,
        duration: Some(Duration::from_secs(seconds) + settle),
        warmup: Duration::ZERO,
        timeout: TIMEOUT,
        retries: RETRIES,
        rate: Some(RATE),
        expect_any: false,
        batch: 16,
        unconnected: false,
    };
    let load = {
        let (req, expect) = (req.clone(), expect.clone());
        std::thread::spawn(move || {
            let mut sec = Security::community(1, "public");
            load::run(&plan, &mut sec, &req, &expect)
        })
    };

    // --- the chaos ---------------------------------------------------------
    let mut chaos: Vec<Chaos> = (0..AGENTS).map(|_| Chaos::default()).collect();
    let mut tally = Tally::default();
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut next_pick = started;
    // Stable: `running` for longer than the policy's window (plus margin).
    let stable_ms = WINDOW.as_millis() as u64 + 500;
    while Instant::now() < end || chaos.iter().any(|c| c.stopped.is_some()) {
        let now = Instant::now();
        for c in chaos.iter_mut() {
            if let Some((due, pid)) = c.stopped
                && due <= now
            {
                // ESRCH is fine: the supervisor caught the stop and ended it.
                let _ = procs::signal(pid, Signal::SIGCONT);
                c.stopped = None;
            }
        }
        if now >= next_pick && now < end {
            next_pick = now + Duration::from_millis(100 + rng.below(100));
            let roll = rng.below(10);
            if roll < 3 {
                // Rewrite a snapshot, whatever the agent is doing.
                let fresh: Vec<usize> = (0..AGENTS)
                    .filter(|i| {
                        chaos[*i]
                            .last_rewrite
                            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(2))
                    })
                    .collect();
                if fresh.is_empty() {
                    tally.idle += 1;
                } else {
                    let i = fresh[rng.below(fresh.len() as u64) as usize];
                    let c = &mut chaos[i];
                    c.generation += 1;
                    c.last_rewrite = Some(now);
                    let in_place = rng.below(2) == 0;
                    let text = snapshot(i, c.generation, &mut rng);
                    write_snapshot(&paths[i], &text, in_place);
                    if in_place {
                        tally.rewrites_in_place += 1;
                    } else {
                        tally.rewrites_renamed += 1;
                    }
                }
            } else {
                // Kill or stop an agent that has run stably since its last
                // fault (so its restart is immediate) and is not stopped.
                let fault = if roll < 7 { Fault::Kill } else { Fault::Stop };
                let s = fleet.status();
                let s = by_name(&s);
                let eligible: Vec<(usize, u32)> = (0..AGENTS)
                    .filter(|i| chaos[*i].stopped.is_none())
                    .filter_map(|i| {
                        let a = s.get(&name(i))?;
                        (a["state"] == "running"
                            && a["uptime_ms"].as_u64().unwrap_or(0) >= stable_ms)
                            .then_some(())?;
                        Some((i, u32::try_from(a["pid"].as_u64()?).ok()?))
                    })
                    .collect();
                if eligible.is_empty() {
                    tally.idle += 1;
                } else {
                    let (i, pid) = eligible[rng.below(eligible.len() as u64) as usize];
                    let sig = match fault {
                        Fault::Kill => Signal::SIGKILL,
                        Fault::Stop => Signal::SIGSTOP,
                    };
                    // A pid from `status` of a running, untouched agent is
                    // its live process: delivery means the fault happened.
                    if procs::signal(pid, sig).is_ok() {
                        chaos[i].faults.push((fault, pid));
                        match fault {
                            Fault::Kill => tally.kills += 1,
                            Fault::Stop => {
                                tally.stops += 1;
                                let held = Duration::from_millis(20 + rng.below(380));
                                chaos[i].stopped = Some((Instant::now() + held, pid));
                            }
                        }
                    }
                }
            }
        }
        let wake = chaos
            .iter()
            .filter_map(|c| c.stopped.map(|(due, _)| due))
            .chain((next_pick < end).then_some(next_pick))
            .min()
            .unwrap_or(now);
        std::thread::sleep(
            wake.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
        );
    }
    eprintln!(
        "chaos: {} SIGKILL, {} SIGSTOP/SIGCONT, {} rewrites ({} renamed, {} in place), {} picks found no eligible agent, in {:.1} s",
        tally.kills,
        tally.stops,
        tally.rewrites_renamed + tally.rewrites_in_place,
        tally.rewrites_renamed,
        tally.rewrites_in_place,
        tally.idle,
        started.elapsed().as_secs_f64()
    );

    // --- the load's verdict: every request answered within its budget ----
    let out = load
        .join()
        .expect("load thread")
        .expect("load generator I/O");
    eprintln!(
        "load: {} requests, {} answered ({} after a retransmission), {} retransmissions, {} failed, {} timed out after {} tries, {} late or duplicate; p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        out.sent,
        out.ok,
        out.answered_after_retry,
        out.retransmits,
        out.failed,
        out.timeouts,
        1 + RETRIES,
        out.late,
        out.p50_us,
        out.p99_us,
        out.max_us
    );
    for s in &out.samples {
        eprintln!("  failure: {s}");
    }
    assert!(out.ok > 0, "the load ran: {out:?}");
    assert_eq!(out.failed, 0, "wrong answers: {:?}", out.samples);
    assert_eq!(
        out.timeouts,
        0,
        "requests unanswered after {} tries of {TIMEOUT:?}",
        1 + RETRIES
    );
    assert_eq!(out.ok, out.sent, "every request was answered: {out:?}");
    // Steady: at least half the planned rate over the whole run.
    assert!(
        out.sent as f64 >= 0.5 * RATE * seconds as f64,
        "the load was steady: {} requests in {seconds} s",
        out.sent
    );

    // --- the fleet settles: every agent ready after its last fault ----------
    // Every event up to now, and on until each agent's last lifecycle event
    // is `ready` (the stream says if the ring lost any).
    let now = fleet.next_seq() - 1;
    let mut last: HashMap<String, String> = HashMap::new();
    let mut looked = 0;
    let e = fleet
        .follow(1)
        .wait_all("every agent ready after its last fault", |e| {
            for x in &e[looked..] {
                if let (Some(a), Some(k)) = (x["agent"].as_str(), x["event"].as_str())
                    && !a.is_empty()
                    && !is_data(k)
                {
                    last.insert(a.to_string(), k.to_string());
                }
            }
            looked = e.len();
            e.last().and_then(|x| x["seq"].as_u64()) >= Some(now)
                && last.len() == AGENTS
                && last.values().all(|k| k == "ready")
        })
        .to_vec();
    let s = fleet.status();
    let st = by_name(&s);
    let failed: Vec<&str> = s
        .iter()
        .filter(|a| a["state"] != "running")
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "agents not running at the end: {failed:?}"
    );

    // --- restart counts and the event log, agent by agent ------------------
    let mut caught_stops = 0;
    for (i, c) in chaos.iter().enumerate() {
        let n = name(i);
        let mine: Vec<&Json> = e
            .iter()
            .filter(|x| x["agent"] == n.as_str() && !x["event"].as_str().is_some_and(is_data))
            .collect();
        let kinds: Vec<&str> = mine.iter().filter_map(|x| x["event"].as_str()).collect();
        let ctx = || format!("{n}: faults {:?}, events {kinds:?}", c.faults);
        assert_eq!(
            kinds.get(..2),
            Some(&["starting", "ready"][..]),
            "{}",
            ctx()
        );
        let mut at = 2;
        // Index in `c.faults` of the last fault matched: matches go forward.
        let mut next_fault = 0;
        let mut kills = 0;
        let mut caught = 0;
        while at < mine.len() {
            let first = mine[at];
            let (fault, died) = match kinds[at] {
                "unresponsive" => {
                    let reason = first["reason"].as_str().unwrap_or("");
                    assert!(
                        reason.contains("stopped"),
                        "{}: unresponsive for another reason than a stop: {first}",
                        ctx()
                    );
                    at += 1;
                    (Fault::Stop, mine.get(at).copied())
                }
                "died" => (Fault::Kill, Some(first)),
                other => panic!("{}: unexpected {other:?} at {at}", ctx()),
            };
            let died = died.unwrap_or_else(|| panic!("{}: no died after {first}", ctx()));
            assert_eq!(died["event"], "died", "{}", ctx());
            let pid = died["pid"].as_u64().unwrap_or(0) as u32;
            let k = c.faults[next_fault..]
                .iter()
                .position(|f| *f == (fault, pid))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: died {died} matches no {fault:?} of this test after #{next_fault}",
                        ctx()
                    )
                });
            // Skipped faults must be stops the supervisor did not catch.
            assert!(
                c.faults[next_fault..next_fault + k]
                    .iter()
                    .all(|(f, _)| *f == Fault::Stop),
                "{}: a kill before {died} has no died event",
                ctx()
            );
            next_fault += k + 1;
            match fault {
                Fault::Kill => {
                    assert_eq!(died["signal"], "SIGKILL", "{}: {died}", ctx());
                    kills += 1;
                }
                Fault::Stop => caught += 1,
            }
            assert_eq!(
                kinds.get(at + 1..at + 4),
                Some(&["restarting", "starting", "ready"][..]),
                "{}: after the died event at {at}",
                ctx()
            );
            at += 4;
        }
        assert!(
            c.faults[next_fault..]
                .iter()
                .all(|(f, _)| *f == Fault::Stop),
            "{}: kills without a died event",
            ctx()
        );
        assert_eq!(kills, c.kills(), "{}", ctx());
        assert_eq!(
            st[&n]["restarts"].as_u64(),
            Some((kills + caught) as u64),
            "{}: restart count is kills ({kills}) + caught stops ({caught})",
            ctx()
        );
        caught_stops += caught;
    }
    eprintln!(
        "supervisor: {} restarts in all ({} after a SIGKILL, {caught_stops} stops caught as state T and restarted)",
        tally.kills as usize + caught_stops,
        tally.kills
    );

    // --- rewrites were swapped in, none failed --------------------------------
    let reloads: Vec<&Json> = e.iter().filter(|x| x["event"] == "data-reloaded").collect();
    let bad: Vec<&&Json> = reloads
        .iter()
        .filter(|x| x["reason"].as_str().is_some_and(|r| r.contains("failed")))
        .collect();
    assert!(bad.is_empty(), "snapshot swaps failed: {bad:?}");
    assert!(
        tally.rewrites_renamed + tally.rewrites_in_place == 0 || !reloads.is_empty(),
        "no data-reloaded event for {tally:?}"
    );

    // --- every agent answers, with its last snapshot --------------------------
    let probe = Request::new(
        Op::Get,
        &[
            ber::parse_oid(LOAD_OID).expect("oid"),
            ber::parse_oid(MARKER_OID).expect("oid"),
        ],
    );
    // A data-reloaded event may come before a later swap of the same burst
    // of writes: asking each agent is what shows what it serves.
    poll_until(
        "every agent to serve its last snapshot",
        Duration::from_secs(15),
        Duration::from_millis(500),
        || {
            let mut stale = BTreeMap::new();
            for (i, target) in targets.iter().enumerate() {
                let mut client =
                    Client::new(*target, Security::community(1, "public")).expect("client socket");
                let a = client
                    .call(&probe, TIMEOUT, RETRIES)
                    .unwrap_or_else(|e| panic!("{} at {target} does not answer: {e}", name(i)));
                assert_eq!(a.error_status, 0, "{}: {a:?}", name(i));
                let got = strings(&a.varbinds);
                let want = vec![
                    LOAD_VALUE.to_string(),
                    format!("gen-{}", chaos[i].generation),
                ];
                if got != want {
                    stale.insert(name(i), format!("serves {got:?}, wants {want:?}"));
                }
            }
            if stale.is_empty() {
                Ok(())
            } else {
                Err(format!("{stale:#?}"))
            }
        },
    );
    eprintln!(
        "end: {AGENTS} agents answer with their last snapshot; {} data-reloaded events",
        reloads.len()
    );
}
