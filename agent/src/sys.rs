//! The agent crate's only `unsafe`, each use with the reason it is sound:
//! taking ownership of file descriptors the supervisor passed at exec time,
//! sending and receiving descriptors on the control channel (`sendmsg`,
//! `recvmsg` with SCM_RIGHTS), the batched datagram system calls of the
//! serving loop (`recvmmsg`, `sendmmsg` with the source address set per
//! datagram) and the socket addresses they fill in, a socket's path-MTU
//! mode, registering owned descriptors with the runtime's reactor, cache
//! prefetch hints, the read-only mapping of compiled store files, the
//! allocator's arena count (for the supervisor), and (test builds only) an
//! allocator that measures what handling hostile input allocates.
//!
//! The lowest layer with `crate::util`: it knows nothing of SNMP and
//! depends on nothing else in the crate; `crate::data` (the mapping) and
//! `crate::runtime` (descriptors, datagrams) use it.

pub mod steer;

use std::fs::File;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Whether `fd` is open and a Unix stream socket: what the supervisor
/// passes an agent process as its control channel. Only looks.
pub fn is_unix_stream(fd: RawFd) -> bool {
    let sockopt = |option: libc::c_int| -> Option<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`, a
        // c_int of that size; a descriptor that is not an open socket is
        // an error (EBADF, ENOTSOCK), nothing else.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&raw mut value).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(value)
    };
    sockopt(libc::SO_DOMAIN) == Some(libc::AF_UNIX)
        && sockopt(libc::SO_TYPE) == Some(libc::SOCK_STREAM)
}

/// Makes every thread of this process allocate from glibc's one main
/// arena. By default glibc gives threads up to eight arenas per core, and
/// each keeps the memory freed into it: in the supervisor, whose runtime
/// threads build and drop per-agent state in turn, that was 0.4–0.6 KiB
/// of resident memory per device of a packed fleet (4–6 MB of 45 at
/// 10,000 devices) for no gain, since its threads rarely allocate at the same
/// instant. Call it before starting threads. Returns whether glibc took
/// it (always false with another C library).
pub fn one_malloc_arena() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt only sets one of the allocator's tunables; glibc
        // accepts M_ARENA_MAX at any time (arenas already made stay).
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// Takes ownership of an inherited descriptor, after checking it is open.
pub fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // fcntl(F_GETFD) only reads the descriptor's flags: it tells whether the
    // descriptor exists without touching it.
    let r = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and was inherited for
    // this process alone; nothing else in the process owns it, and this is
    // called at most once per descriptor by the start-up code.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers `inner`, which owns its descriptor, with the runtime's
/// reactor for `interest` (call it within a runtime).
pub(crate) fn register<T>(
    inner: T,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<T>>
where
    T: AsRawFd + Into<OwnedFd>,
{
    // SAFETY: `inner` owns its descriptor (it converts into an OwnedFd), so
    // the descriptor is open, and stays open and the same while the AsyncFd
    // owns `inner`; its as_raw_fd returns that one descriptor.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(inner, interest) }
        .map_err(|e| e.into_parts().1)
}

/// Asks the CPU to bring the cache lines that hold `value` (its first
/// 1 KiB) closer, without waiting for them. A hint: nothing is read or
/// changed, and on other architectures it does nothing.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let start = std::ptr::from_ref(value).cast::<i8>();
        for offset in (0..size_of::<T>().min(1024) + 63).step_by(64) {
            // SAFETY: PREFETCHT0 is an SSE instruction, which every x86_64
            // CPU has; it never faults whatever the address, and it reads
            // and writes nothing the program sees.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    start.wrapping_add(offset),
                );
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// A device's socket as the agent process holds it: non-blocking, and in
/// no reactor of its own. Its datagrams are read by whoever waits for it
/// (the agent process's poller waits for all of its sockets at once). Its
/// sends find room in the send buffer nearly always, so the socket is put
/// in the runtime's reactor only while a send waits for room, through a
/// duplicate of its descriptor: a packed process of thousands of sockets
/// holds no reactor entry per socket, and a request wakes one epoll
/// entry, the poller's, instead of two.
///
/// An IPv4 socket sends with the don't-fragment bit and without local
/// fragmentation (`IP_PMTUDISC_DO`) until a datagram is too large for
/// that (`EMSGSIZE`: larger than the route's MTU); from then on it
/// fragments as sockets do by default (`IP_PMTUDISC_WANT`), and the send
/// is tried again. On the wire a datagram that fits is the same either
/// way: the default sets DF too while a datagram fits the path. But the
/// default also lets the kernel fragment, so it gives every datagram of an
/// unconnected socket an IP ID drawn from a shared, hashed table (6 % of
/// an agent's time under a load spread over many devices); with DF and no
/// fragmentation the ID is 0 (RFC 6864, atomic datagrams).
///
/// A device steered to its process's steering socket ([`steer`]) may
/// have no socket of its own: it is served through a *face*
/// ([`Socket::face`]), a descriptor of another socket of its port and
/// family whose sends leave from the device's address (`IP_PKTINFO`).
#[derive(Debug)]
pub struct Socket {
    socket: std::net::UdpSocket,
    /// The address it is bound to, read once; a face's device address.
    local: SocketAddr,
    /// A face: its sends leave from `local`, which it is not bound to,
    /// and it receives nothing of its own.
    face: bool,
    /// Its datagrams may be fragmented (the default); false while it sends
    /// with `IP_PMTUDISC_DO`.
    fragments: std::sync::atomic::AtomicBool,
}

impl Socket {
    /// A bound socket, made non-blocking, IPv4 without fragmentation.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Socket> {
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let unfragmented = local.is_ipv4() && dont_fragment(&socket);
        Ok(Socket {
            socket,
            local,
            face: false,
            fragments: (!unfragmented).into(),
        })
    }

    /// A face of this socket for the device at `at` (same port and
    /// family, another address of this host): a descriptor of the same
    /// socket whose [`local_addr`](Socket::local_addr) is `at` and whose
    /// [`send_to`](Socket::send_to) sends from `at`. It is never read:
    /// what it is asked arrives at a steering socket.
    pub fn face(&self, at: SocketAddr) -> io::Result<Socket> {
        if at.is_ipv6() != self.local.is_ipv6()
            || at.port() != self.local.port()
            || Source::of(at).is_none()
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{at} cannot send from socket {}", self.local),
            ));
        }
        Ok(Socket {
            socket: self.socket.try_clone()?,
            local: at,
            face: true,
            fragments: self.fragments().into(),
        })
    }

    /// Whether it is a face ([`Socket::face`]): no datagram is read from it.
    pub fn is_face(&self) -> bool {
        self.face
    }

    /// Whether its datagrams may be fragmented: while not, a send that
    /// fails with `EMSGSIZE` is tried again by [`Socket::send_with`]
    /// (a batch send must then leave the datagram for that try).
    pub fn fragments(&self) -> bool {
        self.fragments.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The send failed with `EMSGSIZE` on a socket that did not fragment:
    /// it fragments from now on. Whether the send is worth trying again.
    fn fragment_after(&self, e: &io::Error) -> bool {
        if e.raw_os_error() != Some(libc::EMSGSIZE) || self.fragments() {
            return false;
        }
        self.fragments
            .store(true, std::sync::atomic::Ordering::Relaxed);
        set_pmtu_discovery(&self.socket, libc::IP_PMTUDISC_WANT)
    }

    /// The address the socket is bound to (read when it was made: a bound
    /// socket keeps its address).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Runs `send`, a non-blocking send on the socket's descriptor, until
    /// it does not say `WouldBlock`, waiting for room in the send buffer
    /// between tries (call it within a runtime); what the last try
    /// returned.
    pub async fn send_with<R>(
        &self,
        mut send: impl FnMut(RawFd) -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            match send(self.socket.as_raw_fd()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if self.fragment_after(&e) => {}
                done => return done,
            }
        }
        // The buffer is full: the runtime waits for room on a duplicate
        // descriptor, registered for this wait alone (several waits on one
        // socket each have their own) and closed after it. Registering
        // reports room that came since the try above.
        let waiting = register(self.socket.try_clone()?, tokio::io::Interest::WRITABLE)?;
        loop {
            let mut room = waiting.writable().await?;
            match room.try_io(|s| send(s.as_raw_fd())) {
                Ok(Err(e)) if self.fragment_after(&e) => {}
                Ok(done) => return done,
                Err(_would_block) => {}
            }
        }
    }

    /// Sends `datagram` to `to` (a face: from its device's address),
    /// waiting for room.
    pub async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        let socket = &self.socket;
        match Source::of(self.local).filter(|_| self.face) {
            Some(source) => {
                self.send_with(|fd| send_from(fd, datagram, to, &source))
                    .await
            }
            None => self.send_with(|_| socket.send_to(datagram, to)).await,
        }
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Makes an IPv4 `socket` send with the don't-fragment bit and without
/// local fragmentation (`IP_PMTUDISC_DO`): its datagrams get IP ID 0
/// instead of one drawn from the kernel's shared table (see [`Socket`]).
/// Whether it took. The load generator's sockets use it too.
pub fn dont_fragment(socket: &std::net::UdpSocket) -> bool {
    set_pmtu_discovery(socket, libc::IP_PMTUDISC_DO)
}

/// Sets `socket`'s path-MTU discovery mode (`IP_MTU_DISCOVER`, IPv4);
/// whether it took.
fn set_pmtu_discovery(socket: &std::net::UdpSocket, mode: libc::c_int) -> bool {
    // SAFETY: setsockopt reads size_of::<c_int>() bytes from a live c_int
    // on an open descriptor that `socket` owns.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            std::ptr::from_ref(&mode).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Most descriptors one `sendmsg` carries: the kernel's SCM_MAX_FD.
pub(crate) const MAX_FDS_PER_SEND: usize = 253;

/// Room for the control data of [`MAX_FDS_PER_SEND`] descriptors, aligned
/// for `cmsghdr`: 16 bytes of header and 4 per descriptor, rounded up.
type ControlBuf = [u64; 136];

/// `sendmsg(2)` of `bytes` on stream socket `fd`, with `fds` (at most
/// [`MAX_FDS_PER_SEND`]) as SCM_RIGHTS, without waiting and without
/// SIGPIPE. Returns how many bytes were sent; the descriptors went with the
/// first of them (none go when nothing is sent).
pub(crate) fn send_with_fds(fd: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_SEND || bytes.is_empty() && !fds.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptors must go with at least one byte, at most 253 at a time",
        ));
    }
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    let mut control: ControlBuf = [0; 136];
    // SAFETY: msghdr is plain data; all zeroes is a valid empty header.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = std::ptr::from_mut(&mut iov);
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let data = size_of_val(fds);
        // SAFETY: CMSG_SPACE and CMSG_LEN only compute sizes.
        let (space, len) = unsafe {
            (
                libc::CMSG_SPACE(data as libc::c_uint) as usize,
                libc::CMSG_LEN(data as libc::c_uint),
            )
        };
        if space > size_of::<ControlBuf>() {
            return Err(io::Error::other("control buffer too small"));
        }
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` zeroed bytes of `control`,
        // aligned for cmsghdr (u64), which hold one header and `data` bytes
        // (CMSG_SPACE says so), so CMSG_FIRSTHDR is not null and the header
        // and its data lie inside `control`; `fds` has `data` bytes.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if cmsg.is_null() {
                return Err(io::Error::other("no room for control data"));
            }
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = len as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), data);
        }
    }
    loop {
        // SAFETY: `msg` points at `iov` (which points at `bytes`) and at
        // `control`, all alive and unchanged during the call; the kernel
        // only reads them.
        let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// What one [`recv_with_fds`] got.
#[derive(Debug)]
pub(crate) struct Received {
    /// Bytes read into the buffer; 0 at the end of the stream.
    pub(crate) len: usize,
    /// The descriptors that came with them (close-on-exec), owned here.
    pub(crate) fds: Vec<OwnedFd>,
    /// Descriptors were sent but did not fit (the kernel closed them).
    pub(crate) truncated: bool,
}

/// `recvmsg(2)` on stream socket `fd` into `buf`, without waiting, taking
/// the descriptors sent with the bytes (as the kernel hands them over: all
/// of one `sendmsg`, with the read that reaches that message's first
/// byte). `WouldBlock` when nothing is queued.
pub(crate) fn recv_with_fds(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control: ControlBuf = [0; 136];
    // SAFETY: msghdr is plain data; all zeroes is a valid empty header.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = std::ptr::from_mut(&mut iov);
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<ControlBuf>() as _;
    let len = loop {
        // SAFETY: `msg` points at `iov` (which points at `buf`) and at
        // `control`, with their true lengths, all alive during the call.
        let r = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg_controllen` bytes of `control` with
    // well-formed control messages; CMSG_FIRSTHDR/CMSG_NXTHDR walk them
    // within that length. Each SCM_RIGHTS message holds descriptors the
    // kernel just installed in this process for us alone: each is owned
    // once, here (read unaligned: the data need not be aligned for i32).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let first = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..data / size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(first.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Received {
        len,
        fds,
        truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// Maps `file` read-only. Only for files that are never written in place
/// while mapped: compiled stores, which are only ever replaced by rename.
pub(crate) fn map_read_only(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: the mapping is read-only and the file is only ever replaced
    // by rename (never written in place), so its bytes do not change under
    // us; every access is bounds-checked.
    unsafe { memmap2::Mmap::map(file) }
}

/// An all-zero socket address, to be filled in by a receive.
pub(crate) fn zeroed_sockaddr() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
    unsafe { zeroed() }
}

/// `recvmmsg(2)` without waiting: up to `MAX` datagrams (and no more than
/// `from.len()`), datagram `i` into the `i`-th `slot_bytes` bytes of `rx`,
/// its sender into `from[i]` (whose size `from_len[i]` gives, and then
/// holds the sender's length) and its length into `len[i]`; with `to`, its
/// destination into `to[i]` (from `IP_ORIGDSTADDR`/`IPV6_ORIGDSTADDR`,
/// which the socket must have asked for: see [`want_destinations`]).
/// Returns how many were received; `WouldBlock` when none is queued.
pub(crate) fn recv_batch<const MAX: usize>(
    fd: RawFd,
    rx: &mut [u8],
    slot_bytes: usize,
    from: &mut [libc::sockaddr_storage],
    from_len: &mut [libc::socklen_t],
    len: &mut [usize],
    mut to: Option<&mut [Option<SocketAddr>]>,
) -> io::Result<usize> {
    // SAFETY: iovec and mmsghdr are plain data; zero is a valid start.
    let mut iov: [libc::iovec; MAX] = unsafe { zeroed() };
    let mut hdr: [libc::mmsghdr; MAX] = unsafe { zeroed() };
    // Written by the kernel before they are read, and only if asked for.
    let mut control = [const { std::mem::MaybeUninit::<Control>::uninit() }; MAX];
    let mut n = 0;
    let slots = rx.chunks_exact_mut(slot_bytes.max(1));
    for (((((slot, from), from_len), iov), hdr), control) in slots
        .zip(from.iter_mut())
        .zip(from_len.iter())
        .zip(iov.iter_mut())
        .zip(hdr.iter_mut())
        .zip(control.iter_mut())
    {
        iov.iov_base = slot.as_mut_ptr().cast();
        iov.iov_len = slot.len();
        let h = &mut hdr.msg_hdr;
        h.msg_name = std::ptr::from_mut(from).cast();
        h.msg_namelen = *from_len;
        h.msg_iov = std::ptr::from_mut(iov);
        h.msg_iovlen = 1;
        if to.is_some() {
            h.msg_control = control.as_mut_ptr().cast();
            h.msg_controllen = size_of::<Control>();
        }
        n += 1;
    }
    if let Some(to) = &to {
        n = n.min(to.len());
    }
    // SAFETY: each of the first `n` headers points at a live slot of `rx`
    // and a live sender buffer of the lengths given, all of which outlive
    // the call.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            hdr.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = r as usize;
    for ((h, len), from_len) in hdr[..got].iter().zip(len).zip(from_len) {
        *len = h.msg_len as usize;
        *from_len = h.msg_hdr.msg_namelen;
    }
    if let Some(to) = &mut to {
        for (h, to) in hdr[..got].iter().zip(to.iter_mut()) {
            *to = destination(&h.msg_hdr);
        }
    }
    Ok(got)
}

/// Asks for each datagram's destination (address and port) with its
/// receive (`IP_RECVORIGDSTADDR`, and `IPV6_RECVORIGDSTADDR` on an IPv6
/// socket): what a socket that receives for many addresses
/// ([`steer`]) needs to know whom a datagram was for.
pub(crate) fn want_destinations(socket: &impl AsRawFd, ipv6: bool) -> io::Result<()> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVORIGDSTADDR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVORIGDSTADDR)
    };
    let on: libc::c_int = 1;
    // SAFETY: an int option, its value a live int of the size given.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The destination a received header's control messages give, if any.
fn destination(h: &libc::msghdr) -> Option<SocketAddr> {
    if h.msg_control.is_null() || h.msg_controllen == 0 {
        return None;
    }
    // SAFETY: the kernel wrote `msg_controllen` bytes of control messages
    // into the header's live buffer; CMSG_FIRSTHDR and CMSG_NXTHDR walk
    // them within that length, and each payload read is checked against
    // its message's length and is a plain sockaddr, copied out unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            let payload = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
            let data = libc::CMSG_DATA(c);
            let mut s = zeroed_sockaddr();
            let len = match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_ORIGDSTADDR) => size_of::<libc::sockaddr_in>(),
                (libc::IPPROTO_IPV6, libc::IPV6_ORIGDSTADDR) => size_of::<libc::sockaddr_in6>(),
                _ => 0,
            };
            if len > 0 && payload >= len {
                std::ptr::copy_nonoverlapping(data, std::ptr::from_mut(&mut s).cast::<u8>(), len);
                return socket_addr(&s, len as libc::socklen_t);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// The source address a datagram leaves from, whichever socket of its
/// port sends it: an `IP_PKTINFO` (`IPV6_PKTINFO`) control message. A
/// process serving many addresses on one port sends the answers of all of
/// them with one `sendmmsg` from one of their sockets.
#[derive(Clone, Copy)]
pub(crate) enum Source {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

impl Source {
    /// The source for answers of a socket bound to `local`; `None` for a
    /// wildcard address (the kernel chooses, per route, as it does for the
    /// socket itself).
    pub(crate) fn of(local: SocketAddr) -> Option<Source> {
        match local {
            SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(Source::V4(libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            })),
            SocketAddr::V6(a) if !a.ip().is_unspecified() && a.ip().to_ipv4_mapped().is_none() => {
                Some(Source::V6(libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    ipi6_ifindex: a.scope_id(),
                }))
            }
            _ => None,
        }
    }
}

/// One datagram to `to` from `source`, through [`send_batch`].
fn send_from(fd: RawFd, datagram: &[u8], to: SocketAddr, source: &Source) -> io::Result<usize> {
    let to = socket2::SockAddr::from(to);
    // SAFETY: socket2's storage is a transparent `sockaddr_storage`,
    // live for the call.
    let storage = unsafe { &*to.as_ptr().cast::<libc::sockaddr_storage>() };
    let one = std::iter::once((datagram, storage, to.len(), Some(source)));
    send_batch::<1>(fd, one).map(|_| datagram.len())
}

/// Room for one control message of either [`Source`], aligned for `cmsghdr`.
type Control = [u64; 8];

/// `sendmmsg(2)`: the first `MAX` of `datagrams` (bytes, destination and
/// its length, and the source address when it is to be set), each to its
/// destination. Returns how many were sent; an error when the first could
/// not be.
pub(crate) fn send_batch<'a, const MAX: usize>(
    fd: RawFd,
    datagrams: impl Iterator<
        Item = (
            &'a [u8],
            &'a libc::sockaddr_storage,
            libc::socklen_t,
            Option<&'a Source>,
        ),
    >,
) -> io::Result<usize> {
    // SAFETY: iovec, mmsghdr and the control buffers are plain data; zero
    // is a valid start.
    let mut iov: [libc::iovec; MAX] = unsafe { zeroed() };
    let mut hdr: [libc::mmsghdr; MAX] = unsafe { zeroed() };
    let mut control: [Control; MAX] = unsafe { zeroed() };
    let mut n = 0;
    for ((((bytes, to, to_len, source), iov), hdr), control) in datagrams
        .zip(iov.iter_mut())
        .zip(hdr.iter_mut())
        .zip(control.iter_mut())
    {
        iov.iov_base = bytes.as_ptr().cast_mut().cast();
        iov.iov_len = bytes.len();
        let h = &mut hdr.msg_hdr;
        h.msg_name = std::ptr::from_ref(to).cast_mut().cast();
        h.msg_namelen = to_len;
        h.msg_iov = std::ptr::from_mut(iov);
        h.msg_iovlen = 1;
        if let Some(source) = source {
            set_source(h, control, source);
        }
        n += 1;
    }
    // SAFETY: each of the first `n` headers points at live buffers (and
    // control messages) that outlive the call; the kernel only reads them.
    let r = unsafe { libc::sendmmsg(fd, hdr.as_mut_ptr(), n as libc::c_uint, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// Puts `source` as the one control message of `h`, in `control`.
fn set_source(h: &mut libc::msghdr, control: &mut Control, source: &Source) {
    let (level, kind, data, len) = match source {
        Source::V4(p) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            std::ptr::from_ref(p).cast::<u8>(),
            size_of::<libc::in_pktinfo>(),
        ),
        Source::V6(p) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            std::ptr::from_ref(p).cast::<u8>(),
            size_of::<libc::in6_pktinfo>(),
        ),
    };
    h.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE of a 20-byte payload is 40 bytes, within the
    // 64 of `control`; CMSG_FIRSTHDR then points at its start, and the
    // payload copied is `len` bytes of a live pktinfo into CMSG_DATA's
    // room of CMSG_LEN(len) - header bytes.
    unsafe {
        h.msg_controllen = libc::CMSG_SPACE(len as u32) as usize;
        let c = libc::CMSG_FIRSTHDR(h);
        (*c).cmsg_level = level;
        (*c).cmsg_type = kind;
        (*c).cmsg_len = libc::CMSG_LEN(len as u32) as usize;
        std::ptr::copy_nonoverlapping(data, libc::CMSG_DATA(c), len);
    }
}

/// The address a receive filled in, if it is IPv4 or IPv6.
pub(crate) fn socket_addr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says it is a sockaddr_in, and it is long
            // enough.
            let a = unsafe { &*std::ptr::from_ref(s).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*std::ptr::from_ref(s).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => None,
    }
}

/// Test builds only: the global allocator of the agent's unit tests counts,
/// per thread, the bytes live and the most live at once, so a test can
/// bound what one call allocates (see [`alloc_meter::peak`]).
#[cfg(test)]
pub(crate) mod alloc_meter {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Meter;

    #[global_allocator]
    static METER: Meter = Meter;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn add(n: isize) {
        // try_with: nothing is counted while the thread's locals go away.
        let _ = LIVE.try_with(|live| {
            let v = live.get() + n;
            live.set(v);
            let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
        });
    }

    // SAFETY: every call goes to the system allocator unchanged. The
    // counting only touches const-initialized thread-locals of a type
    // without a destructor, which never allocate.
    unsafe impl GlobalAlloc for Meter {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                add(layout.size() as isize);
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                add(layout.size() as isize);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            add(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                add(new_size as isize - layout.size() as isize);
            }
            p
        }
    }

    /// The bytes allocated and not yet freed on this thread.
    pub(crate) fn live() -> isize {
        LIVE.with(Cell::get)
    }

    /// Runs `f` and returns the most bytes it had allocated at once on this
    /// thread (beyond what was live before), with its result.
    pub(crate) fn peak<T>(f: impl FnOnce() -> T) -> (usize, T) {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let out = f();
        let peak = PEAK.with(Cell::get);
        (usize::try_from(peak - base).unwrap_or(0), out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The descriptors that some epoll set of this process holds.
    fn in_epoll_sets() -> Vec<RawFd> {
        let mut held = Vec::new();
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let is_set = std::fs::read_link(entry.path())
                .is_ok_and(|l| l.to_string_lossy() == "anon_inode:[eventpoll]");
            let info = std::path::Path::new("/proc/self/fdinfo").join(entry.file_name());
            // One `tfd: N events: …` line per descriptor the set holds.
            let Some(info) = is_set.then(|| std::fs::read_to_string(info).ok()).flatten() else {
                continue;
            };
            held.extend(info.lines().filter_map(|l| {
                l.strip_prefix("tfd:")?
                    .split_whitespace()
                    .next()?
                    .parse::<RawFd>()
                    .ok()
            }));
        }
        held
    }

    #[test]
    fn a_socket_joins_the_reactor_only_while_a_send_waits_for_room() {
        let rt = crate::util::one_thread_runtime();
        rt.block_on(async {
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = peer.local_addr().unwrap();
            let socket = Socket::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
            let own = socket.as_raw_fd();
            assert!(!in_epoll_sets().contains(&own));
            // A send that finds room: on the socket's own descriptor, and
            // nothing registered.
            socket.send_to(b"one", to).await.unwrap();
            assert!(!in_epoll_sets().contains(&own));
            // A send that finds the buffer full (told so once): the next
            // try is given a duplicate descriptor, which the reactor holds
            // while the send waits, and the send completes.
            let mut tries = Vec::new();
            let sent = socket
                .send_with(|fd| {
                    tries.push((fd, in_epoll_sets().contains(&fd)));
                    if tries.len() == 1 {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    // The duplicate is the same socket.
                    socket.socket.send_to(b"two", to)
                })
                .await
                .unwrap();
            assert_eq!(sent, 3);
            assert_eq!(tries.len(), 2, "{tries:?}");
            assert_eq!(tries[0], (own, false));
            assert!(tries[1].0 != own && tries[1].1, "{tries:?}");
            assert!(!in_epoll_sets().contains(&own));
            let mut buf = [0u8; 8];
            for want in [&b"one"[..], b"two"] {
                let (n, from) = peer.recv_from(&mut buf).unwrap();
                assert_eq!((&buf[..n], from), (want, socket.local_addr().unwrap()));
            }
        });
    }
}
