//! Puts notifications on the wire from one UDP socket: one of its own
//! ([`Sender::bind`]), or a device's serving socket ([`Sender::over`]),
//! whose serving loop hands the answers over ([`Replies`]). Traps are sent
//! once; informs wait `timeout` per attempt for their acknowledgement,
//! `retries` more times. An SNMPv3 inform goes to the receiver's engine (it
//! is the authoritative one): its engine ID, boots and time are discovered
//! first (RFC 3414 §4) and kept per receiver; a notInTimeWindow Report
//! resynchronizes them, an unknownEngineID Report rediscovers them.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;

use crate::sys::Socket;

use super::encode::{self, TAG_GET, TAG_INFORM, TAG_V2_TRAP};
use super::replies::{Inbox, Replies};
use super::{Kind, Notification, NotifyError, NotifyUser, Target, Version};
use crate::security::peer::{PeerKeys as Keys, open_v3, peer_keys, report_name, report_oid};
use crate::security::usm::SecurityLevel;
use crate::security::v3::ReportKind;
use crate::wire::ber::{Frame, TAG_SEQUENCE};
use crate::wire::v3 as wire;

/// The sending engine: what an SNMPv3 trap is authenticated as.
#[derive(Debug, Clone)]
pub struct LocalEngine {
    /// Our snmpEngineID.
    pub engine_id: Vec<u8>,
    /// Our snmpEngineBoots.
    pub boots: u32,
    /// snmpEngineTime counts from here.
    pub start: Instant,
}

/// What discovery learnt of a receiver's engine.
#[derive(Debug, Clone)]
struct Peer {
    engine_id: Vec<u8>,
    boots: u32,
    time: u32,
    at: Instant,
}

impl Peer {
    fn time_now(&self) -> u32 {
        let elapsed = Instant::now().saturating_duration_since(self.at).as_secs();
        (u64::from(self.time) + elapsed).min(i32::MAX as u64) as u32
    }
}

/// The socket notifications leave from, and where their answers come.
#[derive(Debug)]
enum Link {
    /// A socket of the sender's own: answers come to it.
    Own(UdpSocket),
    /// A device's serving socket: its serving loop hands the answers from
    /// the peer in `inbox` over (the inbox exists while an exchange waits).
    Shared {
        socket: Arc<Socket>,
        replies: Arc<Replies>,
        inbox: Option<Inbox>,
    },
}

impl Link {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Link::Own(s) => s.local_addr(),
            Link::Shared { socket, .. } => socket.local_addr(),
        }
    }

    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self {
            Link::Own(s) => s.send_to(datagram, to).await,
            Link::Shared { socket, .. } => socket.send_to(datagram, to).await,
        }
    }

    /// Answers from `peer` are wanted until [`Link::done`].
    fn listen(&mut self, peer: SocketAddr) {
        if let Link::Shared { replies, inbox, .. } = self {
            *inbox = Some(replies.expect(peer));
        }
    }

    fn done(&mut self) {
        if let Link::Shared { inbox, .. } = self {
            *inbox = None;
        }
    }

    /// Waits until `deadline` for a datagram from `from` into `buf`; its
    /// length.
    async fn recv_from(
        &mut self,
        buf: &mut [u8],
        from: SocketAddr,
        deadline: Instant,
    ) -> Option<usize> {
        match self {
            Link::Own(socket) => loop {
                let r = tokio::time::timeout_at(deadline.into(), socket.recv_from(buf));
                match r.await {
                    Err(_) => return None,
                    Ok(Ok((len, peer))) if peer == from => return Some(len),
                    // Someone else, or an ICMP error of an earlier send.
                    Ok(_) => continue,
                }
            },
            Link::Shared {
                inbox: Some(inbox), ..
            } => {
                let got = tokio::time::timeout_at(deadline.into(), inbox.rx.recv()).await;
                let datagram = got.ok().flatten()?;
                let len = datagram.len().min(buf.len());
                buf[..len].copy_from_slice(&datagram[..len]);
                Some(len)
            }
            Link::Shared { inbox: None, .. } => {
                tokio::time::sleep_until(deadline.into()).await;
                None
            }
        }
    }
}

/// A notification originator bound to one UDP socket.
#[derive(Debug)]
pub struct Sender {
    link: Link,
    local: LocalEngine,
    next_id: i32,
    salt: u64,
    peers: HashMap<SocketAddr, Peer>,
    frame: Frame,
    buf: Vec<u8>,
    seal_buf: Vec<u8>,
}

/// The user's keys localized to `engine_id`.
fn keys_for(user: &NotifyUser, engine_id: &[u8]) -> Result<Keys, String> {
    peer_keys(
        user.auth.as_ref().map(|(p, pw)| (*p, pw.as_str())),
        user.privacy.as_ref().map(|(p, pw)| (*p, pw.as_str())),
        engine_id,
    )
}

impl Sender {
    /// Binds the sending socket (`0.0.0.0:0` or `[::]:0` for any).
    pub async fn bind(addr: SocketAddr, local: LocalEngine) -> io::Result<Sender> {
        Ok(Sender::with_link(
            Link::Own(UdpSocket::bind(addr).await?),
            local,
        ))
    }

    /// Sends from a device's serving `socket`, so that the notifications'
    /// source is the device's endpoint; `replies` is where that socket's
    /// serving loop hands over the answers (an inform's acknowledgement, an
    /// engine discovery's Report), which it would otherwise take for
    /// requests.
    pub fn over(socket: Arc<Socket>, replies: Arc<Replies>, local: LocalEngine) -> Sender {
        Sender::with_link(
            Link::Shared {
                socket,
                replies,
                inbox: None,
            },
            local,
        )
    }

    fn with_link(link: Link, local: LocalEngine) -> Sender {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Sender {
            link,
            local,
            next_id: (seed as i32 & 0x3fff_ffff) + 1,
            salt: seed,
            peers: HashMap::new(),
            frame: Frame::default(),
            buf: vec![0; 65_535],
            seal_buf: Vec::with_capacity(256),
        }
    }

    /// The address notifications leave from.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.link.local_addr()
    }

    fn next_id(&mut self) -> i32 {
        crate::security::peer::next_request_id(&mut self.next_id)
    }

    fn engine_time(&self) -> u32 {
        Instant::now()
            .saturating_duration_since(self.local.start)
            .as_secs()
            .min(i32::MAX as u64) as u32
    }

    async fn resolve(&self, target: &Target) -> Result<SocketAddr, NotifyError> {
        let v6 = self.local_addr()?.is_ipv6();
        tokio::net::lookup_host(&target.address)
            .await
            .map_err(|_| NotifyError::Resolve(target.address.clone()))?
            .find(|a| a.is_ipv6() == v6)
            .ok_or_else(|| NotifyError::Resolve(target.address.clone()))
    }

    /// Sends `n` to `target`: a trap is sent once; an inform returns once
    /// acknowledged, or fails after its retries.
    pub async fn send(&mut self, target: &Target, n: &Notification) -> Result<(), NotifyError> {
        let addr = self.resolve(target).await?;
        match (target.version, target.kind) {
            (Version::V1, Kind::Trap) => {
                encode::v1(&mut self.frame, &target.community, n);
                self.send_to(addr).await?;
                Ok(())
            }
            (Version::V1, Kind::Inform) => Err(NotifyError::Config(
                target.address.clone(),
                "SNMPv1 has no inform".into(),
            )),
            (Version::V2c, Kind::Trap) => {
                let id = self.next_id();
                encode::v2c(&mut self.frame, &target.community, TAG_V2_TRAP, id, n);
                self.send_to(addr).await?;
                Ok(())
            }
            (Version::V2c, Kind::Inform) => {
                self.link.listen(addr);
                let r = self.inform_v2c(target, addr, n).await;
                self.link.done();
                r
            }
            (Version::V3, kind) => {
                let user = target.user.as_ref().ok_or_else(|| {
                    NotifyError::Config(target.address.clone(), "SNMPv3 without a user".into())
                })?;
                match kind {
                    Kind::Trap => self.trap_v3(target, user, addr, n).await,
                    Kind::Inform => {
                        self.link.listen(addr);
                        let r = self.inform_v3(target, user, addr, n).await;
                        self.link.done();
                        r
                    }
                }
            }
        }
    }

    /// Waits until `deadline` for a datagram from `from`; its length.
    async fn recv_from(&mut self, from: SocketAddr, deadline: Instant) -> Option<usize> {
        self.link.recv_from(&mut self.buf, from, deadline).await
    }

    async fn send_to(&self, addr: SocketAddr) -> io::Result<()> {
        self.link
            .send_to(self.frame.as_slice(), addr)
            .await
            .map(|_| ())
    }

    async fn inform_v2c(
        &mut self,
        target: &Target,
        addr: SocketAddr,
        n: &Notification,
    ) -> Result<(), NotifyError> {
        let id = self.next_id();
        encode::v2c(&mut self.frame, &target.community, TAG_INFORM, id, n);
        let attempts = target.retries.saturating_add(1);
        for _ in 0..attempts {
            self.send_to(addr).await?;
            let deadline = Instant::now() + target.timeout;
            while let Some(len) = self.recv_from(addr, deadline).await {
                match encode::open_v2c_response(&self.buf[..len], &target.community) {
                    Some((rid, 0)) if rid == id => return Ok(()),
                    Some((rid, status)) if rid == id => {
                        return Err(NotifyError::Refused {
                            target: target.address.clone(),
                            reason: format!("error-status {status}"),
                        });
                    }
                    _ => continue,
                }
            }
        }
        Err(NotifyError::Timeout {
            target: target.address.clone(),
            attempts,
        })
    }

    /// Encodes the PDU in the frame as an SNMPv3 message.
    fn seal(
        &mut self,
        msg_id: i32,
        flags: u8,
        engine: (&[u8], u32, u32),
        user: &[u8],
        keys: &Keys,
    ) {
        self.salt = self.salt.wrapping_add(1);
        let local_engine = self.local.engine_id.clone();
        wire::seal(
            &mut self.frame,
            &wire::Seal {
                msg_id,
                max_size: 65_507,
                flags: flags | keys.level.flags(),
                engine_id: engine.0,
                boots: engine.1,
                time: engine.2,
                user_name: user,
                auth: keys
                    .auth
                    .as_ref()
                    .filter(|_| keys.level >= SecurityLevel::AuthNoPriv),
                privacy: keys
                    .privacy
                    .as_ref()
                    .filter(|_| keys.level == SecurityLevel::AuthPriv)
                    .map(|k| (k, self.salt)),
                context_engine_id: &local_engine,
                context_name: b"",
            },
            &mut self.seal_buf,
        );
    }

    async fn trap_v3(
        &mut self,
        target: &Target,
        user: &NotifyUser,
        addr: SocketAddr,
        n: &Notification,
    ) -> Result<(), NotifyError> {
        // We are the authoritative engine of a trap.
        let engine = self.local.engine_id.clone();
        let keys =
            keys_for(user, &engine).map_err(|e| NotifyError::Config(target.address.clone(), e))?;
        let (id, msg_id, time, boots) = (
            self.next_id(),
            self.next_id(),
            self.engine_time(),
            self.local.boots,
        );
        encode::v2_pdu(&mut self.frame, TAG_V2_TRAP, id, n);
        self.seal(msg_id, 0, (&engine, boots, time), &user.name, &keys);
        self.send_to(addr).await?;
        Ok(())
    }

    /// Learns the receiver's engine ID, boots and time from the Report to a
    /// noAuthNoPriv probe with an empty engine ID.
    async fn discover(&mut self, target: &Target, addr: SocketAddr) -> Result<Peer, NotifyError> {
        let attempts = target.retries.saturating_add(1);
        let none = Keys::none();
        for _ in 0..attempts {
            let (id, msg_id) = (self.next_id(), self.next_id());
            self.frame.reset(128);
            self.frame.wrap(TAG_SEQUENCE);
            self.frame.prepend_int(0);
            self.frame.prepend_int(0);
            self.frame.prepend_int(i64::from(id));
            self.frame.wrap(TAG_GET);
            self.seal(msg_id, wire::FLAG_REPORTABLE, (&[][..], 0, 0), b"", &none);
            self.send_to(addr).await?;
            let deadline = Instant::now() + target.timeout;
            while let Some(len) = self.recv_from(addr, deadline).await {
                let Some(o) = open_v3(&self.buf[..len], None, None) else {
                    continue;
                };
                if o.msg_id == msg_id && !o.engine_id.is_empty() {
                    let peer = Peer {
                        engine_id: o.engine_id,
                        boots: o.boots,
                        time: o.time,
                        at: Instant::now(),
                    };
                    self.peers.insert(addr, peer.clone());
                    return Ok(peer);
                }
            }
        }
        Err(NotifyError::Timeout {
            target: target.address.clone(),
            attempts,
        })
    }

    async fn inform_v3(
        &mut self,
        target: &Target,
        user: &NotifyUser,
        addr: SocketAddr,
        n: &Notification,
    ) -> Result<(), NotifyError> {
        let refused = |reason: String| NotifyError::Refused {
            target: target.address.clone(),
            reason,
        };
        let mut peer = match self.peers.get(&addr) {
            Some(p) => p.clone(),
            None => self.discover(target, addr).await?,
        };
        let mut keys = keys_for(user, &peer.engine_id)
            .map_err(|e| NotifyError::Config(target.address.clone(), e))?;
        let id = self.next_id();
        let attempts = target.retries.saturating_add(1);
        let (mut attempt, mut resynced, mut rediscovered) = (0, false, false);
        'attempts: while attempt < attempts {
            attempt += 1;
            let msg_id = self.next_id();
            encode::v2_pdu(&mut self.frame, TAG_INFORM, id, n);
            let engine = (peer.engine_id.clone(), peer.boots, peer.time_now());
            self.seal(
                msg_id,
                wire::FLAG_REPORTABLE,
                (&engine.0, engine.1, engine.2),
                &user.name,
                &keys,
            );
            self.send_to(addr).await?;
            let deadline = Instant::now() + target.timeout;
            while let Some(len) = self.recv_from(addr, deadline).await {
                let Some(o) = open_v3(&self.buf[..len], keys.auth.as_ref(), keys.privacy.as_ref())
                else {
                    continue;
                };
                if o.msg_id != msg_id {
                    continue;
                }
                match &o.pdus {
                    rasn_snmp::v2::Pdus::Response(r) if r.0.request_id == id => {
                        return if r.0.error_status == 0 {
                            Ok(())
                        } else {
                            Err(refused(format!("error-status {}", r.0.error_status)))
                        };
                    }
                    rasn_snmp::v2::Pdus::Report(_) => {
                        let oid = report_oid(&o.pdus).unwrap_or_default();
                        if oid == ReportKind::NotInTimeWindow.oid()
                            && o.flags & wire::FLAG_AUTH != 0
                            && !resynced
                        {
                            // Authenticated, so its boots and time are true.
                            resynced = true;
                            peer.boots = o.boots;
                            peer.time = o.time;
                            peer.at = Instant::now();
                            self.peers.insert(addr, peer.clone());
                            attempt -= 1;
                            continue 'attempts;
                        }
                        if oid == ReportKind::UnknownEngineId.oid() && !rediscovered {
                            rediscovered = true;
                            self.peers.remove(&addr);
                            peer = self.discover(target, addr).await?;
                            keys = keys_for(user, &peer.engine_id)
                                .map_err(|e| NotifyError::Config(target.address.clone(), e))?;
                            attempt -= 1;
                            continue 'attempts;
                        }
                        return Err(refused(report_name(&oid)));
                    }
                    _ => continue,
                }
            }
        }
        Err(NotifyError::Timeout {
            target: target.address.clone(),
            attempts,
        })
    }
}

#[cfg(test)]
impl Sender {
    /// What discovery learnt of the receiver at `addr`: its engine ID and
    /// boots.
    pub(crate) fn peer(&self, addr: &SocketAddr) -> Option<(&[u8], u32)> {
        self.peers.get(addr).map(|p| (&p.engine_id[..], p.boots))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testutil::{local, note};
    use std::time::Duration;

    #[tokio::test]
    async fn an_unanswered_inform_times_out_after_its_retries() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = Sender::bind("127.0.0.1:0".parse().unwrap(), local())
            .await
            .unwrap();
        let t = Target {
            address: silent.local_addr().unwrap().to_string(),
            version: Version::V2c,
            kind: Kind::Inform,
            community: b"public".to_vec(),
            user: None,
            retries: 2,
            timeout: Duration::from_millis(50),
        };
        let begun = Instant::now();
        let e = s.send(&t, &note()).await.unwrap_err();
        assert!(matches!(e, NotifyError::Timeout { attempts: 3, .. }), "{e}");
        assert!(begun.elapsed() >= Duration::from_millis(150));
        // the receiver got all three attempts
        silent.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        let mut got = 0;
        while silent.recv(&mut buf).is_ok() {
            got += 1;
        }
        assert_eq!(got, 3);
        let v1 = Target {
            version: Version::V1,
            ..t
        };
        assert!(matches!(
            s.send(&v1, &note()).await,
            Err(NotifyError::Config(..))
        ));
    }
}
