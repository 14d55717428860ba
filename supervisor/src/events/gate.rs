//! A writing sink's way onto the bus (the journal, the KVP pool): it taps
//! the bus ([`Bus::tap_with_ring`]), so every event is offered to it as it
//! is published, and a burst is spared it right there
//! ([`crate::events::coalesce`]: beyond 100 events of a routine kind per
//! 10 s, one summary per kind per 10 s). Only what is kept is queued, so the
//! start of 100,000 agents queues a few hundred events, not 200,000, and
//! the sink neither lags nor loses any. Failures are never summarized: a
//! queue of [`DEPTH`] holds a burst of those; what does not fit is counted
//! and reported by the sink.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use crate::events::coalesce::{Coalescer, Policy, Verdict};
use crate::events::{Bus, Event};

/// Events (singles, failures, summaries) waiting for the sink's task.
pub const DEPTH: usize = 65_536;

struct Shared {
    coalescer: Coalescer,
    queue: VecDeque<Arc<Event>>,
    depth: usize,
    /// Events that did not fit the queue since the sink last took it.
    dropped: u64,
    /// False once the sink has finished: the tap lets go.
    open: bool,
}

impl Shared {
    /// Queues `e`; returns whether the task must be woken (the queue was
    /// empty).
    fn push(&mut self, e: Arc<Event>) -> bool {
        if self.queue.len() >= self.depth {
            self.dropped += 1;
            return self.dropped == 1;
        }
        self.queue.push_back(e);
        self.queue.len() == 1
    }

    fn push_due(&mut self, now: Instant) -> bool {
        let mut wake = false;
        for s in self.coalescer.due(now) {
            wake |= self.push(Arc::new(s));
        }
        wake
    }

    fn offer(&mut self, e: &Arc<Event>, now: Instant) -> bool {
        let mut wake = self.push_due(now);
        match self.coalescer.offer(e, now) {
            Verdict::Send | Verdict::Opened(_) => wake |= self.push(e.clone()),
            Verdict::Counted => {}
        }
        wake
    }

    fn take(&mut self) -> Taken {
        Taken {
            events: self.queue.drain(..).collect(),
            dropped: std::mem::take(&mut self.dropped),
        }
    }
}

/// What the sink takes from its gate at once.
#[derive(Debug, Default)]
pub struct Taken {
    /// Events and summaries to write, in the order they were kept.
    pub events: Vec<Arc<Event>>,
    /// Events that did not fit the queue (to be reported).
    pub dropped: u64,
}

/// A sink's gate: the tap's queue and windows, shared with the sink's task.
pub struct Gate {
    shared: Arc<Mutex<Shared>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

impl Gate {
    /// Taps `bus`, starting with the events still in its ring (so a sink
    /// started after the first events misses none), sparing bursts by
    /// `policy`, with a queue of `depth`.
    pub fn open(bus: &Bus, policy: Policy, depth: usize) -> Gate {
        let shared = Arc::new(Mutex::new(Shared {
            coalescer: Coalescer::new(policy),
            queue: VecDeque::new(),
            depth,
            dropped: 0,
            open: true,
        }));
        let wake = Arc::new(Notify::new());
        let (tap_shared, tap_wake) = (shared.clone(), wake.clone());
        bus.tap_with_ring(Box::new(move |e| {
            let mut s = tap_shared.lock().unwrap_or_else(PoisonError::into_inner);
            if !s.open {
                return false;
            }
            if s.offer(e, Instant::now()) {
                tap_wake.notify_one();
            }
            true
        }));
        Gate { shared, wake }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What is queued now, with the summaries of the windows that have
    /// ended (possibly nothing).
    #[cfg(test)]
    pub fn take(&self) -> Taken {
        let mut s = self.lock();
        s.push_due(Instant::now());
        s.take()
    }

    /// Waits until there is something to take (an event, a summary whose
    /// window ended, a loss), and takes it. Cancel-safe: nothing is taken
    /// but at once.
    pub async fn next(&self) -> Taken {
        loop {
            let end = {
                let mut s = self.lock();
                s.push_due(Instant::now());
                if !s.queue.is_empty() || s.dropped > 0 {
                    return s.take();
                }
                s.coalescer.next_end()
            };
            let until = async {
                match end {
                    Some(end) => tokio::time::sleep_until(end.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = until => {}
            }
        }
    }

    /// At the end (the bus closed): everything queued and the summaries of
    /// everything counted, at once; the tap lets go.
    pub fn finish(&self) -> Taken {
        let mut s = self.lock();
        s.open = false;
        for summary in s.coalescer.drain() {
            s.push(Arc::new(summary));
        }
        s.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::coalesce::WRITTEN;
    use crate::events::testutil::publish;

    /// A burst of 5,000 agents' start queues the singles and failures
    /// only; the rest is one summary per kind, at the end.
    #[tokio::test]
    async fn a_burst_queues_singles_failures_and_summaries_only() {
        let bus = Bus::new("lab-a");
        publish(&bus, "", "supervisor-started", "5000 agents");
        let gate = Gate::open(&bus, WRITTEN, 1000);
        for i in 0..5000 {
            publish(&bus, &format!("d{i}"), "starting", "");
            publish(&bus, &format!("d{i}"), "ready", "");
            if i % 1000 == 0 {
                publish(&bus, &format!("d{i}"), "died", "killed by SIGKILL");
            }
        }
        let first = gate.next().await;
        assert_eq!(first.dropped, 0);
        // supervisor-started (from the ring), 100 + 100, 5 died.
        assert_eq!(first.events.len(), 1 + 200 + 5);
        assert_eq!(first.events[0].event.as_str(), "supervisor-started");
        let died = first.events.iter().filter(|e| e.event.as_str() == "died");
        assert_eq!(died.count(), 5);
        let rest = gate.finish();
        let reasons: Vec<(&str, &str)> = rest
            .events
            .iter()
            .map(|e| (e.event.as_str(), e.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert_eq!(reasons[0].0, "starting");
        assert!(
            reasons[0]
                .1
                .starts_with("summary: 4900 more starting events since "),
            "{reasons:?}"
        );
        assert!(reasons[0].1.ends_with(", not written one by one"));
        assert!(reasons[1].1.starts_with("summary: 4900 more ready events"));
        // Finished: the tap lets go.
        publish(&bus, "x", "died", "");
        assert!(gate.take().events.is_empty());
    }

    /// More failures than the queue holds: the rest is counted, never
    /// silently gone.
    #[tokio::test]
    async fn what_does_not_fit_the_queue_is_counted() {
        let bus = Bus::new("lab-a");
        let gate = Gate::open(&bus, WRITTEN, 10);
        for i in 0..25 {
            publish(&bus, &format!("d{i}"), "died", "");
        }
        let t = gate.next().await;
        assert_eq!((t.events.len(), t.dropped), (10, 15));
        assert_eq!(t.events[9].agent, "d9");
    }
}
