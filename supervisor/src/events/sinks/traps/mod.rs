//! The SNMP notification sink: every lifecycle event becomes an
//! AGENTCLUSTER-MIB notification (`mib_root.0.N`, see
//! `mibs/AGENTCLUSTER-MIB.txt`) sent to each `events.notify` target whose
//! `events` filter lets it through. Traps are fired and forgotten. Informs
//! are spooled on disk before they are sent and retried until acknowledged
//! (or refused, or dropped as the oldest beyond 10,000 pending), so they
//! survive a supervisor restart, even a `kill -9`.
//!
//! [`Traps`] taps the bus (with no target it does nothing at all): each
//! event is filtered per target and spared in a burst
//! ([`crate::events::coalesce`]: beyond
//! 100 events of a routine kind per 10 s, one summary per kind per 10 s)
//! as it is published, and what is left goes to one task per target, each
//! with its own socket and a bounded queue, so a dead or slow target never
//! delays another; what does not fit a queue is dropped, counted, logged
//! and published as `events-dropped`.
//!
//! Every notification carries the nine `acNotify*` objects in the order of
//! the MIB's OBJECTS clause; absent values are sent as their documented
//! "none": pid 0, exit code -1, signal "".
//!
//! # Layout
//! - here: [`Traps`], its start (the supervisor's SNMPv3 engine, one socket
//!   per target, the informs left by the previous run, the tap), its task
//!   (the summaries when their windows end, the losses reported), and
//!   shutdown;
//! - `dispatch`: the tap's side: each event filtered, coalesced and queued
//!   per target, without waiting;
//! - `worker`: one target's task: traps sent at once, informs spooled and
//!   delivered oldest first in rounds, retried with a backoff;
//! - `spool`: the inform spool, a log of checksummed lines ([`crc32`]) per
//!   target, and its file names.
//!
//! It depends on [`crate::events`] (the bus, an event's notification in
//! `mib`, the configured targets in `targets`) and on the agent crate's
//! notification originator (`agentcluster_agent::notify`, with `engine`
//! for the SNMPv3 engine ID and boots).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use agentcluster_agent::engine;
use agentcluster_agent::notify::{Kind, LocalEngine, Sender, Target, Version, agent_addr};
use agentcluster_conf::NotifyTarget;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::events::Bus;
use crate::events::bus::Sink;

mod dispatch;
mod spool;
#[cfg(test)]
mod testutil;
mod worker;

use crate::events::coalesce::{POLICY, Policy};
use dispatch::{Dispatch, Route};
pub use spool::crc32;
use spool::{InformStore, store_names, warn_orphans};
use worker::{Job, Worker};

/// The name the supervisor's SNMPv3 engine ID is derived from and its
/// snmpEngineBoots is kept under (`state_dir/engine/%7Csupervisor.boots`).
/// Agent names cannot contain `|`, so no agent shares either.
pub const ENGINE_NAME: &str = "|supervisor";

/// Events waiting for one target's task; more are dropped and counted.
const QUEUE: usize = 1024;

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

/// The notification sink, set up and tapping the bus; [`Traps::run`] runs
/// it.
pub struct Traps {
    /// Each target's worker and the queue the tap fills for it; none
    /// without targets.
    workers: Vec<(Worker, mpsc::Receiver<Job>)>,
    /// Shared with the tap.
    dispatch: Arc<Mutex<Dispatch>>,
    /// Rung by the tap when a window opened or an event was lost.
    wake: Arc<Notify>,
    /// Where lost events are reported.
    bus: Bus,
}

impl std::fmt::Debug for Traps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let targets: Vec<&str> = self.workers.iter().map(|(w, _)| w.label.as_str()).collect();
        f.debug_struct("Traps").field("targets", &targets).finish()
    }
}

impl Traps {
    /// Everything that can fail at startup: the supervisor's SNMPv3 engine
    /// (boots persisted under [`ENGINE_NAME`], only with a v3 target), one
    /// UDP socket per target, the pending informs left by the previous run.
    /// Taps `bus` before returning (when there is a target), so call it
    /// before the first event that must go out (`supervisor-started`) is
    /// published.
    pub async fn start(
        targets: &[NotifyTarget],
        mib_root: &[u32],
        node: &str,
        state_dir: &Path,
        bus: &Bus,
    ) -> Result<Traps, TrapsError> {
        Traps::start_with(targets, mib_root, node, state_dir, bus, POLICY).await
    }

    async fn start_with(
        targets: &[NotifyTarget],
        mib_root: &[u32],
        node: &str,
        state_dir: &Path,
        bus: &Bus,
        policy: Policy,
    ) -> Result<Traps, TrapsError> {
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
        let mut routes = Vec::with_capacity(targets.len());
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
            let (tx, rx) = mpsc::channel::<Job>(QUEUE);
            routes.push(Route::new(conf, label.clone(), policy, tx));
            let worker = Worker {
                pending_count: Arc::new(AtomicU64::new(pending.len() as u64)),
                agent_addr: source_v4(&target.address),
                label,
                target,
                sender,
                mib_root: mib_root.to_vec(),
                store,
                pending,
            };
            workers.push((worker, rx));
        }
        warn_orphans(&informs_dir, &names);
        let dispatch = Arc::new(Mutex::new(Dispatch::new(routes, started)));
        let wake = Arc::new(Notify::new());
        if !workers.is_empty() {
            // With no target there is nothing to deliver, so nothing to
            // take from the bus, nor to lose.
            let (dispatch, wake) = (dispatch.clone(), wake.clone());
            bus.tap(Box::new(move |e| {
                let mut d = dispatch.lock().unwrap_or_else(PoisonError::into_inner);
                if !d.is_open() {
                    return false;
                }
                if d.offer(e, Instant::now()) {
                    wake.notify_one();
                }
                true
            }));
        }
        Ok(Traps {
            workers,
            dispatch,
            wake,
            bus: bus.clone(),
        })
    }

    /// Each inform target's label and its count of informs not yet
    /// acknowledged (the metrics read it as the sink goes).
    pub fn informs_pending(&self) -> Vec<(String, Arc<AtomicU64>)> {
        self.workers
            .iter()
            .filter(|(w, _)| w.target.kind == Kind::Inform)
            .map(|(w, _)| (w.label.clone(), w.pending_count.clone()))
            .collect()
    }

    /// Sends notifications until `shutdown` is cancelled (the bus is
    /// closed: every event is in the targets' queues by then); then sends
    /// the summaries of what was counted, lets each worker send what is
    /// queued, gives pending informs a short grace (2 s) to be acknowledged
    /// by targets that answer, and returns (what is left stays on disk for
    /// the next run). Returns at once without targets.
    pub async fn run(self, shutdown: CancellationToken) {
        let Traps {
            workers,
            dispatch,
            wake,
            bus,
        } = self;
        if workers.is_empty() {
            return;
        }
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (w, rx) in workers {
            tasks.spawn(w.run(rx, stop.clone()));
        }
        let lock = || dispatch.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let (next, dropped) = lock().flush(Instant::now());
            report(&bus, dropped);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = wake.notified() => {}
                () = sleep_until(next) => {}
            }
        }
        let dropped = lock().finish(Instant::now());
        report(&bus, dropped);
        // Workers are stopped only once everything was handed to them.
        stop.cancel();
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(cause = %e, "notification task failed");
            }
        }
    }
}

/// Logs and publishes (as `events-dropped`) what full queues lost.
fn report(bus: &Bus, dropped: Vec<(String, u64)>) {
    for (label, n) in dropped {
        tracing::warn!(
            target = %label,
            dropped = n,
            queue = QUEUE,
            "notifications dropped: the target's queue was full"
        );
        bus.report_dropped(Sink::Notify, &format!("notifications to {label}"), n);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
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

/// The IPv4 address we send to `address` from (an SNMPv1 Trap's
/// agent-addr); 0.0.0.0 when it cannot be told.
fn source_v4(address: &str) -> [u8; 4] {
    address.parse::<SocketAddr>().map_or([0; 4], |to| {
        agent_addr(std::net::Ipv4Addr::UNSPECIFIED.into(), to)
    })
}

#[cfg(test)]
mod tests {
    use super::testutil::{ROOT, Receiver, conf_target, oid};
    use super::*;
    use crate::events::EventKind;
    use crate::events::testutil::publish;
    use agentcluster_agent::notify::encode;
    use agentcluster_conf::NotifyType;
    use std::fs;
    use std::time::Duration;

    /// More events than a bus subscriber's queue holds.
    const BURST: usize = 5000;

    fn dropped_reports(bus: &Bus) -> Vec<String> {
        let (events, _) = bus.replay(1);
        events
            .iter()
            .filter(|e| e.event == EventKind::EventsDropped)
            .map(|e| e.reason.clone())
            .collect()
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
        // Tapped at start: what is published before run() still goes.
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

    /// With no target the sink takes nothing from the bus: a burst it
    /// never looks at loses nothing and is reported as nothing.
    #[tokio::test]
    async fn without_targets_a_burst_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bus = Bus::new("lab-a");
        let traps = Traps::start(&[], ROOT, "lab-a", dir.path(), &bus)
            .await
            .unwrap();
        for i in 0..BURST {
            publish(&bus, &format!("a{i}"), "starting", "");
        }
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        traps.run(shutdown).await;
        assert_eq!(dropped_reports(&bus), Vec::<String>::new());
    }

    /// A target that wants `died` only is never handed the burst of other
    /// kinds, even while its task is not running: nothing is lost, nothing
    /// reported, and the one `died` goes out.
    #[tokio::test]
    async fn a_target_is_handed_only_what_it_wants() {
        let dir = tempfile::tempdir().unwrap();
        let mut rx = Receiver::start().await;
        let bus = Bus::new("lab-a");
        let targets = [conf_target(
            &rx.addr.to_string(),
            NotifyType::Trap,
            Some(&["died"]),
        )];
        let traps = Traps::start(&targets, ROOT, "lab-a", dir.path(), &bus)
            .await
            .unwrap();
        for i in 0..BURST {
            publish(&bus, &format!("a{i}"), "ready", "");
        }
        publish(&bus, "victim", "died", "");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(traps.run(shutdown.clone()));
        let (_, trap, text) = rx.next_text().await;
        assert_eq!(trap, oid(&[0, 3]));
        assert!(text.contains("victim"), "{text}");
        shutdown.cancel();
        task.await.unwrap();
        assert!(rx.seen.try_recv().is_err(), "nothing else was sent");
        assert_eq!(dropped_reports(&bus), Vec::<String>::new());
        rx.task.abort();
    }

    /// A burst of one kind to a target that wants everything: the first
    /// events one by one, then one summary that counts the rest; a failure
    /// in the middle of it still goes out on its own, and what is counted
    /// when the sink stops is said then.
    #[tokio::test]
    async fn a_burst_is_summarized_and_failures_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut rx = Receiver::start().await;
        let bus = Bus::new("lab-a");
        let targets = [conf_target(&rx.addr.to_string(), NotifyType::Trap, None)];
        let policy = Policy {
            singles: 3,
            every: Duration::from_millis(300),
            ..crate::events::coalesce::POLICY
        };
        let traps = Traps::start_with(&targets, ROOT, "lab-a", dir.path(), &bus, policy)
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(traps.run(shutdown.clone()));
        for i in 1..=10 {
            publish(&bus, &format!("a{i}"), "ready", "");
        }
        publish(&bus, "victim", "died", "");
        for i in 1..=3 {
            let (tag, trap, text) = rx.next_text().await;
            assert_eq!((tag, trap), (encode::TAG_V2_TRAP, oid(&[0, 1])));
            assert!(text.contains(&format!("a{i}")), "{text}");
        }
        let (_, trap, text) = rx.next_text().await;
        assert_eq!(trap, oid(&[0, 3]));
        assert!(text.contains("victim"), "{text}");
        // The window ends: one summary for the seven others (seq 4 to 10).
        let (_, trap, text) = rx.next_text().await;
        assert_eq!(trap, oid(&[0, 1]));
        assert!(
            text.contains("summary: 7 more ready events since ")
                && text.contains("(seq 4 to 10), not sent one by one"),
            "{text}"
        );
        // A burst of stops cut short by the shutdown: its summary goes out.
        for i in 1..=5 {
            publish(&bus, &format!("a{i}"), "stopped", "");
        }
        shutdown.cancel();
        task.await.unwrap();
        for _ in 1..=3 {
            let (_, trap, text) = rx.next_text().await;
            assert_eq!(trap, oid(&[0, 2]), "{text}");
            assert!(!text.contains("summary"), "{text}");
        }
        let (_, trap, text) = rx.next_text().await;
        assert_eq!(trap, oid(&[0, 2]));
        assert!(text.contains("summary: 2 more stopped events"), "{text}");
        assert!(rx.seen.try_recv().is_err(), "nothing else was sent");
        assert_eq!(dropped_reports(&bus), Vec::<String>::new());
        rx.task.abort();
    }
}
