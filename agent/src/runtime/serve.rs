//! The agent's serving of its devices: datagrams from already-bound UDP
//! sockets go through the [`Responder`] and back to their sender. The
//! sockets are bound by the supervisor, so this never binds anything
//! itself. The process's [`Poller`] waits for all of its sockets and calls
//! [`serve_ready`] for each that has datagrams. A socket that drains a full
//! batch sends its answers itself at once; the last answers of a drain go
//! to the process's [`Outbox`], which sends those of every socket served
//! in the same round together. The device's own notifications leave from
//! the same sockets ([`Endpoint`]): while one waits for an answer, the
//! loop hands answers from its peer over to it ([`Replies`]) instead of to
//! the responder. A device's faults ([`Behaviour`]: hang, loss, latency, a
//! reboot's outage) decide each request's fate before the responder sees
//! it; a delayed answer is sent by a timer task of its own, so the loop
//! (and the other agents of the process) never wait for it.

use std::cell::RefCell;
use std::io;
use std::net::UdpSocket as StdUdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::data::mib::Counters;
use crate::notify::Replies;
use crate::responder::{Effects, Hold, Notice, Outcome, Responder};
use crate::runtime::faults::{Behaviour, Fate};
use crate::runtime::mmsg::Batch;
pub use crate::runtime::outbox::Outbox;
use crate::runtime::outbox::Route;
pub use crate::runtime::poller::Poller;
use crate::sys::Socket;

/// A responder shared by the sockets of one agent.
pub type Shared = Arc<Mutex<Responder>>;

/// One served socket: the poller reads it; the device's notifications are
/// sent from it, their answers handed over in `replies`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The bound socket, non-blocking.
    pub socket: Arc<Socket>,
    /// Where its serving hands answers to the device's notifications.
    pub replies: Arc<Replies>,
}

impl Endpoint {
    /// An inherited, bound socket, made non-blocking.
    pub fn new(socket: StdUdpSocket) -> io::Result<Endpoint> {
        Ok(Endpoint {
            socket: Arc::new(Socket::new(socket)?),
            replies: Replies::new(),
        })
    }

    /// The endpoint of a device at `at` that has no socket of its own
    /// (its requests are steered to the process's steering socket): it
    /// sends from `at` through a face of `anchor`'s socket
    /// ([`Socket::face`]).
    pub fn face(anchor: &Endpoint, at: std::net::SocketAddr) -> io::Result<Endpoint> {
        Ok(Endpoint {
            socket: Arc::new(anchor.socket.face(at)?),
            replies: Replies::new(),
        })
    }
}

/// A device's faults, shared by its sockets and the process that changes
/// them.
pub type SharedBehaviour = Arc<Mutex<Behaviour>>;

/// A socket as the [`Poller`] serves it: its endpoint, its device's
/// responder and faults, and where its answers leave from.
pub(crate) struct Station {
    endpoint: Endpoint,
    route: Route,
    responder: Shared,
    behaviour: SharedBehaviour,
    /// In the poller's round, or left over for the next one.
    pub(crate) queued: AtomicBool,
}

impl Station {
    pub(crate) fn socket(&self) -> &Socket {
        &self.endpoint.socket
    }

    /// Starts bringing into the cache what serving this station reads
    /// first (its socket, replies, faults and responder, each a heap
    /// object of its own), without waiting: the poller asks it of the
    /// next station of a round while it serves this one. A packed process
    /// asked by a walk over its devices serves each from a cold cache, and
    /// these were the first misses of each.
    pub(crate) fn prefetch(&self) {
        crate::sys::prefetch(&*self.endpoint.socket);
        crate::sys::prefetch(&*self.endpoint.replies);
        crate::sys::prefetch(&*self.behaviour);
        crate::sys::prefetch(&*self.responder);
    }
}

/// Serves every endpoint until `shutdown` is cancelled, without faults:
/// [`serve_device`] on a poller of its own, waited for.
#[cfg(test)]
pub async fn serve(
    endpoints: Vec<Endpoint>,
    responder: Shared,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let behaviour = Arc::new(Mutex::new(Behaviour::new(1)));
    let outbox = Outbox::spawn(&shutdown);
    let mut tasks = tokio::task::JoinSet::new();
    let poller = Poller::spawn(&mut tasks, &outbox, &shutdown)?;
    serve_device(&poller, endpoints, &responder, &behaviour)?;
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = result.and(Err(e)),
            Err(e) => {
                shutdown.cancel();
                result = result.and(Err(io::Error::other(e)));
            }
        }
    }
    result
}

/// Serves every endpoint of one device from now on, on the process's
/// `poller` (no task or set per device: a packed process serves
/// thousands). The responder is shared by the device's sockets, and so are
/// the device's faults.
pub fn serve_device(
    poller: &Poller,
    endpoints: Vec<Endpoint>,
    responder: &Shared,
    behaviour: &SharedBehaviour,
) -> io::Result<()> {
    for endpoint in endpoints {
        let route = poller
            .outbox()
            .route(&endpoint.socket, endpoint.socket.local_addr()?);
        poller.add(Station {
            endpoint,
            route,
            responder: responder.clone(),
            behaviour: behaviour.clone(),
            queued: AtomicBool::new(false),
        })?;
    }
    Ok(())
}

/// Most receive batches a socket is served in one turn of the poller: a
/// busy device drains its queue in few turns, and a flood to one device
/// still leaves the other devices of its process their turn.
const TURN_BATCHES: usize = 8;

/// Serves `station`'s socket, which the poller found readable, until it is
/// drained or has had its turn: true if datagrams may be left.
pub(crate) async fn serve_ready(
    station: &Station,
    outbox: &Outbox,
    shutdown: &CancellationToken,
) -> io::Result<bool> {
    // The thread's receive batch, for this socket's turn only.
    let mut batch = Lent::take();
    for _ in 0..TURN_BATCHES {
        if !serve_batch(station, &mut batch, outbox, shutdown).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Serves one receive batch of `station`'s socket: true if the batch came
/// back full, so that more may be queued. A receive that leaves slots
/// empty took all there was, which spares each lone request a second,
/// empty receive.
async fn serve_batch(
    station: &Station,
    batch: &mut Batch,
    outbox: &Outbox,
    shutdown: &CancellationToken,
) -> io::Result<bool> {
    let fd = station.socket().as_raw_fd();
    let got = match batch.recv(fd) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
        // ICMP errors from earlier sends surface here on Linux; they
        // concern one peer, not the socket, and datagrams may be queued
        // behind them.
        Err(e) if transient(&e) => return Ok(true),
        Err(e) => return Err(e),
    };
    // A socket that filled its batch is busy: it answers the batch at once,
    // from itself, before it receives the next. The last few requests of a
    // drain wait in the outbox for the answers of the other sockets served
    // in this round.
    let busy = got == batch.slots();
    let mut delayed = Vec::new();
    let replied = answer(station, batch, 0..got, busy, outbox, shutdown, &mut delayed);
    if replied > 0 {
        send_all(station.socket(), batch).await;
    }
    send_later(&station.endpoint.socket, delayed, shutdown);
    Ok(busy)
}

/// Serves one turn of a process's steering socket, which the poller found
/// readable: each datagram goes to the station of its destination
/// (`station_of`; one that has none is dropped, as the kernel would drop
/// a datagram to an address nothing is bound to) and is answered as that
/// station's own socket would have answered it, through the outbox. A
/// receive that filled its batch is answered at once, as a busy socket's
/// is (the asker gets these answers while the next batch is served);
/// the last of a drain wait for the end of the round. True if datagrams
/// may be left.
pub(crate) async fn serve_steered(
    socket: &Socket,
    station_of: impl Fn(std::net::SocketAddr) -> Option<Arc<Station>>,
    outbox: &Outbox,
    shutdown: &CancellationToken,
) -> io::Result<bool> {
    let mut batch = Lent::take();
    let mut delayed = Vec::new();
    for _ in 0..TURN_BATCHES {
        let got = match batch.recv_steered(socket.as_raw_fd()) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if transient(&e) => return Ok(true),
            Err(e) => return Err(e),
        };
        let of = |batch: &Batch, i: usize| {
            (i < got)
                .then(|| batch.destination(i))
                .flatten()
                .and_then(&station_of)
        };
        let mut this = of(&batch, 0);
        let mut i = 0;
        while i < got {
            // The datagrams to this device in a row are served together
            // (a busy device's burst: its locks taken once); the next
            // device's objects come into the cache meanwhile.
            let mut end = i + 1;
            let mut next = of(&batch, end);
            while end < got && same(&this, &next) {
                end += 1;
                next = of(&batch, end);
            }
            if let Some(s) = &next {
                s.prefetch();
            }
            if let Some(station) = &this {
                #[cfg(test)]
                tests::STEERED.with(|n| n.set(n.get() + end - i));
                answer(
                    station,
                    &mut batch,
                    i..end,
                    false,
                    outbox,
                    shutdown,
                    &mut delayed,
                );
                send_later(
                    &station.endpoint.socket,
                    std::mem::take(&mut delayed),
                    shutdown,
                );
            }
            this = next;
            i = end;
        }
        if got < batch.slots() {
            return Ok(false);
        }
        outbox.send_now().await;
    }
    Ok(true)
}

/// Whether `a` and `b` are the same station, or both none.
fn same(a: &Option<Arc<Station>>, b: &Option<Arc<Station>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Answers datagrams `slots` of `batch`, all asked of `station`'s device:
/// through its faults and its responder; an answer is marked in the
/// batch (`busy`: the caller sends the batch from the station's socket)
/// or put in the `outbox`, or goes to `delayed` (a latency fault). How
/// many were marked.
fn answer(
    station: &Station,
    batch: &mut Batch,
    slots: std::ops::Range<usize>,
    busy: bool,
    outbox: &Outbox,
    shutdown: &CancellationToken,
    delayed: &mut Vec<(Vec<u8>, std::net::SocketAddr, std::time::Duration)>,
) -> usize {
    let Station {
        endpoint: Endpoint { socket, replies },
        route,
        responder,
        behaviour,
        ..
    } = station;
    // Answers to the device's own notifications are looked for only while
    // one waits for them.
    let answers = replies.waiting();
    let mut replied = 0;
    let mut b = behaviour.lock().unwrap_or_else(PoisonError::into_inner);
    let faulty = b.active();
    let mut r = responder.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    for i in slots {
        let peer = batch.peer(i);
        if answers
            && let Some(peer) = peer
            && replies.offer(peer, batch.slot(i).0)
        {
            continue;
        }
        let fate = if faulty { b.fate(now) } else { Fate::Answer };
        if fate == Fate::Drop {
            continue;
        }
        if let Some(peer) = peer
            && !r.admit(peer.ip(), now)
        {
            continue;
        }
        let (datagram, frame) = batch.slot(i);
        let outcome = r.handle(datagram, now, frame);
        if r.has_effects()
            && let Some(peer) = peer
        {
            // A variation asked for more than a response; a latency
            // fault adds to its hold.
            let mut effects = r.take_effects();
            if let Fate::Delay(d) = fate {
                effects.add_hold(Hold::For(d));
            }
            let answer = (outcome == Outcome::Reply).then(|| frame.as_slice().to_vec());
            let engine = r.notify_engine();
            apply(socket, replies, shutdown, peer, answer, effects, engine);
            continue;
        }
        if outcome == Outcome::Reply {
            match (fate, peer) {
                (Fate::Delay(d), Some(peer)) => {
                    delayed.push((frame.as_slice().to_vec(), peer, d));
                }
                _ if busy => {
                    batch.reply(i);
                    replied += 1;
                }
                _ => {
                    let (to, to_len) = batch.sender(i);
                    outbox.put(batch.frame(i), to, to_len, *route);
                }
            }
        }
    }
    replied
}

/// Sends each of `delayed` (an answer, its peer, its delay) from `socket`
/// once its delay is over, on a timer task of its own.
fn send_later(
    socket: &Arc<Socket>,
    delayed: Vec<(Vec<u8>, std::net::SocketAddr, std::time::Duration)>,
    shutdown: &CancellationToken,
) {
    for (answer, peer, delay) in delayed {
        let socket = socket.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(delay) => {
                    let _ = socket.send_to(&answer, peer).await;
                }
            }
        });
    }
}

thread_local! {
    /// The receive batches of this thread's pollers not in use. A poller
    /// takes one only while it serves a socket and gives it back after, so
    /// the thousands of sockets of a packed process share one batch
    /// instead of holding a receive buffer each.
    static SPARE: RefCell<Vec<Batch>> = const { RefCell::new(Vec::new()) };
}

/// Batches kept for reuse per thread: more are only needed while several
/// pollers of one thread serve at once, and those are freed.
const SPARE_MAX: usize = 4;

/// Slots of a thread's first batch: more than one, so that a receive
/// which gets a lone request leaves a slot empty and shows the socket
/// drained (see [`serve_batch`]). Only the pages a datagram is written to
/// become resident.
const FIRST_SLOTS: usize = 2;

/// A receive batch lent by the thread's [`SPARE`] pool (a new one when it
/// has none), given back when dropped, on whichever thread that happens.
struct Lent(Option<Batch>);

impl Lent {
    fn take() -> Lent {
        let spare = SPARE.try_with(|s| s.borrow_mut().pop()).ok().flatten();
        Lent(Some(
            spare.unwrap_or_else(|| Batch::with_slots(FIRST_SLOTS)),
        ))
    }
}

impl std::ops::Deref for Lent {
    type Target = Batch;
    fn deref(&self) -> &Batch {
        // Some until dropped.
        self.0.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut Batch {
        self.0.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(batch) = self.0.take() {
            // try_with: a thread going away keeps nothing.
            let _ = SPARE.try_with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < SPARE_MAX {
                    s.push(batch);
                }
            });
        }
    }
}

/// Carries out what a request's variations asked for: its `answer` sent
/// to `peer` after the hold (`delay`: parked on a timer of its own, so
/// the loop goes on serving), or never; notifications sent from the
/// endpoint, as the device.
fn apply(
    socket: &Arc<Socket>,
    replies: &Arc<Replies>,
    shutdown: &CancellationToken,
    peer: std::net::SocketAddr,
    answer: Option<Vec<u8>>,
    effects: Effects,
    engine: crate::notify::LocalEngine,
) {
    let Effects { hold, notices } = effects;
    if let Some(answer) = answer {
        match hold {
            Some(Hold::Drop) => {}
            hold => {
                let wait = match hold {
                    Some(Hold::For(d)) => d,
                    _ => std::time::Duration::ZERO,
                };
                let (socket, shutdown) = (socket.clone(), shutdown.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(wait) => {
                            if let Err(e) = socket.send_to(&answer, peer).await
                                && !transient(&e)
                            {
                                tracing::warn!(%peer, cause = %e, "send failed");
                            }
                        }
                    }
                });
            }
        }
    }
    if notices.is_empty() {
        return;
    }
    let (socket, replies, shutdown) = (socket.clone(), replies.clone(), shutdown.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = send_notices(socket, replies, notices, engine) => {}
        }
    });
}

/// Sends the notifications `notification` variations asked for, one
/// after the other, from the device's serving `socket`.
async fn send_notices(
    socket: Arc<Socket>,
    replies: Arc<Replies>,
    notices: Vec<Notice>,
    engine: crate::notify::LocalEngine,
) {
    let local = socket.local_addr().ok();
    let mut sender = crate::notify::Sender::over(socket, replies, engine);
    for mut notice in notices {
        if !notice.agent_addr_given
            && let Some(local) = local
            && let Some(to) = tokio::net::lookup_host(&notice.target.address)
                .await
                .ok()
                .and_then(|mut a| a.find(|a| a.is_ipv6() == local.is_ipv6()))
        {
            notice.notification.agent_addr = crate::notify::agent_addr(local.ip(), to);
        }
        if let Err(e) = sender.send(&notice.target, &notice.notification).await {
            tracing::warn!(target = %notice.target.address, cause = %e, "notification variation not delivered");
        }
    }
}

/// Sends every answer of the batch, waiting while the socket's send buffer
/// is full.
async fn send_all(socket: &Socket, batch: &mut Batch) {
    let mut failed = |peer: std::net::SocketAddr, e: io::Error| {
        if !transient(&e) {
            tracing::warn!(%peer, cause = %e, "send failed");
        }
    };
    loop {
        match socket
            .send_with(|fd| batch.send(fd, socket.fragments(), &mut failed))
            .await
        {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(cause = %e, "send failed");
                return;
            }
        }
    }
}

pub(crate) fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::PermissionDenied
    )
}

/// A snapshot of the counters, for status reports.
pub fn counters(responder: &Shared) -> Counters {
    responder
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .counters()
        .clone()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::UdpSocket;

    use super::*;
    use crate::data::snapshot::Record;
    use crate::data::store::Store;
    use crate::responder::ratelimit::RateLimit;
    use crate::responder::{CommunityAccess, Config};
    use crate::wire::value::Value;

    /// v2c GET sysDescr.0, community `public`, as snmpget sends it.
    const GET: [u8; 43] = [
        0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x1c,
        0x02, 0x04, 0x12, 0x34, 0x56, 0x78, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30,
        0x0c, 0x06, 0x08, 0x2b, 6, 1, 2, 1, 1, 1, 0, 0x05, 0x00,
    ];

    /// sysDescr.0 only.
    fn store() -> Arc<Store> {
        let store = Store::from_records(&[Record {
            oid: vec![1, 3, 6, 1, 2, 1, 1, 1, 0],
            value: Value::OctetString(b"box".to_vec()),
            variation: None,
            line: 1,
        }])
        .unwrap();
        Arc::new(store)
    }

    fn responder() -> Responder {
        let config = Config {
            communities: vec![CommunityAccess {
                community: b"public".to_vec(),
                v1: true,
                v2c: true,
                view: 0,
                write: false,
            }],
            max_varbinds: 100,
            max_message_size: 1500,
            v3: None,
        };
        Responder::new(config, vec![store()], Instant::now())
    }

    /// `responder` served on a loopback socket by a thread of its own:
    /// the address, the shared responder, the token that stops it, and the
    /// thread to join.
    fn serving(
        responder: Responder,
    ) -> (
        std::net::SocketAddr,
        Shared,
        CancellationToken,
        std::thread::JoinHandle<io::Result<()>>,
    ) {
        let server = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let shared: Shared = Arc::new(Mutex::new(responder));
        let token = CancellationToken::new();
        let rt = crate::util::one_thread_runtime();
        let (s2, t2) = (shared.clone(), token.clone());
        let thread = std::thread::spawn(move || {
            rt.block_on(async move { serve(vec![Endpoint::new(server)?], s2, t2).await })
        });
        (addr, shared, token, thread)
    }

    /// sysDescr.0 plain, sysObjectID.0 (`GET` with arc 2) held by a
    /// `delay` of `wait` ms, sysContact.0 (arc 4) a `notification` to
    /// `trap_to` on a GET.
    fn varied(wait: u32, trap_to: std::net::SocketAddr) -> Responder {
        let rec = |arc: u32, value: &str, module: &str, params: String| Record {
            oid: vec![1, 3, 6, 1, 2, 1, 1, arc, 0],
            value: Value::OctetString(value.as_bytes().to_vec()),
            variation: (!module.is_empty()).then(|| crate::data::snapshot::Variation {
                name: module.into(),
                params,
            }),
            line: 1,
        };
        let store = Store::from_records(&[
            rec(1, "box", "", String::new()),
            rec(2, "slow", "delay", format!("value=slow,wait={wait}")),
            rec(
                4,
                "admin",
                "notification",
                format!(
                    "op=get,host={},port={},trapoid=1.3.6.1.4.1.9.0.7,value=admin",
                    trap_to.ip(),
                    trap_to.port()
                ),
            ),
        ])
        .unwrap();
        let mut r = responder();
        r.swap_store(0, Arc::new(store));
        r
    }

    fn request_id(answer: &[u8]) -> u32 {
        let len = usize::from(answer[16]);
        answer[17..17 + len]
            .iter()
            .fold(0u32, |v, b| (v << 8) | u32::from(*b))
    }

    /// A GET of a delayed object and a GET of another sent at once: the
    /// other is answered first, the delayed one after its wait, and
    /// neither is lost.
    #[test]
    fn a_delayed_answer_is_parked_and_does_not_hold_up_others() {
        let unused = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let (addr, _shared, token, server_thread) =
            serving(varied(400, unused.local_addr().unwrap()));
        let client = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut slow = GET;
        slow[39] = 2;
        slow[17..21].copy_from_slice(&1u32.to_be_bytes());
        let mut fast = GET;
        fast[17..21].copy_from_slice(&2u32.to_be_bytes());
        let sent = Instant::now();
        client.send(&slow).unwrap();
        client.send(&fast).unwrap();
        let mut buf = [0u8; 1500];
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(request_id(&buf[..n]), 2, "the undelayed answer comes first");
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(request_id(&buf[..n]), 1);
        assert!(sent.elapsed() >= Duration::from_millis(400));
        assert!(buf[..n].ends_with(b"slow"));
        token.cancel();
        server_thread.join().unwrap().unwrap();
    }

    /// A GET of a `notification` object answers and sends the trap from
    /// the serving socket: the receiver sees the device's own address.
    #[test]
    fn a_notification_leaves_from_the_devices_endpoint() {
        let receiver = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (addr, _shared, token, server_thread) =
            serving(varied(0, receiver.local_addr().unwrap()));
        let client = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut get = GET;
        get[39] = 4;
        client.send(&get).unwrap();
        let mut buf = [0u8; 1500];
        let n = client.recv(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b"admin"));
        let (n, from) = receiver.recv_from(&mut buf).unwrap();
        assert_eq!(from, addr, "sent from the device's endpoint");
        // An SNMPv2-Trap PDU (0xa7) naming the trap OID.
        assert!(buf[..n].contains(&0xa7));
        let trap_oid = [0x2b, 6, 1, 4, 1, 9, 0, 7];
        assert!(buf[..n].windows(trap_oid.len()).any(|w| w == trap_oid));
        token.cancel();
        server_thread.join().unwrap().unwrap();
    }

    #[test]
    fn the_rate_limit_drops_and_counts_per_source() {
        let mut r = responder();
        r.set_rate_limit(Some(RateLimit {
            per_second: 1,
            burst: 3,
        }));
        let (addr, shared, token, server_thread) = serving(r);
        let client = |ip: &str| {
            let c = StdUdpSocket::bind((ip, 0)).unwrap();
            c.connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c
        };
        let mut buf = [0u8; 1500];
        // A flood from one source: its burst is answered, the rest dropped.
        let flood = client("127.0.0.1");
        for _ in 0..10 {
            flood.send(&GET).unwrap();
        }
        // Another source is not limited by it. Its answer also tells that
        // every datagram sent before it was handled (one socket, in order).
        let other = client("127.0.0.2");
        other.send(&GET).unwrap();
        other.recv(&mut buf).unwrap();
        let c = counters(&shared);
        assert_eq!((c.requests, c.rate_limited, c.dropped), (4, 7, 7));
        let mut answers = 0;
        flood.set_nonblocking(true).unwrap();
        while flood.recv(&mut buf).is_ok() {
            answers += 1;
        }
        assert_eq!(answers, 3);
        token.cancel();
        server_thread.join().unwrap().unwrap();
    }

    /// A burst far beyond one batch, with garbage between the requests:
    /// every request answered once, the garbage dropped and counted.
    #[test]
    fn a_burst_is_answered_in_batches_with_garbage_in_between() {
        let (addr, shared, token, server_thread) = serving(responder());
        let client = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        const N: u32 = 300;
        // Answers are read as they come, so none overflows our buffer.
        let reader = {
            let client = client.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut seen = vec![false; N as usize];
                let mut buf = [0u8; 1500];
                for _ in 0..N {
                    let n = client.recv(&mut buf).expect("every request answered");
                    // The request-id, a minimal INTEGER after the PDU header.
                    assert_eq!(buf[15], 0x02, "{:02x?}", &buf[..n]);
                    let len = usize::from(buf[16]);
                    let id = buf[17..17 + len]
                        .iter()
                        .fold(0u32, |v, b| (v << 8) | u32::from(*b));
                    assert!(!seen[id as usize], "request {id} answered twice");
                    seen[id as usize] = true;
                }
            })
        };
        // Waves of 60 requests and 15 garbage datagrams: more than one
        // batch, little enough for the socket's receive buffer.
        for id in 0..N {
            let mut get = GET;
            get[17..21].copy_from_slice(&id.to_be_bytes());
            client.send(&get).unwrap();
            if id % 4 == 0 {
                client.send(&[0x30, 0x03, 0x02, 0x01]).unwrap();
            }
            if id % 60 == 59 {
                let deadline = Instant::now() + Duration::from_secs(10);
                while counters(&shared).requests + counters(&shared).dropped
                    < u64::from(id + 1 + (id / 4 + 1))
                {
                    assert!(Instant::now() < deadline, "{:?}", counters(&shared));
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        reader.join().unwrap();
        let c = counters(&shared);
        assert_eq!(c.requests, u64::from(N));
        assert_eq!(c.dropped, u64::from(N / 4));
        token.cancel();
        server_thread.join().unwrap().unwrap();
    }

    /// A notification receiver on loopback, in the test's runtime: it
    /// answers each v2c inform (a Response with its request-id) and hands
    /// the source of each to the channel.
    async fn inform_receiver() -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<std::net::SocketAddr>,
    ) {
        use crate::notify::{Notification, encode};
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            let mut frame = crate::wire::ber::Frame::default();
            loop {
                let (len, peer) = socket.recv_from(&mut buf).await.unwrap();
                type Message = rasn_snmp::v2c::Message<rasn_snmp::v2::Pdus>;
                let Ok(msg) = rasn::ber::decode::<Message>(&buf[..len]) else {
                    continue;
                };
                let rasn_snmp::v2::Pdus::InformRequest(inform) = msg.data else {
                    continue;
                };
                let empty = Notification {
                    trap_oid: vec![1, 3],
                    uptime: 0,
                    varbinds: vec![],
                    agent_addr: [0; 4],
                };
                encode::v2c(&mut frame, b"public", 0xa2, inform.0.request_id, &empty);
                socket.send_to(frame.as_slice(), peer).await.unwrap();
                let _ = tx.send(peer);
            }
        });
        (addr, rx)
    }

    /// A device's notifications leave from the socket it serves on, and
    /// the answers come back through its serving loop: a v2c inform is
    /// acknowledged at its only attempt, and an SNMPv3 inform discovers the
    /// receiver's engine (whose Reports come back the same way) before the
    /// receiver refuses its unknown user; meanwhile and after, the socket
    /// still answers requests.
    #[tokio::test]
    async fn informs_from_the_serving_socket_get_their_answers() {
        use crate::notify::{
            COLD_START, Kind, LocalEngine, Notification, NotifyError, NotifyUser, Sender, Target,
            Version,
        };
        let endpoint = Endpoint::new(StdUdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let device = endpoint.socket.local_addr().unwrap();
        let shared: Shared = Arc::new(Mutex::new(responder()));
        let token = CancellationToken::new();
        let serving = tokio::spawn(serve(vec![endpoint.clone()], shared.clone(), token.clone()));
        let local = LocalEngine {
            engine_id: vec![0x80, 0, 0x1f, 0x88, 5, 1, 2, 3],
            boots: 1,
            start: Instant::now(),
        };
        let mut sender = Sender::over(endpoint.socket.clone(), endpoint.replies.clone(), local);
        let note = Notification {
            trap_oid: COLD_START.to_vec(),
            uptime: 1,
            varbinds: vec![],
            agent_addr: [127, 0, 0, 1],
        };

        let (manager, mut sources) = inform_receiver().await;
        let v2c = Target {
            address: manager.to_string(),
            version: Version::V2c,
            kind: Kind::Inform,
            community: b"public".to_vec(),
            user: None,
            retries: 0,
            timeout: Duration::from_secs(5),
        };
        sender.send(&v2c, &note).await.unwrap();
        assert_eq!(sources.recv().await, Some(device), "sent from the device");
        assert!(!endpoint.replies.waiting());
        assert_eq!(counters(&shared).requests, 0, "the answer was no request");

        // An SNMPv3 receiver: a responder of ours, which knows no user.
        let engine = vec![0x80, 0, 0x1f, 0x88, 5, 7, 7, 7];
        let mut r = Responder::new(
            Config {
                communities: vec![],
                max_varbinds: 10,
                max_message_size: 1500,
                v3: Some(crate::security::v3::V3Config {
                    engine_id: engine.clone(),
                    engine_boots: 4,
                    users: vec![],
                    contexts: vec![],
                }),
            },
            vec![store()],
            Instant::now(),
        );
        let v3_addr = {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = socket.local_addr().unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_535];
                let mut frame = crate::wire::ber::Frame::default();
                loop {
                    let (len, peer) = socket.recv_from(&mut buf).await.unwrap();
                    if r.handle(&buf[..len], Instant::now(), &mut frame) == Outcome::Reply {
                        socket.send_to(frame.as_slice(), peer).await.unwrap();
                    }
                }
            });
            addr
        };
        let v3 = Target {
            address: v3_addr.to_string(),
            version: Version::V3,
            user: Some(NotifyUser {
                name: b"nobody-knows".to_vec(),
                auth: Some((crate::security::usm::AuthProtocol::Sha1, "authpass1".into())),
                privacy: None,
            }),
            ..v2c
        };
        let e = sender.send(&v3, &note).await.unwrap_err();
        assert!(
            matches!(&e, NotifyError::Refused { reason, .. } if reason == "usmStatsUnknownUserNames"),
            "{e}"
        );
        assert_eq!(
            sender.peer(&v3_addr).map(|(id, _)| id.to_vec()),
            Some(engine)
        );

        // Requests are still the responder's.
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(&GET, device).await.unwrap();
        let mut buf = [0u8; 1500];
        let (_, from) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!(from, device);
        assert_eq!(counters(&shared).requests, 1);
        token.cancel();
        serving.await.unwrap().unwrap();
    }

    #[test]
    fn the_sockets_of_a_thread_share_one_receive_batch() {
        // A packed process: many devices' sockets served by one
        // current-thread runtime (this thread's, so the test allocator
        // counts what serving them takes). Each device answers a request;
        // what that held at most stays far below one receive buffer
        // (`SLOT_BYTES`) per socket: the sockets share the thread's batch.
        const SOCKETS: usize = 64;
        on_one_thread(async {
            let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let token = CancellationToken::new();
            let sockets: Vec<_> = (0..SOCKETS)
                .map(|_| StdUdpSocket::bind("127.0.0.1:0").unwrap())
                .collect();
            let addrs: Vec<_> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
            let outbox = Outbox::spawn(&token);
            let mut tasks = tokio::task::JoinSet::new();
            let base = crate::sys::alloc_meter::live();
            let mut most = 0;
            serve_devices(&mut tasks, sockets, &outbox, &token);
            for addr in &addrs {
                ask(&client, *addr).await;
                most = most.max(crate::sys::alloc_meter::live() - base);
            }
            // What the stations, the set and the responders take is
            // counted as well.
            let per_socket = usize::try_from(most).unwrap() / SOCKETS;
            assert!(
                per_socket < crate::runtime::mmsg::SLOT_BYTES / 8,
                "serving {SOCKETS} sockets held {per_socket} bytes per socket"
            );
            token.cancel();
            while tasks.join_next().await.is_some() {}
        });
    }

    /// Each of `sockets` served on one poller spawned in `tasks` as a
    /// device of its own (the test responder, no faults), its answers
    /// through `outbox`.
    fn serve_devices(
        tasks: &mut tokio::task::JoinSet<io::Result<()>>,
        sockets: impl IntoIterator<Item = StdUdpSocket>,
        outbox: &Arc<Outbox>,
        token: &CancellationToken,
    ) -> Arc<Poller> {
        let poller = Poller::spawn(tasks, outbox, token).unwrap();
        for socket in sockets {
            let shared: Shared = Arc::new(Mutex::new(responder()));
            let behaviour = Arc::new(Mutex::new(Behaviour::new(1)));
            let endpoints = vec![Endpoint::new(socket).unwrap()];
            serve_device(&poller, endpoints, &shared, &behaviour).unwrap();
        }
        poller
    }

    /// Sends `GET` to `addr` and waits (at most ten seconds) for the
    /// answer, which must come from `addr`.
    async fn ask(client: &UdpSocket, addr: std::net::SocketAddr) -> Vec<u8> {
        client.send_to(&GET, addr).await.unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert_eq!(from, addr);
        buf[..n].to_vec()
    }

    /// Runs `test` on a current-thread runtime of this thread's, as an agent
    /// process serves (and so the test allocator counts what it takes).
    fn on_one_thread(test: impl std::future::Future<Output = ()>) {
        crate::util::one_thread_runtime().block_on(test);
    }

    #[test]
    fn a_packed_process_serves_its_devices_from_one_task() {
        // What a packed process of devices with one socket each runs: the
        // poller and the sender of answers, whatever the number of
        // devices; and each device answers.
        const DEVICES: usize = 32;
        on_one_thread(async {
            let token = CancellationToken::new();
            let outbox = Outbox::spawn(&token);
            let mut tasks = tokio::task::JoinSet::new();
            let sockets: Vec<_> = (0..DEVICES)
                .map(|_| StdUdpSocket::bind("127.0.0.1:0").unwrap())
                .collect();
            let addrs: Vec<_> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
            serve_devices(&mut tasks, sockets, &outbox, &token);
            tokio::task::yield_now().await;
            let metrics = tokio::runtime::Handle::current().metrics();
            assert_eq!(metrics.num_alive_tasks(), 2);
            let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            for addr in &addrs {
                assert_eq!(request_id(&ask(&client, *addr).await), 0x1234_5678);
            }
            assert_eq!(metrics.num_alive_tasks(), 2);
            token.cancel();
            while let Some(done) = tasks.join_next().await {
                done.unwrap().unwrap();
            }
        });
    }

    #[test]
    fn a_flooded_device_leaves_the_other_devices_of_its_process_their_turn() {
        // Device A has 400 requests queued and device B one when their
        // process's poller first runs. A is served a few batches per round,
        // so B is answered before A's last requests are; and every request
        // is answered once. Served until drained, A would answer all 400
        // first.
        const FLOOD: u32 = 400;
        use nix::sys::socket::{setsockopt, sockopt::RcvBuf};
        on_one_thread(async {
            let a = StdUdpSocket::bind("127.0.0.1:0").unwrap();
            let b = StdUdpSocket::bind("127.0.0.1:0").unwrap();
            let client = StdUdpSocket::bind("127.0.0.1:0").unwrap();
            for s in [&a, &client] {
                setsockopt(s, RcvBuf, &(1 << 20)).unwrap();
            }
            let (at_a, at_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            for id in 0..=FLOOD {
                let mut get = GET;
                get[17..21].copy_from_slice(&id.to_be_bytes());
                client
                    .send_to(&get, if id < FLOOD { at_a } else { at_b })
                    .unwrap();
            }
            let token = CancellationToken::new();
            let outbox = Outbox::spawn(&token);
            let mut tasks = tokio::task::JoinSet::new();
            serve_devices(&mut tasks, [a, b], &outbox, &token);
            client.set_nonblocking(true).unwrap();
            let client = UdpSocket::from_std(client).unwrap();
            let mut answered = Vec::new();
            let mut buf = [0u8; 2048];
            while answered.len() <= FLOOD as usize {
                let (n, from) =
                    tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf))
                        .await
                        .expect("every request answered")
                        .unwrap();
                let id = request_id(&buf[..n]);
                assert_eq!(from, if id < FLOOD { at_a } else { at_b });
                answered.push(id);
            }
            let b_at = answered.iter().position(|id| *id == FLOOD).unwrap();
            assert!(
                b_at < FLOOD as usize,
                "B answered after all of A's {FLOOD} requests"
            );
            answered.sort_unstable();
            assert_eq!(answered, (0..=FLOOD).collect::<Vec<_>>());
            token.cancel();
            while tasks.join_next().await.is_some() {}
        });
    }

    #[test]
    fn devices_asked_together_answer_together_each_from_its_own_address() {
        // A poller's round reaching eight devices of a packed process, one
        // port at eight addresses, before the process runs: eight loops
        // each take their request, and their answers leave with one system
        // call, each from the address it was asked at.
        const DEVICES: u8 = 8;
        on_one_thread(async {
            let first = StdUdpSocket::bind("127.0.0.2:0").unwrap();
            let port = first.local_addr().unwrap().port();
            let mut sockets = vec![first];
            for i in 1..DEVICES {
                match StdUdpSocket::bind((std::net::Ipv4Addr::new(127, 0, 0, 2 + i), port)) {
                    Ok(s) => sockets.push(s),
                    // The port is someone else's at that address.
                    Err(_) => return,
                }
            }
            let addrs: Vec<_> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
            let token = CancellationToken::new();
            let outbox = Outbox::spawn(&token);
            let mut tasks = tokio::task::JoinSet::new();
            serve_devices(&mut tasks, sockets, &outbox, &token);
            // The loops wait on their sockets; the requests all arrive
            // before any of them runs again.
            tokio::task::yield_now().await;
            let client = StdUdpSocket::bind("127.0.0.1:0").unwrap();
            for addr in &addrs {
                client.send_to(&GET, addr).unwrap();
            }
            let client = UdpSocket::from_std({
                client.set_nonblocking(true).unwrap();
                client
            })
            .unwrap();
            let mut from = Vec::new();
            let mut buf = [0u8; 2048];
            while from.len() < addrs.len() {
                let (n, peer) =
                    tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf))
                        .await
                        .expect("an answer")
                        .unwrap();
                assert_eq!(request_id(&buf[..n]), 0x1234_5678);
                from.push(peer);
            }
            from.sort();
            assert_eq!(from, addrs);
            assert_eq!(
                outbox.calls.load(std::sync::atomic::Ordering::Relaxed),
                1,
                "{DEVICES} answers, one sendmmsg"
            );
            token.cancel();
            while tasks.join_next().await.is_some() {}
        });
    }

    thread_local! {
        /// Datagrams this thread served through a steering socket.
        pub(super) static STEERED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    #[test]
    fn steered_devices_are_served_from_one_socket_and_answer_from_their_own() {
        // Eight devices at eight addresses of one port, one at another
        // port of the first address, one at [::1]: with steering, their
        // requests reach the process on its steering sockets (one per
        // family), each is answered by its own device from the address it
        // was asked at, and the answers leave together.
        use crate::sys::steer::Steering;
        let steering = match Steering::attach(64) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipped: cannot attach a BPF program here: {e}");
                return;
            }
        };
        on_one_thread(async {
            let first = StdUdpSocket::bind("127.0.0.2:0").unwrap();
            let port = first.local_addr().unwrap().port();
            let mut sockets = vec![first];
            for i in 1..8 {
                match StdUdpSocket::bind((std::net::Ipv4Addr::new(127, 0, 0, 2 + i), port)) {
                    Ok(s) => sockets.push(s),
                    // The port is someone else's at that address.
                    Err(_) => return,
                }
            }
            sockets.push(StdUdpSocket::bind("127.0.0.2:0").unwrap());
            let v6 = StdUdpSocket::bind("[::1]:0").ok();
            let v6_steering = v6.as_ref().map(|_| StdUdpSocket::bind("[::1]:0").unwrap());
            sockets.extend(v6);
            let addrs: Vec<_> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
            let token = CancellationToken::new();
            let outbox = Outbox::spawn(&token);
            let mut tasks = tokio::task::JoinSet::new();
            let poller = serve_devices(&mut tasks, sockets, &outbox, &token);
            // What the supervisor does: a steering socket per family,
            // every device's address steered to its family's.
            let map = steering.map();
            let mut steering_sockets = vec![StdUdpSocket::bind("127.0.0.2:0").unwrap()];
            steering_sockets.extend(v6_steering);
            for addr in &addrs {
                let to = &steering_sockets[usize::from(addr.is_ipv6())];
                map.steer(*addr, to).unwrap();
            }
            assert_eq!(poller.steer(steering_sockets).unwrap(), addrs.len());
            tokio::task::yield_now().await;
            STEERED.with(|n| n.set(0));
            let client4 = StdUdpSocket::bind("127.0.0.1:0").unwrap();
            let client6 = StdUdpSocket::bind("[::1]:0").ok();
            for (i, addr) in addrs.iter().enumerate() {
                let mut get = GET;
                get[17..21].copy_from_slice(&(i as u32).to_be_bytes());
                let client = if addr.is_ipv6() {
                    client6.as_ref().unwrap()
                } else {
                    &client4
                };
                client.send_to(&get, addr).unwrap();
            }
            let mut from = Vec::new();
            let mut buf = [0u8; 2048];
            let clients: Vec<UdpSocket> = [Some(client4), client6]
                .into_iter()
                .flatten()
                .map(|c| {
                    c.set_nonblocking(true).unwrap();
                    UdpSocket::from_std(c).unwrap()
                })
                .collect();
            for client in &clients {
                let expected = addrs
                    .iter()
                    .filter(|a| a.is_ipv6() == client.local_addr().unwrap().is_ipv6())
                    .count();
                for _ in 0..expected {
                    let (n, peer) =
                        tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf))
                            .await
                            .expect("an answer")
                            .unwrap();
                    let asked = request_id(&buf[..n]) as usize;
                    assert_eq!(peer, addrs[asked], "answer {asked} from another address");
                    from.push(asked);
                }
            }
            from.sort_unstable();
            assert_eq!(from, (0..addrs.len()).collect::<Vec<_>>());
            assert_eq!(
                STEERED.with(std::cell::Cell::get),
                addrs.len(),
                "every request came through a steering socket"
            );
            // A burst to one device: answered whole, from its address.
            let mut get = GET;
            get[17..21].copy_from_slice(&0u32.to_be_bytes());
            let burst = 8;
            let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            for _ in 0..burst {
                sender.send_to(&get, addrs[0]).unwrap();
            }
            sender.set_nonblocking(true).unwrap();
            let sender = UdpSocket::from_std(sender).unwrap();
            for _ in 0..burst {
                let (n, peer) =
                    tokio::time::timeout(Duration::from_secs(10), sender.recv_from(&mut buf))
                        .await
                        .expect("an answer")
                        .unwrap();
                assert_eq!((request_id(&buf[..n]), peer), (0, addrs[0]));
            }
            assert_eq!(STEERED.with(std::cell::Cell::get), addrs.len() + burst);
            token.cancel();
            while tasks.join_next().await.is_some() {}
        });
        drop(steering);
    }

    #[test]
    fn devices_without_a_socket_answer_and_send_from_their_own_address() {
        // One device bound at 127.0.0.2:P, four with no socket at
        // 127.0.0.3-6:P, served through faces of the first one's socket:
        // a face sends from its own address and is never read (what the
        // bound device is asked is answered once, by it); with steering,
        // each is asked at its address and answers from it.
        on_one_thread(async {
            let bound = StdUdpSocket::bind("127.0.0.2:0").unwrap();
            let anchor = Endpoint::new(bound).unwrap();
            let port = anchor.socket.local_addr().unwrap().port();
            let at = |i: u8| std::net::SocketAddr::from(([127, 0, 0, 2 + i], port));
            let faces: Vec<Endpoint> = (1..5)
                .map(|i| Endpoint::face(&anchor, at(i)).unwrap())
                .collect();
            assert!(faces.iter().all(|f| f.socket.is_face()));
            assert_eq!(faces[0].socket.local_addr().unwrap(), at(1));
            // Another port or family, or a wildcard, cannot send for it.
            for wrong in ["127.0.0.3:1", "[::1]:161", "0.0.0.0:0"] {
                let mut wrong: std::net::SocketAddr = wrong.parse().unwrap();
                if wrong.ip().is_unspecified() {
                    wrong.set_port(port);
                }
                assert!(Endpoint::face(&anchor, wrong).is_err(), "{wrong}");
            }
            let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let to = client.local_addr().unwrap();
            faces[1].socket.send_to(b"trap", to).await.unwrap();
            let mut buf = [0u8; 2048];
            let (n, from) =
                tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf))
                    .await
                    .expect("the face's datagram")
                    .unwrap();
            assert_eq!((&buf[..n], from), (&b"trap"[..], at(2)));
            // IPv6 (where the host has ::1): the face of a socket at the
            // same address sends from it too.
            if let (Ok(bound6), Ok(client6)) = (
                StdUdpSocket::bind("[::1]:0"),
                UdpSocket::bind("[::1]:0").await,
            ) {
                let anchor6 = Endpoint::new(bound6).unwrap();
                let at6 = anchor6.socket.local_addr().unwrap();
                let face6 = Endpoint::face(&anchor6, at6).unwrap();
                let to6 = client6.local_addr().unwrap();
                face6.socket.send_to(b"six", to6).await.unwrap();
                let (n, from) =
                    tokio::time::timeout(Duration::from_secs(10), client6.recv_from(&mut buf))
                        .await
                        .expect("the v6 face's datagram")
                        .unwrap();
                assert_eq!((&buf[..n], from), (&b"six"[..], at6));
            }

            let token = CancellationToken::new();
            let outbox = Outbox::spawn(&token);
            let mut tasks = tokio::task::JoinSet::new();
            let poller = Poller::spawn(&mut tasks, &outbox, &token).unwrap();
            let behaviour = Arc::new(Mutex::new(Behaviour::new(1)));
            let mut endpoints = vec![anchor];
            endpoints.extend(faces);
            for e in endpoints {
                let shared: Shared = Arc::new(Mutex::new(responder()));
                serve_device(&poller, vec![e], &shared, &behaviour).unwrap();
            }
            tokio::task::yield_now().await;
            ask(&client, at(0)).await;
            let extra =
                tokio::time::timeout(Duration::from_millis(200), client.recv_from(&mut buf));
            assert!(extra.await.is_err(), "the bound device answered twice");

            use crate::sys::steer::Steering;
            let steering = match Steering::attach(64) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("steering part skipped: cannot attach a BPF program here: {e}");
                    token.cancel();
                    while tasks.join_next().await.is_some() {}
                    return;
                }
            };
            let receiver = StdUdpSocket::bind("127.0.0.2:0").unwrap();
            for i in 0..5 {
                steering.map().steer(at(i), &receiver).unwrap();
            }
            assert_eq!(poller.steer(vec![receiver]).unwrap(), 5);
            for i in 0..5 {
                ask(&client, at(i)).await;
            }
            token.cancel();
            while tasks.join_next().await.is_some() {}
            drop(steering);
        });
    }

    #[test]
    fn without_a_limit_everything_is_admitted() {
        let mut r = responder();
        let now = Instant::now();
        let ip = "192.0.2.1".parse().unwrap();
        assert!((0..10_000).all(|_| r.admit(ip, now)));
        r.set_rate_limit(Some(RateLimit {
            per_second: 5,
            burst: 5,
        }));
        assert_eq!((0..100).filter(|_| r.admit(ip, now)).count(), 5);
        assert_eq!(r.counters().rate_limited, 95);
        r.set_rate_limit(None);
        assert!(r.admit(ip, now));
    }

    /// End to end over UDP on loopback: the serve loop answering a client that
    /// keeps 64 requests in flight, v2c against SNMPv3 authPriv SHA/AES-128.
    /// `cargo test --release -p agentcluster-agent udp_v3_vs_v2c -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement; run in release"]
    fn udp_v3_vs_v2c_get_throughput() {
        use crate::responder::tests::v3::{Agent, Manager, SYS_DESCR, get};
        use crate::security::usm::{AuthProtocol, PrivProtocol};
        use std::net::UdpSocket;
        let agent = Agent::new();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let shared: Shared = Arc::new(Mutex::new(agent.responder));
        let token = tokio_util::sync::CancellationToken::new();
        let rt = crate::util::one_thread_runtime();
        let (s2, t2) = (shared.clone(), token.clone());
        let server_thread = std::thread::spawn(move || {
            rt.block_on(async move { serve(vec![Endpoint::new(server)?], s2, t2).await })
        });
        let m = Manager::user("ops", Some(AuthProtocol::Sha1), Some(PrivProtocol::Aes128));
        let v3 = m.encode(&get(1, &[SYS_DESCR]));
        let v2 = rasn::ber::encode(&rasn_snmp::v2c::Message {
            version: 1.into(),
            community: b"public".to_vec().into(),
            data: get(1, &[SYS_DESCR]),
        })
        .unwrap();
        let rate = |msg: &[u8]| {
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 2048];
            let n = 100_000;
            let t = Instant::now();
            for _ in 0..64 {
                c.send(msg).unwrap();
            }
            for i in 0..n {
                c.recv(&mut buf).unwrap();
                if i + 64 < n {
                    c.send(msg).unwrap();
                }
            }
            f64::from(n) / t.elapsed().as_secs_f64()
        };
        // Warm up, then measure.
        rate(&v2);
        rate(&v3);
        let (r2, r3) = (rate(&v2), rate(&v3));
        eprintln!(
            "UDP: v2c {r2:.0}/s, v3 authPriv SHA/AES {r3:.0}/s, ratio {:.2}",
            r3 / r2
        );
        token.cancel();
        let _ = server_thread.join();
    }
}
