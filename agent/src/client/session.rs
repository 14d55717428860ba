//! One device, one request at a time: a connected UDP socket, the
//! community or SNMPv3 user requests are sent as, a timeout per attempt
//! and retries. An SNMPv3 device is the authoritative engine: its engine
//! ID, boots and time are discovered first (RFC 3414 §4) and the user's
//! keys localized to it; a notInTimeWindow Report resynchronizes the time,
//! an unknownEngineID Report rediscovers the engine.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::pdu::{self, Op, Response};
use crate::security::peer::{PeerKeys, open_v3, peer_keys, report_name, report_oid};
use crate::security::usm::{AuthProtocol, PrivProtocol, SecurityLevel};
use crate::security::v3::ReportKind;
use crate::wire::ber::Frame;
use crate::wire::v3 as wire;
use crate::wire::value::Oid;

/// An SNMPv3 user as a manager knows it: passwords, localized to the
/// device's engine once it is discovered. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// msgUserName.
    pub name: Vec<u8>,
    /// The authentication protocol and password; `None`: noAuthNoPriv.
    pub auth: Option<(AuthProtocol, String)>,
    /// The privacy protocol and password; needs `auth`.
    pub privacy: Option<(PrivProtocol, String)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("auth", &self.auth.as_ref().map(|(p, _)| p))
            .field("privacy", &self.privacy.as_ref().map(|(p, _)| p))
            .finish()
    }
}

/// What requests are sent as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// SNMPv1 (`v2c: false`) or SNMPv2c with a community.
    Community {
        /// SNMPv2c rather than SNMPv1.
        v2c: bool,
        /// The community string.
        community: Vec<u8>,
    },
    /// SNMPv3 with USM.
    Usm {
        /// The user.
        user: Credentials,
        /// contextName.
        context: Vec<u8>,
        /// contextEngineID; `None`: the device's engine ID.
        context_engine_id: Option<Vec<u8>>,
        /// The device's engine ID, when known beforehand (net-snmp's `-e`);
        /// its boots and time are still learnt from the device.
        engine_id: Option<Vec<u8>>,
    },
}

/// Why a request got no answer to use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// No answer to any attempt.
    #[error("no answer from {peer} after {attempts} attempts")]
    Timeout {
        /// The device.
        peer: SocketAddr,
        /// 1 + retries.
        attempts: u32,
    },
    /// The device answered with a Report (a wrong password, an unknown
    /// user, a level it does not allow…).
    #[error("{peer} refused the request: {report}")]
    Report {
        /// The device.
        peer: SocketAddr,
        /// The Report's counter, by name.
        report: String,
    },
    /// The user's keys cannot be made.
    #[error("SNMPv3 user: {0}")]
    Keys(String),
}

/// What discovery learnt of the device's engine.
#[derive(Debug, Clone)]
struct Engine {
    id: Vec<u8>,
    boots: u32,
    time: u32,
    at: Instant,
}

impl Engine {
    fn time_now(&self) -> u32 {
        let elapsed = Instant::now().saturating_duration_since(self.at).as_secs();
        (u64::from(self.time) + elapsed).min(i32::MAX as u64) as u32
    }
}

/// A command generator talking to one device.
pub struct Client {
    socket: UdpSocket,
    peer: SocketAddr,
    security: Security,
    timeout: Duration,
    retries: u32,
    next_id: i32,
    salt: u64,
    engine: Option<(Engine, PeerKeys)>,
    frame: Frame,
    buf: Vec<u8>,
    seal_buf: Vec<u8>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.peer)
            .field("security", &self.security)
            .finish()
    }
}

impl Client {
    /// A socket connected to `peer`; each request waits `timeout` per
    /// attempt, `retries` more times.
    pub async fn connect(
        peer: SocketAddr,
        security: Security,
        timeout: Duration,
        retries: u32,
    ) -> io::Result<Client> {
        use std::hash::{BuildHasher, Hasher};
        let any: SocketAddr = if peer.is_ipv6() {
            "[::]:0".parse().map_err(io::Error::other)?
        } else {
            "0.0.0.0:0".parse().map_err(io::Error::other)?
        };
        let socket = UdpSocket::bind(any).await?;
        socket.connect(peer).await?;
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Ok(Client {
            socket,
            peer,
            security,
            timeout,
            retries,
            next_id: (seed as i32 & 0x3fff_ffff) + 1,
            salt: seed,
            engine: None,
            frame: Frame::default(),
            buf: vec![0; 65_535],
            seal_buf: Vec::with_capacity(256),
        })
    }

    /// The device.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn next_id(&mut self) -> i32 {
        crate::security::peer::next_request_id(&mut self.next_id)
    }

    fn timeout_error(&self) -> ClientError {
        ClientError::Timeout {
            peer: self.peer,
            attempts: self.retries.saturating_add(1),
        }
    }

    /// Waits until `deadline` for a datagram; its length.
    async fn recv(&mut self, deadline: Instant) -> Option<usize> {
        loop {
            match tokio::time::timeout_at(deadline.into(), self.socket.recv(&mut self.buf)).await {
                Err(_) => return None,
                Ok(Ok(len)) => return Some(len),
                // An ICMP error of an earlier send (port unreachable): wait on.
                Ok(Err(_)) => continue,
            }
        }
    }

    /// Sends `op` on `oids` and returns the answer (whatever its
    /// error-status).
    pub async fn request(&mut self, op: Op, oids: &[Oid]) -> Result<Response, ClientError> {
        match self.security.clone() {
            Security::Community { v2c, community } => {
                self.community_request(op, oids, v2c, &community).await
            }
            Security::Usm {
                user,
                context,
                context_engine_id,
                engine_id,
            } => {
                self.usm_request(op, oids, &user, &context, context_engine_id, engine_id)
                    .await
            }
        }
    }

    async fn community_request(
        &mut self,
        op: Op,
        oids: &[Oid],
        v2c: bool,
        community: &[u8],
    ) -> Result<Response, ClientError> {
        let first = self.next_id();
        let mut id = first;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                id = self.next_id();
            }
            pdu::request_pdu(&mut self.frame, op, id, oids);
            pdu::community_message(&mut self.frame, i64::from(v2c), community);
            self.socket.send(self.frame.as_slice()).await?;
            let deadline = Instant::now() + self.timeout;
            while let Some(len) = self.recv(deadline).await {
                let bytes = &self.buf[..len];
                let answer = if v2c {
                    pdu::open_v2c(bytes, community)
                } else {
                    pdu::open_v1(bytes, community)
                };
                // An answer to an earlier attempt of this request is as good.
                match answer {
                    Some(r) if (first..=id).contains(&r.request_id) => return Ok(r),
                    _ => continue,
                }
            }
        }
        Err(self.timeout_error())
    }

    /// Encodes the PDU in the frame as an SNMPv3 message to the device.
    fn seal(
        &mut self,
        msg_id: i32,
        engine: &Engine,
        keys: &PeerKeys,
        user: &[u8],
        ctx: (&[u8], &[u8]),
    ) {
        self.salt = self.salt.wrapping_add(1);
        wire::seal(
            &mut self.frame,
            &wire::Seal {
                msg_id,
                max_size: 65_507,
                flags: wire::FLAG_REPORTABLE | keys.level.flags(),
                engine_id: &engine.id,
                boots: engine.boots,
                time: engine.time_now(),
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
                context_engine_id: ctx.0,
                context_name: ctx.1,
            },
            &mut self.seal_buf,
        );
    }

    /// Learns the device's engine ID, boots and time from the Report to a
    /// noAuthNoPriv probe with an empty engine ID.
    async fn discover(&mut self) -> Result<Engine, ClientError> {
        let none = PeerKeys::none();
        let blank = Engine {
            id: Vec::new(),
            boots: 0,
            time: 0,
            at: Instant::now(),
        };
        for _ in 0..=self.retries {
            let (id, msg_id) = (self.next_id(), self.next_id());
            pdu::request_pdu(&mut self.frame, Op::Get, id, &[]);
            self.seal(msg_id, &blank, &none, b"", (b"", b""));
            self.socket.send(self.frame.as_slice()).await?;
            let deadline = Instant::now() + self.timeout;
            while let Some(len) = self.recv(deadline).await {
                let Some(o) = open_v3(&self.buf[..len], None, None) else {
                    continue;
                };
                if o.msg_id == msg_id && !o.engine_id.is_empty() {
                    return Ok(Engine {
                        id: o.engine_id,
                        boots: o.boots,
                        time: o.time,
                        at: Instant::now(),
                    });
                }
            }
        }
        Err(self.timeout_error())
    }

    async fn engine(
        &mut self,
        user: &Credentials,
        known: Option<&[u8]>,
    ) -> Result<(Engine, PeerKeys), ClientError> {
        let mut engine = self.discover().await?;
        if let Some(id) = known {
            engine.id = id.to_vec();
        }
        let keys = peer_keys(
            user.auth.as_ref().map(|(p, pw)| (*p, pw.as_str())),
            user.privacy.as_ref().map(|(p, pw)| (*p, pw.as_str())),
            &engine.id,
        )
        .map_err(ClientError::Keys)?;
        Ok((engine, keys))
    }

    async fn usm_request(
        &mut self,
        op: Op,
        oids: &[Oid],
        user: &Credentials,
        context: &[u8],
        context_engine_id: Option<Vec<u8>>,
        known_engine: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let (mut engine, mut keys) = match self.engine.take() {
            Some(e) => e,
            None => self.engine(user, known_engine.as_deref()).await?,
        };
        let id = self.next_id();
        let attempts = self.retries.saturating_add(1);
        let (mut attempt, mut resynced, mut rediscovered) = (0, false, false);
        let result = 'attempts: loop {
            if attempt >= attempts {
                break Err(self.timeout_error());
            }
            attempt += 1;
            let msg_id = self.next_id();
            pdu::request_pdu(&mut self.frame, op, id, oids);
            let ctx_engine = context_engine_id
                .clone()
                .unwrap_or_else(|| engine.id.clone());
            self.seal(msg_id, &engine, &keys, &user.name, (&ctx_engine, context));
            self.socket.send(self.frame.as_slice()).await?;
            let deadline = Instant::now() + self.timeout;
            while let Some(len) = self.recv(deadline).await {
                let Some(o) = open_v3(&self.buf[..len], keys.auth.as_ref(), keys.privacy.as_ref())
                else {
                    continue;
                };
                if o.msg_id != msg_id {
                    continue;
                }
                if let Some(oid) = report_oid(&o.pdus) {
                    if oid == ReportKind::NotInTimeWindow.oid()
                        && o.flags & wire::FLAG_AUTH != 0
                        && !resynced
                    {
                        // Authenticated, so its boots and time are true.
                        resynced = true;
                        engine.boots = o.boots;
                        engine.time = o.time;
                        engine.at = Instant::now();
                        attempt -= 1;
                        continue 'attempts;
                    }
                    if oid == ReportKind::UnknownEngineId.oid() && !rediscovered {
                        rediscovered = true;
                        (engine, keys) = self.engine(user, None).await?;
                        attempt -= 1;
                        continue 'attempts;
                    }
                    break 'attempts Err(ClientError::Report {
                        peer: self.peer,
                        report: report_name(&oid),
                    });
                }
                match pdu::response_of(o.pdus) {
                    Some(r) if r.request_id == id => break 'attempts Ok(r),
                    _ => continue,
                }
            }
        };
        self.engine = Some((engine, keys));
        result
    }
}
