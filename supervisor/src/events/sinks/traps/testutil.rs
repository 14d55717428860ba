//! What the notification sink's tests share: the MIB root, a configured
//! target, and a v2c notification receiver on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentcluster_agent::ber::{self, Frame};
use agentcluster_agent::notify::{Notification, encode};
use agentcluster_agent::value::Oid;
use agentcluster_conf::{DEFAULT_MIB_ROOT, NotifyTarget, NotifyType, Secret, SnmpVersion};
use tokio::sync::mpsc;

pub(super) const ROOT: &[u32] = DEFAULT_MIB_ROOT;

/// `ROOT.tail`.
pub(super) fn oid(tail: &[u32]) -> Oid {
    let mut o = ROOT.to_vec();
    o.extend_from_slice(tail);
    o
}

/// A v2c target (community `public`), no retries, 100 ms timeout.
pub(super) fn conf_target(
    address: &str,
    kind: NotifyType,
    events: Option<&[&str]>,
) -> NotifyTarget {
    NotifyTarget {
        target: address.into(),
        version: SnmpVersion::V2c,
        community: Some(Secret::new("public")),
        kind,
        events: events.map(|e| e.iter().map(|s| s.parse().unwrap()).collect()),
        user: None,
        retries: 0,
        timeout: Duration::from_millis(100),
    }
}

/// A v2c notification receiver on loopback: hands each datagram's PDU
/// tag and snmpTrapOID to `seen` (and the datagram itself to `raw`), and
/// answers informs while `answer`.
pub(super) struct Receiver {
    pub(super) addr: SocketAddr,
    pub(super) answer: Arc<AtomicBool>,
    pub(super) seen: mpsc::UnboundedReceiver<(u8, Oid)>,
    pub(super) raw: mpsc::UnboundedReceiver<Vec<u8>>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

/// (pdu tag, request-id, snmpTrapOID) of a v2c Trap or Inform.
fn open_v2c(msg: &[u8]) -> Option<(u8, i32, Oid)> {
    let (_, start, _) = ber::read_header(msg, 0)?; // Message
    let (_, s, l) = ber::read_header(msg, start)?; // version
    let (_, s, l) = ber::read_header(msg, s + l)?; // community
    let (tag, pdu, _) = ber::read_header(msg, s + l)?;
    let (_, s, l) = ber::read_header(msg, pdu)?; // request-id
    let id = msg[s..s + l]
        .iter()
        .fold(0i64, |acc, b| (acc << 8) | i64::from(*b)) as i32;
    let (_, s, l) = ber::read_header(msg, s + l)?; // error-status
    let (_, s, l) = ber::read_header(msg, s + l)?; // error-index
    let (_, vbs, _) = ber::read_header(msg, s + l)?;
    let (_, first, len) = ber::read_header(msg, vbs)?; // sysUpTime.0
    let (_, second, _) = ber::read_header(msg, first + len)?; // snmpTrapOID.0
    let (_, s, l) = ber::read_header(msg, second)?;
    let (_, s, l) = ber::read_header(msg, s + l)?;
    let mut arcs = Vec::new();
    let bytes = &msg[s..s + l];
    let mut v: u32 = 0;
    for b in bytes {
        v = (v << 7) | u32::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                arcs.push(v / 40);
                arcs.push(v % 40);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
    }
    Some((tag, id, arcs))
}

impl Receiver {
    pub(super) async fn start() -> Receiver {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let answer = Arc::new(AtomicBool::new(false));
        let (tx, seen) = mpsc::unbounded_channel();
        let (raw_tx, raw) = mpsc::unbounded_channel();
        let flag = answer.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            let mut frame = Frame::default();
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Some((tag, id, trap)) = open_v2c(&buf[..len]) else {
                    continue;
                };
                if tag == encode::TAG_INFORM && flag.load(Ordering::SeqCst) {
                    let empty = Notification {
                        trap_oid: trap.clone(),
                        uptime: 0,
                        varbinds: vec![],
                        agent_addr: [0; 4],
                    };
                    encode::v2c(&mut frame, b"public", 0xa2, id, &empty);
                    let _ = socket.send_to(frame.as_slice(), peer).await;
                }
                let _ = tx.send((tag, trap));
                let _ = raw_tx.send(buf[..len].to_vec());
            }
        });
        Receiver {
            addr,
            answer,
            seen,
            raw,
            task,
        }
    }

    /// The next notification seen (its PDU tag, snmpTrapOID and the
    /// datagram, read as text where it is text), within 10 s.
    pub(super) async fn next_text(&mut self) -> (u8, Oid, String) {
        let (tag, trap) = self.next().await;
        let raw = self.raw.recv().await.expect("receiver running");
        (tag, trap, String::from_utf8_lossy(&raw).into_owned())
    }

    /// The next notification seen, within 10 s.
    pub(super) async fn next(&mut self) -> (u8, Oid) {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("a notification within 10 s")
            .expect("receiver running")
    }
}
