//! SNMPv3 message processing for a command responder (RFC 3412 §7.2) with
//! the User-based Security Model (RFC 3414 §3.2): a received datagram is
//! read in place by `fast::decode_v3` (or, when it leaves the message to
//! rasn, decoded with rasn's v3 types), checked (security model, flags, engine ID,
//! user, security level, HMAC, time window), decrypted, and either handed
//! on as a `Request` for the same handlers as v1/v2c, answered with a
//! Report, or dropped — each outcome counted in its SNMP-MPD-MIB,
//! SNMP-TARGET-MIB or usmStats counter. Outgoing messages are encoded by
//! [`wire::seal`]. Pure: the clock comes in as snmpEngineTime.

/// The SNMPv3 message format, which lives with the rest of the wire
/// format; here too because it is SNMPv3's.
pub use crate::wire::v3 as wire;

use std::hash::{BuildHasher, Hasher};

use rasn::types::Integer;
use rasn_snmp::v3;
use serde::{Deserialize, Serialize};

use crate::data::mib::Counters;
use crate::security::engine::MAX_BOOTS;
use crate::security::usm::{KeyError, SecurityLevel, User, UserConfig};
use crate::wire::ber::Frame;
use crate::wire::decode::request_from_pdus;
use crate::wire::fast;
use crate::wire::pdu::{Drop, Request, Version};

/// The time window of RFC 3414 §2.2.3, in seconds.
pub(crate) const TIME_WINDOW: u32 = 150;

/// The SNMPv3 part of a responder's configuration. Plain data, so it can be
/// sent to an agent process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V3Config {
    /// snmpEngineID (5..=32 bytes).
    pub engine_id: Vec<u8>,
    /// snmpEngineBoots of this run (persisted and incremented by the
    /// caller, see [`crate::security::engine::next_boots`]).
    pub engine_boots: u32,
    /// The USM users the agent knows.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// contextName → index of the responder's view; `""` is the default
    /// context.
    #[serde(default)]
    pub contexts: Vec<ContextConfig>,
}

/// One context: its name and the view (snapshot) it selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextConfig {
    /// contextName.
    pub name: Vec<u8>,
    /// Index of the responder's view (its store) the context selects.
    pub view: usize,
}

/// The Report a failed check produces (RFC 3414 §3.2, RFC 3413 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReportKind {
    UnsupportedSecLevel,
    NotInTimeWindow,
    UnknownUserName,
    UnknownEngineId,
    WrongDigest,
    DecryptionError,
    UnknownContext,
    UnknownPduHandler,
}

impl ReportKind {
    /// The counter the Report carries.
    pub fn oid(self) -> &'static [u32] {
        match self {
            ReportKind::UnsupportedSecLevel => &[1, 3, 6, 1, 6, 3, 15, 1, 1, 1, 0],
            ReportKind::NotInTimeWindow => &[1, 3, 6, 1, 6, 3, 15, 1, 1, 2, 0],
            ReportKind::UnknownUserName => &[1, 3, 6, 1, 6, 3, 15, 1, 1, 3, 0],
            ReportKind::UnknownEngineId => &[1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0],
            ReportKind::WrongDigest => &[1, 3, 6, 1, 6, 3, 15, 1, 1, 5, 0],
            ReportKind::DecryptionError => &[1, 3, 6, 1, 6, 3, 15, 1, 1, 6, 0],
            ReportKind::UnknownContext => &[1, 3, 6, 1, 6, 3, 12, 1, 5, 0],
            ReportKind::UnknownPduHandler => &[1, 3, 6, 1, 6, 3, 11, 2, 1, 3, 0],
        }
    }

    /// Counts one more and returns the new value.
    fn count(self, c: &mut Counters) -> u32 {
        let n = match self {
            ReportKind::UnsupportedSecLevel => &mut c.usm_unsupported_sec_levels,
            ReportKind::NotInTimeWindow => &mut c.usm_not_in_time_windows,
            ReportKind::UnknownUserName => &mut c.usm_unknown_user_names,
            ReportKind::UnknownEngineId => &mut c.usm_unknown_engine_ids,
            ReportKind::WrongDigest => &mut c.usm_wrong_digests,
            ReportKind::DecryptionError => &mut c.usm_decryption_errors,
            ReportKind::UnknownContext => &mut c.unknown_contexts,
            ReportKind::UnknownPduHandler => &mut c.unknown_pdu_handlers,
        };
        *n = n.wrapping_add(1);
        *n
    }
}

/// Where and how an answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub msg_id: i32,
    /// The sender's msgMaxSize.
    pub max_size: usize,
    pub user_name: ShortName,
    /// Index of the user, once known.
    pub user: Option<usize>,
    /// The security level of the answer.
    pub level: SecurityLevel,
    /// The request's request-id, when it could be read (else 0).
    pub request_id: i32,
    pub context_name: ShortName,
}

/// A user or context name, at most 32 bytes (both are bounded so before a
/// reply is made), kept inline: a reply allocates nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ShortName {
    len: u8,
    bytes: [u8; 32],
}

impl ShortName {
    /// The first 32 bytes of `name`.
    pub fn new(name: &[u8]) -> ShortName {
        let mut n = ShortName::default();
        let len = name.len().min(n.bytes.len());
        n.bytes[..len].copy_from_slice(&name[..len]);
        n.len = len as u8;
        n
    }
}

impl std::ops::Deref for ShortName {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// What a received SNMPv3 datagram turned out to be.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A request (read into the caller's [`Request`]) to answer from
    /// `view`.
    Request {
        reply: Reply,
        view: usize,
        /// The user may SET.
        write: bool,
        /// Below the user's security level: answer authorizationError.
        denied: bool,
    },
    /// Answer with a Report carrying `kind`'s counter, now `value`.
    Report {
        kind: ReportKind,
        value: u32,
        reply: Reply,
    },
    Drop(Drop),
}

/// An agent's SNMPv3 engine: identity, users with their key schedules,
/// contexts.
#[derive(Debug)]
pub(crate) struct Engine {
    engine_id: Vec<u8>,
    boots: u32,
    users: Vec<User>,
    contexts: Vec<ContextConfig>,
    /// The local integer behind privacy salts; starts random.
    salt: u64,
    /// Decryption buffer, reused.
    scratch: Vec<u8>,
    /// Encoding buffer for [`wire::seal`], reused.
    seal_buf: Vec<u8>,
}

/// An INTEGER as an i64; -1 for one beyond i64, which every range checked
/// here (all from 0 up) refuses, just as it refuses -1.
fn int_of(i: &Integer) -> i64 {
    i64::try_from(i).unwrap_or(-1)
}

fn in_range(v: i64, min: i64, max: i64) -> Option<i64> {
    (min..=max).contains(&v).then_some(v)
}

/// A received message as both decoders give it.
struct View<'a> {
    msg_id: i64,
    max_size: i64,
    flags: &'a [u8],
    security_model: i64,
    /// `None`: msgSecurityParameters is no UsmSecurityParameters.
    usm: Option<fast::Usm<'a>>,
    data: Data<'a>,
}

enum Data<'a> {
    Clear(fast::Scoped<'a>, Pdu<'a>),
    Encrypted(&'a [u8]),
}

/// Where a scopedPDU's PDU is.
#[derive(Clone, Copy)]
enum Pdu<'a> {
    /// Already read into the request.
    Read,
    /// As rasn decoded it (any PDU type).
    Rasn(&'a rasn_snmp::v2::Pdus),
}

impl Pdu<'_> {
    fn request_id(&self, request: &Request) -> i32 {
        match self {
            Pdu::Read => request.request_id,
            Pdu::Rasn(p) => pdu_request_id(p),
        }
    }
}

/// Longest contextEngineID and contextName (SnmpEngineID and
/// SnmpAdminString, RFC 3411 §5). A Report echoes the contextName: with this
/// bound an unauthenticated request cannot make it large.
const MAX_CONTEXT_LEN: usize = 32;

fn scoped_sizes_ok(s: &fast::Scoped<'_>) -> bool {
    s.engine_id.len() <= MAX_CONTEXT_LEN && s.name.len() <= MAX_CONTEXT_LEN
}

/// The request-id of any PDU.
fn pdu_request_id(pdus: &rasn_snmp::v2::Pdus) -> i32 {
    use rasn_snmp::v2::Pdus as P;
    match pdus {
        P::GetRequest(p) => p.0.request_id,
        P::GetNextRequest(p) => p.0.request_id,
        P::Response(p) => p.0.request_id,
        P::SetRequest(p) => p.0.request_id,
        P::GetBulkRequest(p) => p.0.request_id,
        P::InformRequest(p) => p.0.request_id,
        P::Trap(p) => p.0.request_id,
        P::Report(p) => p.0.request_id,
    }
}

impl Engine {
    /// Builds every user's keys. A user whose keys are unusable is an error
    /// naming the user (never its keys).
    pub fn new(config: &V3Config) -> Result<Engine, (String, KeyError)> {
        let users = config
            .users
            .iter()
            .map(|u| {
                User::new(u, &config.engine_id)
                    .map_err(|e| (String::from_utf8_lossy(&u.name).into_owned(), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let salt = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Ok(Engine {
            engine_id: config.engine_id.clone(),
            boots: config.engine_boots,
            users,
            contexts: config.contexts.clone(),
            salt,
            scratch: Vec::new(),
            seal_buf: Vec::with_capacity(256),
        })
    }

    /// snmpEngineBoots from now on (the device rebooted).
    pub fn set_boots(&mut self, boots: u32) {
        self.boots = boots;
    }

    /// An upper bound of everything in a response but its varbind list.
    pub fn overhead(&self, reply: &Reply) -> usize {
        170 + 2 * self.engine_id.len() + reply.user_name.len() + reply.context_name.len()
    }

    /// Processes one received SNMPv3 datagram (RFC 3412 §7.2 steps 1–11,
    /// RFC 3414 §3.2) at snmpEngineTime `time`. The PDU of a request goes
    /// into `request`.
    ///
    /// The usual message is read in place ([`fast::decode_v3`]); rasn
    /// decodes whatever that leaves to it, and both are seen through the
    /// same borrowed view, so every check below is made once.
    pub(crate) fn incoming(
        &mut self,
        datagram: &[u8],
        time: u32,
        c: &mut Counters,
        request: &mut Request,
    ) -> Incoming {
        // rasn's reading, when needed; the view borrows from it.
        let slow: v3::Message;
        let slow_usm: Option<v3::USMSecurityParameters>;
        let msg = match fast::decode_v3(datagram, request) {
            Some(m) => View {
                msg_id: m.msg_id,
                max_size: m.max_size,
                flags: m.flags,
                security_model: m.security_model,
                usm: Some(m.usm),
                data: match m.data {
                    fast::V3Data::Clear(s) => Data::Clear(s, Pdu::Read),
                    fast::V3Data::Encrypted(e) => Data::Encrypted(e),
                },
            },
            None => {
                let Ok((m, [])) = rasn::ber::decode_with_remainder::<v3::Message>(datagram) else {
                    return Incoming::Drop(Drop::Parse);
                };
                slow = m;
                slow_usm = match rasn::ber::decode_with_remainder::<v3::USMSecurityParameters>(
                    &slow.security_parameters,
                ) {
                    Ok((u, [])) => Some(u),
                    _ => None,
                };
                let g = &slow.global_data;
                View {
                    msg_id: int_of(&g.message_id),
                    max_size: int_of(&g.max_size),
                    flags: &g.flags,
                    security_model: int_of(&g.security_model),
                    usm: slow_usm.as_ref().map(|u| fast::Usm {
                        engine_id: &u.authoritative_engine_id,
                        boots: int_of(&u.authoritative_engine_boots),
                        time: int_of(&u.authoritative_engine_time),
                        user_name: &u.user_name,
                        auth: &u.authentication_parameters,
                        privacy: &u.privacy_parameters,
                    }),
                    data: match &slow.scoped_data {
                        v3::ScopedPduData::CleartextPdu(s) => Data::Clear(
                            fast::Scoped {
                                engine_id: &s.engine_id,
                                name: &s.name,
                            },
                            Pdu::Rasn(&s.data),
                        ),
                        v3::ScopedPduData::EncryptedPdu(e) => Data::Encrypted(e),
                    },
                }
            }
        };
        let (Some(msg_id), Some(max_size), &[flags]) = (
            in_range(msg.msg_id, 0, i64::from(i32::MAX)),
            in_range(msg.max_size, 484, i64::from(i32::MAX)),
            msg.flags,
        ) else {
            return Incoming::Drop(Drop::Parse);
        };
        if in_range(msg.security_model, 1, i64::from(i32::MAX)) != Some(wire::USM) {
            c.unknown_security_models = c.unknown_security_models.wrapping_add(1);
            return Incoming::Drop(Drop::UnknownSecurityModel);
        }
        let (auth, privacy) = (flags & wire::FLAG_AUTH != 0, flags & wire::FLAG_PRIV != 0);
        if privacy && !auth {
            c.invalid_msgs = c.invalid_msgs.wrapping_add(1);
            return Incoming::Drop(Drop::InvalidMsg);
        }
        let reportable = flags & wire::FLAG_REPORTABLE != 0;
        let level = match (auth, privacy) {
            (false, _) => SecurityLevel::NoAuthNoPriv,
            (true, false) => SecurityLevel::AuthNoPriv,
            (true, true) => SecurityLevel::AuthPriv,
        };
        let Some(usm) = &msg.usm else {
            return Incoming::Drop(Drop::Parse);
        };
        let (Some(msg_boots), Some(msg_time)) = (
            in_range(usm.boots, 0, i64::from(i32::MAX)),
            in_range(usm.time, 0, i64::from(i32::MAX)),
        ) else {
            return Incoming::Drop(Drop::Parse);
        };
        let (msg_boots, msg_time) = (msg_boots as u32, msg_time as u32);
        if usm.engine_id.len() > 32 || usm.user_name.len() > 32 {
            return Incoming::Drop(Drop::Parse);
        }
        let mut reply = Reply {
            msg_id: msg_id as i32,
            max_size: max_size as usize,
            user_name: ShortName::new(usm.user_name),
            user: None,
            level: SecurityLevel::NoAuthNoPriv,
            request_id: 0,
            context_name: ShortName::default(),
        };
        if let Data::Clear(s, pdu) = &msg.data {
            if !scoped_sizes_ok(s) {
                return Incoming::Drop(Drop::Parse);
            }
            reply.request_id = pdu.request_id(request);
            reply.context_name = ShortName::new(s.name);
        }
        let report = |kind: ReportKind, c: &mut Counters, reply: Reply| {
            let value = kind.count(c);
            if reportable {
                Incoming::Report { kind, value, reply }
            } else {
                Incoming::Drop(Drop::Unreported)
            }
        };
        // RFC 3414 §3.2 step 3: we are the authoritative engine.
        if usm.engine_id != &self.engine_id[..] {
            return report(ReportKind::UnknownEngineId, c, reply);
        }
        // Step 4.
        let Some(ui) = self.users.iter().position(|u| u.name[..] == *usm.user_name) else {
            return report(ReportKind::UnknownUserName, c, reply);
        };
        let user = &self.users[ui];
        // Step 5.
        if level > user.max_level() {
            return report(ReportKind::UnsupportedSecLevel, c, reply);
        }
        // Step 6: the HMAC, on the received bytes.
        if let Some(key) = user.auth.as_ref().filter(|_| auth) {
            let ok = usm.auth.len() == key.mac_len()
                && wire::auth_params_range(datagram)
                    .is_some_and(|(at, len)| len == key.mac_len() && key.verify(datagram, at));
            if !ok {
                return report(ReportKind::WrongDigest, c, reply);
            }
            // Step 7: timeliness. The Report is authenticated, so the
            // manager can trust the boots and time it learns from it.
            if self.boots >= MAX_BOOTS
                || msg_boots != self.boots
                || msg_time.abs_diff(time) > TIME_WINDOW
            {
                reply.user = Some(ui);
                reply.level = SecurityLevel::AuthNoPriv;
                return report(ReportKind::NotInTimeWindow, c, reply);
            }
        }
        // Step 8: privacy.
        let slow_scoped: v3::ScopedPdu;
        let (scoped, pdu) = match (msg.data, user.privacy.as_ref().filter(|_| privacy)) {
            (Data::Clear(s, pdu), None) => (s, pdu),
            (Data::Encrypted(data), Some(key)) => {
                self.scratch.clear();
                self.scratch.extend_from_slice(data);
                let decrypted = key
                    .decrypt(&mut self.scratch, usm.privacy, msg_boots, msg_time)
                    .is_ok();
                if !decrypted {
                    return report(ReportKind::DecryptionError, c, reply);
                }
                // CBC plaintext is padded to whole blocks: up to 8 bytes may
                // follow the scopedPDU.
                let max_pad = if key.is_cbc() { 8 } else { 0 };
                let (s, pdu) = match fast::decode_scoped(&self.scratch, max_pad, request) {
                    Some(s) => (s, Pdu::Read),
                    None => {
                        match rasn::ber::decode_with_remainder::<v3::ScopedPdu>(&self.scratch) {
                            Ok((s, rest)) if rest.len() <= max_pad => {
                                slow_scoped = s;
                                (
                                    fast::Scoped {
                                        engine_id: &slow_scoped.engine_id,
                                        name: &slow_scoped.name,
                                    },
                                    Pdu::Rasn(&slow_scoped.data),
                                )
                            }
                            _ => return report(ReportKind::DecryptionError, c, reply),
                        }
                    }
                };
                if !scoped_sizes_ok(&s) {
                    return Incoming::Drop(Drop::Parse);
                }
                (s, pdu)
            }
            (Data::Clear(..), Some(_)) => {
                return report(ReportKind::DecryptionError, c, reply);
            }
            (Data::Encrypted(_), None) => return Incoming::Drop(Drop::Parse),
        };
        // From here on the answer goes back at the request's level.
        reply.user = Some(ui);
        reply.level = level;
        reply.request_id = pdu.request_id(request);
        reply.context_name = ShortName::new(scoped.name);
        let (write, denied) = (user.write, level < user.min_level);
        if let Pdu::Rasn(pdus) = pdu {
            match request_from_pdus(pdus.clone(), Version::V3) {
                Ok(r) => *request = r,
                Err(d) => return Incoming::Drop(d),
            }
        }
        // RFC 3412 §4.2.2.1: only our own engine's contexts have a handler
        // here (an empty contextEngineID is taken as ours).
        if !scoped.engine_id.is_empty() && scoped.engine_id != &self.engine_id[..] {
            return report(ReportKind::UnknownPduHandler, c, reply);
        }
        // RFC 3413 §3.2 step 3.
        let Some(view) = self
            .contexts
            .iter()
            .find(|x| x.name[..] == *scoped.name)
            .map(|x| x.view)
        else {
            return report(ReportKind::UnknownContext, c, reply);
        };
        Incoming::Request {
            reply,
            view,
            write,
            denied,
        }
    }

    /// Encodes the PDU in `frame` as the answer described by `reply`, at
    /// snmpEngineTime `time`. `false` when the keys for its level are
    /// missing (never for a `reply` this engine made).
    pub fn seal(&mut self, frame: &mut Frame, reply: &Reply, time: u32, max_size: usize) -> bool {
        let user = reply.user.and_then(|i| self.users.get(i));
        let auth = match reply.level {
            SecurityLevel::NoAuthNoPriv => None,
            _ => match user.and_then(|u| u.auth.as_ref()) {
                Some(k) => Some(k),
                None => return false,
            },
        };
        let privacy = match reply.level {
            SecurityLevel::AuthPriv => match user.and_then(|u| u.privacy.as_ref()) {
                Some(k) => {
                    self.salt = self.salt.wrapping_add(1);
                    Some((k, self.salt))
                }
                None => return false,
            },
            _ => None,
        };
        wire::seal(
            frame,
            &wire::Seal {
                msg_id: reply.msg_id,
                max_size: max_size.clamp(484, i32::MAX as usize) as i32,
                flags: reply.level.flags(),
                engine_id: &self.engine_id,
                boots: self.boots,
                time,
                user_name: &reply.user_name,
                auth,
                privacy,
                context_engine_id: &self.engine_id,
                context_name: &reply.context_name,
            },
            &mut self.seal_buf,
        );
        true
    }
}
