//! Lifecycle events: every state change is one [`Event`], published once on
//! the [`Bus`], which numbers it ([`crate::events::seq`]); the sinks (the
//! journal, KVP, the event stream) subscribe, and a sink that wants few of
//! the events (notifications) taps the bus instead ([`Bus::tap`]), so it
//! never queues, nor loses, what it does not want. A bounded ring keeps the
//! recent ones for replay.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::events::seq::Numbers;
use crate::events::{EventKind, State};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// One lifecycle event, in its JSON form (docs/events.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its number: one more than the event before, across supervisor
    /// restarts (a crash skips some numbers, never repeats one).
    pub seq: u64,
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// The node of the supervisor that published it.
    pub node: String,
    /// The agent, or `""` for supervisor events.
    pub agent: String,
    /// What happened.
    pub event: EventKind,
    /// The process concerned, where there is one.
    pub pid: Option<u32>,
    /// The exit status of a process that exited.
    pub exit_code: Option<i32>,
    /// The signal that ended a process (`SIGKILL`).
    pub signal: Option<String>,
    /// The agent's restarts so far.
    pub restarts: u32,
    /// The state it left the agent (or the supervisor) in.
    pub state: State,
    /// Why, for people.
    pub reason: String,
}

/// What a publisher fills in; the bus adds `seq`, `ts` and `node`.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub agent: String,
    pub event: EventKind,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub restarts: u32,
    pub state: State,
    pub reason: String,
}

impl NewEvent {
    /// An event of `kind` that leaves its agent (or the supervisor) in
    /// `state`; the other fields are empty until set.
    pub fn new(event: EventKind, state: State) -> NewEvent {
        NewEvent {
            agent: String::new(),
            event,
            pid: None,
            exit_code: None,
            signal: None,
            restarts: 0,
            state,
            reason: String::new(),
        }
    }
}

/// How many past events are kept for replay, at least.
pub const RING: usize = 10_000;

/// Events kept for replay per agent of the fleet ([`Bus::keep_for`]): a
/// fleet's start (`starting`, `ready`) or stop stays whole in the ring, so
/// an event stream that reads slower than the burst comes catches up from
/// it without losing an event.
pub const RING_PER_AGENT: usize = 3;

struct Inner {
    numbers: Numbers,
    /// The seq of this run's first event: events before it belong to
    /// earlier runs, which the ring never held.
    first_seq: u64,
    ring: VecDeque<Arc<Event>>,
    /// How many events the ring keeps ([`RING`], or more for a large
    /// fleet: [`Bus::keep_for`]).
    ring_len: usize,
    /// Per sink: when its last `events-dropped` went out, and what it has
    /// dropped since.
    drops: std::collections::HashMap<String, (Option<std::time::Instant>, u64)>,
    /// Hooks called with every event as it is published ([`Bus::tap`]).
    taps: Vec<Tap>,
    /// What the metrics show of the bus.
    tallies: Tallies,
}

/// A sink that can lose events, as the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The Hyper-V KVP pool: events it fell behind on, or could not write.
    Kvp,
    /// The journal: events it fell behind on.
    Journal,
    /// SNMP notifications: events that did not fit a target's queue.
    Notify,
}

impl Sink {
    /// Every sink, in the order of [`Tallies::lost`].
    pub const ALL: [Sink; 3] = [Sink::Kvp, Sink::Journal, Sink::Notify];

    /// Its name (the `sink` label of the metrics).
    pub const fn as_str(self) -> &'static str {
        match self {
            Sink::Kvp => "kvp",
            Sink::Journal => "journal",
            Sink::Notify => "notify",
        }
    }

    const fn index(self) -> usize {
        match self {
            Sink::Kvp => 0,
            Sink::Journal => 1,
            Sink::Notify => 2,
        }
    }
}

/// What the bus has counted since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tallies {
    /// Events published, by kind, in the order of [`EventKind::ALL`].
    pub published: [u64; EventKind::ALL.len()],
    /// Events a sink lost, in the order of [`Sink::ALL`].
    pub lost: [u64; Sink::ALL.len()],
    /// Event streams cut because their subscriber fell behind.
    pub streams_cut: u64,
}

/// A sink's hook into [`Bus::publish`]: called with every event, in `seq`
/// order, as it is published, under the bus's lock — so it must be quick,
/// must never wait, and must not call the bus. Returns whether it wants
/// more events (`false`: the bus forgets it).
pub type Tap = Box<dyn FnMut(&Arc<Event>) -> bool + Send>;

/// `events-dropped` events are at most this frequent per sink, so a sink
/// that keeps losing events cannot flood the others.
pub const DROP_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a sink may take, once the bus is closed, to deliver what it
/// still holds (the KVP pool's last writes, an event stream's last
/// records); a sink that needs longer gives up and says so. A clean stop
/// never waits longer than this for an event to go out.
pub const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The one channel every event goes through.
#[derive(Clone)]
pub struct Bus {
    node: String,
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<Arc<Event>>,
    /// Cancelled once the last event is published: sinks deliver what they
    /// still hold, then end.
    closed: CancellationToken,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("node", &self.node).finish()
    }
}

impl Bus {
    /// A bus whose events are numbered from 1, kept nowhere.
    #[cfg(test)]
    pub fn new(node: &str) -> Bus {
        Bus::with_numbers(node, Numbers::in_memory())
    }

    /// The supervisor's bus: its numbers go on from the last run's, kept
    /// in `state_dir` ([`crate::events::seq`]), and start at `floor` at
    /// least.
    pub fn persistent(node: &str, state_dir: &std::path::Path, floor: u64) -> std::io::Result<Bus> {
        Ok(Bus::with_numbers(node, Numbers::open(state_dir, floor)?))
    }

    fn with_numbers(node: &str, numbers: Numbers) -> Bus {
        let (tx, _) = broadcast::channel(4096);
        Bus {
            node: node.to_string(),
            inner: Arc::new(Mutex::new(Inner {
                first_seq: numbers.next(),
                numbers,
                ring: VecDeque::with_capacity(1024),
                ring_len: RING,
                drops: std::collections::HashMap::new(),
                taps: Vec::new(),
                tallies: Tallies::default(),
            })),
            tx,
            closed: CancellationToken::new(),
        }
    }

    /// Says that no event follows: the next run's numbers start right
    /// after the last one, and the sinks deliver what they hold and end.
    pub fn close(&self) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .numbers
            .close();
        self.closed.cancel();
    }

    /// Cancelled when the bus is closed (see [`Bus::close`]).
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Publishes an event: numbered, kept in the ring, sent to subscribers
    /// and logged.
    pub fn publish(&self, e: NewEvent) -> Arc<Event> {
        let event = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let event = Arc::new(Event {
                seq: inner.numbers.take(),
                ts: rfc3339_millis(SystemTime::now()),
                node: self.node.clone(),
                agent: e.agent,
                event: e.event,
                pid: e.pid,
                exit_code: e.exit_code,
                signal: e.signal,
                restarts: e.restarts,
                state: e.state,
                reason: e.reason,
            });
            if let Some(i) = EventKind::ALL.iter().position(|k| *k == event.event) {
                inner.tallies.published[i] += 1;
            }
            while inner.ring.len() >= inner.ring_len {
                inner.ring.pop_front();
            }
            inner.ring.push_back(event.clone());
            // Sent under the lock so subscribers (and taps) see seq order.
            inner.taps.retain_mut(|tap| tap(&event));
            let _ = self.tx.send(event.clone());
            event
        };
        tracing::info!(
            agent = %event.agent,
            event = %event.event,
            pid = event.pid,
            state = %event.state,
            restarts = event.restarts,
            seq = event.seq,
            "{}",
            event.reason
        );
        event
    }

    /// `sink` (named `name` for people) lost `n` events (it fell behind,
    /// or its queue was full): counted, and published as an
    /// `events-dropped` event of its own, at most once per
    /// [`DROP_REPORT_EVERY`] per name (what is dropped in between is added
    /// to the next one).
    pub fn report_dropped(&self, sink: Sink, name: &str, n: u64) {
        let now = std::time::Instant::now();
        let due = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.tallies.lost[sink.index()] += n;
            let entry = inner.drops.entry(name.to_string()).or_insert((None, 0));
            entry.1 += n;
            if entry
                .0
                .is_none_or(|t| now.duration_since(t) >= DROP_REPORT_EVERY)
            {
                entry.0 = Some(now);
                Some(std::mem::take(&mut entry.1))
            } else {
                None
            }
        };
        if let Some(total) = due {
            self.publish(NewEvent {
                reason: format!("{name}: {total} events not delivered (the sink fell behind)"),
                ..NewEvent::new(EventKind::EventsDropped, State::Running)
            });
        }
    }

    /// `sink` lost `n` events that it reports otherwise (a KVP write that
    /// failed is logged): counted only.
    pub fn count_lost(&self, sink: Sink, n: u64) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tallies
            .lost[sink.index()] += n;
    }

    /// An event stream was cut because its subscriber fell behind.
    pub fn count_stream_cut(&self) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tallies
            .streams_cut += 1;
    }

    /// What the bus has counted so far.
    pub fn tallies(&self) -> Tallies {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tallies
    }

    /// Keeps enough events for replay for a fleet of `agents`: at least
    /// [`RING`], and [`RING_PER_AGENT`] per agent, so a fleet's start burst
    /// stays whole in the ring. Never shrinks.
    pub fn keep_for(&self, agents: usize) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.ring_len = inner.ring_len.max(agents.saturating_mul(RING_PER_AGENT));
    }

    /// How many events the ring keeps.
    pub fn ring_len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ring_len
    }

    /// [`Bus::tap`], after handing `tap` the events still in the ring, at
    /// one instant: a sink that starts after the first events were
    /// published gets each event once, in order.
    pub fn tap_with_ring(&self, mut tap: Tap) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let wants = inner.ring.iter().all(&mut tap);
        if wants {
            inner.taps.push(tap);
        }
    }

    /// Hands every event published from now on to `tap`, at once and in
    /// order, with no queue in between: a sink that filters and counts in
    /// its tap queues only what it keeps, so a burst of events it does not
    /// want can neither fill its queue nor make it lag (see [`Tap`]).
    pub fn tap(&self, tap: Tap) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .taps
            .push(tap);
    }

    /// A queue of every event published from now on (4,096 deep: a
    /// subscriber that falls further behind loses the oldest and is told
    /// how many).
    #[cfg(test)]
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// A subscription and the replay from `since`, taken at one instant:
    /// every event is either in [`Follow::kept`] or comes on
    /// [`Follow::live`], never both, never neither.
    pub fn follow(&self, since: u64) -> Follow {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // Under the lock `publish` sends under: no event in between.
        let live = self.tx.subscribe();
        let (kept, gap) = Self::replay_locked(&inner, since);
        Follow {
            live,
            kept,
            gap,
            next: inner.numbers.next(),
        }
    }

    /// The next events of a subscriber that read slower than they came:
    /// at most `max` of those kept from `since` on, and, when they reach
    /// the newest, a subscription to what follows them (taken at the same
    /// instant, like [`Bus::follow`]). `None` when the ring no longer holds
    /// `since`: the subscriber fell further behind than the ring keeps.
    pub fn catch_up(&self, since: u64, max: usize) -> Option<CatchUp> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let next = inner.numbers.next();
        let first = inner.ring.front().map_or(next, |e| e.seq);
        if since < first && first > inner.first_seq {
            return None;
        }
        // Seqs are consecutive in the ring: `since` is found by its offset.
        let from = usize::try_from(since.saturating_sub(first)).unwrap_or(usize::MAX);
        let kept: Vec<Arc<Event>> = inner.ring.iter().skip(from).take(max).cloned().collect();
        let done = kept.last().is_none_or(|e| e.seq + 1 >= next);
        Some(CatchUp {
            kept,
            live: done.then(|| self.tx.subscribe()),
        })
    }

    /// Events with `seq >= since` still in the ring, and whether some of
    /// this run's events at or after `since` were already dropped from it
    /// (events of earlier runs were never in it: no gap for those).
    pub fn replay(&self, since: u64) -> (Vec<Arc<Event>>, bool) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Self::replay_locked(&inner, since)
    }

    fn replay_locked(inner: &Inner, since: u64) -> (Vec<Arc<Event>>, bool) {
        let first = inner.ring.front().map_or(inner.numbers.next(), |e| e.seq);
        let gap = since < first && first > inner.first_seq;
        let events = inner
            .ring
            .iter()
            .filter(|e| e.seq >= since)
            .cloned()
            .collect();
        (events, gap)
    }
}

/// A subscription to the bus with the replay that precedes it
/// ([`Bus::follow`]).
#[derive(Debug)]
pub struct Follow {
    /// The events published from [`Follow::next`] on.
    pub live: broadcast::Receiver<Arc<Event>>,
    /// The events kept with `seq >= since` and below [`Follow::next`].
    pub kept: Vec<Arc<Event>>,
    /// Events at or after `since` already left the ring.
    pub gap: bool,
    /// The seq of the first event `live` brings.
    pub next: u64,
}

/// The next events of a subscriber that fell behind ([`Bus::catch_up`]).
#[derive(Debug)]
pub struct CatchUp {
    /// Events from the `since` asked for on, in order.
    pub kept: Vec<Arc<Event>>,
    /// The events after the last of [`CatchUp::kept`], once those reach
    /// the newest; `None` while more are kept.
    pub live: Option<broadcast::Receiver<Arc<Event>>>,
}

/// `2026-11-22T12:00:00.123Z`
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_348_800_123);
        assert_eq!(rfc3339_millis(t), "2026-11-22T12:00:00.123Z");
        assert_eq!(
            rfc3339_millis(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_millis(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn dropped_events_are_reported_at_most_every_ten_seconds_per_sink() {
        let bus = Bus::new("lab-a");
        bus.report_dropped(Sink::Kvp, "kvp", 3);
        bus.report_dropped(Sink::Kvp, "kvp", 4);
        bus.report_dropped(Sink::Notify, "notify 127.0.0.1:162", 1);
        let (events, _) = bus.replay(1);
        let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "kvp: 3 events not delivered (the sink fell behind)",
                "notify 127.0.0.1:162: 1 events not delivered (the sink fell behind)"
            ]
        );
        assert!(events.iter().all(|e| e.event == EventKind::EventsDropped));
        // Every loss is counted, reported or not; so is each event by kind.
        bus.count_lost(Sink::Kvp, 2);
        bus.count_stream_cut();
        let t = bus.tallies();
        assert_eq!(t.lost, [9, 0, 1]);
        assert_eq!(t.streams_cut, 1);
        let dropped = EventKind::ALL
            .iter()
            .position(|k| *k == EventKind::EventsDropped)
            .unwrap();
        assert_eq!(t.published[dropped], 2);
        assert_eq!(t.published.iter().sum::<u64>(), 2);
    }

    /// A supervisor restarted on the same state directory numbers on: after
    /// a clean stop from the next number, after a crash from past the
    /// reserved block; events of earlier runs are no gap in the replay.
    #[test]
    fn numbers_go_on_across_runs_of_a_persistent_bus() {
        let dir = tempfile::tempdir().unwrap();
        let run = |floor: u64| Bus::persistent("lab-a", dir.path(), floor).unwrap();
        let first = run(0);
        for _ in 0..3 {
            first.publish(NewEvent::new(EventKind::Ready, State::Running));
        }
        first.close();
        let second = run(0);
        let e = second.publish(NewEvent::new(EventKind::SupervisorStarted, State::Running));
        assert_eq!(e.seq, 4);
        let (events, gap) = second.replay(1);
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [4]);
        assert!(!gap, "earlier runs' events are not a gap");
        // Killed: the next run starts past the block it had reserved.
        drop(second);
        let third = run(0);
        let e = third.publish(NewEvent::new(EventKind::SupervisorStarted, State::Running));
        assert_eq!(e.seq, 4 + crate::events::seq::BLOCK);
        // A higher floor (a KVP pool's) wins.
        third.close();
        let fourth = run(5000);
        let e = fourth.publish(NewEvent::new(EventKind::SupervisorStarted, State::Running));
        assert_eq!(e.seq, 5000);
    }

    #[test]
    fn a_tap_sees_every_event_in_order_until_it_lets_go() {
        let bus = Bus::new("lab-a");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        bus.tap(Box::new(move |e| {
            let mut log = log.lock().unwrap();
            log.push(e.seq);
            log.len() < 3
        }));
        for _ in 0..5 {
            bus.publish(NewEvent::new(EventKind::Ready, State::Running));
        }
        assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
    }

    #[test]
    fn events_are_numbered_and_replayed_in_order() {
        let bus = Bus::new("lab-a");
        let mut rx = bus.subscribe();
        for i in 0..3 {
            bus.publish(NewEvent {
                agent: format!("a{i}"),
                ..NewEvent::new(EventKind::Ready, State::Running)
            });
        }
        let seqs: Vec<u64> = (0..3).map(|_| rx.try_recv().unwrap().seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        let (events, gap) = bus.replay(2);
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
        assert!(!gap);
        assert_eq!(events[0].node, "lab-a");
    }
}
