//! One target's worker: takes in the events dispatched to it. A trap is
//! sent at once, once. An inform is stored in the target's spool as soon
//! as its event reaches the worker (all that came together in one write
//! and fsync), also while a delivery round is in progress, so a supervisor
//! killed at any moment loses none. Pending informs go out in order,
//! oldest first, one delivery round at a time: `1 + retries` attempts of
//! `timeout` each (retransmissions with one request-id). A round that is
//! not acknowledged leaves the inform pending, and the target is tried
//! again after a backoff (1 s doubling to 30 s, cut short by the next
//! event for that target). A receiver that refuses an inform (an
//! error-status, or a USM report such as an unknown user) cannot be helped
//! by resending: that inform is dropped and logged. Beyond
//! [`MAX_PENDING`] the oldest is dropped; at shutdown the pending informs
//! get a short grace, and what is left stays on disk for the next run.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agentcluster_agent::notify::{Kind, NotifyError, Sender, Target};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::spool::{InformStore, Pending};
use crate::events::Event;
use crate::events::mib::notification;

/// Unacknowledged informs kept per target; beyond, the oldest is dropped.
const MAX_PENDING: usize = 10_000;
/// Backoff between delivery rounds to a target that did not answer.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long the informs still pending at shutdown may take to go out to a
/// target that answered its last round; what is left stays on disk.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// One event for one target, with the supervisor's uptime when it came.
pub(super) type Job = (Arc<Event>, u32);

/// One target's task, with its own socket, so a dead or slow target never
/// delays another.
pub(super) struct Worker {
    pub(super) label: String,
    pub(super) target: Target,
    pub(super) sender: Sender,
    pub(super) mib_root: Vec<u32>,
    /// An SNMPv1 Trap's agent-addr: our IPv4 address towards the target.
    pub(super) agent_addr: [u8; 4],
    /// Informs only.
    pub(super) store: Option<InformStore>,
    pub(super) pending: VecDeque<Pending>,
    /// `pending.len()` for the metrics, set as the worker goes.
    pub(super) pending_count: Arc<AtomicU64>,
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
    /// Works until its queue is closed or `stop` is cancelled; then takes
    /// in what is still queued and gives the pending informs
    /// [`SHUTDOWN_GRACE`] if the target answered its last round.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Job>, stop: CancellationToken) {
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut backoff = BACKOFF_MIN;
        loop {
            // Take in everything queued, without waiting.
            let (jobs, closed) = take_queued(&mut rx, Vec::new());
            if self.accept(jobs).await {
                // A new event: try a target that was down now.
                retry_at = None;
            }
            self.count_pending();
            let due = !self.pending.is_empty()
                && retry_at.is_none_or(|t| t <= tokio::time::Instant::now());
            if due {
                // The round watches `stop` itself: dropping it halfway
                // could lose the events it was storing.
                let Some((round, came)) = self.round(&mut rx, closed, &stop).await else {
                    break;
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
        self.count_pending();
        if !self.pending.is_empty() {
            tracing::info!(
                target = %self.label,
                informs = self.pending.len(),
                "unacknowledged informs kept for the next run"
            );
        }
    }

    fn count_pending(&self) {
        self.pending_count
            .store(self.pending.len() as u64, Ordering::Relaxed);
    }

    /// One delivery round of the oldest pending inform, taking in the
    /// events that come meanwhile: they are on disk at once, not after a
    /// round that can last `timeout × (1 + retries)`, so a supervisor
    /// killed during it loses none of them. Returns the round and whether
    /// events came, or `None` once `stop` is cancelled (the inform stays
    /// pending; events taken in are stored first).
    async fn round(
        &mut self,
        rx: &mut mpsc::Receiver<Job>,
        closed: bool,
        stop: &CancellationToken,
    ) -> Option<(Round, bool)> {
        let Some(first) = self.pending.front().cloned() else {
            return Some((Round::Acknowledged, false));
        };
        let mut open = !closed;
        let mut came = false;
        let delivery = deliver(&mut self.sender, &self.target, &self.mib_root, &first);
        tokio::pin!(delivery);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return None,
                r = &mut delivery => return Some((r, came)),
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
    use std::fs;
    use std::path::PathBuf;
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use agentcluster_agent::notify::encode;
    use agentcluster_conf::NotifyType;

    use super::*;
    use crate::events::Bus;
    use crate::events::sinks::traps::Traps;
    use crate::events::sinks::traps::testutil::{ROOT, Receiver, conf_target, oid};
    use crate::events::testutil::publish;

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

    /// An event taken in during a delivery round is stored even when the
    /// stop comes while it is being stored: the round is never dropped
    /// halfway (that lost the event, and the store with it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_taken_in_during_a_round_are_stored_whenever_the_stop_comes() {
        let mut rx = Receiver::start().await;
        let targets = [conf_target(&rx.addr.to_string(), NotifyType::Inform, None)];
        for i in 0..60u64 {
            let dir = tempfile::tempdir().unwrap();
            let bus = Bus::new("lab-a");
            let traps = Traps::start(&targets, ROOT, "lab-a", dir.path(), &bus)
                .await
                .unwrap();
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(traps.run(shutdown.clone()));
            publish(&bus, "a", "died", "");
            // The round for it is under way (the receiver never answers).
            assert_eq!(rx.next().await, (encode::TAG_INFORM, oid(&[0, 3])));
            publish(&bus, "a", "restarting", "");
            // The stop comes at a different moment of the storing each time.
            std::thread::sleep(Duration::from_micros(i * 37));
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
                ["died", "restarting"],
                "round {i}"
            );
            while rx.seen.try_recv().is_ok() {}
        }
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
        assert_eq!(traps.workers[0].0.pending.len(), 2);
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
