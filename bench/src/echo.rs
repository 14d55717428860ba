//! The physical ceiling: a UDP responder that answers every datagram with
//! a fixed 50-byte reply and does nothing else. What agentcluster reaches
//! against what this reaches on the same machine, with the same client, is
//! the ratio that survives noisy machines.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Size of the reply, about that of a small SNMP response.
pub const REPLY: usize = 50;

/// Serves until `lifetime` has passed; returns the datagrams answered.
pub fn serve(listen: SocketAddr, lifetime: Duration) -> std::io::Result<u64> {
    let sock = UdpSocket::bind(listen)?;
    serve_on(&sock, lifetime, &[0x5a; REPLY])
}

/// Answers every datagram on `sock` with `reply` until `lifetime` has passed.
pub fn serve_on(sock: &UdpSocket, lifetime: Duration, reply: &[u8]) -> std::io::Result<u64> {
    let end = Instant::now() + lifetime;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = vec![0u8; 65_536];
    let mut answered = 0u64;
    while Instant::now() < end {
        match sock.recv_from(&mut buf) {
            Ok((_, peer)) => {
                if sock.send_to(reply, peer).is_ok() {
                    answered += 1;
                }
            }
            Err(e) if crate::load::transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(answered)
}
