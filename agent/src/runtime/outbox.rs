//! The answers of a process's sockets, sent together: the poller puts each
//! socket's answers here instead of sending them from it, and one task
//! sends everything put since it last ran, grouped by port, with one
//! `sendmmsg` per group from one socket of that port, each answer with its
//! own device's address as the source (`IP_PKTINFO`).
//!
//! A packed process woken by requests to many of its devices at once (a
//! monitoring poller walking a fleet) then sends their answers with one
//! system call instead of one per device, and the monitoring poller gets
//! them as one burst, as it would from a single busy device. On the wire nothing changes: an
//! answer leaves from the address and port it was asked at. Answers of a
//! socket bound to a wildcard address leave from that socket itself,
//! without a source, as they always did (the kernel picks the address).
//!
//! The sender runs when the poller yields, at the end of its round: one
//! round fills the outbox and the sender then empties it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::runtime::mmsg::MAX_SLOTS;
use crate::sys::{self, Socket, Source};

/// Where a socket's answers leave from: which sender of the outbox, and
/// the source address to set (none for a wildcard-bound socket).
#[derive(Clone, Copy)]
pub struct Route {
    via: u32,
    source: Option<Source>,
}

/// A process's outgoing answers and the task that sends them.
pub struct Outbox {
    state: Mutex<State>,
    wake: Notify,
    /// Test builds: `sendmmsg` calls made, to show answers leave together.
    #[cfg(test)]
    pub(crate) calls: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct State {
    /// The sockets answers are sent from: one per port and address family
    /// (the first socket of that port routed), and each wildcard-bound
    /// socket for itself.
    senders: Vec<Arc<Socket>>,
    by_port: HashMap<(bool, u16), u32>,
    queued: Queue,
    /// Room for [`Outbox::send_now`]'s queue, kept between calls.
    spare: Queue,
}

/// Answers waiting to be sent: their bytes back to back, and for each its
/// slice, destination and route.
#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    answers: Vec<Answer>,
}

struct Answer {
    start: usize,
    len: usize,
    to: libc::sockaddr_storage,
    to_len: libc::socklen_t,
    route: Route,
}

impl Outbox {
    /// A new outbox, with its sending task spawned on the current runtime
    /// (call it within one). The task ends when `shutdown` is cancelled,
    /// after sending what was already put.
    pub fn spawn(shutdown: &CancellationToken) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            #[cfg(test)]
            calls: Default::default(),
        });
        let (sender, shutdown) = (outbox.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut spare = Queue::default();
            loop {
                let stop = tokio::select! {
                    _ = shutdown.cancelled() => true,
                    _ = sender.wake.notified() => false,
                };
                sender.flush(&mut spare).await;
                if stop {
                    return;
                }
            }
        });
        outbox
    }

    /// The route of `socket`'s answers; `local` is its bound address.
    pub fn route(&self, socket: &Arc<Socket>, local: SocketAddr) -> Route {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let source = Source::of(local);
        let next = s.senders.len() as u32;
        let via = match source {
            Some(_) => *s
                .by_port
                .entry((local.is_ipv6(), local.port()))
                .or_insert(next),
            None => next,
        };
        if via == next {
            s.senders.push(socket.clone());
        }
        Route { via, source }
    }

    /// Queues `answer` to `to` (as the kernel gave the sender, `to_len`
    /// bytes of it) along `route`; the sender runs at the end of the
    /// poller's round.
    pub fn put(
        &self,
        answer: &[u8],
        to: &libc::sockaddr_storage,
        to_len: libc::socklen_t,
        route: Route,
    ) {
        let first = {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let q = &mut s.queued;
            let start = q.bytes.len();
            q.bytes.extend_from_slice(answer);
            q.answers.push(Answer {
                start,
                len: answer.len(),
                to: *to,
                to_len,
                route,
            });
            q.answers.len() == 1
        };
        if first {
            self.wake.notify_one();
        }
    }

    /// Sends everything queued now instead of at the end of the round
    /// (the poller's steering socket, which serves many devices, filled
    /// a batch).
    pub(crate) async fn send_now(&self) {
        let mut spare = std::mem::take(
            &mut self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .spare,
        );
        self.flush(&mut spare).await;
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .spare = spare;
    }

    /// Sends everything queued (swapped with `spare`, which is left empty
    /// with its room kept), a group per sender, waiting while a sender's
    /// buffer is full.
    async fn flush(&self, spare: &mut Queue) {
        std::mem::swap(
            &mut self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .queued,
            spare,
        );
        let q = spare;
        // Grouped by sender, each group in the order its answers came.
        q.answers.sort_by_key(|a| a.route.via);
        for group in q.answers.chunk_by(|a, b| a.route.via == b.route.via) {
            if let Some(socket) = self.sender(group[0].route.via) {
                self.send_group(&socket, &q.bytes, group).await;
            }
        }
        q.answers.clear();
        q.bytes.clear();
    }

    fn sender(&self, via: u32) -> Option<Arc<Socket>> {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.senders.get(via as usize).cloned()
    }

    /// Sends `group` from `socket`, `MAX_SLOTS` answers per system call.
    /// An answer that fails (a refused or unreachable peer) is skipped.
    async fn send_group(&self, socket: &Socket, bytes: &[u8], mut group: &[Answer]) {
        while !group.is_empty() {
            let chunk = &group[..group.len().min(MAX_SLOTS)];
            let r = socket
                .send_with(|fd| {
                    #[cfg(test)]
                    self.calls
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    sys::send_batch::<MAX_SLOTS>(
                        fd,
                        chunk.iter().map(|a| {
                            (
                                &bytes[a.start..a.start + a.len],
                                &a.to,
                                a.to_len,
                                a.route.source.as_ref(),
                            )
                        }),
                    )
                })
                .await;
            match r {
                Ok(sent) => group = &group[sent..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if !super::serve::transient(&e) {
                        let peer = sys::socket_addr(&group[0].to, group[0].to_len);
                        tracing::warn!(?peer, cause = %e, "send failed");
                    }
                    group = &group[1..];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket as StdUdpSocket;
    use std::os::fd::{AsFd, AsRawFd};
    use std::time::Duration;

    use tokio::net::UdpSocket;

    use super::*;
    use crate::runtime::mmsg::Batch;

    /// Receives the one request queued on `socket` and puts an answer
    /// (the request with `!` appended) in `outbox` along `route`.
    fn answer(outbox: &Outbox, socket: &Socket, route: Route) {
        arrived(socket);
        let mut batch = Batch::with_slots(2);
        assert_eq!(batch.recv(socket.as_raw_fd()).unwrap(), 1);
        let mut reply = batch.slot(0).0.to_vec();
        reply.push(b'!');
        let (to, to_len) = batch.sender(0);
        outbox.put(&reply, to, to_len, route);
    }

    async fn bound(addr: SocketAddr) -> Option<Arc<Socket>> {
        let s = StdUdpSocket::bind(addr).ok()?;
        Some(Arc::new(Socket::new(s).ok()?))
    }

    /// Waits (at most ten seconds) until a datagram is queued on `socket`.
    fn arrived(socket: &Socket) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(10_000u16)), Ok(1));
    }

    /// The client's answers: each one's bytes and the address it came from.
    async fn answers(client: &UdpSocket, n: usize) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while got.len() < n {
            let (len, from) =
                tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf))
                    .await
                    .expect("an answer")
                    .unwrap();
            got.push((buf[..len].to_vec(), from));
        }
        got.sort();
        got
    }

    #[tokio::test]
    async fn answers_of_one_port_leave_together_each_from_its_own_address() {
        // Three devices on one port at three addresses: one sender, one
        // system call, and each answer from the address that was asked.
        let first = bound("127.0.0.2:0".parse().unwrap()).await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut sockets = vec![first];
        for ip in ["127.0.0.3", "127.0.0.4"] {
            match bound(SocketAddr::new(ip.parse().unwrap(), port)).await {
                Some(s) => sockets.push(s),
                // Someone else holds the port at that address: nothing to
                // show here.
                None => return,
            }
        }
        let shutdown = CancellationToken::new();
        let outbox = Outbox::spawn(&shutdown);
        let routes: Vec<Route> = sockets
            .iter()
            .map(|s| outbox.route(s, s.local_addr().unwrap()))
            .collect();
        assert!(
            routes
                .iter()
                .all(|r| r.via == routes[0].via && r.source.is_some())
        );
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for (i, s) in sockets.iter().enumerate() {
            client
                .send_to(&[b'a' + i as u8], s.local_addr().unwrap())
                .await
                .unwrap();
        }
        for (s, route) in sockets.iter().zip(&routes) {
            answer(&outbox, s, *route);
        }
        let got = answers(&client, 3).await;
        let want: Vec<(Vec<u8>, SocketAddr)> = sockets
            .iter()
            .enumerate()
            .map(|(i, s)| (vec![b'a' + i as u8, b'!'], s.local_addr().unwrap()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(outbox.calls.load(std::sync::atomic::Ordering::Relaxed), 1);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_wildcard_socket_answers_from_itself_and_v6_keeps_its_address() {
        let shutdown = CancellationToken::new();
        let outbox = Outbox::spawn(&shutdown);
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Bound to 0.0.0.0: its own sender, no source; the kernel answers
        // from the address the client reached, as the socket always did.
        let any = bound("0.0.0.0:0".parse().unwrap()).await.unwrap();
        let route = outbox.route(&any, any.local_addr().unwrap());
        assert!(route.source.is_none());
        let port = any.local_addr().unwrap().port();
        let asked: SocketAddr = SocketAddr::new("127.0.0.1".parse().unwrap(), port);
        client.send_to(b"w", asked).await.unwrap();
        answer(&outbox, &any, route);
        assert_eq!(answers(&client, 1).await, vec![(b"w!".to_vec(), asked)]);
        // IPv6 (where the host has ::1): the source is set with
        // IPV6_PKTINFO, from a socket of its own port and family only.
        let (Some(v6), Ok(client6)) = (
            bound("[::1]:0".parse().unwrap()).await,
            UdpSocket::bind("[::1]:0").await,
        ) else {
            return;
        };
        let route6 = outbox.route(&v6, v6.local_addr().unwrap());
        assert!(route6.source.is_some() && route6.via != route.via);
        client6
            .send_to(b"6", v6.local_addr().unwrap())
            .await
            .unwrap();
        answer(&outbox, &v6, route6);
        assert_eq!(
            answers(&client6, 1).await,
            vec![(b"6!".to_vec(), v6.local_addr().unwrap())]
        );
        shutdown.cancel();
    }
}
