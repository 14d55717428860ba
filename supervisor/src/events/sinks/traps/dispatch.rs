//! The notification sink's side of the bus: every event, as it is
//! published ([`crate::events::Bus::tap`]), is offered to each target —
//! filtered by the target's `events`, spared in a burst by its
//! [`Coalescer`] — and what is left is put in the target's queue at once.
//! Nothing is queued that a target does not want, so a burst of other
//! kinds can neither fill its queue nor make the sink lag. The summaries
//! due when a window ends, and the count of what did not fit a full
//! queue, are taken by the sink's task ([`Dispatch::flush`]).

use std::sync::Arc;
use std::time::Instant;

use agentcluster_conf::NotifyTarget;
use tokio::sync::mpsc;

use super::worker::Job;
use crate::events::coalesce::{Coalescer, Policy, Verdict};
use crate::events::{Event, EventKind};

/// One target as the dispatcher sees it.
pub(super) struct Route {
    pub(super) label: String,
    /// The kinds it wants; `None`: all.
    pub(super) wants: Option<Vec<EventKind>>,
    coalescer: Coalescer,
    /// Its worker's queue; `None` once the sink has ended.
    tx: Option<mpsc::Sender<Job>>,
    /// Events lost to a full queue since the last report.
    dropped: u64,
}

impl Route {
    pub(super) fn new(
        conf: &NotifyTarget,
        label: String,
        policy: Policy,
        tx: mpsc::Sender<Job>,
    ) -> Route {
        Route {
            label,
            wants: conf.events.clone(),
            coalescer: Coalescer::new(policy),
            tx: Some(tx),
            dropped: 0,
        }
    }

    fn wants(&self, kind: EventKind) -> bool {
        self.wants
            .as_ref()
            .is_none_or(|kinds| kinds.contains(&kind))
    }

    /// Queues `e` without waiting; a full queue loses it (counted).
    fn queue(&mut self, e: Arc<Event>, uptime: u32) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send((e, uptime)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.dropped += 1,
        }
    }

    /// Queues the summaries of the windows over at `now`.
    fn queue_due(&mut self, now: Instant, uptime: u32) {
        for s in self.coalescer.due(now) {
            self.queue(Arc::new(s), uptime);
        }
    }
}

/// Every target's route, shared by the bus's tap and the sink's task.
pub(super) struct Dispatch {
    routes: Vec<Route>,
    /// sysUpTime counts from here.
    started: Instant,
}

impl Dispatch {
    pub(super) fn new(routes: Vec<Route>, started: Instant) -> Dispatch {
        Dispatch { routes, started }
    }

    /// Whether the sink still takes events (false once it has ended).
    pub(super) fn is_open(&self) -> bool {
        self.routes.iter().any(|r| r.tx.is_some())
    }

    fn uptime(&self, now: Instant) -> u32 {
        (now.saturating_duration_since(self.started).as_millis() / 10) as u32
    }

    /// Offers `e`, published at `now`, to every target. Returns whether
    /// the sink's task must look again: a window opened (its end is a new
    /// deadline) or an event was lost to a full queue.
    pub(super) fn offer(&mut self, e: &Arc<Event>, now: Instant) -> bool {
        let uptime = self.uptime(now);
        let mut wake = false;
        for r in &mut self.routes {
            if r.tx.is_none() || !r.wants(e.event) {
                continue;
            }
            r.queue_due(now, uptime);
            let had_dropped = r.dropped > 0;
            match r.coalescer.offer(e, now) {
                Verdict::Send => r.queue(e.clone(), uptime),
                Verdict::Opened(_) => {
                    wake = true;
                    r.queue(e.clone(), uptime);
                }
                Verdict::Counted => {}
            }
            wake |= !had_dropped && r.dropped > 0;
        }
        wake
    }

    /// Queues the summaries due at `now`. Returns when the next window
    /// ends, and the targets that lost events since the last call, with
    /// how many.
    pub(super) fn flush(&mut self, now: Instant) -> (Option<Instant>, Vec<(String, u64)>) {
        let uptime = self.uptime(now);
        let mut next: Option<Instant> = None;
        for r in &mut self.routes {
            r.queue_due(now, uptime);
            if let Some(end) = r.coalescer.next_end() {
                next = Some(next.map_or(end, |n| n.min(end)));
            }
        }
        (next, self.take_dropped())
    }

    /// At shutdown: queues every summary of what was counted, at once, and
    /// closes the queues (the workers then end once they have sent what is
    /// queued); events published later reach no target. Returns the losses
    /// not reported yet.
    pub(super) fn finish(&mut self, now: Instant) -> Vec<(String, u64)> {
        let uptime = self.uptime(now);
        for r in &mut self.routes {
            for s in r.coalescer.drain() {
                r.queue(Arc::new(s), uptime);
            }
            r.tx = None;
        }
        self.take_dropped()
    }

    fn take_dropped(&mut self) -> Vec<(String, u64)> {
        self.routes
            .iter_mut()
            .filter(|r| r.dropped > 0)
            .map(|r| (r.label.clone(), std::mem::take(&mut r.dropped)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agentcluster_conf::NotifyType;

    use super::*;
    use crate::events::State;
    use crate::events::sinks::traps::testutil::conf_target;

    fn event(seq: u64, kind: EventKind) -> Arc<Event> {
        Arc::new(Event {
            seq,
            ts: String::new(),
            node: "lab-a".into(),
            agent: format!("a{seq}"),
            event: kind,
            pid: None,
            exit_code: None,
            signal: None,
            restarts: 0,
            state: State::Running,
            reason: String::new(),
        })
    }

    /// A dispatcher of one target that wants `events`, with a queue of
    /// `depth`; the policy sends 2 of a kind one by one per second.
    fn one(events: Option<&[&str]>, depth: usize) -> (Dispatch, mpsc::Receiver<Job>, Instant) {
        let conf = conf_target("127.0.0.1:162", NotifyType::Trap, events);
        let (tx, rx) = mpsc::channel(depth);
        let policy = Policy {
            singles: 2,
            every: Duration::from_secs(1),
            ..crate::events::coalesce::POLICY
        };
        let t0 = Instant::now();
        let route = Route::new(&conf, "t".into(), policy, tx);
        (Dispatch::new(vec![route], t0), rx, t0)
    }

    fn queued(rx: &mut mpsc::Receiver<Job>) -> Vec<(EventKind, String)> {
        let mut out = Vec::new();
        while let Ok((e, _)) = rx.try_recv() {
            out.push((e.event, e.agent.clone()));
        }
        out
    }

    #[test]
    fn filters() {
        let (tx, _rx) = mpsc::channel(1);
        let p = crate::events::coalesce::POLICY;
        let all = conf_target("127.0.0.1:162", NotifyType::Trap, None);
        let some = conf_target("127.0.0.1:162", NotifyType::Trap, Some(&["died"]));
        let all = Route::new(&all, "all".into(), p, tx.clone());
        let some = Route::new(&some, "some".into(), p, tx);
        assert!(all.wants(EventKind::Ready) && all.wants(EventKind::Died));
        assert!(some.wants(EventKind::Died) && !some.wants(EventKind::Ready));
    }

    /// Unwanted events never reach the queue, however many: a queue of 4
    /// takes the one `died` after 10,000 `ready` without a loss.
    #[test]
    fn only_what_a_target_wants_is_queued() {
        let (mut d, mut rx, t0) = one(Some(&["died"]), 4);
        for seq in 1..=10_000 {
            assert!(!d.offer(&event(seq, EventKind::Ready), t0));
        }
        assert!(!d.offer(&event(10_001, EventKind::Died), t0));
        assert_eq!(queued(&mut rx), [(EventKind::Died, "a10001".into())]);
        assert_eq!(d.flush(t0), (None, vec![]));
    }

    #[test]
    fn a_burst_queues_singles_then_its_summary_when_the_window_ends() {
        let (mut d, mut rx, t0) = one(None, 100);
        // The first event opens a window: the task must learn its end.
        assert!(d.offer(&event(1, EventKind::Ready), t0));
        for seq in 2..=6 {
            assert!(!d.offer(&event(seq, EventKind::Ready), t0));
        }
        assert_eq!(
            queued(&mut rx),
            [
                (EventKind::Ready, "a1".into()),
                (EventKind::Ready, "a2".into())
            ]
        );
        let end = t0 + Duration::from_secs(1);
        assert_eq!(d.flush(t0), (Some(end), vec![]));
        // Once it has ended, the summary is queued; the burst's next
        // window is open.
        let (next, _) = d.flush(end);
        assert_eq!(next, Some(end + Duration::from_secs(1)));
        let q = queued(&mut rx);
        assert_eq!(q, [(EventKind::Ready, String::new())]);
        // An event after a window ended, before the task looked: the
        // summary goes first.
        d.offer(&event(7, EventKind::Ready), end);
        let later = end + Duration::from_secs(1);
        d.offer(&event(8, EventKind::Ready), later);
        assert_eq!(
            queued(&mut rx),
            [(EventKind::Ready, String::new())],
            "event 7's window summarized when event 8 came; 8 opens a window"
        );
    }

    #[test]
    fn a_full_queue_loses_and_counts_and_the_end_closes_it() {
        let (mut d, mut rx, t0) = one(None, 2);
        d.offer(&event(1, EventKind::Died), t0);
        d.offer(&event(2, EventKind::Died), t0);
        // The first loss wakes the task; later ones only count.
        assert!(d.offer(&event(3, EventKind::Died), t0));
        assert!(!d.offer(&event(4, EventKind::Died), t0));
        assert_eq!(d.flush(t0), (None, vec![("t".to_string(), 2)]));
        assert_eq!(queued(&mut rx).len(), 2);
        assert!(d.is_open());
        assert_eq!(d.finish(t0), vec![]);
        assert!(!d.is_open());
        d.offer(&event(5, EventKind::Died), t0);
        assert!(queued(&mut rx).is_empty(), "nothing after the end");
    }
}
