//! The SNMP notification sink: every lifecycle event becomes an
//! AGENTCLUSTER-MIB notification (`mib_root.0.N`, see
//! `mibs/AGENTCLUSTER-MIB.txt`) sent to each `events.notify` target whose
//! `events` filter lets it through.
//!
//! One task per target, each with its own socket and a bounded queue, so a
//! dead or slow target never delays another; what does not fit a queue is
//! dropped, counted and logged. Traps are sent once. Informs are kept on
//! disk until acknowledged, in `state_dir/informs/<target-hash>.jsonl` (an
//! append-only log of checksummed lines, fsynced, compacted by
//! write-then-rename), so they survive a supervisor restart, even a
//! `kill -9`: an inform is stored as soon as its event reaches the
//! target's task (all that came together in one write and fsync), also
//! while a delivery round to that target is in progress. Each delivery
//! round makes `1 + retries` attempts of `timeout` each (retransmissions
//! with one request-id); a round that is not acknowledged leaves the inform
//! pending and the target is tried again after a backoff (1 s doubling to
//! 30 s, cut short by the next event for that target), in order, oldest
//! first. A receiver that refuses an inform (an error-status, or a USM
//! report such as an unknown user) cannot be helped by resending: that
//! inform is dropped and logged.
//!
//! Every notification carries the nine `acNotify*` objects in the order of
//! the MIB's OBJECTS clause; absent values are sent as their documented
//! "none": pid 0, exit code -1, signal "". Only the state of an unknown
//! state name (none today) is left out.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentcluster_agent::engine;
use agentcluster_agent::notify::{Kind, LocalEngine, NotifyError, Sender, Target, Version};
use agentcluster_conf::NotifyTarget;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::events::mib::notification;
use crate::events::{Bus, Event, EventKind};

mod spool;
#[cfg(test)]
mod testutil;

pub use spool::crc32;
use spool::{InformStore, Pending, store_names, warn_orphans};

/// The name the supervisor's SNMPv3 engine ID is derived from and its
/// snmpEngineBoots is kept under (`state_dir/engine/%7Csupervisor.boots`).
/// Agent names cannot contain `|`, so no agent shares either.
pub const ENGINE_NAME: &str = "|supervisor";

/// Events waiting for one target's task; more are dropped and counted.
const QUEUE: usize = 1024;
/// Unacknowledged informs kept per target; beyond, the oldest is dropped.
const MAX_PENDING: usize = 10_000;
/// Backoff between delivery rounds to a target that did not answer.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long the informs still pending at shutdown may take to go out to a
/// target that answered its last round; what is left stays on disk.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrapsError {
    #[error("SNMPv3 snmpEngineBoots of the supervisor in {dir}: {cause}")]
    Boots { dir: PathBuf, cause: io::Error },
    #[error("notification target {target}: cannot open a UDP socket: {cause}")]
    Socket { target: String, cause: io::Error },
    #[error("pending informs {path}: {cause}")]
    Store { path: PathBuf, cause: io::Error },
}

impl From<TrapsError> for io::Error {
    fn from(e: TrapsError) -> io::Error {
        io::Error::other(e.to_string())
    }
}

/// Whether `target` wants events of this kind.
fn wanted(target: &NotifyTarget, kind: EventKind) -> bool {
    target
        .events
        .as_ref()
        .is_none_or(|kinds| kinds.contains(&kind))
}

/// How a target is named in logs (never with its community or keys).
fn label(t: &Target) -> String {
    let version = match t.version {
        Version::V1 => "v1",
        Version::V2c => "v2c",
        Version::V3 => "v3",
    };
    let kind = match t.kind {
        Kind::Trap => "trap",
        Kind::Inform => "inform",
    };
    format!("{} ({version} {kind})", t.address)
}

// ---- the sink ----------------------------------------------------------------

/// One event for one target, with the supervisor's uptime when it came.
type Job = (Arc<Event>, u32);

struct Worker {
    label: String,
    conf: NotifyTarget,
    target: Target,
    sender: Sender,
    mib_root: Vec<u32>,
    agent_addr: [u8; 4],
    /// Informs only.
    store: Option<InformStore>,
    pending: VecDeque<Pending>,
}

/// The notification sink, set up and subscribed; [`Traps::run`] runs it.
pub struct Traps {
    events: broadcast::Receiver<Arc<Event>>,
    workers: Vec<Worker>,
    started: Instant,
    /// Where lost events are reported.
    bus: Bus,
}

impl std::fmt::Debug for Traps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let targets: Vec<&str> = self.workers.iter().map(|w| w.label.as_str()).collect();
        f.debug_struct("Traps").field("targets", &targets).finish()
    }
}

impl Traps {
    /// Everything that can fail at startup: the supervisor's SNMPv3 engine
    /// (boots persisted under [`ENGINE_NAME`], only with a v3 target), one
    /// UDP socket per target, the pending informs left by the previous run.
    /// Subscribes to `bus` before returning, so call it before the first
    /// event that must go out (`supervisor-started`) is published.
    pub async fn start(
        targets: &[NotifyTarget],
        mib_root: &[u32],
        node: &str,
        state_dir: &Path,
        bus: &Bus,
    ) -> Result<Traps, TrapsError> {
        let events = bus.subscribe();
        let started = Instant::now();
        let converted: Vec<Target> = targets.iter().map(crate::events::targets::target).collect();
        let boots = if converted.iter().any(|t| t.version == Version::V3) {
            engine::next_boots(state_dir, ENGINE_NAME).map_err(|cause| TrapsError::Boots {
                dir: state_dir.to_path_buf(),
                cause,
            })?
        } else {
            0
        };
        let local = LocalEngine {
            engine_id: engine::derive_engine_id(node, ENGINE_NAME),
            boots,
            start: started,
        };
        if converted
            .iter()
            .any(|t| t.version == Version::V3 && t.kind == Kind::Trap)
        {
            // A v3 trap receiver must be told our engine ID (createUser -e).
            let hex: String = local.engine_id.iter().map(|b| format!("{b:02x}")).collect();
            tracing::info!(engine_id = %hex, boots, "SNMPv3 traps are sent from this engine");
        }
        let informs_dir = state_dir.join("informs");
        let names = store_names(&converted);
        let mut workers = Vec::with_capacity(targets.len());
        for ((conf, target), name) in targets.iter().zip(converted).zip(&names) {
            let label = label(&target);
            let v6 = target.address.starts_with('[')
                || target
                    .address
                    .parse::<SocketAddr>()
                    .is_ok_and(|a| a.is_ipv6());
            let any: SocketAddr = if v6 {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            };
            let sender =
                Sender::bind(any, local.clone())
                    .await
                    .map_err(|cause| TrapsError::Socket {
                        target: label.clone(),
                        cause,
                    })?;
            let (store, pending) = if target.kind == Kind::Inform {
                let path = informs_dir.join(name);
                let (store, pending) = InformStore::open(&path, &label)
                    .map_err(|cause| TrapsError::Store { path, cause })?;
                if !pending.is_empty() {
                    tracing::info!(
                        target = %label,
                        informs = pending.len(),
                        "resending informs left unacknowledged by the previous run"
                    );
                }
                (Some(store), pending.into())
            } else {
                (None, VecDeque::new())
            };
            workers.push(Worker {
                agent_addr: source_v4(&target.address),
                label,
                conf: conf.clone(),
                target,
                sender,
                mib_root: mib_root.to_vec(),
                store,
                pending,
            });
        }
        warn_orphans(&informs_dir, &names);
        Ok(Traps {
            events,
            workers,
            started,
            bus: bus.clone(),
        })
    }

    /// Sends notifications until `shutdown` is cancelled; then sends what
    /// was published before, gives pending informs [`SHUTDOWN_GRACE`] to be
    /// acknowledged by targets that answer, and returns (what is left stays
    /// on disk for the next run).
    pub async fn run(self, shutdown: CancellationToken) {
        let Traps {
            mut events,
            workers,
            started,
            bus,
        } = self;
        // Workers are stopped only once everything was handed to them.
        let stop = CancellationToken::new();
        let mut queues = Vec::with_capacity(workers.len());
        let mut tasks = tokio::task::JoinSet::new();
        for w in workers {
            let (tx, rx) = mpsc::channel::<Job>(QUEUE);
            queues.push(Queue {
                label: w.label.clone(),
                conf: w.conf.clone(),
                tx,
                dropped: 0,
            });
            tasks.spawn(w.run(rx, stop.clone()));
        }
        let uptime = || (started.elapsed().as_millis() / 10) as u32;
        loop {
            let e = tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    // What was published before the shutdown still goes out.
                    while let Ok(e) = events.try_recv() {
                        dispatch(&mut queues, &e, uptime(), &bus);
                    }
                    break;
                }
                r = events.recv() => match r {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "notifications: events lost (sink too slow)");
                        bus.report_dropped("notifications", n);
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            dispatch(&mut queues, &e, uptime(), &bus);
        }
        drop(queues);
        stop.cancel();
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(cause = %e, "notification task failed");
            }
        }
    }
}

/// A target as the dispatcher sees it.
struct Queue {
    label: String,
    conf: NotifyTarget,
    tx: mpsc::Sender<Job>,
    dropped: u64,
}

fn dispatch(queues: &mut [Queue], e: &Arc<Event>, uptime: u32, bus: &Bus) {
    for q in queues.iter_mut() {
        if !wanted(&q.conf, e.event) {
            continue;
        }
        match q.tx.try_send((e.clone(), uptime)) {
            Ok(()) => {
                if q.dropped > 0 {
                    tracing::warn!(
                        target = %q.label,
                        dropped = q.dropped,
                        "notifications dropped: the target's queue was full"
                    );
                    bus.report_dropped(&format!("notifications to {}", q.label), q.dropped);
                    q.dropped = 0;
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if q.dropped == 0 {
                    tracing::warn!(
                        target = %q.label,
                        queue = QUEUE,
                        "notification queue full; dropping until it drains"
                    );
                }
                q.dropped += 1;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The IPv4 address we send to `address` from (an SNMPv1 Trap's
/// agent-addr); 0.0.0.0 when it cannot be told.
fn source_v4(address: &str) -> [u8; 4] {
    let Ok(SocketAddr::V4(to)) = address.parse::<SocketAddr>() else {
        return [0; 4];
    };
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect(to)?;
            s.local_addr()
        })
        .map(|a| match a {
            SocketAddr::V4(a) => a.ip().octets(),
            SocketAddr::V6(_) => [0; 4],
        })
        .unwrap_or([0; 4])
}

/// How one delivery round of an inform ended.
enum Round {
    Acknowledged,
    /// No answer (or the target cannot be reached now): keep it, try later.
    Unanswered(NotifyError),
    /// Answered with a refusal, or the target's setup cannot work: resending
    /// cannot help.
    Refused(NotifyError),
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>, stop: CancellationToken) {
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut backoff = BACKOFF_MIN;
        loop {
            // Take in everything queued, without waiting.
            let (jobs, closed) = take_queued(&mut rx, Vec::new());
            if self.accept(jobs).await {
                // A new event: try a target that was down now.
                retry_at = None;
            }
            let due = !self.pending.is_empty()
                && retry_at.is_none_or(|t| t <= tokio::time::Instant::now());
            if due {
                let (round, came) = tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    r = self.round(&mut rx, closed) => r,
                };
                match round {
                    Round::Acknowledged => {
                        backoff = BACKOFF_MIN;
                        retry_at = None;
                        self.forget_first().await;
                    }
                    Round::Refused(e) => {
                        let seq = self.pending.front().map(|p| p.event.seq);
                        tracing::error!(
                            target = %self.label,
                            seq,
                            cause = %e,
                            "inform refused by the receiver; not resent"
                        );
                        self.forget_first().await;
                    }
                    Round::Unanswered(e) => {
                        tracing::warn!(
                            target = %self.label,
                            pending = self.pending.len(),
                            retry_in_ms = backoff.as_millis() as u64,
                            cause = %e,
                            "informs not acknowledged; kept and retried"
                        );
                        retry_at = Some(tokio::time::Instant::now() + backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
                if came {
                    // Events came during the round: try again now.
                    retry_at = None;
                }
                self.trim().await;
                continue;
            }
            if closed {
                break;
            }
            let wake = retry_at.filter(|_| !self.pending.is_empty());
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                job = rx.recv() => match job {
                    Some(job) => {
                        let (jobs, _) = take_queued(&mut rx, vec![job]);
                        if self.accept(jobs).await {
                            retry_at = None;
                        }
                    }
                    None => break,
                },
                () = sleep_until(wake), if wake.is_some() => {}
            }
        }
        // Shutdown: take in what is still queued, then a last short try.
        rx.close();
        let mut jobs = Vec::new();
        while let Some(job) = rx.recv().await {
            jobs.push(job);
        }
        self.accept(jobs).await;
        let answered_last = retry_at.is_none();
        if !self.pending.is_empty() && answered_last {
            let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
            while !self.pending.is_empty() {
                match tokio::time::timeout_at(deadline, self.deliver_first()).await {
                    Ok(Round::Acknowledged) => self.forget_first().await,
                    Ok(Round::Refused(_)) => self.forget_first().await,
                    Ok(Round::Unanswered(_)) | Err(_) => break,
                }
            }
        }
        if !self.pending.is_empty() {
            tracing::info!(
                target = %self.label,
                informs = self.pending.len(),
                "unacknowledged informs kept for the next run"
            );
        }
    }

    /// One delivery round of the oldest pending inform, taking in the
    /// events that come meanwhile: they are on disk at once, not after a
    /// round that can last `timeout × (1 + retries)`, so a supervisor
    /// killed during it loses none of them. Returns the round and whether
    /// events came.
    async fn round(&mut self, rx: &mut mpsc::Receiver<Job>, closed: bool) -> (Round, bool) {
        let Some(first) = self.pending.front().cloned() else {
            return (Round::Acknowledged, false);
        };
        let mut open = !closed;
        let mut came = false;
        let delivery = deliver(&mut self.sender, &self.target, &self.mib_root, &first);
        tokio::pin!(delivery);
        loop {
            tokio::select! {
                biased;
                r = &mut delivery => return (r, came),
                job = rx.recv(), if open => match job {
                    Some(job) => {
                        let (jobs, _) = take_queued(rx, vec![job]);
                        came |= spool(&mut self.store, &mut self.pending, &self.label, jobs).await;
                    }
                    None => open = false,
                },
            }
        }
    }

    /// Takes in events: a trap is sent at once; informs are stored (one
    /// write and fsync for all of them) and queued. Returns whether an
    /// inform was queued.
    async fn accept(&mut self, jobs: Vec<Job>) -> bool {
        if self.target.kind == Kind::Trap {
            for (event, uptime) in jobs {
                let mut n = notification(&self.mib_root, &event, uptime);
                n.agent_addr = self.agent_addr;
                if let Err(e) = self.sender.send(&self.target, &n).await {
                    tracing::warn!(target = %self.label, seq = event.seq, cause = %e, "trap not sent");
                }
            }
            return false;
        }
        let queued = spool(&mut self.store, &mut self.pending, &self.label, jobs).await;
        self.trim().await;
        queued
    }

    /// Drops the oldest informs beyond [`MAX_PENDING`].
    async fn trim(&mut self) {
        while self.pending.len() > MAX_PENDING {
            let oldest = self.pending.front().map(|p| p.event.seq);
            tracing::warn!(
                target = %self.label,
                seq = oldest,
                limit = MAX_PENDING,
                "too many unacknowledged informs; the oldest is dropped"
            );
            self.forget_first().await;
        }
    }

    /// One delivery round of the oldest pending inform.
    async fn deliver_first(&mut self) -> Round {
        let Some(p) = self.pending.front() else {
            return Round::Acknowledged;
        };
        deliver(&mut self.sender, &self.target, &self.mib_root, p).await
    }

    /// Drops the oldest pending inform, on disk too.
    async fn forget_first(&mut self) {
        let Some(p) = self.pending.pop_front() else {
            return;
        };
        let Some(store) = &self.store else { return };
        let rest: Option<Vec<Pending>> = store
            .wants_rewrite(self.pending.len())
            .then(|| self.pending.iter().cloned().collect());
        let r = with_store(&mut self.store, &self.label, move |s| match rest {
            Some(rest) => s.rewrite(&rest),
            None => s.ack(p.id),
        })
        .await;
        if let Some(Err(e)) = r {
            tracing::error!(target = %self.label, cause = %e, "pending informs file not updated");
        }
    }
}

/// `jobs` and every job already queued after them, and whether the queue
/// is closed.
fn take_queued(rx: &mut mpsc::Receiver<Job>, mut jobs: Vec<Job>) -> (Vec<Job>, bool) {
    loop {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(mpsc::error::TryRecvError::Empty) => return (jobs, false),
            Err(mpsc::error::TryRecvError::Disconnected) => return (jobs, true),
        }
    }
}

/// Stores informs for `jobs` (one write and fsync) and queues them; without
/// a store, or when storing fails, they are still queued (sent, only not
/// durable). Returns whether any was queued.
async fn spool(
    store: &mut Option<InformStore>,
    pending: &mut VecDeque<Pending>,
    label: &str,
    jobs: Vec<Job>,
) -> bool {
    if jobs.is_empty() {
        return false;
    }
    let items: Vec<(u32, Event)> = jobs
        .iter()
        .map(|(e, uptime)| (*uptime, Event::clone(e)))
        .collect();
    match with_store(store, label, move |s| s.add_all(items)).await {
        Some(Ok(added)) => pending.extend(added),
        failed => {
            if let Some(Err(e)) = failed {
                tracing::error!(target = %label, cause = %e, "informs not stored on disk");
            }
            for (event, uptime) in jobs {
                let id = pending.back().map_or(u64::MAX / 2, |p| p.id + 1);
                pending.push_back(Pending {
                    id,
                    uptime,
                    event: Event::clone(&event),
                });
            }
        }
    }
    true
}

/// Runs `f` on the inform store off the async threads (it fsyncs).
/// `None` without a store, or when `f` panicked: the store is then gone
/// and informs to this target are no longer kept on disk.
async fn with_store<T: Send + 'static>(
    store: &mut Option<InformStore>,
    label: &str,
    f: impl FnOnce(&mut InformStore) -> io::Result<T> + Send + 'static,
) -> Option<io::Result<T>> {
    let mut taken = store.take()?;
    match tokio::task::spawn_blocking(move || {
        let r = f(&mut taken);
        (taken, r)
    })
    .await
    {
        Ok((taken, r)) => {
            *store = Some(taken);
            Some(r)
        }
        Err(e) => {
            tracing::error!(
                target = %label,
                cause = %e,
                "inform store failed; informs to this target are no longer kept on disk"
            );
            None
        }
    }
}

/// One delivery round of `p` to `target`.
async fn deliver(sender: &mut Sender, target: &Target, mib_root: &[u32], p: &Pending) -> Round {
    let n = notification(mib_root, &p.event, p.uptime);
    match sender.send(target, &n).await {
        Ok(()) => Round::Acknowledged,
        Err(e @ (NotifyError::Refused { .. } | NotifyError::Config(..))) => Round::Refused(e),
        Err(e) => Round::Unanswered(e),
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{ROOT, Receiver, conf_target, oid};
    use super::*;
    use crate::events::testutil::publish;
    use agentcluster_agent::notify::encode;
    use agentcluster_conf::NotifyType;
    use std::fs;
    use std::sync::atomic::Ordering;

    #[test]
    fn filters() {
        let all = conf_target("127.0.0.1:162", NotifyType::Trap, None);
        let some = conf_target("127.0.0.1:162", NotifyType::Trap, Some(&["died"]));
        assert!(wanted(&all, EventKind::Ready) && wanted(&all, EventKind::Died));
        assert!(wanted(&some, EventKind::Died) && !wanted(&some, EventKind::Ready));
    }

    #[tokio::test]
    async fn traps_follow_the_filter_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut rx = Receiver::start().await;
        let bus = Bus::new("lab-a");
        let targets = [conf_target(
            &rx.addr.to_string(),
            NotifyType::Trap,
            Some(&["died", "ready"]),
        )];
        let traps = Traps::start(&targets, ROOT, "lab-a", dir.path(), &bus)
            .await
            .unwrap();
        // Subscribed at start: what is published before run() still goes.
        publish(&bus, "a", "died", "");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(traps.run(shutdown.clone()));
        publish(&bus, "a", "restarting", "");
        publish(&bus, "a", "ready", "");
        publish(&bus, "", "config-changed", "");
        publish(&bus, "b", "died", "");
        assert_eq!(rx.next().await, (encode::TAG_V2_TRAP, oid(&[0, 3])));
        assert_eq!(rx.next().await, (encode::TAG_V2_TRAP, oid(&[0, 1])));
        assert_eq!(rx.next().await, (encode::TAG_V2_TRAP, oid(&[0, 3])));
        shutdown.cancel();
        task.await.unwrap();
        assert!(rx.seen.try_recv().is_err(), "nothing else was sent");
        assert!(
            !dir.path().join("informs").exists() || {
                fs::read_dir(dir.path().join("informs")).unwrap().count() == 0
            }
        );
        rx.task.abort();
    }

    #[tokio::test]
    async fn informs_that_come_during_a_round_are_stored_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut rx = Receiver::start().await; // never answers
        let mut target = conf_target(&rx.addr.to_string(), NotifyType::Inform, None);
        target.timeout = Duration::from_secs(6);
        let bus = Bus::new("lab-a");
        let traps = Traps::start(&[target], ROOT, "lab-a", dir.path(), &bus)
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(traps.run(shutdown.clone()));
        publish(&bus, "a", "died", "");
        // Its round (one attempt of 6 s) has begun...
        assert_eq!(rx.next().await, (encode::TAG_INFORM, oid(&[0, 3])));
        publish(&bus, "a", "restarting", "");
        publish(&bus, "a", "ready", "");
        // ...and the next two are on disk long before it ends (a kill -9
        // now would not lose them).
        let dir_of = dir.path().join("informs");
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let text: String = fs::read_dir(&dir_of)
                .unwrap()
                .map(|e| fs::read_to_string(e.unwrap().path()).unwrap_or_default())
                .collect();
            if text.contains("\"event\":\"restarting\"") && text.contains("\"event\":\"ready\"") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not stored during the round: {text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        task.await.unwrap();
        rx.task.abort();
    }

    #[tokio::test]
    async fn unacknowledged_informs_are_kept_and_resent_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut rx = Receiver::start().await;
        let targets = [conf_target(&rx.addr.to_string(), NotifyType::Inform, None)];

        // First run: the receiver does not answer.
        let bus = Bus::new("lab-a");
        let traps = Traps::start(&targets, ROOT, "lab-a", dir.path(), &bus)
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(traps.run(shutdown.clone()));
        publish(&bus, "a", "died", "");
        publish(&bus, "a", "restarting", "");
        // The first inform is tried (it is stored before): the second may
        // still be queued when we stop; it is stored at shutdown.
        assert_eq!(rx.next().await, (encode::TAG_INFORM, oid(&[0, 3])));
        shutdown.cancel();
        task.await.unwrap();
        let files: Vec<PathBuf> = fs::read_dir(dir.path().join("informs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let (_, kept) = InformStore::open(&files[0], "t").unwrap();
        assert_eq!(
            kept.iter()
                .map(|p| p.event.event.as_str())
                .collect::<Vec<_>>(),
            ["died", "restarting"]
        );
        while rx.seen.try_recv().is_ok() {}

        // Second run: the receiver answers; both arrive, in order, then a
        // new one; nothing is left on disk.
        rx.answer.store(true, Ordering::SeqCst);
        let bus = Bus::new("lab-a");
        let traps = Traps::start(&targets, ROOT, "lab-a", dir.path(), &bus)
            .await
            .unwrap();
        assert_eq!(traps.workers[0].pending.len(), 2);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(traps.run(shutdown.clone()));
        publish(&bus, "a", "ready", "");
        let mut got = Vec::new();
        while got.last() != Some(&oid(&[0, 1])) {
            let (tag, trap) = rx.next().await;
            assert_eq!(tag, encode::TAG_INFORM);
            if got.last() != Some(&trap) {
                got.push(trap); // a resend of the same one is fine
            }
        }
        assert_eq!(got, [oid(&[0, 3]), oid(&[0, 5]), oid(&[0, 1])]);
        shutdown.cancel();
        task.await.unwrap();
        assert!(!files[0].exists(), "every inform was acknowledged");
        rx.task.abort();
    }
}
