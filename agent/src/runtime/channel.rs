//! The control channel between the supervisor and an agent process: a
//! socketpair inherited as fd 3, carrying length-delimited JSON messages
//! (a 4-byte big-endian length, then the message). Versioned by
//! [`PROTOCOL`]; a frame that is too long, not JSON, or of an unknown kind is
//! an error, and an error is never taken for `ready`.

use std::io;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::responder;

/// Version of the channel protocol.
pub const PROTOCOL: u32 = 1;
/// The fd the channel is inherited on.
pub(crate) const CHANNEL_FD: i32 = 3;
/// The first inherited UDP socket; the rest follow in order.
pub(crate) const FIRST_SOCKET_FD: i32 = 4;
/// Largest frame accepted (a start message for hundreds of agents fits).
pub(crate) const MAX_FRAME: usize = 64 << 20;
/// Most of a frame's body allocated before its bytes arrive.
const READ_AHEAD: usize = 64 << 10;

/// Supervisor → agent process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToAgent {
    /// The start token and everything the process serves.
    Start(Start),
    /// Snapshots changed: serve these stores from now on.
    Swap {
        /// The views that change, each with its new store.
        swaps: Vec<Swap>,
    },
    /// The cluster's limits changed on reload: apply them to every agent
    /// of the process from now on.
    Limits(Limits),
    /// Exit cleanly.
    Stop,
}

/// The start message: what the process serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Start {
    /// The supervisor's [`PROTOCOL`]; an agent that speaks another fails.
    pub protocol: u32,
    /// Echoed in `ready`/`failed`: proves the answer belongs to this start.
    pub token: String,
    /// How often the process sends its heartbeat.
    pub heartbeat_ms: u64,
    /// The agents the process serves, their sockets in this order.
    pub agents: Vec<AgentSpec>,
}

/// One agent served by the process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSpec {
    /// The agent's name (for logs and heartbeats).
    pub name: String,
    /// How many inherited sockets belong to this agent (taken in order).
    pub sockets: usize,
    /// Compiled store files, one per view of `config`.
    pub stores: Vec<PathBuf>,
    /// Communities, limits and SNMPv3 of the agent's responder.
    pub config: responder::Config,
    /// Where the device sends its own coldStart/warmStart once ready.
    #[serde(default)]
    pub notify: Vec<crate::notify::Target>,
    /// coldStart (this agent's first start by this supervisor) or
    /// warmStart (a restart).
    #[serde(default)]
    pub cold: bool,
    /// The device's snmpEngineID, for SNMPv3 notifications.
    #[serde(default)]
    pub engine_id: Vec<u8>,
    /// The endpoints of the inherited sockets, in order (the device's
    /// notifications leave from the sockets themselves).
    #[serde(default)]
    pub endpoints: Vec<std::net::SocketAddr>,
    /// Requests per second and burst allowed per source address; `None`:
    /// no limit.
    #[serde(default)]
    pub rate_limit: Option<crate::responder::ratelimit::RateLimit>,
}

/// Limits set for the whole cluster, changeable without a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest response datagram (`cluster.max_response_bytes`).
    pub max_response_bytes: usize,
    /// Requests per second and burst allowed per source address; `None`:
    /// no limit.
    pub rate_limit: Option<crate::responder::ratelimit::RateLimit>,
}

/// A view of an agent now served from another compiled store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Swap {
    /// Index of the agent in the start message.
    pub agent: usize,
    /// Index of the view in the agent's configuration.
    pub view: usize,
    /// The compiled store to serve it from.
    pub store: PathBuf,
}

/// Agent process → supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FromAgent {
    /// Every agent is served: the start succeeded.
    Ready {
        /// The start's token.
        token: String,
    },
    /// The start failed; the process exits.
    Failed {
        /// The start's token.
        token: String,
        /// What went wrong.
        reason: String,
    },
    /// Sent every `heartbeat_ms`: proof of life, with the counters.
    Heartbeat {
        /// One entry per agent, in the start message's order.
        agents: Vec<AgentStats>,
    },
    /// The result of a `swap`.
    Swapped {
        /// Every swap was applied.
        ok: bool,
        /// Why not, when not (the first swap that failed).
        reason: String,
    },
}

/// One agent's counters in a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStats {
    /// The agent's name.
    pub name: String,
    /// Requests answered so far.
    pub requests: u64,
    /// Datagrams dropped so far.
    pub dropped: u64,
}

/// Writes one frame.
pub async fn write_frame<W, T>(w: &mut W, msg: &T) -> io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    w.flush().await
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
/// Not cancel-safe: read from a task of its own.
pub async fn read_frame<R, T>(r: &mut R) -> io::Result<Option<T>>
where
    R: tokio::io::AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit"),
        ));
    }
    // Grown as the bytes arrive: a length that claims more than the peer
    // sends costs no more memory than what it did send.
    let mut body = Vec::with_capacity(len.min(READ_AHEAD));
    (&mut *r).take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame cut short: {} of {len} bytes", body.len()),
        ));
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_garbage_is_an_error() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let msg = FromAgent::Ready { token: "t1".into() };
        write_frame(&mut a, &msg).await.unwrap();
        let got: Option<FromAgent> = read_frame(&mut b).await.unwrap();
        assert!(matches!(got, Some(FromAgent::Ready { token }) if token == "t1"));

        a.write_all(&[0, 0, 0, 3, b'x', b'y', b'z']).await.unwrap();
        assert!(read_frame::<_, FromAgent>(&mut b).await.is_err());

        a.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        assert!(read_frame::<_, FromAgent>(&mut b).await.is_err());

        a.write_all(br#"____{"type":"ready-ish","token":"t"}"#)
            .await
            .unwrap();
        assert!(read_frame::<_, FromAgent>(&mut b).await.is_err());

        drop(a);
        let (mut a, mut b) = tokio::io::duplex(64);
        drop(a.shutdown().await);
        drop(a);
        assert!(read_frame::<_, FromAgent>(&mut b).await.unwrap().is_none());
    }

    /// Polls a read from memory, which never waits, to its end.
    fn now<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("reading from memory waited"),
        }
    }

    #[test]
    fn a_length_claiming_more_than_arrives_costs_only_what_arrived() {
        let mut data = (MAX_FRAME as u32).to_be_bytes().to_vec();
        data.extend_from_slice(br#"{"type":"stop"}"#);
        let mut reader = &data[..];
        let (peak, read) =
            crate::sys::alloc_meter::peak(|| now(read_frame::<_, ToAgent>(&mut reader)));
        let e = read.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("cut short"), "{e}");
        assert!(peak < 1 << 20, "{peak} bytes allocated");
        // A whole frame of the largest size still arrives in one piece.
        let body = format!(
            r#"{{"type":"failed","token":"t","reason":"{}"}}"#,
            "x".repeat(3 << 20)
        );
        let mut data = (body.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(body.as_bytes());
        let mut reader = &data[..];
        let got = now(read_frame::<_, FromAgent>(&mut reader)).unwrap();
        assert!(matches!(got, Some(FromAgent::Failed { reason, .. }) if reason.len() == 3 << 20));
    }
}
