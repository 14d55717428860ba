//! The node's side: its status key rewritten whenever its roster changes,
//! at most once per [`MIN_INTERVAL`], the changes in between coalesced
//! into the next write (a burst of restarts is one write, not thousands).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Entry;
use crate::cluster::keys::Keys;

/// A node's agents as it last saw them; the node sends a new one on a
/// `watch` channel whenever one changes.
pub type Roster = Arc<Vec<Entry>>;

/// The least time between two writes of a status key.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Now, in unix milliseconds.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Who writes a node's status key, and with what.
#[derive(Clone)]
pub struct Publisher {
    /// A client of the fleet's etcd.
    pub client: etcd_client::Client,
    /// The fleet's keys (`cluster.etcd.prefix`).
    pub keys: Keys,
    /// The node: its key is `PREFIX/status/NODE`.
    pub node: String,
    /// The node's supervisor's pid, written in the value.
    pub pid: u32,
    /// The node's lease: the key goes when the lease does.
    pub lease: i64,
}

impl Publisher {
    /// Keeps the node's status key up to date with `roster`: the first
    /// roster at once, then each change at most once per
    /// [`MIN_INTERVAL`], the latest roster only. A failed write is logged
    /// and tried again after the interval. Returns when `stop` is
    /// cancelled or the roster's sender is gone.
    pub async fn run(self, roster: watch::Receiver<Roster>, stop: CancellationToken) {
        self.run_with(roster, Roster::clone, stop).await;
    }

    /// [`Publisher::run`], where a change of `changes` only says that the
    /// agents changed and `read` takes the roster when a write is due (at
    /// most once per [`MIN_INTERVAL`]): for a node that learns of changes
    /// from the event bus (a counter bumped per event) and reads its
    /// units' status only then, rather than building a roster per event.
    pub async fn run_with<T: Clone>(
        self,
        changes: watch::Receiver<T>,
        mut read: impl FnMut(&T) -> Roster,
        stop: CancellationToken,
    ) {
        let Publisher {
            client,
            keys,
            node,
            pid,
            lease,
        } = self;
        let key = keys.status(&node);
        let kv = client.kv_client();
        // Failing since the last write that succeeded: one warning per
        // streak, not one a second.
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let write = move |changed: T| {
            let roster = read(&changed);
            let mut kv = kv.clone();
            let key = key.clone();
            let failing = failing.clone();
            let value = super::encode(&node, pid, unix_ms(), &roster);
            async move {
                let options = etcd_client::PutOptions::new().with_lease(lease);
                let bytes = value.len();
                match kv.put(key.clone(), value, Some(options)).await {
                    Ok(_) => {
                        if failing.swap(false, std::sync::atomic::Ordering::Relaxed) {
                            tracing::info!(key = %key, "the node's status is written to etcd again");
                        }
                        true
                    }
                    Err(cause) => {
                        if failing.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            tracing::debug!(key = %key, bytes, cause = %cause, "cannot write the node's status to etcd");
                        } else {
                            tracing::warn!(key = %key, bytes, cause = %cause, "cannot write the node's status to etcd; trying again every second");
                        }
                        false
                    }
                }
            }
        };
        debounced(changes, stop, MIN_INTERVAL, write).await;
    }
}

/// Calls `write` with the watched value: at once, then after each change,
/// never twice within `interval`, and again after `interval` when it
/// returned `false`.
async fn debounced<T: Clone, F, Fut>(
    mut roster: watch::Receiver<T>,
    stop: CancellationToken,
    interval: Duration,
    mut write: F,
) where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut last: Option<Instant> = None;
    let mut dirty = true;
    loop {
        if !dirty {
            tokio::select! {
                () = stop.cancelled() => return,
                changed = roster.changed() => if changed.is_err() { return },
            }
        }
        if let Some(at) = last {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(at + interval) => {}
            }
        }
        let current = roster.borrow_and_update().clone();
        last = Some(Instant::now());
        dirty = !write(current).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::State;
    use tokio::sync::mpsc;

    fn roster(n: usize) -> Roster {
        Arc::new(
            (0..n)
                .map(|i| Entry {
                    agent: format!("a-{i}"),
                    state: State::Running,
                    pid: Some(100 + i as u32),
                    restarts: 0,
                    since: None,
                })
                .collect(),
        )
    }

    /// A burst of changes is one write of the last roster, a second after
    /// the write before; a failed write is tried again a second later.
    #[tokio::test(start_paused = true)]
    async fn writes_at_most_once_a_second_the_latest_roster() {
        let (tx, rx) = watch::channel(roster(1));
        let (written_tx, mut written) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let fail_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fail = fail_next.clone();
        let start = Instant::now();
        let task = tokio::spawn(debounced(
            rx,
            stop.clone(),
            MIN_INTERVAL,
            move |r: Roster| {
                let ok = !fail.swap(false, std::sync::atomic::Ordering::SeqCst);
                let _ = written_tx.send((r.len(), ok, start.elapsed()));
                async move { ok }
            },
        ));
        assert_eq!(written.recv().await, Some((1, true, Duration::ZERO)));
        for n in 2..=5 {
            tx.send_replace(roster(n));
            tokio::task::yield_now().await;
        }
        assert_eq!(written.recv().await, Some((5, true, MIN_INTERVAL)));
        // Nothing changes: nothing is written.
        tokio::time::sleep(MIN_INTERVAL * 5).await;
        assert!(written.try_recv().is_err());
        // A change long after the last write is written at once; this
        // write fails and is repeated a second later.
        fail_next.store(true, std::sync::atomic::Ordering::SeqCst);
        tx.send_replace(roster(7));
        let (n, ok, at) = written.recv().await.unwrap();
        assert_eq!((n, ok), (7, false));
        assert_eq!(written.recv().await, Some((7, true, at + MIN_INTERVAL)));
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn ends_when_the_roster_is_gone() {
        let (tx, rx) = watch::channel(roster(1));
        let task = tokio::spawn(debounced(
            rx,
            CancellationToken::new(),
            MIN_INTERVAL,
            |_| async { true },
        ));
        drop(tx);
        task.await.unwrap();
    }
}
