//! The serving loop of an agent process: one task waits for the datagrams
//! of every socket the process serves, in an epoll set of its own, and
//! serves each socket that has some ([`serve::serve_ready`]).
//!
//! A packed process serves thousands of sockets. With a task per socket,
//! each request cost the runtime a wake-up of that socket's task; here a
//! request costs an entry in the set's ready list, and the process one
//! wake-up of this task per round, however many of its devices were asked.
//! The sockets are in no other epoll set (a [`Socket`](crate::sys::Socket)
//! joins the runtime's reactor only while a send waits for room), so their
//! requests wake nothing else.
//!
//! The set is edge-triggered: a socket is reported when datagrams arrive.
//! A socket whose receive filled its batch may have more queued: it is
//! served again in the next round without waiting for the set, after the
//! other sockets of this round, so a busy device does not hold up the
//! others. Between rounds the task yields, and the [`Outbox`] sends the
//! round's answers.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::runtime::outbox::Outbox;
use crate::runtime::placement::Placement;
use crate::runtime::serve::{self, Station};
use crate::sys::Socket;

/// Most ready sockets taken from the set per round.
const EVENTS: usize = 256;

/// The set's token of steering socket `i` is `STEERING | i`; a station's
/// is its index.
const STEERING: u64 = 1 << 40;

/// The sockets of one process and the task that serves them.
pub struct Poller {
    set: AsyncFd<Set>,
    /// Every socket served, its index the token the set reports it by.
    stations: Mutex<Vec<Arc<Station>>>,
    /// The sockets its devices' datagrams are steered to
    /// ([`crate::sys::steer`]: one per address family, each datagram
    /// served by the station its destination names), if they are; the
    /// set's token of socket `i` is `STEERING | i`.
    steering: Mutex<Vec<Arc<Steering>>>,
    outbox: Arc<Outbox>,
}

/// A steering socket as the poller serves it.
struct Steering {
    socket: Socket,
    /// In the poller's round, or left over for the next one.
    queued: AtomicBool,
    /// The station of each destination steered (the same for every
    /// steering socket of the process; it never changes).
    by_destination: Arc<HashMap<SocketAddr, Arc<Station>>>,
}

/// What a round serves: a device's socket, or a steering socket.
enum Ready {
    Station(Arc<Station>),
    Steering(Arc<Steering>),
}

impl Ready {
    fn queued(&self) -> &AtomicBool {
        match self {
            Ready::Station(s) => &s.queued,
            Ready::Steering(s) => &s.queued,
        }
    }
}

/// A destination as a received datagram names it (no IPv6 flow or scope).
fn plain(to: SocketAddr) -> SocketAddr {
    SocketAddr::new(to.ip(), to.port())
}

/// The epoll set, as the runtime's reactor waits for it.
struct Set(Epoll);

impl AsRawFd for Set {
    fn as_raw_fd(&self) -> RawFd {
        self.0.0.as_raw_fd()
    }
}

impl From<Set> for OwnedFd {
    fn from(set: Set) -> OwnedFd {
        set.0.0
    }
}

impl Poller {
    /// A poller for the sockets of one process, its task spawned in
    /// `tasks` (call it within a runtime), its answers sent through
    /// `outbox`. The task ends when `shutdown` is cancelled, or with the
    /// error of a socket that failed, having cancelled `shutdown` (the
    /// process stops, and is restarted).
    pub fn spawn(
        tasks: &mut JoinSet<io::Result<()>>,
        outbox: &Arc<Outbox>,
        shutdown: &CancellationToken,
    ) -> io::Result<Arc<Poller>> {
        let set = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let poller = Arc::new(Poller {
            set: crate::sys::register(Set(set), Interest::READABLE)?,
            stations: Mutex::default(),
            steering: Mutex::default(),
            outbox: outbox.clone(),
        });
        let (serving, shutdown) = (poller.clone(), shutdown.clone());
        tasks.spawn(async move {
            let served = serving.run(&shutdown).await;
            if let Err(e) = &served {
                tracing::error!(cause = %e, "serving a socket failed");
                shutdown.cancel();
            }
            served
        });
        Ok(poller)
    }

    /// Where the answers of this poller's sockets go.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Serves `station`'s socket from now on (datagrams already queued
    /// included); a face ([`Socket::face`]) is only served through the
    /// steering sockets.
    pub(crate) fn add(&self, station: Station) -> io::Result<()> {
        let mut stations = self.stations.lock().unwrap_or_else(PoisonError::into_inner);
        let token = stations.len() as u64;
        if !station.socket().is_face() {
            let event = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, token);
            self.set.get_ref().0.add(station.socket(), event)?;
        }
        stations.push(Arc::new(station));
        Ok(())
    }

    /// Serves `sockets`, steering sockets ([`crate::sys::steer`]: the
    /// supervisor steers the datagrams of this process's devices there),
    /// from now on: each datagram they receive is served by the station
    /// its destination names (one of the stations served so far; called
    /// once, after them). The stations' own sockets stay served too, for
    /// what reaches them (what came before the steering, or while nothing
    /// was steered). How many stations the steering sockets can serve.
    pub fn steer(&self, sockets: Vec<std::net::UdpSocket>) -> io::Result<usize> {
        let by_destination: Arc<HashMap<SocketAddr, Arc<Station>>> = Arc::new(
            self.stations
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter_map(|s| Some((plain(s.socket().local_addr().ok()?), s.clone())))
                .filter(|(local, _)| !local.ip().is_unspecified())
                .collect(),
        );
        let mut steering = self.steering.lock().unwrap_or_else(PoisonError::into_inner);
        for socket in sockets {
            let ipv6 = socket.local_addr()?.is_ipv6();
            crate::sys::want_destinations(&socket, ipv6)?;
            let s = Arc::new(Steering {
                socket: Socket::new(socket)?,
                queued: AtomicBool::new(false),
                by_destination: by_destination.clone(),
            });
            let token = STEERING | steering.len() as u64;
            let event = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, token);
            self.set.get_ref().0.add(&s.socket, event)?;
            steering.push(s);
        }
        Ok(by_destination.len())
    }

    async fn run(&self, shutdown: &CancellationToken) -> io::Result<()> {
        let mut events = vec![EpollEvent::empty(); EVENTS];
        let mut round: Vec<Ready> = Vec::new();
        // Sockets whose last receive filled its batch.
        let mut again: Vec<Ready> = Vec::new();
        let mut placement = Placement::default();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            // With busy sockets left over, the set is only looked at if
            // the reactor says something arrived; otherwise it is waited
            // for.
            let ready = if again.is_empty() {
                tokio::select! {
                    biased;
                    _ = &mut cancelled => return Ok(()),
                    ready = self.set.readable() => Some(ready?),
                }
            } else if shutdown.is_cancelled() {
                return Ok(());
            } else {
                tokio::select! {
                    biased;
                    ready = self.set.readable() => Some(ready?),
                    _ = std::future::ready(()) => None,
                }
            };
            let mut full = false;
            round.append(&mut again);
            if let Some(mut ready) = ready {
                let n = self.wait(&mut events)?;
                full = n == events.len();
                if !full {
                    // The ready list was emptied; a socket reported since
                    // has made the set readable again, and this does not
                    // clear that.
                    ready.clear_ready();
                }
                let stations = self.stations.lock().unwrap_or_else(PoisonError::into_inner);
                let steering = if events[..n].iter().any(|e| e.data() & STEERING != 0) {
                    self.steering
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone()
                } else {
                    Vec::new()
                };
                round.extend(
                    events[..n]
                        .iter()
                        .filter_map(|e| {
                            let token = e.data();
                            if token & STEERING != 0 {
                                let i = (token & !STEERING) as usize;
                                steering.get(i).cloned().map(Ready::Steering)
                            } else {
                                stations.get(token as usize).cloned().map(Ready::Station)
                            }
                        })
                        // Not twice in a round, nor while left over.
                        .filter(|s| !s.queued().swap(true, Ordering::Relaxed)),
                );
            }
            let served = !round.is_empty();
            let mut ready = round.drain(..);
            while let Some(next) = ready.next() {
                // The round's stations are in the cache (the loop above
                // read each); their devices' objects are not.
                if let Some(Ready::Station(after)) = ready.as_slice().first() {
                    after.prefetch();
                }
                let more = match &next {
                    Ready::Station(station) => {
                        serve::serve_ready(station, &self.outbox, shutdown).await?
                    }
                    Ready::Steering(steering) => {
                        let station_of = |to| steering.by_destination.get(&plain(to)).cloned();
                        serve::serve_steered(&steering.socket, station_of, &self.outbox, shutdown)
                            .await?
                    }
                };
                if more {
                    again.push(next);
                } else {
                    next.queued().store(false, Ordering::Relaxed);
                }
            }
            if served && placement.served() {
                tracing::debug!(
                    "serving moved to another CPU: it traded this one with another task a datagram at a time"
                );
            }
            if full || !again.is_empty() {
                // What waits for the set would not yield: the outbox and
                // the process's other tasks run now.
                tokio::task::yield_now().await;
            }
        }
    }

    /// The sockets ready now, without waiting: how many of `events` were
    /// filled.
    fn wait(&self, events: &mut [EpollEvent]) -> io::Result<usize> {
        loop {
            match self.set.get_ref().0.wait(events, EpollTimeout::ZERO) {
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
