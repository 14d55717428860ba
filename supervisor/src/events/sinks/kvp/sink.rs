//! The sink task: every event of the bus, in batches, to the writer on a
//! thread of its own; the bus is never waited on, and what was written,
//! lost or not written is counted.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::boot::Boot;
use super::writer::{WriteError, Writer, Written};
use crate::events::bus::{FLUSH_TIMEOUT, Sink};
use crate::events::{Bus, Event};

/// Counters of the sink, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
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
    /// Events written.
    pub events: u64,
    /// Records written (an event may take several).
    pub records: u64,
    /// Our records removed to stay within `max_records` (`kvp-dropped`).
    pub dropped: u64,
    /// Events missed because the sink fell behind the bus.
    pub lost: u64,
    /// Events not written because of an I/O error.
    pub failed: u64,
}

impl Stats {
    #[cfg(test)]
    pub fn counts(&self) -> Counts {
        Counts {
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
/// writes what is left in the channel and returns.
///
/// It subscribes when called (not when first polled) and starts with the
/// events still in the bus's ring, so nothing published before the task
/// runs is missed; call it once per bus. Cancel `shutdown` after the last
/// event (`supervisor-stopping`, the agents' `stopped`) has been published:
/// what is still to be written (a batch being written, then what came
/// meanwhile, until the channel is empty) is written within
/// [`FLUSH_TIMEOUT`] of the shutdown, then given up. Writes happen on a
/// thread of their own; the bus is never waited on (a sink that falls
/// behind counts the events it missed). If the pool's directory does not
/// exist the sink logs it once and idles until `shutdown`.
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
    let rx = bus.subscribe();
    let (backlog, _) = bus.replay(0);
    let writer = Writer::new(cfg.path, cfg.max_records as usize, Boot::current());
    sink(writer, rx, backlog, shutdown, stats, bus)
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

/// Events taken from the bus for the next batch, in seq order without
/// duplicates (the ring replayed at the start overlaps the channel), and
/// how many were missed: the seqs skipped, which is exact where the
/// channel's own count (`Lagged`) would include events the ring gave us.
struct Intake {
    batch: Vec<Arc<Event>>,
    last: Option<u64>,
    /// Lagged before any event arrived: nothing to compare seqs with.
    early_lag: u64,
    lost: u64,
}

impl Intake {
    fn new(backlog: Vec<Arc<Event>>) -> Intake {
        let mut intake = Intake {
            batch: Vec::with_capacity(backlog.len()),
            last: None,
            early_lag: 0,
            lost: 0,
        };
        for e in backlog {
            intake.push(e);
        }
        intake
    }

    fn push(&mut self, e: Arc<Event>) {
        match self.last {
            None => self.lost += std::mem::take(&mut self.early_lag),
            Some(last) if e.seq <= last => return,
            Some(last) => self.lost += e.seq - last - 1,
        }
        self.last = Some(e.seq);
        self.batch.push(e);
    }

    fn lagged(&mut self, n: u64) {
        if self.last.is_none() {
            self.early_lag += n;
        }
    }
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
        tracing::warn!(
            lost = n,
            total,
            "KVP sink fell behind the bus: events not written"
        );
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
    mut rx: broadcast::Receiver<Arc<Event>>,
    backlog: Vec<Arc<Event>>,
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
        drop(rx);
        shutdown.cancelled().await;
        return;
    };
    let mut intake = Intake::new(backlog);
    // Set once the bus is closed (or gone): from then on every event still
    // in the channel is written, in as many batches as it takes, until the
    // channel is empty or this deadline passes.
    let mut deadline: Option<Instant> = None;
    loop {
        if intake.batch.is_empty() && deadline.is_none() {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => deadline = Some(Instant::now() + FLUSH_TIMEOUT),
                r = rx.recv() => match r {
                    Ok(e) => intake.push(e),
                    Err(broadcast::error::RecvError::Lagged(n)) => intake.lagged(n),
                    Err(broadcast::error::RecvError::Closed) => {
                        deadline = Some(Instant::now() + FLUSH_TIMEOUT);
                    }
                },
            }
        }
        // Everything already published goes into this batch.
        loop {
            match rx.try_recv() {
                Ok(e) => intake.push(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => intake.lagged(n),
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Closed) => {
                    deadline.get_or_insert_with(|| Instant::now() + FLUSH_TIMEOUT);
                    break;
                }
            }
        }
        if intake.lost > 0 {
            report.lost(std::mem::take(&mut intake.lost));
        }
        if intake.batch.is_empty() {
            if deadline.is_some() {
                // Closed, and nothing left: every event is in the pool.
                return;
            }
            continue;
        }
        let events = std::mem::take(&mut intake.batch);
        let n = events.len();
        let (reply_tx, reply) = oneshot::channel();
        let outcome = match worker.send((events, reply_tx)) {
            Err(_) => None,
            Ok(()) => match answer(reply, &shutdown, &mut deadline).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    let left = n + rx.len();
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
            drop(rx);
            if deadline.is_none() {
                shutdown.cancelled().await;
            }
            return;
        }
        // Events published while this batch was written (the agents'
        // `stopped` at shutdown) are taken in by the next turn, closed
        // or not.
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
        while bus.queued() > 0 {
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

    #[tokio::test]
    async fn the_sink_counts_events_it_fell_behind_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let bus = Bus::new("lab-a");
        let shutdown = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let fut = run_with_stats(
            kvp(&path, 10_000),
            bus.clone(),
            shutdown.clone(),
            stats.clone(),
        );
        // More than the channel holds before the sink reads anything; the
        // ring (replayed at the start) does not have the first ones either.
        for i in 0..crate::events::bus::RING + 5000 {
            publish(&bus, &format!("d{i}"), "ready", "");
        }
        shutdown.cancel();
        fut.await;
        let c = stats.counts();
        assert!(c.lost > 0, "{c:?}");
        // Every event is written or counted lost: ours, and the
        // `events-dropped` the sink published to report the loss, which
        // it wrote too, as the last event.
        let published = bus.replay(0).0.last().map_or(0, |e| e.seq);
        assert_eq!(
            published,
            (crate::events::bus::RING + 5000 + 1) as u64,
            "{c:?}"
        );
        assert_eq!(c.events + c.lost, published, "{c:?}");
        let entries = reassemble(&decode(&std::fs::read(&path).unwrap()).records);
        let last: Event = serde_json::from_str(&entries.last().unwrap().value).unwrap();
        assert_eq!(
            last.event,
            crate::events::EventKind::EventsDropped,
            "{last:?}"
        );
        assert_eq!(
            last.reason,
            format!(
                "kvp: {} events not delivered (the sink fell behind)",
                c.lost
            )
        );
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
