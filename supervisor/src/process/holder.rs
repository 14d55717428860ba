//! Socket holders: the processes that keep every agent's bound sockets.
//!
//! An agent's sockets must stay bound while its process restarts (requests
//! wait in the kernel buffer instead of being refused), so something other
//! than the agent process has to keep them. If the supervisor kept them,
//! its open-file limit (RLIMIT_NOFILE, one descriptor per endpoint) would
//! cap the fleet. Instead the sockets are spread over *socket holders*
//! (`agentcluster holder`, titled `agentcluster: sockets`), each filled up
//! to its own limit less [`HOLDER_FILES`]: a fleet gets as many holders as
//! its endpoints need, and the supervisor keeps one socket per holder.
//!
//! A holder binds the endpoints it is asked for (so the supervisor never
//! holds them, not even while binding; a failure comes back as the errno,
//! which the supervisor turns into the usual [`crate::process::bind::BindError`]),
//! lends copies of them for an agent process's spawn (SCM_RIGHTS, 200 a
//! message; the supervisor passes them on to a spawn helper and closes
//! its copies) and closes them when the supervisor releases them (a reload
//! that removes an endpoint). Everything goes through one thread of the
//! supervisor, which owns the holders and knows which holder keeps which
//! endpoint; a socket is an [`Held`] handle, released when the last one is
//! dropped.
//!
//! The holders are started from that thread, which lives as long as the
//! supervisor uses them, with PR_SET_PDEATHSIG(SIGKILL) (see
//! [`crate::process::sys::prepare_helper`]): a supervisor that dies takes
//! its holders with it. A holder that dies (killed by someone, or by the
//! OOM killer) takes its sockets with it, but the agent processes that run
//! keep serving on their own copies. The next time a process of one of
//! those endpoints is spawned, its endpoints are bound afresh in a live
//! holder; a request sent to them while no process had them was refused
//! rather than kept.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use crate::process::sys;

/// Descriptors a holder needs besides the sockets it keeps: standard
/// streams, its socket to the supervisor, and spares (the capacity check
/// counts them).
pub const HOLDER_FILES: u64 = 8;

/// Endpoints per request: the longest request is 5 + 1,024 × 31 bytes.
const BATCH: usize = 1024;

/// Descriptors per message: SCM_RIGHTS carries at most 253.
const FD_CHUNK: usize = 200;

/// Requests sent to one holder before its first answer is read: the
/// answers (4 KiB at most each) wait in the socket buffer meanwhile.
const IN_FLIGHT: usize = 8;

/// Bytes of one endpoint in a request: id, port, family, address, scope.
const ENTRY: usize = 8 + 2 + 1 + 16 + 4;

const OP_BIND: u8 = 1;
const OP_LEND: u8 = 2;
const OP_RELEASE: u8 = 3;

/// One bound endpoint, kept by a holder. Dropping the last handle closes
/// the socket.
#[derive(Debug)]
pub struct Held {
    id: u64,
    holders: Holders,
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.holders.inner.tx.send(Req::Release(vec![self.id]));
    }
}

/// A handle to the holders' thread.
#[derive(Debug, Clone)]
pub struct Holders {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Req>,
    next: AtomicU64,
}

/// What the holders' thread is asked.
enum Req {
    /// Bind these endpoints; one errno per endpoint (0: bound).
    Bind {
        entries: Vec<(u64, SocketAddr)>,
        reply: mpsc::Sender<Vec<i32>>,
    },
    /// Copies of these sockets, in this order.
    Lend {
        ids: Vec<u64>,
        reply: mpsc::Sender<io::Result<Vec<OwnedFd>>>,
    },
    /// Close these sockets.
    Release(Vec<u64>),
}

/// How holders are started.
#[derive(Debug, Clone)]
enum Launch {
    /// `PROGRAM holder`, the real thing.
    Process(PathBuf),
    /// The same serving loop on a thread of this process (the unit tests,
    /// whose binary has no `holder` command).
    #[cfg(test)]
    Thread,
}

impl Holders {
    /// Starts the holders' thread; holders are started as sockets need
    /// them, each with as many sockets as this process's RLIMIT_NOFILE
    /// (which they inherit) allows less [`HOLDER_FILES`].
    pub fn start() -> io::Result<Holders> {
        let program = std::env::current_exe()?;
        Holders::with(Launch::Process(program), per_holder())
    }

    /// Holders that are threads of this process, each keeping at most
    /// `capacity` sockets.
    #[cfg(test)]
    pub fn in_threads(capacity: usize) -> Holders {
        Holders::with(Launch::Thread, capacity).expect("the holders' thread starts")
    }

    fn with(launch: Launch, capacity: usize) -> io::Result<Holders> {
        let (tx, rx) = mpsc::channel();
        let parent = std::process::id() as libc::pid_t;
        std::thread::Builder::new()
            .name("agentcluster-holders".into())
            .spawn(move || {
                Keeper {
                    launch,
                    capacity: capacity.max(1),
                    parent,
                    holders: Vec::new(),
                    slots: HashMap::new(),
                }
                .serve(&rx)
            })?;
        Ok(Holders {
            inner: Arc::new(Inner {
                tx,
                next: AtomicU64::new(1),
            }),
        })
    }

    /// Binds `endpoints` in the holders: a handle or the bind's error for
    /// each, in order.
    pub fn bind(&self, endpoints: &[SocketAddr]) -> Vec<io::Result<Arc<Held>>> {
        let entries: Vec<(u64, SocketAddr)> = endpoints
            .iter()
            .map(|&e| (self.inner.next.fetch_add(1, Ordering::Relaxed), e))
            .collect();
        let (reply, answer) = mpsc::channel();
        let errnos = self
            .inner
            .tx
            .send(Req::Bind {
                entries: entries.clone(),
                reply,
            })
            .ok()
            .and_then(|()| answer.recv().ok())
            .unwrap_or_else(|| vec![libc::ECONNRESET; entries.len()]);
        entries
            .into_iter()
            .zip(errnos)
            .map(|((id, _), errno)| {
                if errno == 0 {
                    Ok(Arc::new(Held {
                        id,
                        holders: self.clone(),
                    }))
                } else {
                    Err(io::Error::from_raw_os_error(errno))
                }
            })
            .collect()
    }
}

/// Copies of `sockets` (all of the same [`Holders`]) for a spawn, in order.
pub fn lend(sockets: &[Arc<Held>]) -> io::Result<Vec<OwnedFd>> {
    let Some(first) = sockets.first() else {
        return Ok(Vec::new());
    };
    let (reply, answer) = mpsc::channel();
    first
        .holders
        .inner
        .tx
        .send(Req::Lend {
            ids: sockets.iter().map(|s| s.id).collect(),
            reply,
        })
        .map_err(|_| io::Error::other("the socket holders' thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the socket holders' thread is gone"))?
}

/// Sockets one holder keeps: this process's soft RLIMIT_NOFILE (raised to
/// the hard one at start, and inherited by the holders) less
/// [`HOLDER_FILES`].
fn per_holder() -> usize {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) if soft != RLIM_INFINITY => {
            usize::try_from(soft.saturating_sub(HOLDER_FILES)).unwrap_or(usize::MAX)
        }
        _ => 1 << 20,
    }
}

/// One holder as the thread sees it.
struct Holder {
    /// `None` once it died.
    link: Option<Link>,
    /// Sockets it keeps (or is binding).
    count: usize,
}

struct Link {
    sock: OwnedFd,
    process: Option<std::process::Child>,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(p) = self.process.as_mut() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// The holders' thread: every holder and which one keeps which socket.
struct Keeper {
    launch: Launch,
    capacity: usize,
    parent: libc::pid_t,
    holders: Vec<Holder>,
    /// Socket id → (holder, endpoint).
    slots: HashMap<u64, (usize, SocketAddr)>,
}

impl Keeper {
    fn serve(mut self, rx: &mpsc::Receiver<Req>) {
        while let Ok(req) = rx.recv() {
            match req {
                Req::Bind { entries, reply } => {
                    let _ = reply.send(self.bind(&entries));
                }
                Req::Lend { ids, reply } => {
                    let _ = reply.send(self.lend(&ids));
                }
                Req::Release(mut ids) => {
                    // Releases come one handle at a time (a reload drops
                    // thousands): take every one waiting.
                    let mut next = None;
                    while let Ok(r) = rx.try_recv() {
                        match r {
                            Req::Release(more) => ids.extend(more),
                            other => {
                                next = Some(other);
                                break;
                            }
                        }
                    }
                    self.release(&ids);
                    match next {
                        Some(Req::Bind { entries, reply }) => {
                            let _ = reply.send(self.bind(&entries));
                        }
                        Some(Req::Lend { ids, reply }) => {
                            let _ = reply.send(self.lend(&ids));
                        }
                        Some(Req::Release(ids)) => self.release(&ids),
                        None => {}
                    }
                }
            }
        }
    }

    /// A live holder with room for one more socket, started if none has.
    fn room(&mut self) -> io::Result<usize> {
        if let Some(i) = self
            .holders
            .iter()
            .position(|h| h.link.is_some() && h.count < self.capacity)
        {
            return Ok(i);
        }
        let link = self.start_holder()?;
        self.holders.push(Holder {
            link: Some(link),
            count: 0,
        });
        Ok(self.holders.len() - 1)
    }

    fn start_holder(&self) -> io::Result<Link> {
        let (ours, theirs) = sys::seqpacket_pair()?;
        match &self.launch {
            Launch::Process(program) => {
                use std::os::unix::process::CommandExt;
                let mut cmd = std::process::Command::new(program);
                cmd.arg0("agentcluster: sockets")
                    .arg("holder")
                    .stdin(std::process::Stdio::null());
                sys::prepare_helper(&mut cmd, theirs.as_raw_fd(), self.parent);
                let process = cmd.spawn()?;
                drop(theirs);
                tracing::debug!(pid = process.id(), "started a socket holder");
                Ok(Link {
                    sock: ours,
                    process: Some(process),
                })
            }
            #[cfg(test)]
            Launch::Thread => {
                std::thread::spawn(move || serve(&theirs));
                Ok(Link {
                    sock: ours,
                    process: None,
                })
            }
        }
    }

    /// Holder `i` died: forget its link (its sockets are bound afresh when
    /// lent next).
    fn died(&mut self, i: usize, cause: &io::Error) {
        if let Some(h) = self.holders.get_mut(i)
            && h.link.take().is_some()
        {
            tracing::warn!(
                holder = i,
                sockets = h.count,
                cause = %cause,
                "a socket holder died: its endpoints are bound afresh when their processes start next"
            );
        }
    }

    /// Whether holder `i` runs (a dead one is marked so).
    fn alive(&mut self, i: usize) -> bool {
        let exited = match self.holders.get_mut(i).and_then(|h| h.link.as_mut()) {
            None => return false,
            Some(link) => match link.process.as_mut() {
                Some(p) => !matches!(p.try_wait(), Ok(None)),
                None => false,
            },
        };
        if exited {
            self.died(i, &io::Error::other("the holder exited"));
        }
        !exited
    }

    fn bind(&mut self, entries: &[(u64, SocketAddr)]) -> Vec<i32> {
        let mut result = vec![0; entries.len()];
        // Which entries go to which holder, in batches.
        let mut plan: Vec<(usize, Vec<usize>)> = Vec::new();
        for (k, _) in entries.iter().enumerate() {
            match self.room() {
                Ok(h) => {
                    self.holders[h].count += 1;
                    match plan.last_mut() {
                        Some((last, batch)) if *last == h && batch.len() < BATCH => batch.push(k),
                        _ => plan.push((h, vec![k])),
                    }
                }
                Err(e) => result[k] = e.raw_os_error().unwrap_or(libc::EMFILE),
            }
        }
        // Every holder binds at once, a few requests ahead of its answers.
        let mut queues: HashMap<usize, std::collections::VecDeque<Vec<usize>>> = HashMap::new();
        for (h, batch) in plan {
            queues.entry(h).or_default().push_back(batch);
        }
        let mut waiting: HashMap<usize, std::collections::VecDeque<Vec<usize>>> = HashMap::new();
        let mut order: Vec<usize> = queues.keys().copied().collect();
        order.sort_unstable();
        loop {
            let mut busy = false;
            for &h in &order {
                let queue = queues.entry(h).or_default();
                let flying = waiting.entry(h).or_default();
                while flying.len() < IN_FLIGHT
                    && let Some(batch) = queue.pop_front()
                {
                    let mut msg = vec![OP_BIND];
                    msg.extend_from_slice(&(batch.len() as u32).to_le_bytes());
                    for &k in &batch {
                        encode_entry(&mut msg, entries[k].0, entries[k].1);
                    }
                    let sent = match self.holders[h].link.as_ref() {
                        Some(link) => sys::send_with_fds(link.sock.as_raw_fd(), &msg, &[]),
                        None => Err(io::Error::from_raw_os_error(libc::ECONNRESET)),
                    };
                    flying.push_back(batch);
                    if let Err(e) = sent {
                        self.died(h, &e);
                        break;
                    }
                }
            }
            for &h in &order {
                let Some(batch) = waiting.get_mut(&h).and_then(|w| w.pop_front()) else {
                    continue;
                };
                busy = true;
                let answer = match self.holders[h].link.as_ref() {
                    Some(link) => recv_answer(&link.sock, batch.len()),
                    None => Err(io::Error::from_raw_os_error(libc::ECONNRESET)),
                };
                let errnos = answer.unwrap_or_else(|e| {
                    self.died(h, &e);
                    vec![e.raw_os_error().unwrap_or(libc::ECONNRESET); batch.len()]
                });
                for (&k, errno) in batch.iter().zip(errnos) {
                    if errno == 0 {
                        self.slots.insert(entries[k].0, (h, entries[k].1));
                    } else {
                        self.holders[h].count -= 1;
                        result[k] = errno;
                    }
                }
            }
            if !busy && queues.values().all(|q| q.is_empty()) {
                break;
            }
        }
        result
    }

    fn lend(&mut self, ids: &[u64]) -> io::Result<Vec<OwnedFd>> {
        // Sockets of a holder that died are bound afresh first.
        let mut orphans = Vec::new();
        let mut alive: HashMap<usize, bool> = HashMap::new();
        for &id in ids {
            let Some(&(h, endpoint)) = self.slots.get(&id) else {
                return Err(io::Error::other("a socket that was released"));
            };
            let live = match alive.get(&h) {
                Some(&live) => live,
                None => {
                    let live = self.alive(h);
                    alive.insert(h, live);
                    live
                }
            };
            if !live {
                orphans.push((id, endpoint));
            }
        }
        if !orphans.is_empty() {
            for &(id, _) in &orphans {
                if let Some((h, _)) = self.slots.remove(&id) {
                    self.holders[h].count = self.holders[h].count.saturating_sub(1);
                }
            }
            let errnos = self.bind(&orphans);
            if let Some(((_, endpoint), errno)) =
                orphans.iter().zip(errnos).find(|(_, errno)| *errno != 0)
            {
                let cause = io::Error::from_raw_os_error(errno);
                return Err(io::Error::new(
                    cause.kind(),
                    format!(
                        "cannot bind udp {endpoint} again after its socket holder died: {cause}"
                    ),
                ));
            }
        }
        let mut out: Vec<Option<OwnedFd>> = ids.iter().map(|_| None).collect();
        // Runs of ids kept by the same holder, in batches.
        let mut runs: Vec<(usize, Vec<usize>)> = Vec::new();
        for (k, id) in ids.iter().enumerate() {
            let h = self.slots.get(id).map_or(usize::MAX, |&(h, _)| h);
            match runs.last_mut() {
                Some((last, run)) if *last == h && run.len() < BATCH => run.push(k),
                _ => runs.push((h, vec![k])),
            }
        }
        for (h, run) in runs {
            let Some(link) = self.holders.get(h).and_then(|x| x.link.as_ref()) else {
                return Err(io::Error::other("a socket's holder is gone"));
            };
            let mut msg = vec![OP_LEND];
            msg.extend_from_slice(&(run.len() as u32).to_le_bytes());
            for &k in &run {
                msg.extend_from_slice(&ids[k].to_le_bytes());
            }
            let fds = sys::send_with_fds(link.sock.as_raw_fd(), &msg, &[])
                .and_then(|()| recv_fds(&link.sock, run.len()));
            match fds {
                Ok(fds) => {
                    for (&k, fd) in run.iter().zip(fds) {
                        out[k] = Some(fd);
                    }
                }
                Err(e) => {
                    if e.raw_os_error() != Some(libc::ENOENT) {
                        self.died(h, &e);
                    }
                    return Err(io::Error::new(
                        e.kind(),
                        format!("the socket holder did not lend its sockets: {e}"),
                    ));
                }
            }
        }
        out.into_iter()
            .map(|fd| fd.ok_or_else(|| io::Error::other("a socket was not lent")))
            .collect()
    }

    fn release(&mut self, ids: &[u64]) {
        let mut by_holder: HashMap<usize, Vec<u64>> = HashMap::new();
        for id in ids {
            if let Some((h, _)) = self.slots.remove(id) {
                self.holders[h].count = self.holders[h].count.saturating_sub(1);
                by_holder.entry(h).or_default().push(*id);
            }
        }
        for (h, ids) in by_holder {
            for chunk in ids.chunks(BATCH) {
                let mut msg = vec![OP_RELEASE];
                msg.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
                for id in chunk {
                    msg.extend_from_slice(&id.to_le_bytes());
                }
                let sent = match self.holders[h].link.as_ref() {
                    Some(link) => sys::send_with_fds(link.sock.as_raw_fd(), &msg, &[]),
                    None => Ok(()),
                };
                if let Err(e) = sent {
                    self.died(h, &e);
                }
            }
        }
    }
}

fn encode_entry(msg: &mut Vec<u8>, id: u64, endpoint: SocketAddr) {
    msg.extend_from_slice(&id.to_le_bytes());
    msg.extend_from_slice(&endpoint.port().to_le_bytes());
    let (family, octets, scope) = match endpoint {
        SocketAddr::V4(a) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a.ip().octets());
            (4u8, o, 0u32)
        }
        SocketAddr::V6(a) => (6u8, a.ip().octets(), a.scope_id()),
    };
    msg.push(family);
    msg.extend_from_slice(&octets);
    msg.extend_from_slice(&scope.to_le_bytes());
}

fn decode_entry(b: &[u8]) -> Option<(u64, SocketAddr)> {
    if b.len() != ENTRY {
        return None;
    }
    let id = u64::from_le_bytes(b[..8].try_into().ok()?);
    let port = u16::from_le_bytes(b[8..10].try_into().ok()?);
    let octets: [u8; 16] = b[11..27].try_into().ok()?;
    let scope = u32::from_le_bytes(b[27..31].try_into().ok()?);
    let addr = match b[10] {
        4 => SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])),
            port,
        ),
        6 => SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, scope)),
        _ => return None,
    };
    Some((id, addr))
}

/// A bind's answer: one errno per endpoint.
fn recv_answer(sock: &OwnedFd, n: usize) -> io::Result<Vec<i32>> {
    let mut buf = vec![0u8; 4 * n + 1];
    let (len, stray) = sys::recv_with_fds(sock.as_raw_fd(), &mut buf)?;
    drop(stray);
    if len == 0 {
        return Err(io::Error::from_raw_os_error(libc::ECONNRESET));
    }
    if len != 4 * n {
        return Err(io::Error::other("malformed answer from a socket holder"));
    }
    Ok(buf[..len]
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A lend's answer: `[errno i32][count u32]` with the first descriptors,
/// then a byte with each further chunk.
fn recv_fds(sock: &OwnedFd, n: usize) -> io::Result<Vec<OwnedFd>> {
    let mut head = [0u8; 8];
    let (len, mut fds) = sys::recv_with_fds(sock.as_raw_fd(), &mut head)?;
    if len == 0 {
        return Err(io::Error::from_raw_os_error(libc::ECONNRESET));
    }
    if len != 8 {
        return Err(io::Error::other("malformed answer from a socket holder"));
    }
    let errno = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if errno != 0 {
        return Err(io::Error::from_raw_os_error(errno));
    }
    let count = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if count != n {
        return Err(io::Error::other("a socket holder lent the wrong count"));
    }
    while fds.len() < n {
        let mut one = [0u8; 1];
        let (len, more) = sys::recv_with_fds(sock.as_raw_fd(), &mut one)?;
        if len == 0 || more.is_empty() {
            return Err(io::Error::other("a socket holder lent too few sockets"));
        }
        fds.extend(more);
    }
    if fds.len() != n {
        return Err(io::Error::other("a socket holder lent too many sockets"));
    }
    Ok(fds)
}

/// The holder process (`agentcluster holder`): serves the socket on
/// descriptor 3 until the supervisor closes it. Returns the exit code.
pub fn holder_main() -> i32 {
    let sock = match agentcluster_agent::sys::adopt_fd(3) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agentcluster holder: no socket on descriptor 3: {e}");
            return 1;
        }
    };
    match serve(&sock) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("agentcluster holder: {e}");
            1
        }
    }
}

/// A holder's loop: binds, lends and closes sockets as asked, until the
/// other end closes.
fn serve(sock: &OwnedFd) -> io::Result<()> {
    let mut held: HashMap<u64, std::net::UdpSocket> = HashMap::new();
    let mut buf = vec![0u8; 5 + BATCH * ENTRY];
    loop {
        let (n, stray) = sys::recv_with_fds(sock.as_raw_fd(), &mut buf)?;
        drop(stray);
        if n == 0 {
            return Ok(());
        }
        let body = &buf[..n];
        if body.len() < 5 {
            return Err(io::Error::other("a short request"));
        }
        let count = u32::from_le_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let rest = &body[5..];
        let id = |k: usize| -> Option<u64> {
            rest.get(k * 8..k * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        match body[0] {
            OP_BIND => {
                if rest.len() != count * ENTRY {
                    return Err(io::Error::other("a malformed bind request"));
                }
                let mut answer = Vec::with_capacity(4 * count);
                for entry in rest.chunks_exact(ENTRY) {
                    let errno = match decode_entry(entry) {
                        None => libc::EINVAL,
                        Some((id, endpoint)) => match crate::process::bind::bind_udp(endpoint) {
                            Ok(s) => {
                                held.insert(id, s);
                                0
                            }
                            Err(e) => e.raw_os_error().unwrap_or(libc::EINVAL),
                        },
                    };
                    answer.extend_from_slice(&errno.to_le_bytes());
                }
                sys::send_with_fds(sock.as_raw_fd(), &answer, &[])?;
            }
            OP_LEND => {
                if rest.len() != count * 8 {
                    return Err(io::Error::other("a malformed lend request"));
                }
                let raw: Option<Vec<i32>> = (0..count)
                    .map(|k| id(k).and_then(|id| held.get(&id)).map(AsRawFd::as_raw_fd))
                    .collect();
                let mut head = Vec::with_capacity(8);
                match raw {
                    None => {
                        head.extend_from_slice(&libc::ENOENT.to_le_bytes());
                        head.extend_from_slice(&0u32.to_le_bytes());
                        sys::send_with_fds(sock.as_raw_fd(), &head, &[])?;
                    }
                    Some(raw) => {
                        head.extend_from_slice(&0i32.to_le_bytes());
                        head.extend_from_slice(&(count as u32).to_le_bytes());
                        let mut chunks = raw.chunks(FD_CHUNK);
                        sys::send_with_fds(sock.as_raw_fd(), &head, chunks.next().unwrap_or(&[]))?;
                        for chunk in chunks {
                            sys::send_with_fds(sock.as_raw_fd(), &[0], chunk)?;
                        }
                    }
                }
            }
            OP_RELEASE => {
                for k in 0..count {
                    if let Some(id) = id(k) {
                        held.remove(&id);
                    }
                }
            }
            _ => return Err(io::Error::other("an unknown request")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        for e in ["127.20.1.2:161", "[::1]:1161", "[fe80::1%2]:161"] {
            let endpoint: SocketAddr = e.parse().unwrap();
            let mut b = Vec::new();
            encode_entry(&mut b, 77, endpoint);
            assert_eq!(b.len(), ENTRY);
            assert_eq!(decode_entry(&b), Some((77, endpoint)));
        }
        assert_eq!(decode_entry(&[0; ENTRY - 1]), None);
    }

    /// Sockets spread over holders of 3 each, lent in order, a clash
    /// reported as the bind's errno, released ones closed.
    #[test]
    fn holders_bind_lend_and_release() {
        let holders = Holders::in_threads(3);
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let clash = taken.local_addr().unwrap();
        let mut endpoints: Vec<SocketAddr> =
            (0..7).map(|_| "127.0.0.1:0".parse().unwrap()).collect();
        endpoints.push(clash);
        let bound = holders.bind(&endpoints);
        let last = bound.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.raw_os_error(), Some(libc::EADDRINUSE));
        let held: Vec<Arc<Held>> = bound.into_iter().take(7).map(|r| r.unwrap()).collect();
        let fds = lend(&held).unwrap();
        assert_eq!(fds.len(), 7);
        let mut ports = std::collections::HashSet::new();
        for fd in fds {
            let s = std::net::UdpSocket::from(fd);
            assert!(ports.insert(s.local_addr().unwrap().port()));
        }
        // A released socket's port is free again once the holder closes it
        // (the next request to the holder shows it has).
        let port = {
            let one = held[0].clone();
            let s = std::net::UdpSocket::from(lend(&[one]).unwrap().remove(0));
            s.local_addr().unwrap()
        };
        drop(held);
        let again = holders.bind(&[port]);
        assert!(again[0].is_ok(), "{:?}", again[0]);
    }
}
