//! The notification sink under the burst of a large fleet's start and stop
//! (4,001 agents: 40 processes of 100, and `victim` alone in one), with
//! the real binary and a real `snmptrapd`:
//!
//! - with no notification target, nothing is lost and nothing reported;
//! - a target that wants `died` only is handed nothing else: no loss, and a
//!   kill of one agent is exactly its `agentDied`;
//! - a target that wants everything gets the documented summary of the
//!   start (100 of each kind one by one, then one summary per kind per
//!   10 s that counts the rest; docs/events.md, "Bursts"), a later `died`
//!   on its own, and an inform target that is down spools hundreds of
//!   informs, not the thousands of events.
//!
//! - a reload that adds 5,000 agents (processes of 1,000) while an event
//!   stream reads nothing: once it reads, it gets every event, `seq` after
//!   `seq`; the KVP pool gets 100 records of each routine kind and
//!   summaries for the rest, and a process killed later has each of its
//!   agents' `died` in it.
//!
//! Waits are on the ready line, the event stream, snmptrapd's log (a trap
//! of the test's own marks how far it is) and the supervisor's exit.

use crate::harness::imports::{DEFAULT_MIB_ROOT, Signal};
use crate::harness::trapd::Trapd;
use crate::harness::{
    Fleet, agentcluster, alone, free_block, free_port, is, kill, mib, pid_of, tempdir,
};

/// Agents in the template; with `victim`, one more.
const AGENTS: u16 = 4000;
/// Sent one by one per kind before the rest is counted (coalesce::POLICY).
const SINGLES: usize = 100;

/// `events:` (may be empty), then 4,000 agents in processes of 100 and
/// `victim`, alone in its process; none sends a coldStart of its own.
fn fleet_yaml(events: &str) -> String {
    let base = free_block(AGENTS);
    format!(
        "  agents_per_process: 100\n{events}agents:\n  - name: \"k-{{i}}\"\n    count: {AGENTS}\n    listen: [\"127.0.0.1:{{i+{base}}}\"]\n    data: {data}\n    snmpv2c: {{ communities: [public] }}\n    notify: none\n  - name: victim\n    listen: [\"127.0.0.1:{}\"]\n    data: {data}\n    snmpv2c: {{ communities: [public] }}\n    notify: none\n",
        free_port(),
        data = mib("linux-host.snmprec").display()
    )
}

/// The default MIB root, dotted with a leading dot, as snmptrapd logs it.
fn root() -> String {
    let arcs: Vec<String> = DEFAULT_MIB_ROOT.iter().map(u32::to_string).collect();
    format!(".{}", arcs.join("."))
}

/// The AGENTCLUSTER-MIB notification number of a logged line, if it is
/// one.
fn number(line: &str) -> Option<u32> {
    let prefix = format!(".1.3.6.1.6.3.1.1.4.1.0 = OID: {}.0.", root());
    line.split('\t')
        .find_map(|vb| vb.split_once(&prefix).map(|(_, n)| n.parse().ok()))
        .flatten()
}

/// The value of `acNotify*` object `n` in a logged line (a string's without
/// its quotes; snmptrapd logs an empty one as `""`, without a type).
fn object(line: &str, n: u32) -> String {
    let prefix = format!("{}.1.1.{n}.0 = ", root());
    let value = line
        .split('\t')
        .find_map(|vb| vb.split_once(&prefix).map(|(_, v)| v))
        .unwrap_or_else(|| panic!("no acNotify object {n} in {line}"));
    match value.strip_prefix("STRING: ") {
        Some(s) => s.trim_matches('"').to_string(),
        None if value == "\"\"" => String::new(),
        None => value.to_string(),
    }
}

/// What a stopped supervisor's log says about lost events, if anything.
fn losses(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.contains("events-dropped")
                || l.contains("events lost")
                || l.contains("not delivered")
                || l.contains("notifications dropped")
        })
        .take(5)
        .collect()
}

/// Kills `victim` and waits until it is back, from `fleet`'s events.
fn kill_victim(fleet: &Fleet) -> u32 {
    let old = pid_of(&fleet.status(), "victim");
    let mut events = fleet.follow(fleet.next_seq());
    kill(old, Signal::SIGKILL);
    events.wait("victim back", |e| is(e, "victim", "ready"));
    old
}

#[test]
fn a_start_burst_without_targets_loses_nothing() {
    let _alone = alone();
    let fleet = Fleet::start(&fleet_yaml(""));
    assert_eq!(fleet.status().len(), usize::from(AGENTS) + 1);
    let (code, stderr) = fleet.stop();
    assert!(code.success(), "{code:?}");
    assert_eq!(losses(&stderr), Vec::<&str>::new());
}

#[test]
fn a_target_that_wants_died_is_handed_nothing_else() {
    let _alone = alone();
    let trapd = Trapd::start("authCommunity log public\n");
    let events = format!(
        "events:\n  notify:\n    - {{ target: \"127.0.0.1:{}\", version: 2c, community: public, type: trap, events: [died] }}\n",
        trapd.port
    );
    let fleet = Fleet::start(&fleet_yaml(&events));
    let old = kill_victim(&fleet);
    let died = trapd.expect(&format!("{}.0.3\t", root()));
    assert_eq!(object(&died, 1), "victim", "{died}");
    assert_eq!(object(&died, 2), format!("Gauge32: {old}"), "{died}");
    let (code, stderr) = fleet.stop();
    assert!(code.success());
    assert_eq!(losses(&stderr), Vec::<&str>::new());
    // Everything the supervisor sent is logged by now: its one trap.
    trapd.sync();
    let ours: Vec<String> = trapd
        .logged()
        .into_iter()
        .filter(|l| number(l).is_some())
        .collect();
    assert_eq!(ours, [died], "exactly the victim's agentDied");
}

/// What a target that wants everything received of one kind at start.
#[derive(Debug, Default)]
struct Seen {
    /// Agents named one by one.
    singles: Vec<String>,
    /// Events counted by the summaries.
    summarized: usize,
    summaries: usize,
}

impl Seen {
    fn total(&self) -> usize {
        self.singles.len() + self.summarized
    }

    /// Takes a logged notification of this kind.
    fn take(&mut self, line: &str) {
        let agent = object(line, 1);
        if !agent.is_empty() {
            self.singles.push(agent);
            return;
        }
        // summary: N more KIND events since TS (seq A to B), not sent one by one
        let reason = object(line, 7);
        let n: usize = reason
            .strip_prefix("summary: ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a notification without an agent is a summary: {line}"));
        let (_, range) = reason.split_once("(seq ").expect("its seq range");
        let last = range
            .split(' ')
            .nth(2)
            .unwrap_or_default()
            .trim_end_matches("),");
        assert_eq!(object(line, 9), format!("Gauge32: {last}"), "{line}");
        assert_eq!(object(line, 2), "Gauge32: 0", "no pid: {line}");
        assert!(reason.ends_with(", not sent one by one"), "{line}");
        self.summarized += n;
        self.summaries += 1;
    }
}

#[test]
fn a_start_burst_is_summarized_and_a_later_died_is_not() {
    let _alone = alone();
    let trapd = Trapd::start("authCommunity log public\n");
    // An inform target nobody answers: what it is handed stays spooled.
    let events = format!(
        "events:\n  notify:\n    - {{ target: \"127.0.0.1:{}\", version: 2c, community: public, type: trap }}\n    - {{ target: \"127.0.0.1:{}\", version: 2c, community: public, type: inform, retries: 0, timeout: 1s }}\n",
        trapd.port,
        free_port()
    );
    // Its state directory outlives the run, to be read after it.
    let dir = tempdir();
    let (config, state) = (dir.path().join("fleet.yaml"), dir.path().join("state"));
    let control = dir.path().join("control.sock").display().to_string();
    std::fs::write(
        &config,
        format!(
            "cluster:\n  cache_dir: {}\n  state_dir: {}\n  control_socket: {control}\n{}",
            dir.path().join("cache").display(),
            state.display(),
            fleet_yaml(&events)
        ),
    )
    .unwrap();
    let fleet = Fleet::run(&config, &control);
    let all = usize::from(AGENTS) + 1;
    let (mut starting, mut ready) = (Seen::default(), Seen::default());
    let mut others = Vec::new();
    while starting.total() < all || ready.total() < all {
        let Some(line) = trapd.next(std::time::Duration::from_secs(30)) else {
            panic!(
                "the start's notifications stopped short: starting {starting:?}, ready {ready:?}"
            );
        };
        match number(&line) {
            Some(12) => starting.take(&line),
            Some(1) => ready.take(&line),
            Some(n) => others.push((n, line)),
            None => {}
        }
    }
    for (what, seen) in [("starting", &starting), ("ready", &ready)] {
        assert_eq!(seen.total(), all, "{what}: {seen:?}");
        assert_eq!(seen.singles.len(), SINGLES, "{what}: {seen:?}");
        assert!((1..=30).contains(&seen.summaries), "{what}: {seen:?}");
    }
    assert_eq!(
        others.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [8],
        "besides them only supervisorStarted: {others:?}"
    );
    // A died after the start goes out on its own, naming the agent.
    let old = kill_victim(&fleet);
    let died = trapd.expect(&format!("{}.0.3\t", root()));
    assert_eq!(object(&died, 1), "victim", "{died}");
    assert_eq!(object(&died, 2), format!("Gauge32: {old}"), "{died}");
    let (code, stderr) = fleet.stop();
    assert!(code.success());
    assert_eq!(losses(&stderr), Vec::<&str>::new());
    // The spool of the inform target holds the summaries' share of the
    // start and the stop, not one inform per event (8,000 and more).
    let spooled: usize = std::fs::read_dir(state.join("informs"))
        .expect("the inform spool")
        .flatten()
        .map(|f| {
            std::fs::read_to_string(f.path())
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("\"op\":\"add\""))
                .count()
        })
        .sum();
    assert!(
        (2 * SINGLES..1000).contains(&spooled),
        "{spooled} informs spooled"
    );
    eprintln!(
        "a start of {all} agents: {} + {} summaries of starting, {} + {} of ready; \
         {spooled} informs spooled to the target that is down",
        starting.singles.len(),
        starting.summaries,
        ready.singles.len(),
        ready.summaries
    );
}

/// The fleet of [`a_burst_reaches_a_slow_stream_whole_and_the_pool_summarized`]
/// at first: `seed`, alone, in processes of 1,000, with a KVP pool.
fn seed_yaml(pool: &std::path::Path) -> String {
    format!(
        "  agents_per_process: 1000\nevents:\n  kvp:\n    path: {}\n    max_records: 100000\nagents:\n  - name: seed\n    listen: [\"127.0.0.1:{}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n    notify: none\n",
        pool.display(),
        free_port(),
        mib("linux-host.snmprec").display()
    )
}

/// The agents it grows by: `more` agents `b-N` on ports from `base`.
fn more_yaml(base: u16, more: u16) -> String {
    format!(
        "  - name: \"b-{{i}}\"\n    count: {more}\n    listen: [\"127.0.0.1:{{i+{base}}}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n    notify: none\n",
        mib("linux-host.snmprec").display()
    )
}

#[test]
fn a_burst_reaches_a_slow_stream_whole_and_the_pool_summarized() {
    const MORE: u16 = 5000;
    let _alone = alone();
    let pool_dir = tempdir();
    let pool = pool_dir.path().join("kvp_pool_1");
    let base = free_block(MORE);
    let fleet = Fleet::start(&seed_yaml(&pool));
    // The reload only adds agents.
    let config = std::fs::read_to_string(fleet.config()).unwrap();
    let grown = config + &more_yaml(base, MORE);
    let since = fleet.next_seq();
    // Subscribed before the burst, read only after it.
    let mut slow = fleet.follow(since);
    let mut prompt = fleet.follow(since);
    std::fs::write(fleet.config(), grown).unwrap();
    let out = agentcluster(&["reload", "--control", &fleet.control()]);
    assert!(out.status.success(), "{out:?}");
    // Counts as it reads (the streams are long: no rescan per event).
    let all_ready = || {
        let (mut upto, mut ready) = (0, 0);
        move |seen: &[serde_json::Value]| {
            ready += seen[upto..]
                .iter()
                .filter(|e| {
                    e["event"] == "ready"
                        && e["agent"].as_str().is_some_and(|a| a.starts_with("b-"))
                })
                .count();
            upto = seen.len();
            ready == usize::from(MORE)
        }
    };
    prompt.wait_all("every added agent ready", all_ready());
    // Now the slow subscriber reads: every event, none skipped (a gap or
    // overflow record fails the read).
    let seen = slow.wait_all("every added agent ready", all_ready());
    let seqs: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs.first(), Some(&since));
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "the slow stream skipped events"
    );
    // A process of 1,000 agents killed: each agent's `died` is its own
    // record.
    let victim = pid_of(&fleet.status(), "b-0");
    let before = slow.wait_all("nothing more", |_| true).len();
    kill(victim, Signal::SIGKILL);
    let died = slow.wait_all("the killed process's agents died and back", {
        let mut upto = before;
        move |seen| {
            let back = seen[upto..].iter().any(|e| is(e, "b-0", "ready"));
            upto = seen.len();
            back
        }
    })[before..]
        .iter()
        .filter(|e| e["event"] == "died")
        .count();
    assert!(died >= 1000, "{died} died events");
    let (code, stderr) = fleet.stop();
    assert!(code.success(), "{code:?}");
    assert_eq!(losses(&stderr), Vec::<&str>::new());

    let path = pool.display().to_string();
    let out = agentcluster(&["kvp", "dump", "--reassemble", "--json", &path]);
    assert!(out.status.success(), "{out:?}");
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| serde_json::from_str(r["value"].as_str().unwrap()).unwrap())
        .collect();
    let of = |kind: &'static str| records.iter().filter(move |e| e["event"] == kind);
    for kind in ["starting", "ready"] {
        let singles = of(kind).filter(|e| e["agent"] != "").count();
        let counted: usize = of(kind)
            .filter(|e| e["agent"] == "")
            .map(|e| {
                let reason = e["reason"].as_str().unwrap();
                assert!(reason.ends_with(", not written one by one"), "{reason}");
                reason
                    .strip_prefix("summary: ")
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or_else(|| panic!("{reason}"))
            })
            .sum();
        // The seed's, the added agents', the killed process's restart.
        assert!(
            singles <= 3 * SINGLES,
            "{kind}: {singles} records one by one"
        );
        assert!(
            singles + counted > usize::from(MORE) + 1000,
            "{kind}: {singles} records and {counted} summarized"
        );
    }
    assert_eq!(of("died").count(), died, "each died is its own record");
    eprintln!(
        "a reload adding {MORE} agents: {} KVP records for {} events",
        records.len(),
        seqs.len() + died
    );
}
