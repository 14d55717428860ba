//! Batched datagram I/O for the load generator: `recvmmsg` takes every
//! answer waiting in one system call, `sendmmsg` sends their replacements
//! in one. The generator's own cost is then a fraction of the cheapest
//! responder's (the echo ceiling), so it measures the server, not itself.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

/// Largest answer kept; a longer datagram is truncated and fails its check.
const RX_SIZE: usize = 65_536;

/// Buffers for one socket's batched sends and receives.
pub struct Batch {
    rx: Vec<Vec<u8>>,
    rx_headers: MultiHeaders<SockaddrStorage>,
    /// (length, sender) of each datagram of the last receive.
    pub got: Vec<(usize, Option<SocketAddr>)>,
    /// Messages to send; `tx_len` of them are in use.
    pub tx: Vec<Vec<u8>>,
    tx_to: Vec<Option<SockaddrStorage>>,
    tx_len: usize,
    tx_headers: MultiHeaders<SockaddrStorage>,
}

impl Batch {
    /// Room for `size` datagrams each way (at least 1).
    pub fn new(size: usize) -> Batch {
        let size = size.max(1);
        Batch {
            rx: (0..size).map(|_| vec![0u8; RX_SIZE]).collect(),
            rx_headers: MultiHeaders::preallocate(size, None),
            got: Vec::with_capacity(size),
            tx: (0..size).map(|_| Vec::with_capacity(1500)).collect(),
            tx_to: vec![None; size],
            tx_len: 0,
            tx_headers: MultiHeaders::preallocate(size, None),
        }
    }

    /// Room for more messages to send.
    pub fn tx_room(&self) -> bool {
        self.tx_len < self.tx.len()
    }

    /// The next message buffer (cleared) and where it goes (`None`: the
    /// connected peer).
    pub fn push(&mut self, to: Option<SocketAddr>) -> &mut Vec<u8> {
        let i = self.tx_len;
        self.tx_len += 1;
        self.tx_to[i] = to.map(storage);
        let b = &mut self.tx[i];
        b.clear();
        b
    }

    /// Sends the pushed messages; returns how many went out (the first
    /// ones; the rest were not sent).
    pub fn flush(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let n = self.tx_len;
        self.tx_len = 0;
        if n == 0 {
            return Ok(0);
        }
        let slices: Vec<[IoSlice<'_>; 1]> =
            self.tx[..n].iter().map(|b| [IoSlice::new(b)]).collect();
        let r = sendmmsg(
            sock.as_raw_fd(),
            &mut self.tx_headers,
            &slices,
            &self.tx_to[..n],
            [],
            MsgFlags::empty(),
        );
        match r {
            Ok(res) => Ok(res.count()),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// Waits (up to the socket's read timeout) for at least one datagram
    /// and takes every one already queued. Fills `got`.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        self.got.clear();
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
            self.rx.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
        let res = recvmmsg(
            sock.as_raw_fd(),
            &mut self.rx_headers,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        )
        .map_err(io::Error::from)?;
        for m in res {
            self.got
                .push((m.bytes, m.address.and_then(|a| std_addr(&a))));
        }
        Ok(self.got.len())
    }

    /// Datagram `i` of the last receive.
    pub fn datagram(&self, i: usize) -> &[u8] {
        let (len, _) = self.got[i];
        &self.rx[i][..len.min(RX_SIZE)]
    }
}

fn storage(a: SocketAddr) -> SockaddrStorage {
    SockaddrStorage::from(a)
}

fn std_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}
