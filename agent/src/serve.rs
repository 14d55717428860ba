//! The agent's serving loop: datagrams from already-bound UDP sockets go
//! through the [`Responder`] and back to their sender. The sockets are bound
//! by the supervisor, so this loop never binds anything itself.

use std::io;
use std::net::UdpSocket as StdUdpSocket;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::ber::Frame;
use crate::mib::Counters;
use crate::responder::{Outcome, Responder};

/// Largest UDP payload; a datagram can never be larger.
const MAX_DATAGRAM: usize = 65_535;

/// A responder shared by the loops of one agent's sockets.
pub type Shared = Arc<Mutex<Responder>>;

/// Serves every socket until `shutdown` is cancelled. One task per socket;
/// the responder is shared (uncontended in practice: one agent's sockets
/// rarely receive at the same instant).
pub async fn serve(
    sockets: Vec<StdUdpSocket>,
    responder: Shared,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for socket in sockets {
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket)?;
        tasks.spawn(serve_one(socket, responder.clone(), shutdown.clone()));
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                shutdown.cancel();
                return Err(e);
            }
            Err(e) => {
                shutdown.cancel();
                return Err(io::Error::other(e));
            }
        }
    }
    Ok(())
}

async fn serve_one(
    socket: UdpSocket,
    responder: Shared,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut frame = Frame::default();
    loop {
        let (len, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // ICMP errors from earlier sends surface here on Linux; they
                // concern one peer, not the socket.
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(e),
            },
        };
        let outcome = {
            let mut r = responder.lock().unwrap_or_else(PoisonError::into_inner);
            r.handle(&buf[..len], Instant::now(), &mut frame)
        };
        if outcome == Outcome::Reply
            && let Err(e) = socket.send_to(frame.as_slice(), peer).await
            && !transient(&e)
        {
            tracing::warn!(%peer, cause = %e, "send failed");
        }
    }
}

fn transient(e: &io::Error) -> bool {
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
