//! Batched datagram I/O for the serving loop: `recvmmsg` takes every
//! request already queued on a socket in one system call, `sendmmsg` sends
//! their answers in one.
//!
//! A batch starts with one slot and doubles (up to [`MAX_SLOTS`]) when a
//! receive fills it while more was already queued (the receive before it,
//! with no wait between, also got something), so a thread that sees one
//! request at a time keeps its one receive buffer and never reallocates
//! it. Receive buffers are full-size (no request is ever truncated) but
//! zero-filled on allocation and never cleared, so only the pages
//! datagrams were written to become resident. A batch is not a socket's:
//! the sockets a thread serves borrow one in turn (`runtime::serve`), so
//! a process of thousands of sockets holds one, not one each.
//!
//! The system calls themselves are in [`crate::sys`]: their headers hold
//! pointers into the buffers, built on the stack for each call and never
//! stored, so a batch is `Send` and can live in a task across awaits.

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use crate::sys;
use crate::wire::ber::Frame;

/// Largest UDP payload; a datagram can never be larger.
pub const SLOT_BYTES: usize = 65_536;
/// Most datagrams per system call.
pub const MAX_SLOTS: usize = 32;

pub struct Batch {
    /// One receive buffer of [`SLOT_BYTES`] per slot, back to back.
    rx: Vec<u8>,
    /// Length and sender of each datagram of the last receive.
    /// (Each per-slot vector holds `slots` entries: a one-slot batch stays
    /// a few hundred bytes, which matters with thousands of agents.)
    len: Vec<usize>,
    from: Vec<libc::sockaddr_storage>,
    /// The destination of each datagram of the last steered receive.
    to: Vec<Option<SocketAddr>>,
    from_len: Vec<libc::socklen_t>,
    received: usize,
    /// Receives in a row that got something (reset by one that found
    /// nothing).
    streak: u32,
    /// The last receive filled every slot in a streak: double them first.
    grow: bool,
    /// One answer per slot; `reply[i]`: slot `i` has one to send.
    frames: Vec<Frame>,
    reply: Vec<bool>,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::with_slots(1)
    }
}

impl Batch {
    pub fn with_slots(slots: usize) -> Batch {
        let slots = slots.clamp(1, MAX_SLOTS);
        Batch {
            rx: vec![0u8; slots * SLOT_BYTES],
            len: vec![0; slots],
            // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
            from: vec![sys::zeroed_sockaddr(); slots],
            from_len: vec![0; slots],
            to: vec![None; slots],
            received: 0,
            streak: 0,
            grow: false,
            frames: (0..slots).map(|_| Frame::default()).collect(),
            reply: vec![false; slots],
        }
    }

    pub fn slots(&self) -> usize {
        self.len.len()
    }

    /// Takes up to `slots` queued datagrams without waiting. Returns how
    /// many; `WouldBlock` when none is queued. The datagrams and answers of
    /// the receive before are gone.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.recv_from(fd, false)
    }

    /// As [`Batch::recv`], and each datagram's destination too
    /// ([`Batch::destination`]): the socket receives for many addresses
    /// (see [`crate::sys::steer`]) and asked for them.
    pub fn recv_steered(&mut self, fd: RawFd) -> io::Result<usize> {
        self.recv_from(fd, true)
    }

    fn recv_from(&mut self, fd: RawFd, steered: bool) -> io::Result<usize> {
        if self.grow && self.slots() < MAX_SLOTS {
            *self = Batch {
                streak: self.streak,
                ..Batch::with_slots(self.slots() * 2)
            };
        }
        self.grow = false;
        self.received = 0;
        let n = self.slots();
        for l in &mut self.from_len[..n] {
            *l = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        let r = sys::recv_batch::<MAX_SLOTS>(
            fd,
            &mut self.rx,
            SLOT_BYTES,
            &mut self.from[..n],
            &mut self.from_len[..n],
            &mut self.len[..n],
            steered.then_some(&mut self.to[..n]),
        );
        let got = match r {
            Ok(got) => got,
            Err(e) => {
                self.streak = 0;
                return Err(e);
            }
        };
        self.grow = got == n && self.streak >= 1;
        // A receive that left slots empty took all there was: like one
        // that found nothing, it ends the streak.
        self.streak = if got < n {
            0
        } else {
            self.streak.saturating_add(1)
        };
        for r in &mut self.reply[..got] {
            *r = false;
        }
        self.received = got;
        Ok(got)
    }

    /// Datagram `i` of the last receive.
    #[cfg(test)]
    fn datagram(&self, i: usize) -> &[u8] {
        let start = i * SLOT_BYTES;
        &self.rx[start..start + self.len[i].min(SLOT_BYTES)]
    }

    /// Datagram `i` of the last receive and the frame for its answer.
    pub fn slot(&mut self, i: usize) -> (&[u8], &mut Frame) {
        let start = i * SLOT_BYTES;
        let len = self.len[i].min(SLOT_BYTES);
        (&self.rx[start..start + len], &mut self.frames[i])
    }

    /// The sender of datagram `i`.
    pub fn peer(&self, i: usize) -> Option<SocketAddr> {
        sys::socket_addr(&self.from[i], self.from_len[i])
    }

    /// The destination of datagram `i` of the last steered receive.
    pub fn destination(&self, i: usize) -> Option<SocketAddr> {
        self.to[i]
    }

    /// The sender of datagram `i` as the kernel gave it, and its length.
    pub fn sender(&self, i: usize) -> (&libc::sockaddr_storage, libc::socklen_t) {
        (&self.from[i], self.from_len[i])
    }

    /// The answer encoded in slot `i`'s frame.
    pub fn frame(&self, i: usize) -> &[u8] {
        self.frames[i].as_slice()
    }

    /// Marks slot `i`'s frame as an answer to send back to its sender.
    pub fn reply(&mut self, i: usize) {
        self.reply[i] = true;
    }

    /// Sends the answers marked since the last receive, to their senders.
    /// Answers that fail are skipped (each error goes to `failed`); stops
    /// at `WouldBlock` and returns it, with the unsent ones still marked,
    /// and so at `EMSGSIZE` unless the socket `fragments` (its
    /// [`Socket`](crate::sys::Socket) then tries again).
    pub fn send(
        &mut self,
        fd: RawFd,
        fragments: bool,
        failed: &mut dyn FnMut(SocketAddr, io::Error),
    ) -> io::Result<()> {
        loop {
            let mut idx = [0usize; MAX_SLOTS];
            let mut n = 0;
            for (i, r) in self.reply[..self.received].iter().enumerate() {
                if *r {
                    idx[n] = i;
                    n += 1;
                }
            }
            if n == 0 {
                return Ok(());
            }
            let (frames, from, from_len) = (&self.frames, &self.from, &self.from_len);
            let r = sys::send_batch::<MAX_SLOTS>(
                fd,
                idx[..n]
                    .iter()
                    .map(|&i| (frames[i].as_slice(), &from[i], from_len[i], None)),
            );
            let sent = match r {
                Ok(sent) => sent,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    return Err(e);
                }
                Err(e) if !fragments && e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    return Err(e);
                }
                Err(e) => {
                    // The first answer failed (a refused or unreachable
                    // peer): drop it and go on with the others.
                    let i = idx[0];
                    self.reply[i] = false;
                    if let Some(peer) = self.peer(i) {
                        failed(peer, e);
                    }
                    continue;
                }
            };
            for &i in &idx[..sent] {
                self.reply[i] = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use super::*;

    fn pair(ip: &str) -> Option<(UdpSocket, UdpSocket)> {
        let server = UdpSocket::bind((ip, 0)).ok()?;
        let client = UdpSocket::bind((ip, 0)).ok()?;
        client.connect(server.local_addr().ok()?).ok()?;
        Some((server, client))
    }

    #[test]
    fn a_burst_doubles_the_slots_and_keeps_every_datagram() {
        let (server, client) = pair("127.0.0.1").unwrap();
        let mut b = Batch::default();
        assert_eq!(b.slots(), 1);
        assert_eq!(
            b.recv(server.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for i in 0..7u8 {
            client.send(&vec![i; 100 + usize::from(i)]).unwrap();
        }
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        loop {
            match b.recv(server.as_raw_fd()) {
                Ok(n) => {
                    sizes.push((n, b.slots()));
                    for i in 0..n {
                        let d = b.datagram(i);
                        assert!(d.iter().all(|x| *x == d[0]));
                        seen.push((d[0], d.len()));
                        assert_eq!(b.peer(i), Some(client.local_addr().unwrap()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        // 1 of 1, 1 of 1 (more was queued: grow), 2 of 2 (grow), the 3
        // left of 4.
        assert_eq!(sizes, vec![(1, 1), (1, 1), (2, 2), (3, 4)]);
        let expected: Vec<(u8, usize)> = (0..7u8).map(|i| (i, 100 + usize::from(i))).collect();
        assert_eq!(seen, expected);
    }

    /// Requests one at a time, each answered before the next: one slot
    /// for ever, its buffer never replaced.
    #[test]
    fn one_request_at_a_time_keeps_one_buffer() {
        let (server, client) = pair("127.0.0.1").unwrap();
        let mut b = Batch::default();
        let first = b.rx.as_ptr();
        for i in 0..20u8 {
            client.send(&[i]).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let n = loop {
                match b.recv(server.as_raw_fd()) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        assert!(std::time::Instant::now() < deadline);
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("{e}"),
                }
            };
            assert_eq!((n, b.datagram(0)), (1, &[i][..]));
            assert_eq!(
                b.recv(server.as_raw_fd()).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
        }
        assert_eq!(b.slots(), 1);
        assert_eq!(b.rx.as_ptr(), first);
    }

    /// A receive that leaves slots empty took everything queued: the
    /// serving loop waits again without a second, empty receive, so it
    /// must end the streak as that receive would have (a later full
    /// receive is the first of a new streak, not a reason to grow).
    #[test]
    fn a_short_receive_ends_the_streak() {
        let (server, client) = pair("127.0.0.1").unwrap();
        let mut b = Batch::with_slots(2);
        for burst in [2, 1, 2, 1] {
            for i in 0..burst {
                client.send(&[i]).unwrap();
            }
            assert_eq!(b.recv(server.as_raw_fd()).unwrap(), burst as usize);
        }
        assert_eq!(b.slots(), 2);
    }

    #[test]
    fn answers_go_back_to_each_sender_and_nothing_is_truncated() {
        for ip in ["127.0.0.1", "::1"] {
            let Some((server, a)) = pair(ip) else {
                continue;
            };
            let b2 = UdpSocket::bind((ip, 0)).unwrap();
            b2.connect(server.local_addr().unwrap()).unwrap();
            let mut b = Batch::with_slots(8);
            let big = vec![7u8; 60_000];
            a.send(b"one").unwrap();
            b2.send(&big).unwrap();
            a.send(b"three").unwrap();
            let n = b.recv(server.as_raw_fd()).unwrap();
            assert_eq!(n, 3);
            assert_eq!(b.datagram(1).len(), 60_000);
            for i in 0..n {
                let (d, frame) = b.slot(i);
                let echo = d.to_vec();
                frame.reset(0);
                frame.prepend(&echo);
                b.reply(i);
            }
            b.send(server.as_raw_fd(), true, &mut |p, e| panic!("{p}: {e}"))
                .unwrap();
            let mut buf = vec![0u8; 65_536];
            assert_eq!(a.recv(&mut buf).unwrap(), 3);
            assert_eq!(&buf[..3], b"one");
            assert_eq!(a.recv(&mut buf).unwrap(), 5);
            assert_eq!(&buf[..5], b"three");
            assert_eq!(b2.recv(&mut buf).unwrap(), 60_000);
            assert!(buf[..60_000].iter().all(|x| *x == 7));
        }
    }

    #[test]
    fn a_refused_answer_does_not_stop_the_others() {
        let (server, a) = pair("127.0.0.1").unwrap();
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        gone.connect(server.local_addr().unwrap()).unwrap();
        let mut b = Batch::with_slots(4);
        gone.send(b"x").unwrap();
        a.send(b"y").unwrap();
        drop(gone);
        assert_eq!(b.recv(server.as_raw_fd()).unwrap(), 2);
        for i in 0..2 {
            let (d, frame) = b.slot(i);
            let echo = d.to_vec();
            frame.reset(0);
            frame.prepend(&echo);
            b.reply(i);
        }
        let mut failures = 0;
        b.send(server.as_raw_fd(), true, &mut |_, _| failures += 1)
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(a.recv(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], b'y');
        // Loopback answers to a closed port are refused later, by ICMP, not
        // by the send itself.
        assert!(failures <= 1);
    }
}

/// Answers larger than their route's MTU, in a network namespace of the
/// test's own whose loopback has an MTU of 1,280 (root only: elsewhere the
/// test says so and passes).
#[cfg(test)]
mod too_large {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::process::Command;

    use super::*;
    use crate::sys::Socket;

    /// Runs `test` on a thread of its own in a new network namespace with
    /// `lo` up at MTU 1,280, in a current-thread runtime; false when the
    /// namespace cannot be made here.
    fn in_small_mtu_namespace(test: impl FnOnce() + Send + 'static) -> bool {
        std::thread::spawn(move || {
            if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                return false;
            }
            // A child started from this thread is in its namespace.
            let up = Command::new("ip")
                .args(["link", "set", "lo", "mtu", "1280", "up"])
                .status()
                .is_ok_and(|s| s.success());
            if !up {
                return false;
            }
            test();
            true
        })
        .join()
        .unwrap()
    }

    fn received(client: &UdpSocket) -> Vec<u8> {
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut buf = vec![0u8; 65_536];
        let n = client.recv(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn a_socket_sends_unfragmented_until_a_datagram_needs_fragments() {
        let ran = in_small_mtu_namespace(|| {
            crate::util::one_thread_runtime().block_on(async {
                let socket = Socket::new(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
                let client = UdpSocket::bind("127.0.0.1:0").unwrap();
                let to = client.local_addr().unwrap();
                assert!(!socket.fragments(), "IPv4 starts without fragments");
                assert_eq!(socket.send_to(&[1; 1000], to).await.unwrap(), 1000);
                assert_eq!(received(&client), vec![1; 1000]);
                assert!(!socket.fragments(), "1,000 bytes fit the route");
                // 3,000 bytes do not: EMSGSIZE, then the socket fragments
                // and the send is tried again; nothing is lost.
                assert_eq!(socket.send_to(&[2; 3000], to).await.unwrap(), 3000);
                assert_eq!(received(&client), vec![2; 3000]);
                assert!(socket.fragments());
            });
        });
        if !ran {
            eprintln!("skipped: cannot make a network namespace here");
        }
    }

    #[test]
    fn a_batch_leaves_a_too_large_answer_to_the_sockets_retry() {
        let ran = in_small_mtu_namespace(|| {
            crate::util::one_thread_runtime().block_on(async {
                let server = UdpSocket::bind("127.0.0.1:0").unwrap();
                let client = UdpSocket::bind("127.0.0.1:0").unwrap();
                client.connect(server.local_addr().unwrap()).unwrap();
                let socket = Socket::new(server).unwrap();
                client.send(b"small").unwrap();
                client.send(b"large").unwrap();
                let mut b = Batch::with_slots(4);
                let mut got = 0;
                while got < 2 {
                    match b.recv(socket.as_raw_fd()) {
                        Ok(n) => got = n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::yield_now();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                for i in 0..2 {
                    let size = if b.slot(i).0 == b"small" { 100 } else { 3000 };
                    let frame = b.slot(i).1;
                    frame.reset(0);
                    frame.prepend(&vec![i as u8; size]);
                    b.reply(i);
                }
                // Without fragments the batch stops at the large answer,
                // still marked, and says EMSGSIZE.
                let mut failures = Vec::new();
                let e = b
                    .send(socket.as_raw_fd(), false, &mut |p, e| failures.push((p, e)))
                    .unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE));
                // Through the socket, which then fragments: both arrive.
                socket
                    .send_with(|fd| {
                        b.send(fd, socket.fragments(), &mut |p, e| failures.push((p, e)))
                    })
                    .await
                    .unwrap();
                assert!(failures.is_empty(), "{failures:?}");
                assert!(socket.fragments());
                let mut sizes = vec![received(&client).len(), received(&client).len()];
                sizes.sort();
                assert_eq!(sizes, [100, 3000]);
            });
        });
        if !ran {
            eprintln!("skipped: cannot make a network namespace here");
        }
    }
}
