//! The sink task: every event of the bus, in batches, to the writer on a
//! thread of its own; the bus is never waited on, and what was written,
//! lost or not written is counted.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::boot::Boot;
use super::writer::{WriteError, Writer, Written};
use crate::events::bus::{FLUSH_TIMEOUT, Sink};
use crate::events::coalesce::WRITTEN;
use crate::events::gate::{DEPTH, Gate};
use crate::events::{Bus, Event};

/// Counters of the sink, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    taken: AtomicU64,
    events: AtomicU64,
    records: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
    failed: AtomicU64,
}

/// A snapshot of [`Stats`] (read by the tests; nothing else reads the
/// counters yet).
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events handed to the writer's thread.
    pub taken: u64,
    /// Events written.
    pub events: u64,
    /// Records written (an event may take several).
    pub records: u64,
    /// Our records removed to stay within `max_records` (`kvp-dropped`).
    pub dropped: u64,
    /// Events missed because the sink's queue was full.
    pub lost: u64,
    /// Events not written because of an I/O error.
    pub failed: u64,
}

impl Stats {
    #[cfg(test)]
    pub fn counts(&self) -> Counts {
        Counts {
            taken: self.taken.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: usize) -> u64 {
        counter.fetch_add(n as u64, Ordering::Relaxed) + n as u64
    }
}

/// Writes every event of `bus` to the pool of `cfg` until `shutdown`, then
/// writes what is left and returns.
///
/// It taps the bus when called (not when first polled), starting with the
/// events still in the bus's ring, so nothing published before the task
/// runs is missed; call it once per bus. A burst is spared the pool
/// ([`Gate`]): beyond 100 events of a routine kind per 10 s, one summary
/// record per kind per 10 s stands for the rest; failures are each
/// written. Cancel `shutdown` after the last event (`supervisor-stopping`,
/// the agents' `stopped`) has been published: what is still to be written
/// (a batch being written, then what came meanwhile and the summaries of
/// what was counted) is written within [`FLUSH_TIMEOUT`] of the shutdown,
/// then given up. Writes happen on a thread of their own; the bus is never
/// waited on (what does not fit the gate's queue is counted). If the
/// pool's directory does not exist the sink logs it once and idles until
/// `shutdown`.
pub fn run(
    cfg: agentcluster_conf::Kvp,
    bus: Bus,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    run_with_stats(cfg, bus, shutdown, Arc::new(Stats::default()))
}

/// [`run`], with counters the caller can read.
pub fn run_with_stats(
    cfg: agentcluster_conf::Kvp,
    bus: Bus,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
) -> impl Future<Output = ()> + Send + 'static {
    run_gated(cfg, bus, shutdown, stats, DEPTH)
}

fn run_gated(
    cfg: agentcluster_conf::Kvp,
    bus: Bus,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
    depth: usize,
) -> impl Future<Output = ()> + Send + 'static {
    let gate = Gate::open(&bus, WRITTEN, depth);
    let writer = Writer::new(cfg.path, cfg.max_records as usize, Boot::current());
    sink(writer, gate, shutdown, stats, bus)
}

/// A batch handed to the writer thread, and where its outcome goes.
type Job = (
    Vec<Arc<Event>>,
    oneshot::Sender<Result<Written, WriteError>>,
);

/// Starts the thread that owns the writer.
fn start_worker(mut writer: Writer) -> io::Result<std::sync::mpsc::Sender<Job>> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("kvp-writer".into())
        .spawn(move || {
            while let Ok((events, reply)) = rx.recv() {
                let _ = reply.send(writer.write(&events));
            }
        })?;
    Ok(tx)
}

/// Logs and counts what the writer thread reports.
struct Report {
    pool: PathBuf,
    stats: Arc<Stats>,
    /// Where lost events are reported (as `events-dropped`).
    bus: Bus,
    /// The last write failed (the next failures are logged at debug).
    failing: bool,
    /// The cap has been reached before (later drops are logged at debug).
    dropping: bool,
}

impl Report {
    /// `n` events could not be written; returns how many so far.
    fn failed(&self, n: usize) -> u64 {
        self.bus.count_lost(Sink::Kvp, n as u64);
        Stats::add(&self.stats.failed, n)
    }

    fn lost(&self, n: u64) {
        let total = Stats::add(&self.stats.lost, n as usize);
        tracing::warn!(lost = n, total, "KVP sink's queue full: events not written");
        self.bus.report_dropped(Sink::Kvp, "kvp", n);
    }

    /// What a batch of `n` events came to; false when the sink must stop.
    fn outcome(&mut self, n: usize, outcome: Option<Result<Written, WriteError>>) -> bool {
        let pool = self.pool.display();
        match outcome {
            Some(Ok(w)) => {
                Stats::add(&self.stats.events, w.events);
                Stats::add(&self.stats.records, w.records);
                if w.dropped > 0 {
                    let total = Stats::add(&self.stats.dropped, w.dropped);
                    if self.dropping {
                        tracing::debug!(
                            note = "kvp-dropped",
                            dropped = w.dropped,
                            total,
                            "oldest KVP records dropped"
                        );
                    } else {
                        self.dropping = true;
                        tracing::info!(note = "kvp-dropped", dropped = w.dropped, total, pool = %pool, "KVP pool holds max_records of ours: dropping the oldest");
                    }
                }
                if self.failing {
                    self.failing = false;
                    tracing::info!(pool = %pool, "KVP pool writable again");
                }
                true
            }
            Some(Err(WriteError::NoDirectory(_))) => {
                self.failed(n);
                tracing::warn!(pool = %pool, "KVP sink disabled: its directory is gone");
                false
            }
            Some(Err(e)) => {
                let total = self.failed(n);
                if self.failing {
                    tracing::debug!(events = n, total, cause = %e, "KVP write failed");
                } else {
                    self.failing = true;
                    tracing::warn!(events = n, total, cause = %e, "KVP write failed: events not written");
                }
                true
            }
            None => {
                self.failed(n);
                tracing::error!("KVP writer thread is gone: sink disabled");
                false
            }
        }
    }
}

/// Waits for the writer's answer. Until `shutdown` (the bus closing) it
/// waits as long as the write takes; from then on only until the flush
/// deadline, which is set when the shutdown is first seen (`Err` when it
/// passes). `None` in the answer: the thread is gone.
async fn answer(
    mut reply: oneshot::Receiver<Result<Written, WriteError>>,
    shutdown: &CancellationToken,
    deadline: &mut Option<Instant>,
) -> Result<Option<Result<Written, WriteError>>, tokio::time::error::Elapsed> {
    if deadline.is_none() {
        tokio::select! {
            r = &mut reply => return Ok(r.ok()),
            _ = shutdown.cancelled() => *deadline = Some(Instant::now() + FLUSH_TIMEOUT),
        }
    }
    let until = deadline.unwrap_or_else(|| Instant::now() + FLUSH_TIMEOUT);
    tokio::time::timeout_at(until, reply).await.map(Result::ok)
}

async fn sink(
    writer: Writer,
    gate: Gate,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
    bus: Bus,
) {
    let mut report = Report {
        pool: writer.path().to_path_buf(),
        stats,
        bus,
        failing: false,
        dropping: false,
    };
    let worker = if writer.dir_missing() {
        tracing::warn!(pool = %report.pool.display(), "KVP sink disabled: its directory does not exist");
        None
    } else {
        start_worker(writer)
            .inspect_err(|cause| {
                tracing::error!(%cause, "KVP sink disabled: cannot start its thread");
            })
            .ok()
    };
    let Some(worker) = worker else {
        gate.finish();
        shutdown.cancelled().await;
        return;
    };
    // Set once the bus is closed: from then on everything the gate holds
    // (and the summaries of what it counted) is written, in as many
    // batches as it takes, until it is empty or this deadline passes.
    let mut deadline: Option<Instant> = None;
    loop {
        let taken = if deadline.is_none() {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    deadline = Some(Instant::now() + FLUSH_TIMEOUT);
                    gate.finish()
                }
                taken = gate.next() => taken,
            }
        } else {
            // Closed: the tap has let go; this is what came meanwhile.
            gate.finish()
        };
        if taken.dropped > 0 {
            report.lost(taken.dropped);
        }
        let events = taken.events;
        if events.is_empty() {
            if deadline.is_some() {
                // Closed, and nothing left: every event is in the pool.
                return;
            }
            continue;
        }
        let n = events.len();
        Stats::add(&report.stats.taken, n);
        let (reply_tx, reply) = oneshot::channel();
        let outcome = match worker.send((events, reply_tx)) {
            Err(_) => None,
            Ok(()) => match answer(reply, &shutdown, &mut deadline).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    let left = n + gate.finish().events.len();
                    report.failed(left);
                    tracing::warn!(
                        events = left,
                        pool = %report.pool.display(),
                        "KVP pool still locked or slow {FLUSH_TIMEOUT:?} after the shutdown began: the last events are not written"
                    );
                    return;
                }
            },
        };
        if !report.outcome(n, outcome) {
            gate.finish();
            if deadline.is_none() {
                shutdown.cancelled().await;
            }
            return;
        }
        // Events published while this batch was written (the agents'
        // `stopped` at shutdown) are taken by the next turn, closed or not.
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::path::Path;

    use nix::fcntl::{Flock, FlockArg};

    use super::*;
    use crate::events::sinks::kvp::testutil::long_reason;
    use crate::events::sinks::kvp::{decode, reassemble};

    // ----- the sink task

    fn kvp(path: &Path, max: u32) -> agentcluster_conf::Kvp {
        agentcluster_conf::Kvp {
            path: path.to_path_buf(),
            max_records: max,
        }
    }

    use crate::events::testutil::publish;

    #[tokio::test]
    async fn the_sink_writes_earlier_and_later_events_and_flushes_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let bus = Bus::new("lab-a");
        // Published before the sink exists: found in the ring.
        publish(&bus, "", "supervisor-started", "2 agents");
        let shutdown = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(run_with_stats(
            kvp(&path, 100),
            bus.clone(),
            shutdown.clone(),
            stats.clone(),
        ));
        // Published after the call but before the task runs: not duplicated.
        publish(&bus, "dev-a", "ready", "ready");
        publish(&bus, "dev-b", "ready", &long_reason());
        publish(&bus, "", "supervisor-stopping", "SIGTERM");
        shutdown.cancel();
        task.await.unwrap();
        let entries = reassemble(&decode(&std::fs::read(&path).unwrap()).records);
        let got: Vec<(u64, String, String)> = entries
            .iter()
            .map(|e| {
                let ev: Event = serde_json::from_str(&e.value).unwrap();
                assert!(
                    e.key
                        .ends_with(&format!("|{}|{}|{}", ev.event, ev.agent, ev.seq))
                );
                (ev.seq, ev.event.to_string(), ev.agent)
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, "supervisor-started".into(), "".into()),
                (2, "ready".into(), "dev-a".into()),
                (3, "ready".into(), "dev-b".into()),
                (4, "supervisor-stopping".into(), "".into()),
            ]
        );
        let c = stats.counts();
        assert_eq!(c.events, 4);
        assert!(c.records > 4);
        assert_eq!((c.dropped, c.lost, c.failed), (0, 0, 0));
    }

    /// The agents' `stopped` events come while the sink writes the batch of
    /// `supervisor-stopping`, and the bus is closed before that write is
    /// done: they are written all the same.
    #[tokio::test]
    async fn events_published_during_the_last_write_are_written_after_the_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        std::fs::write(&path, b"").unwrap();
        // The pool is locked by another writer: the first batch waits.
        let holder = Flock::lock(File::open(&path).unwrap(), FlockArg::LockExclusive).unwrap();
        let bus = Bus::new("lab-a");
        let shutdown = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(run_with_stats(
            kvp(&path, 100),
            bus.clone(),
            shutdown.clone(),
            stats.clone(),
        ));
        publish(&bus, "", "supervisor-stopping", "shutdown requested");
        // The sink has taken it: its batch is with the writer, which waits
        // for the lock.
        while stats.counts().taken == 0 {
            tokio::task::yield_now().await;
        }
        for agent in ["dev-a", "dev-b", "dev-c"] {
            publish(&bus, agent, "stopped", "exited with code 0");
        }
        shutdown.cancel();
        tokio::task::yield_now().await;
        drop(holder);
        task.await.unwrap();
        let entries = reassemble(&decode(&std::fs::read(&path).unwrap()).records);
        let got: Vec<(u64, String)> = entries
            .iter()
            .map(|e| {
                let ev: Event = serde_json::from_str(&e.value).unwrap();
                (ev.seq, ev.event.to_string())
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, "supervisor-stopping".into()),
                (2, "stopped".into()),
                (3, "stopped".into()),
                (4, "stopped".into()),
            ]
        );
        let c = stats.counts();
        assert_eq!((c.events, c.lost, c.failed), (4, 0, 0));
    }

    /// Failures are never summarized: more of them at once than the
    /// sink's queue holds are counted lost and reported, never silently
    /// gone.
    #[tokio::test]
    async fn the_sink_counts_events_that_did_not_fit_its_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let bus = Bus::new("lab-a");
        let shutdown = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let fut = run_gated(
            kvp(&path, 10_000),
            bus.clone(),
            shutdown.clone(),
            stats.clone(),
            100,
        );
        // More than the queue holds before the sink reads anything.
        for i in 0..150 {
            publish(&bus, &format!("d{i}"), "died", "");
        }
        let task = tokio::spawn(fut);
        // The loss is reported as an event of its own, which is written.
        let mut seen = bus.subscribe();
        let dropped = loop {
            let e = seen.recv().await.unwrap();
            if e.event == crate::events::EventKind::EventsDropped {
                break e;
            }
        };
        shutdown.cancel();
        task.await.unwrap();
        let c = stats.counts();
        assert_eq!((c.events, c.lost), (101, 50), "{c:?}");
        assert_eq!(
            dropped.reason,
            "kvp: 50 events not delivered (the sink fell behind)"
        );
        let entries = reassemble(&decode(&std::fs::read(&path).unwrap()).records);
        let last: Event = serde_json::from_str(&entries.last().unwrap().value).unwrap();
        assert_eq!(last.seq, dropped.seq, "{last:?}");
    }

    /// The start of 5,000 agents: 100 records of each routine kind, one
    /// summary of each for the rest, and every failure on its own; nothing
    /// lost.
    #[tokio::test]
    async fn a_start_burst_is_written_as_singles_and_summaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let bus = Bus::new("lab-a");
        let shutdown = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(run_with_stats(
            kvp(&path, 100_000),
            bus.clone(),
            shutdown.clone(),
            stats.clone(),
        ));
        publish(&bus, "", "supervisor-started", "5000 agents");
        for i in 0..5000 {
            publish(&bus, &format!("d{i}"), "starting", "");
            if i % 2 == 0 {
                tokio::task::yield_now().await;
            }
            publish(&bus, &format!("d{i}"), "ready", "");
            if i % 500 == 0 {
                publish(&bus, &format!("d{i}"), "start-failed", "no data");
            }
        }
        shutdown.cancel();
        task.await.unwrap();
        let entries = reassemble(&decode(&std::fs::read(&path).unwrap()).records);
        let events: Vec<Event> = entries
            .iter()
            .map(|e| serde_json::from_str(&e.value).unwrap())
            .collect();
        let of = |kind: &'static str| events.iter().filter(move |e| e.event.as_str() == kind);
        for kind in ["starting", "ready"] {
            assert_eq!(of(kind).filter(|e| !e.agent.is_empty()).count(), 100);
            let summaries: Vec<&str> = of(kind)
                .filter(|e| e.agent.is_empty())
                .map(|e| e.reason.as_str())
                .collect();
            let counted: u64 = summaries
                .iter()
                .map(|r| {
                    r.strip_prefix("summary: ")
                        .and_then(|r| r.split(' ').next())
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or_else(|| panic!("{r}"))
                })
                .sum();
            assert_eq!(counted, 4900, "{summaries:?}");
        }
        assert_eq!(of("start-failed").count(), 10);
        assert_eq!(of("supervisor-started").count(), 1);
        let c = stats.counts();
        assert_eq!((c.lost, c.failed), (0, 0), "{c:?}");
        assert_eq!(c.events as usize, events.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pool_locked_forever_does_not_hold_up_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        std::fs::write(&path, b"").unwrap();
        let holder = Flock::lock(File::open(&path).unwrap(), FlockArg::LockExclusive).unwrap();
        let bus = Bus::new("lab-a");
        publish(&bus, "a", "ready", "");
        let shutdown = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(run_with_stats(
            kvp(&path, 10),
            bus.clone(),
            shutdown.clone(),
            stats.clone(),
        ));
        shutdown.cancel();
        // The clock is paused: the flush timeout passes as soon as the
        // runtime has nothing else to do.
        task.await.unwrap();
        assert_eq!(stats.counts().failed, 1);
        drop(holder);
    }

    #[tokio::test]
    async fn a_missing_directory_disables_the_sink() {
        let dir = tempfile::tempdir().unwrap();
        let bus = Bus::new("lab-a");
        let shutdown = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(run_with_stats(
            kvp(&dir.path().join("missing/pool"), 10),
            bus.clone(),
            shutdown.clone(),
            stats.clone(),
        ));
        publish(&bus, "a", "ready", "");
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(stats.counts(), Counts::default());
        assert!(!dir.path().join("missing").exists());
    }
}
