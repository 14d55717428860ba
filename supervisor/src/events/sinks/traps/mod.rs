//! The SNMP notification sink: every lifecycle event becomes an
//! AGENTCLUSTER-MIB notification (`mib_root.0.N`, see
//! `mibs/AGENTCLUSTER-MIB.txt`) sent to each `events.notify` target whose
//! `events` filter lets it through. Traps are fired and forgotten. Informs
//! are spooled on disk before they are sent and retried until acknowledged
//! (or refused, or dropped as the oldest beyond 10,000 pending), so they
//! survive a supervisor restart, even a `kill -9`.
//!
//! [`Traps`] subscribes to the bus and hands each event to one task per
//! target, each with its own socket and a bounded queue, so a dead or slow
//! target never delays another; what does not fit a queue is dropped,
//! counted and logged.
//!
//! Every notification carries the nine `acNotify*` objects in the order of
//! the MIB's OBJECTS clause; absent values are sent as their documented
//! "none": pid 0, exit code -1, signal "".
//!
//! # Layout
//! - here: [`Traps`], its start (the supervisor's SNMPv3 engine, one socket
//!   per target, the informs left by the previous run), the dispatch of
//!   events to the targets' queues, and shutdown;
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
use std::sync::Arc;
use std::time::Instant;

use agentcluster_agent::engine;
use agentcluster_agent::notify::{Kind, LocalEngine, Sender, Target, Version};
use agentcluster_conf::NotifyTarget;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::events::{Bus, Event, EventKind};

mod spool;
#[cfg(test)]
mod testutil;
mod worker;

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
    /// was published before, gives pending informs a short grace (2 s) to
    /// be acknowledged by targets that answer, and returns (what is left
    /// stays on disk for the next run).
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
                    // What was published before the bus closed still goes
                    // out.
                    loop {
                        match events.try_recv() {
                            Ok(e) => dispatch(&mut queues, &e, uptime(), &bus),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                tracing::warn!(lost = n, "notifications: events lost (sink too slow)");
                                bus.report_dropped("notifications", n);
                            }
                            Err(_) => break,
                        }
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

#[cfg(test)]
mod tests {
    use super::testutil::{ROOT, Receiver, conf_target, oid};
    use super::*;
    use crate::events::testutil::publish;
    use agentcluster_agent::notify::encode;
    use agentcluster_conf::NotifyType;
    use std::fs;

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
}
