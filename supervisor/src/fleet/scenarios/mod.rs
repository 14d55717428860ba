//! `scenarios:`: scheduled faults. [`Schedule`] is pure (the clock is
//! passed in): one binary heap with one entry per agent and scenario, keyed
//! by the next time it fires, so 10,000 devices flapping every minute are
//! 10,000 entries and one timer, not a task per device. Each occurrence's
//! delay within `jitter` is a hash of the scenario's seed, the agent's name
//! and the occurrence's number: the same file gives the same faults at the
//! same times, whatever else happens. [`run`] is the one task that sleeps
//! until the next entry is due and hands the faults to the manager as
//! operator requests.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use agentcluster_conf::{Fault, Scenario, When};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::control::api::{Handle, Request, Response};

mod resume;
pub use resume::{HandEvent, Origin, in_progress};

/// What the schedule is made from: the scenarios, every agent's name, and
/// the instant their times count from (the start, or the reload that read
/// them; on a cluster node, the push of the fleet).
#[derive(Debug, Clone)]
pub struct Plan {
    /// The scenarios, in file order.
    pub scenarios: Arc<Vec<Scenario>>,
    /// Every agent of the fleet.
    pub agents: Arc<[String]>,
    /// Time zero of the scenarios.
    pub since: Instant,
    /// Occurrences due before this are not fired: a cluster node that
    /// takes an agent over joins its schedule where it is, instead of
    /// replaying what another node already did (`since` when the schedule
    /// starts with the plan).
    pub from: Instant,
    /// A cluster node's time zero as the push gave it (wall clock, shared
    /// by every node); `None` for a fleet read from its own file.
    pub zero: Option<SystemTime>,
    /// Per agent of `agents`: whether the scenarios' faults it has at
    /// `from` are given to it again ([`in_progress`]): on a cluster node,
    /// the agents it did not serve before this plan (moved in from a node
    /// that stopped serving them, whose process and faults ended there).
    pub resume: Arc<[bool]>,
    /// On a cluster node, per agent: what an operator did to it by hand
    /// under this push (etcd keeps it), so that a fault a later request
    /// replaced or cleared is not given back.
    pub hand: ByHand,
}

/// Per agent, what an operator did to it by hand ([`Plan::hand`]).
pub type ByHand = Arc<HashMap<String, Vec<HandEvent>>>;

impl Plan {
    /// The plan of a fleet read from its own file: time zero now.
    pub fn now(scenarios: Arc<Vec<Scenario>>, agents: Arc<[String]>) -> Plan {
        let now = Instant::now();
        Plan {
            resume: vec![false; agents.len()].into(),
            scenarios,
            agents,
            since: now,
            from: now,
            zero: None,
            hand: Arc::default(),
        }
    }

    /// The plan of a cluster node's share: time zero is `zero`, the push's
    /// wall time, the same on every node. `first`: the first plan of this
    /// push on this node, which fires what fell due in the last
    /// [`CATCH_UP`] (while the node took its share); later plans of the
    /// same push (agents moving in or out) fire only what is still to
    /// come, so an agent that stays keeps its schedule and one that moves
    /// in does not replay it. An agent not among `before` (the agents of
    /// the plan this one follows; every agent of a first plan) gets the
    /// faults it has then again, for what is left of them, unless `hand`
    /// (per agent, what an operator did to it) replaced or cleared them.
    pub fn pushed(
        scenarios: Arc<Vec<Scenario>>,
        agents: Arc<[String]>,
        zero: SystemTime,
        first: bool,
        before: &[String],
        hand: ByHand,
    ) -> Plan {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let since = match wall.duration_since(zero) {
            Ok(ago) => now.checked_sub(ago).unwrap_or(now),
            // Pushed from a clock ahead of this one.
            Err(ahead) => now + ahead.duration(),
        };
        let from = if first {
            since.max(now.checked_sub(CATCH_UP).unwrap_or(since))
        } else {
            now
        };
        let served: std::collections::HashSet<&str> = if first {
            std::collections::HashSet::new()
        } else {
            before.iter().map(String::as_str).collect()
        };
        Plan {
            resume: agents
                .iter()
                .map(|a| !served.contains(a.as_str()))
                .collect(),
            scenarios,
            agents,
            since,
            from,
            zero: Some(zero),
            hand,
        }
    }
}

/// How far back a cluster node's first plan of a push fires what fell due
/// before it: about the time a node takes to see a push and start its
/// share. Occurrences due earlier than that are not replayed.
pub const CATCH_UP: Duration = Duration::from_secs(10);

/// One fault due: scenario `scenario` on agent `agent` (indexes into the
/// plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    /// Index of the scenario.
    pub scenario: u32,
    /// Index of the agent.
    pub agent: u32,
    /// An occurrence, or a fault given again.
    pub fire: Fire,
}

/// What a due entry injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fire {
    /// An occurrence: the scenario's fault for its whole `for`.
    Occurrence,
    /// A fault the agent had at [`Plan::from`], given again
    /// ([`Plan::resume`]) until this instant; `None`: until something
    /// clears it (the scenario has no `for`).
    Resume(Option<Instant>),
}

/// A pending entry: when it is due, its scenario, its agent, its
/// occurrence's number, and what it injects.
type Entry = (Instant, u32, u32, u32, Fire);

/// The pending occurrences, earliest first.
#[derive(Debug)]
pub struct Schedule {
    plan: Plan,
    heap: BinaryHeap<Reverse<Entry>>,
}

/// splitmix64: a well-mixed 64-bit hash step.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a of a name: stable across runs and builds (unlike std's hasher).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The delay within `jitter` of occurrence `k` of `s` on agent `name`.
pub fn jitter_of(s: &Scenario, name: &str, k: u32) -> Duration {
    if s.jitter.is_zero() {
        return Duration::ZERO;
    }
    let h = mix(mix(s.seed ^ name_hash(name)) ^ u64::from(k));
    let nanos = s.jitter.as_nanos().min(u128::from(u64::MAX)) as u64;
    Duration::from_nanos(h % (nanos + 1))
}

/// When occurrence `k` (from 0) of `s` fires on agent `name`, from time
/// zero; `None` after the last one.
pub fn offset(s: &Scenario, name: &str, k: u32) -> Option<Duration> {
    let base = match s.when {
        When::At(at) => (k == 0).then_some(at)?,
        When::Every(period) => period.checked_mul(k.checked_add(1)?)?,
    };
    base.checked_add(jitter_of(s, name, k))
}

/// The first occurrence of `s` on agent `name` due at `skip` after time
/// zero or later: its number and offset; `None` when none is.
fn first_from(s: &Scenario, name: &str, skip: Duration) -> Option<(u32, Duration)> {
    // Occurrence k is due in period k + 1, late by less than a period
    // (the jitter fits in it), so the search starts one period early.
    let mut k = match s.when {
        When::Every(period) if !period.is_zero() => {
            let periods = skip.as_nanos() / period.as_nanos();
            u32::try_from(periods.saturating_sub(1)).ok()?
        }
        _ => 0,
    };
    // A few steps at most; bounded all the same.
    for _ in 0..64 {
        let d = offset(s, name, k)?;
        if d >= skip {
            return Some((k, d));
        }
        k = k.checked_add(1)?;
    }
    None
}

/// Which scenarios apply to an agent: their `agents` patterns, compiled
/// once.
pub struct Matcher(Vec<Option<glob::Pattern>>);

impl Matcher {
    /// The patterns of `scenarios`' agents; one that does not parse
    /// matches no agent.
    pub fn new(scenarios: &[Scenario]) -> Matcher {
        Matcher(
            scenarios
                .iter()
                .map(|s| glob::Pattern::new(&s.agents).ok())
                .collect(),
        )
    }

    /// The indexes of the scenarios whose `agents` match `name`, into
    /// `out` (emptied first).
    pub fn matching(&self, name: &str, out: &mut Vec<usize>) {
        out.clear();
        out.extend(
            self.0
                .iter()
                .enumerate()
                .filter(|(_, p)| p.as_ref().is_some_and(|p| p.matches(name)))
                .map(|(si, _)| si),
        );
    }
}

impl Schedule {
    /// Every scenario's first occurrence on every agent it matches, from
    /// [`Plan::from`] on; before it, at `from`, the faults the agents the
    /// plan resumes have then ([`in_progress`]).
    pub fn new(plan: Plan) -> Schedule {
        let mut heap = BinaryHeap::new();
        let skip = plan.from.saturating_duration_since(plan.since);
        let matcher = Matcher::new(&plan.scenarios);
        let mut matching = Vec::with_capacity(plan.scenarios.len());
        for (ai, name) in plan.agents.iter().enumerate() {
            matcher.matching(name, &mut matching);
            for &si in &matching {
                if let Some((k, d)) = first_from(&plan.scenarios[si], name, skip) {
                    let entry = (plan.since + d, si as u32, ai as u32, k, Fire::Occurrence);
                    heap.push(Reverse(entry));
                }
            }
            if plan.resume.get(ai).copied().unwrap_or(false) {
                let hand = plan.hand.get(name).map_or(&[][..], Vec::as_slice);
                // What was injected by hand is given back by the node
                // (`cluster::node`), from the same reckoning.
                for (origin, ends) in in_progress(&plan.scenarios, &matching, name, skip, hand) {
                    if let Origin::Scenario(si) = origin {
                        let fire = Fire::Resume(ends.map(|e| plan.since + e));
                        heap.push(Reverse((plan.from, si as u32, ai as u32, 0, fire)));
                    }
                }
            }
        }
        Schedule { plan, heap }
    }

    /// How many occurrences are pending (one per agent and scenario that
    /// has more to come).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing more is to come.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// When the next occurrence is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, ..))| *at)
    }

    /// Takes every occurrence due at `now` (in time order) and schedules
    /// the next one of each.
    pub fn take_due(&mut self, now: Instant) -> Vec<Due> {
        let mut due = Vec::new();
        while let Some(Reverse((at, si, ai, k, fire))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            due.push(Due {
                scenario: si,
                agent: ai,
                fire,
            });
            if fire != Fire::Occurrence {
                // A fault resumed: its scenario's next occurrence is
                // already in the heap.
                continue;
            }
            let s = &self.plan.scenarios[si as usize];
            let name = &self.plan.agents[ai as usize];
            if let Some(next) = k.checked_add(1)
                && let Some(d) = offset(s, name, next)
            {
                self.heap.push(Reverse((
                    self.plan.since + d,
                    si,
                    ai,
                    next,
                    Fire::Occurrence,
                )));
            }
        }
        due
    }

    /// The plan the schedule was made from.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}

/// The scenarios' task: follows the plan (a reload replaces it) and, as
/// occurrences fall due, asks the manager for their faults — one request
/// per scenario for the agents due together — until `shutdown`.
pub async fn run(mut plans: watch::Receiver<Plan>, handle: Handle, shutdown: CancellationToken) {
    let mut schedule = Schedule::new(plans.borrow_and_update().clone());
    if !schedule.is_empty() {
        tracing::info!(pending = schedule.len(), "scenarios scheduled");
    }
    let mut reported = vec![false; schedule.plan().scenarios.len()];
    loop {
        let next = schedule.next_due();
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = plans.changed() => {
                if changed.is_err() {
                    return;
                }
                schedule = Schedule::new(plans.borrow_and_update().clone());
                reported = vec![false; schedule.plan().scenarios.len()];
                tracing::info!(pending = schedule.len(), "scenarios re-read");
            }
            () = sleep_until(next) => {
                let now = tokio::time::Instant::now().into_std();
                let due = schedule.take_due(now);
                let plan = schedule.plan().clone();
                let mut at = 0;
                while at < due.len() {
                    // One request per scenario for the occurrences due
                    // together; one per fault resumed (each has its own
                    // time left).
                    let (si, fire) = (due[at].scenario, due[at].fire);
                    let end = match fire {
                        Fire::Resume(_) => at + 1,
                        Fire::Occurrence => due[at..]
                            .iter()
                            .position(|d| d.scenario != si || d.fire != Fire::Occurrence)
                            .map_or(due.len(), |n| at + n),
                    };
                    let names: Vec<String> = due[at..end]
                        .iter()
                        .map(|d| plan.agents[d.agent as usize].clone())
                        .collect();
                    at = end;
                    let s = &plan.scenarios[si as usize];
                    let lasts = match fire {
                        Fire::Resume(Some(ends)) if ends <= now => continue,
                        Fire::Resume(Some(ends)) => Some(ends - now),
                        Fire::Resume(None) => None,
                        Fire::Occurrence => s.duration,
                    };
                    let (kind, arg) = split(s.fault);
                    let request = Request::own_fault(names, kind, arg, lasts);
                    let answer = tokio::select! {
                        () = shutdown.cancelled() => return,
                        answer = handle.call(request) => answer,
                    };
                    if let Response::Error { message, .. } = answer {
                        let slot = &mut reported[si as usize];
                        if *slot {
                            tracing::debug!(scenario = si, cause = %message, "scheduled fault refused");
                        } else {
                            *slot = true;
                            tracing::warn!(scenario = si, agents = %s.agents, cause = %message, "scheduled fault refused");
                        }
                    }
                }
            }
        }
    }
}

/// A fault as a request spells it: kind and argument.
pub fn split(fault: Fault) -> (String, Option<String>) {
    let text = fault.to_string();
    match text.split_once(' ') {
        Some((k, a)) => (k.to_string(), Some(a.to_string())),
        None => (text, None),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flap(agents: &str, seed: u64) -> Scenario {
        Scenario {
            agents: agents.into(),
            fault: Fault::LinkDown(2),
            when: When::Every(Duration::from_secs(60)),
            duration: Some(Duration::from_secs(10)),
            jitter: Duration::from_secs(5),
            seed,
        }
    }

    fn plan(scenarios: Vec<Scenario>, n: usize, since: Instant) -> Plan {
        Plan {
            scenarios: Arc::new(scenarios),
            agents: (0..n).map(|i| format!("sw-{i}")).collect(),
            since,
            from: since,
            zero: None,
            resume: vec![false; n].into(),
            hand: ByHand::default(),
        }
    }

    /// Every fire of the first `until` of a schedule: (offset, agent).
    fn fires(plan: Plan, until: Duration) -> Vec<(Duration, u32)> {
        let since = plan.since;
        let mut s = Schedule::new(plan);
        let mut out = Vec::new();
        while let Some(at) = s.next_due() {
            if at > since + until {
                break;
            }
            for d in s.take_due(at) {
                out.push((at - since, d.agent));
            }
        }
        out
    }

    #[test]
    fn the_same_seed_gives_the_same_faults_at_the_same_times() {
        let t0 = Instant::now();
        let a = fires(
            plan(vec![flap("sw-*", 7)], 50, t0),
            Duration::from_secs(605),
        );
        // Another run, another clock: the same offsets.
        let b = fires(
            plan(vec![flap("sw-*", 7)], 50, t0 + Duration::from_secs(3600)),
            Duration::from_secs(605),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 50 * 10, "each agent once a minute");
        // Within its minute, each one late by at most the jitter, and not
        // all alike.
        for (at, _) in &a {
            let into = at.as_secs_f64() % 60.0;
            assert!(into <= 5.0, "{at:?}");
        }
        let firsts: std::collections::HashSet<_> = a[..50].iter().map(|(at, _)| *at).collect();
        assert!(firsts.len() > 40, "the jitter spreads them");
        // Another seed, other times.
        let c = fires(
            plan(vec![flap("sw-*", 8)], 50, t0),
            Duration::from_secs(605),
        );
        assert_ne!(a, c);
    }

    #[test]
    fn at_fires_once_and_a_glob_picks_its_agents() {
        let t0 = Instant::now();
        let once = Scenario {
            agents: "sw-1*".into(),
            fault: Fault::Hang,
            when: When::At(Duration::from_secs(30)),
            duration: None,
            jitter: Duration::ZERO,
            seed: 0,
        };
        let p = plan(vec![once], 12, t0);
        let mut s = Schedule::new(p.clone());
        s.take_due(t0 + Duration::from_secs(30));
        assert!(s.is_empty());
        let got = fires(p, Duration::from_secs(3600));
        // sw-1, sw-10, sw-11, at 30 s, once each; then nothing is left.
        assert_eq!(
            got,
            vec![
                (Duration::from_secs(30), 1),
                (Duration::from_secs(30), 10),
                (Duration::from_secs(30), 11)
            ]
        );
    }

    #[test]
    fn a_schedule_from_later_fires_what_the_whole_one_fires_after_that() {
        let t0 = Instant::now();
        let whole = fires(
            plan(vec![flap("sw-*", 3)], 40, t0),
            Duration::from_secs(3605),
        );
        for skip in [0.0, 59.0, 60.0, 61.5, 1000.25, 3000.0] {
            let skip = Duration::from_secs_f64(skip);
            let later = Plan {
                from: t0 + skip,
                ..plan(vec![flap("sw-*", 3)], 40, t0)
            };
            let got = fires(later, Duration::from_secs(3605));
            let want: Vec<_> = whole
                .iter()
                .filter(|(at, _)| *at >= skip)
                .copied()
                .collect();
            assert_eq!(got, want, "from {skip:?}");
        }
        // Once, and already past: nothing is left to fire.
        let once = Scenario {
            when: When::At(Duration::from_secs(30)),
            jitter: Duration::ZERO,
            ..flap("sw-*", 0)
        };
        let past = Plan {
            from: t0 + Duration::from_secs(31),
            ..plan(vec![once.clone()], 3, t0)
        };
        assert!(Schedule::new(past).is_empty());
        let due = Plan {
            from: t0 + Duration::from_secs(30),
            ..plan(vec![once], 3, t0)
        };
        assert_eq!(Schedule::new(due).len(), 3);
    }

    #[test]
    fn a_pushed_plan_counts_from_the_push_and_catches_up_only_first() {
        let near = |a: Instant, b: Instant| {
            let d = if a > b { a - b } else { b - a };
            d < Duration::from_millis(500)
        };
        let scenarios = Arc::new(vec![flap("sw-*", 1)]);
        let agents: Arc<[String]> = vec!["sw-1".to_string()].into();
        let zero = SystemTime::now() - Duration::from_secs(100);
        let first = Plan::pushed(
            scenarios.clone(),
            agents.clone(),
            zero,
            true,
            &[],
            ByHand::default(),
        );
        let now = Instant::now();
        assert!(near(first.since, now - Duration::from_secs(100)));
        assert!(near(first.from, now - CATCH_UP));
        assert_eq!(first.zero, Some(zero));
        let later = Plan::pushed(
            scenarios.clone(),
            agents.clone(),
            zero,
            false,
            &agents,
            ByHand::default(),
        );
        assert!(near(later.from, Instant::now()));
        // Just pushed: everything from the push on fires.
        let fresh = SystemTime::now() - Duration::from_secs(2);
        let p = Plan::pushed(
            scenarios.clone(),
            agents.clone(),
            fresh,
            true,
            &[],
            ByHand::default(),
        );
        assert_eq!(p.from, p.since);
        // Pushed from a clock ahead of this one: time zero is still to come.
        let ahead = SystemTime::now() + Duration::from_secs(5);
        let p = Plan::pushed(scenarios, agents, ahead, true, &[], ByHand::default());
        assert!(near(p.since, Instant::now() + Duration::from_secs(5)));
        assert_eq!(p.from, p.since);
    }

    /// An agent that moves in (resumed) gets its fault still in progress
    /// at `from` again, first, with its end; the others, and faults that
    /// are over or have no `for`, only their next occurrences.
    #[test]
    fn a_fault_in_progress_resumes_on_an_agent_that_moves_in() {
        let t0 = Instant::now();
        // Every minute for 10 s, late by up to 5 s: at 62.5 s, sw-i's
        // first one is in progress when it fell due before then.
        let skip = Duration::from_millis(62_500);
        let n = 40;
        let moved = |i: usize| i.is_multiple_of(2);
        let p = Plan {
            from: t0 + skip,
            resume: (0..n).map(moved).collect(),
            ..plan(vec![flap("sw-*", 9)], n, t0)
        };
        let s = &p.scenarios[0];
        let mut want = Vec::new();
        for i in 0..n {
            let d = offset(s, &format!("sw-{i}"), 0).unwrap();
            if moved(i) && d < skip {
                want.push((i as u32, t0 + d + Duration::from_secs(10)));
            }
        }
        assert!(
            !want.is_empty() && want.len() < n / 2,
            "some, not all: {want:?}"
        );
        let mut schedule = Schedule::new(p.clone());
        let first: Vec<(u32, Instant)> = schedule
            .take_due(t0 + skip)
            .into_iter()
            .map(|d| match d.fire {
                Fire::Resume(Some(ends)) => (d.agent, ends),
                f => panic!("a resumed fault says when it ends: {f:?}"),
            })
            .collect();
        assert_eq!(first, want);
        // Then the whole schedule from 65 s on, as for anyone.
        let rest = fires(
            Plan {
                from: t0 + skip,
                ..plan(vec![flap("sw-*", 9)], n, t0)
            },
            Duration::from_secs(600),
        );
        let mut after = Vec::new();
        while let Some(at) = schedule.next_due() {
            if at > t0 + Duration::from_secs(600) {
                break;
            }
            for d in schedule.take_due(at) {
                assert_eq!(d.fire, Fire::Occurrence);
                after.push((at - t0, d.agent));
            }
        }
        assert_eq!(after, rest);

        // Without `for`, a fault that fell due lasts: every agent whose
        // first one fell due gets it, until cleared.
        let forever = Scenario {
            duration: None,
            ..flap("sw-*", 9)
        };
        let p = Plan {
            from: t0 + skip,
            resume: vec![true; n].into(),
            ..plan(vec![forever], n, t0)
        };
        let due = Schedule::new(p).take_due(t0 + skip);
        let fell: Vec<u32> = (0..n as u32)
            .filter(|i| offset(s, &format!("sw-{i}"), 0).unwrap() < skip)
            .collect();
        assert!(!fell.is_empty() && fell.len() < n);
        assert_eq!(due.iter().map(|d| d.agent).collect::<Vec<_>>(), fell);
        assert!(due.iter().all(|d| d.fire == Fire::Resume(None)));
        // Once at 30 s for 10 s: in progress at 35 s, over at 40 s.
        let once = Scenario {
            when: When::At(Duration::from_secs(30)),
            jitter: Duration::ZERO,
            ..flap("sw-*", 0)
        };
        for (at, resumed) in [(35, 1), (40, 0), (30, 0)] {
            let p = Plan {
                from: t0 + Duration::from_secs(at),
                resume: vec![true].into(),
                ..plan(vec![once.clone()], 1, t0)
            };
            let due = Schedule::new(p).take_due(t0 + Duration::from_secs(at));
            let got = due.iter().filter(|d| d.fire != Fire::Occurrence).count();
            assert_eq!(got, resumed, "from {at} s");
            if resumed == 1 {
                let ends = t0 + Duration::from_secs(40);
                assert_eq!(due[0].fire, Fire::Resume(Some(ends)));
            }
        }
    }

    /// A resumed agent's plan gives back no scenario fault that a request
    /// by hand ended.
    #[test]
    fn a_plan_gives_back_no_scenario_fault_a_request_by_hand_ended() {
        let s = Duration::from_secs;
        let down = Scenario {
            agents: "*".into(),
            fault: Fault::LinkDown(2),
            when: When::At(s(10)),
            duration: None,
            jitter: Duration::ZERO,
            seed: 0,
        };
        // Its link is up again by hand.
        let t0 = Instant::now();
        let mut p = Plan {
            from: t0 + s(40),
            resume: vec![true].into(),
            ..plan(vec![down], 1, t0)
        };
        assert_eq!(Schedule::new(p.clone()).take_due(t0 + s(40)).len(), 1);
        p.hand = Arc::new(HashMap::from([(
            "sw-0".to_string(),
            vec![HandEvent {
                at: s(25),
                fault: Fault::LinkUp(2),
                ends: None,
            }],
        )]));
        assert!(Schedule::new(p).take_due(t0 + s(40)).is_empty());
    }

    /// A first plan of a push resumes every agent; a later one only the
    /// agents the plan before did not have.
    #[test]
    fn a_pushed_plan_resumes_the_agents_new_to_it() {
        let scenarios = Arc::new(vec![flap("sw-*", 1)]);
        let agents: Arc<[String]> = ["sw-1", "sw-2", "sw-3"].map(String::from).into();
        let zero = SystemTime::now() - Duration::from_secs(100);
        let first = Plan::pushed(
            scenarios.clone(),
            agents.clone(),
            zero,
            true,
            &agents,
            ByHand::default(),
        );
        assert_eq!(*first.resume, [true, true, true]);
        let before = ["sw-2".to_string(), "sw-9".to_string()];
        let later = Plan::pushed(
            scenarios.clone(),
            agents.clone(),
            zero,
            false,
            &before,
            ByHand::default(),
        );
        assert_eq!(*later.resume, [true, false, true]);
        assert!(!Plan::now(scenarios, agents).resume.iter().any(|r| *r));
    }

    /// 10,000 devices flapping every minute: one heap of 10,000 entries,
    /// whatever the hour, and each minute takes each device once.
    #[test]
    fn ten_thousand_flapping_devices_are_ten_thousand_entries() {
        let t0 = Instant::now();
        let mut s = Schedule::new(plan(vec![flap("*", 1)], 10_000, t0));
        assert_eq!(s.len(), 10_000);
        for minute in 1..=60u64 {
            let due = s.take_due(t0 + Duration::from_secs(60 * minute + 5));
            assert_eq!(due.len(), 10_000, "minute {minute}");
            assert_eq!(s.len(), 10_000, "one entry per device, always");
        }
        assert!(s.next_due() > Some(t0 + Duration::from_secs(3600)));
    }
}
