//! What a sink is spared in a burst (a notification target, the journal,
//! the KVP pool; docs/events.md, "Bursts"): per event kind, in
//! windows of [`Policy::every`], the first [`Policy::singles`] events of a
//! kind go out one by one; the rest of the window's events of that kind are
//! counted, and when the window ends they go out as one summary — the
//! kind's own notification, with no agent, saying how many it stands for
//! (`summary: 4900 more ready events since …`); each sink says in its
//! [`Policy::unsaid`] what became of them. While a burst goes on
//! (a window ended with a summary), the next window starts at once and
//! sends no singles: one summary per kind per window. A window in which
//! nothing of its kind came ends the burst. Only the routine kinds are
//! summarized ([`summarized`]); a failure (`died`, `failed`,
//! `unresponsive`, `start-failed`) and the supervisor's own events always
//! go out one by one.
//!
//! Pure: the clock is passed in, so the tests step it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::{Event, EventKind};

/// How a target is spared a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Events of one kind sent one by one per window, before counting.
    pub(crate) singles: u32,
    /// How long a window lasts: a burst sends one summary per kind this
    /// often.
    pub(crate) every: Duration,
    /// The end of a summary's reason: how the sink left the events out
    /// (`not sent one by one`).
    pub(crate) unsaid: &'static str,
}

/// What every notification target gets (docs/events.md, "Bursts").
pub(crate) const POLICY: Policy = Policy {
    singles: 100,
    every: Duration::from_secs(10),
    unsaid: "not sent one by one",
};

/// What the journal and the KVP pool get: the same windows; each event
/// left out is on the event stream (docs/events.md, "Bursts").
pub(crate) const WRITTEN: Policy = Policy {
    unsaid: "not written one by one",
    ..POLICY
};

/// Whether events of `kind` may be summarized in a burst: the routine
/// steps of many agents at once (a start, a stop, a reload, a restart after
/// a failure that is itself reported one by one). Never a failure of an
/// agent, nor an event of the supervisor.
pub(crate) fn summarized(kind: EventKind) -> bool {
    match kind {
        EventKind::Starting
        | EventKind::Ready
        | EventKind::Restarting
        | EventKind::Stopped
        | EventKind::ConfigChanged
        | EventKind::DataReloaded
        | EventKind::FaultInjected
        | EventKind::FaultCleared => true,
        EventKind::StartFailed
        | EventKind::Died
        | EventKind::Unresponsive
        | EventKind::Failed
        | EventKind::ReloadFailed
        | EventKind::SupervisorStarted
        | EventKind::SupervisorStopping
        | EventKind::EventsDropped
        // Already one event per batch of agents (docs/scale-out.md).
        | EventKind::NodeJoined
        | EventKind::NodeLeft
        | EventKind::Assigned
        | EventKind::Released => false,
    }
}

/// What becomes of an offered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it.
    Send,
    /// Send it; it opened a window, which ends at this instant.
    Opened(Instant),
    /// Counted: a summary will stand for it.
    Counted,
}

/// One kind's window.
#[derive(Debug)]
struct Window {
    end: Instant,
    /// Events sent one by one in it.
    singles: u32,
    counted: Option<Counted>,
}

/// The events a window counted.
#[derive(Debug)]
struct Counted {
    n: u64,
    first_seq: u64,
    first_ts: String,
    last: Arc<Event>,
}

/// One target's windows.
#[derive(Debug)]
pub(crate) struct Coalescer {
    policy: Policy,
    windows: BTreeMap<EventKind, Window>,
}

impl Coalescer {
    pub(crate) fn new(policy: Policy) -> Coalescer {
        Coalescer {
            policy,
            windows: BTreeMap::new(),
        }
    }

    /// Decides about `e`, which comes at `now`. Call [`Coalescer::due`]
    /// first, so that a window that has ended is summarized before it.
    pub(crate) fn offer(&mut self, e: &Arc<Event>, now: Instant) -> Verdict {
        if !summarized(e.event) {
            return Verdict::Send;
        }
        let w = match self.windows.get_mut(&e.event) {
            Some(w) if now < w.end => w,
            _ => {
                let end = now + self.policy.every;
                self.windows.insert(
                    e.event,
                    Window {
                        end,
                        singles: 1,
                        counted: None,
                    },
                );
                return Verdict::Opened(end);
            }
        };
        if w.singles < self.policy.singles {
            w.singles += 1;
            return Verdict::Send;
        }
        match &mut w.counted {
            Some(c) => {
                c.n += 1;
                c.last = e.clone();
            }
            None => {
                w.counted = Some(Counted {
                    n: 1,
                    first_seq: e.seq,
                    first_ts: e.ts.clone(),
                    last: e.clone(),
                });
            }
        }
        Verdict::Counted
    }

    /// Ends the windows that are over at `now`: the summaries of those that
    /// counted events (in the order of the kinds), the next window of each
    /// such burst begun where the last one ended.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Event> {
        let mut out = Vec::new();
        let every = self.policy.every;
        let singles = self.policy.singles;
        self.windows.retain(|&kind, w| {
            while w.end <= now {
                let Some(c) = w.counted.take() else {
                    // Nothing came beyond the singles: no burst (any more).
                    return false;
                };
                out.push(summary(kind, &c, self.policy.unsaid));
                // The burst goes on: the next window sends no singles.
                w.end += every;
                w.singles = singles;
            }
            true
        });
        out
    }

    /// When the next window ends, if one is open.
    pub(crate) fn next_end(&self) -> Option<Instant> {
        self.windows.values().map(|w| w.end).min()
    }

    /// The summaries of every window that counted events, now (at
    /// shutdown: nothing counted is left unsaid); every window is closed.
    pub(crate) fn drain(&mut self) -> Vec<Event> {
        let out = self
            .windows
            .iter_mut()
            .filter_map(|(&kind, w)| {
                w.counted
                    .take()
                    .map(|c| summary(kind, &c, self.policy.unsaid))
            })
            .collect();
        self.windows.clear();
        out
    }
}

/// The event a summary is sent as: the kind's own notification, with no
/// agent, pid, restarts, exit or signal; the state and `seq` of the last
/// event it stands for; and a reason that says how many, since when, and
/// which numbers, ending with `unsaid`.
fn summary(kind: EventKind, c: &Counted, unsaid: &str) -> Event {
    let last = &c.last;
    Event {
        seq: last.seq,
        ts: last.ts.clone(),
        node: last.node.clone(),
        agent: String::new(),
        event: kind,
        pid: None,
        exit_code: None,
        signal: None,
        restarts: 0,
        state: last.state,
        reason: format!(
            "summary: {} more {kind} events since {} (seq {} to {}), {unsaid}",
            c.n, c.first_ts, c.first_seq, last.seq
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::State;

    const P: Policy = Policy {
        singles: 3,
        every: Duration::from_secs(10),
        unsaid: "not sent one by one",
    };

    fn event(seq: u64, kind: EventKind) -> Arc<Event> {
        Arc::new(Event {
            seq,
            ts: format!("t{seq}"),
            node: "lab-a".into(),
            agent: format!("a{seq}"),
            event: kind,
            pid: Some(100 + seq as u32),
            exit_code: None,
            signal: None,
            restarts: 1,
            state: State::Running,
            reason: "handshake complete".into(),
        })
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn a_few_events_go_out_one_by_one() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(P);
        assert_eq!(
            c.offer(&event(1, EventKind::Ready), t0),
            Verdict::Opened(secs(t0, 10))
        );
        assert_eq!(c.offer(&event(2, EventKind::Ready), t0), Verdict::Send);
        assert_eq!(c.offer(&event(3, EventKind::Ready), t0), Verdict::Send);
        assert_eq!(c.next_end(), Some(secs(t0, 10)));
        assert!(c.due(secs(t0, 9)).is_empty());
        // The window ends with nothing counted: no burst, no summary.
        assert!(c.due(secs(t0, 10)).is_empty());
        assert_eq!(c.next_end(), None);
        assert_eq!(
            c.offer(&event(4, EventKind::Ready), secs(t0, 11)),
            Verdict::Opened(secs(t0, 21))
        );
        assert!(c.drain().is_empty());
    }

    #[test]
    fn a_burst_is_singles_then_one_summary_per_kind_per_window() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(P);
        let mut seq = 0;
        let mut offer = |c: &mut Coalescer, kind, at| {
            seq += 1;
            c.offer(&event(seq, kind), at)
        };
        // 10 ready in the first window: 3 sent, 7 counted.
        let verdicts: Vec<Verdict> = (0..10)
            .map(|_| offer(&mut c, EventKind::Ready, secs(t0, 1)))
            .collect();
        assert!(matches!(verdicts[0], Verdict::Opened(_)));
        assert_eq!(verdicts[1..3], [Verdict::Send, Verdict::Send]);
        assert!(verdicts[3..].iter().all(|v| *v == Verdict::Counted));
        // A failure is never counted, however many come.
        for _ in 0..10 {
            assert_eq!(offer(&mut c, EventKind::Died, secs(t0, 2)), Verdict::Send);
        }
        assert!(c.due(secs(t0, 10)).is_empty(), "the window ends at 11 s");
        let s = c.due(secs(t0, 11));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].event, EventKind::Ready);
        assert_eq!(s[0].agent, "");
        assert_eq!(s[0].pid, None);
        assert_eq!(s[0].seq, 10);
        assert_eq!(s[0].state, State::Running);
        assert_eq!(
            s[0].reason,
            "summary: 7 more ready events since t4 (seq 4 to 10), not sent one by one"
        );
        // The burst goes on: the next window sends none one by one.
        assert_eq!(c.next_end(), Some(secs(t0, 21)));
        for _ in 0..5 {
            assert_eq!(
                offer(&mut c, EventKind::Ready, secs(t0, 15)),
                Verdict::Counted
            );
        }
        let s = c.due(secs(t0, 21));
        assert_eq!(s.len(), 1);
        assert!(
            s[0].reason
                .starts_with("summary: 5 more ready events since t21 (seq 21 to 25)")
        );
        // A window without any ends the burst; the next event opens anew.
        assert!(c.due(secs(t0, 31)).is_empty());
        assert_eq!(c.next_end(), None);
        assert!(matches!(
            offer(&mut c, EventKind::Ready, secs(t0, 32)),
            Verdict::Opened(_)
        ));
    }

    #[test]
    fn late_windows_close_in_order_and_kinds_apart() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(P);
        for seq in 1..=5 {
            c.offer(&event(seq, EventKind::Starting), t0);
        }
        for seq in 6..=10 {
            c.offer(&event(seq, EventKind::Ready), secs(t0, 5));
        }
        // Looked at late, long after both windows ended: each kind's
        // summary once, then nothing open.
        let s = c.due(secs(t0, 60));
        let kinds: Vec<EventKind> = s.iter().map(|e| e.event).collect();
        assert_eq!(kinds, [EventKind::Starting, EventKind::Ready]);
        assert!(s[0].reason.starts_with("summary: 2 more starting events"));
        assert!(s[1].reason.starts_with("summary: 2 more ready events"));
        assert_eq!(c.next_end(), None);
    }

    #[test]
    fn what_is_counted_is_said_at_shutdown() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(P);
        for seq in 1..=8 {
            c.offer(&event(seq, EventKind::Stopped), t0);
        }
        let s = c.drain();
        assert_eq!(s.len(), 1);
        assert!(s[0].reason.starts_with("summary: 5 more stopped events"));
        assert_eq!(c.next_end(), None);
        assert!(c.drain().is_empty());
    }

    #[test]
    fn only_routine_kinds_are_summarized() {
        let kept: Vec<&str> = EventKind::ALL
            .into_iter()
            .filter(|k| !summarized(*k))
            .map(EventKind::as_str)
            .collect();
        assert_eq!(
            kept,
            [
                "start-failed",
                "died",
                "unresponsive",
                "failed",
                "supervisor-started",
                "supervisor-stopping",
                "events-dropped",
                "reload-failed",
                "node-joined",
                "node-left",
                "assigned",
                "released"
            ]
        );
    }
}
