//! The command responder (SNMPv1, v2c and v3): a datagram in, a datagram (or
//! a counted drop) out. No I/O and no clock of its own, so every path is
//! testable with byte vectors. The usual v1/v2c GET, GETNEXT and GETBULK
//! requests are read straight from the datagram into reused buffers
//! ([`fast`]), everything else is decoded with rasn; responses are framed by
//! hand around the store's pre-encoded varbinds (see [`crate::wire::ber::Frame`]).
//! A GET, GETNEXT or GETBULK, in any version and at any SNMPv3 security
//! level, allocates nothing once the buffers have grown to fit. SNMPv3 messages go through [`crate::v3`] first and
//! then reach the same handlers.

pub(crate) mod fast;
mod get;
mod getbulk;
mod getnext;
mod set;
mod v3;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use rasn::types::Integer;
use rasn_smi::{v1 as smi1, v2 as smi2};
use rasn_snmp::{v1, v2, v2c};

use crate::mib::{Counters, EngineInfo, Now, View};
use crate::ratelimit::{Limiter, RateLimit};
use crate::store::Store;
use crate::wire::ber::{self, Frame};
use crate::wire::value::Value;

/// The error-status values of RFC 3416 that the responder produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorStatus {
    TooBig = 1,
    NoSuchName = 2,
    BadValue = 3,
    ReadOnly = 4,
    GenErr = 5,
    NoAccess = 6,
    WrongType = 7,
    WrongLength = 8,
    WrongValue = 10,
    NoCreation = 11,
    InconsistentValue = 12,
    /// SNMPv3 only: the request is below the user's security level.
    AuthorizationError = 16,
    NotWritable = 17,
}

impl ErrorStatus {
    /// The SNMPv1 form of a v2 error (RFC 2576 §4.3).
    pub fn to_v1(self) -> ErrorStatus {
        use ErrorStatus::*;
        match self {
            TooBig | NoSuchName | BadValue | ReadOnly | GenErr => self,
            NoAccess | NotWritable | NoCreation | AuthorizationError => NoSuchName,
            WrongType | WrongLength | WrongValue | InconsistentValue => BadValue,
        }
    }
}

/// The message version a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2c,
    V3,
}

/// What a community may do, and which snapshot it sees.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CommunityAccess {
    pub community: Vec<u8>,
    pub v1: bool,
    pub v2c: bool,
    /// Index into the responder's views.
    pub view: usize,
    pub write: bool,
}

/// The fixed parameters of a responder.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Config {
    pub communities: Vec<CommunityAccess>,
    /// Most varbinds in one response (GETBULK is cut here).
    pub max_varbinds: usize,
    /// Largest response datagram we send.
    pub max_message_size: usize,
    /// SNMPv3: engine, users, contexts. `None`: v3 messages are bad
    /// versions.
    #[serde(default)]
    pub v3: Option<crate::v3::V3Config>,
}

/// A responder configuration that cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("SNMPv3 user {user:?}: {cause}")]
    User {
        user: String,
        cause: crate::usm::KeyError,
    },
}

/// Why a datagram got no answer. Each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Not a decodable SNMP message (snmpInASNParseErrs).
    Parse,
    /// A version we do not speak (snmpInBadVersions).
    BadVersion,
    /// Unknown community, or not allowed in this version
    /// (snmpInBadCommunityNames).
    BadCommunity,
    /// A PDU a command responder does not answer (Response, Trap, Report…).
    NotARequest,
    /// Even an error response would not fit the size limit.
    TooBig,
    /// SNMPv3 with a security model other than USM
    /// (snmpUnknownSecurityModels, counted by [`crate::v3`]).
    UnknownSecurityModel,
    /// SNMPv3 with privacy but no authentication (snmpInvalidMsgs, counted
    /// by [`crate::v3`]).
    InvalidMsg,
    /// An SNMPv3 check failed on a message without the reportable flag; its
    /// usmStats/snmp counter was counted by [`crate::v3`].
    Unreported,
}

/// The outcome of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The frame holds the response.
    Reply,
    Dropped(Drop),
}

/// The kind of request, with GETBULK's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Get,
    GetNext,
    GetBulk {
        non_repeaters: u32,
        max_repetitions: u32,
    },
    Set,
}

/// A decoded request, independent of the message version.
#[derive(Debug, PartialEq)]
pub(crate) struct Request {
    pub version: Version,
    pub kind: Kind,
    pub request_id: i32,
    pub names: Names,
    /// SET values (`Null` for other requests).
    pub values: Vec<Value>,
}

impl Default for Request {
    fn default() -> Request {
        Request {
            version: Version::V1,
            kind: Kind::Get,
            request_id: 0,
            names: Names::default(),
            values: Vec::new(),
        }
    }
}

/// The OIDs of a request's varbinds: every arc in one vector, so that a
/// reused `Names` holds a request without allocating.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Names {
    arcs: Vec<u32>,
    /// Where each OID ends in `arcs`.
    ends: Vec<usize>,
}

impl Names {
    pub fn clear(&mut self) {
        self.arcs.clear();
        self.ends.clear();
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn get(&self, i: usize) -> Option<&[u32]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.arcs[start..end])
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u32]> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    pub fn push(&mut self, oid: &[u32]) {
        self.arcs.extend_from_slice(oid);
        self.ends.push(self.arcs.len());
    }

    /// Drops arcs pushed since the last finished OID ([`Names::push_arc`]).
    fn begin(&mut self) {
        self.arcs.truncate(self.ends.last().copied().unwrap_or(0));
    }

    fn push_arc(&mut self, arc: u32) {
        self.arcs.push(arc);
    }

    fn finish(&mut self) {
        self.ends.push(self.arcs.len());
    }
}

/// What a handler needs to answer.
pub(crate) struct Ctx<'a> {
    pub view: &'a mut View,
    pub now: Now<'a>,
    pub v1: bool,
    pub write: bool,
    pub max_varbinds: usize,
    /// Limit for the length of the output buffer (headroom included) when
    /// the varbind list is as large as the message allows.
    pub budget: usize,
    /// GETBULK's cursors and which of them ended, reused.
    pub cursors: &'a mut Vec<Vec<u32>>,
    pub ended: &'a mut Vec<bool>,
}

/// A handler's failure: error-status and 1-based error-index.
pub(crate) type Failure = (ErrorStatus, u32);

/// One agent's command responder.
#[derive(Debug)]
pub struct Responder {
    config: Config,
    views: Vec<View>,
    counters: Counters,
    start: Instant,
    /// The SNMPv3 engine, when `config.v3` is set and its keys are usable.
    v3: Option<crate::v3::Engine>,
    /// What SNMPv3 agents serve in the snmpEngine group.
    engine: Option<Arc<EngineInfo>>,
    /// The per-source rate limit, when one is set.
    limiter: Option<Limiter>,
    /// Reused from request to request: the decoded v1/v2c request and
    /// GETBULK's cursors.
    request: Request,
    cursors: Vec<Vec<u32>>,
    ended: Vec<bool>,
}

impl Responder {
    /// `stores[i]` is the snapshot of view `i` named by the communities and
    /// contexts. An SNMPv3 section whose keys are unusable is logged (user
    /// name and reason, never key material) and SNMPv3 is then off; use
    /// [`Responder::try_new`] to get that as an error instead.
    pub fn new(mut config: Config, stores: Vec<Arc<Store>>, start: Instant) -> Responder {
        let v3 = match config.v3.as_ref().map(crate::v3::Engine::new) {
            Some(Ok(engine)) => Some(engine),
            Some(Err((user, cause))) => {
                let e = ConfigError::User { user, cause };
                tracing::error!(cause = %e, "SNMPv3 disabled");
                config.v3 = None;
                None
            }
            None => None,
        };
        Responder::build(config, stores, start, v3)
    }

    /// Like [`Responder::new`], failing when a v3 user's keys are unusable.
    pub fn try_new(
        config: Config,
        stores: Vec<Arc<Store>>,
        start: Instant,
    ) -> Result<Responder, ConfigError> {
        let v3 = match &config.v3 {
            Some(c) => Some(
                crate::v3::Engine::new(c)
                    .map_err(|(user, cause)| ConfigError::User { user, cause })?,
            ),
            None => None,
        };
        Ok(Responder::build(config, stores, start, v3))
    }

    fn build(
        config: Config,
        stores: Vec<Arc<Store>>,
        start: Instant,
        v3: Option<crate::v3::Engine>,
    ) -> Responder {
        let engine = config.v3.as_ref().map(|c| {
            Arc::new(EngineInfo {
                engine_id: c.engine_id.clone(),
                boots: c.engine_boots,
                max_message_size: config.max_message_size.clamp(484, i32::MAX as usize) as u32,
            })
        });
        let mut r = Responder {
            config,
            views: Vec::new(),
            counters: Counters::default(),
            start,
            v3,
            engine,
            limiter: None,
            request: Request::default(),
            cursors: Vec::new(),
            ended: Vec::new(),
        };
        r.views = stores.into_iter().map(|s| r.make_view(s)).collect();
        r
    }

    fn make_view(&self, store: Arc<Store>) -> View {
        let view = View::new(store, self.start);
        match &self.engine {
            Some(e) => view.with_engine(e.clone()),
            None => view,
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Largest message sent from now on (`cluster.max_response_bytes`
    /// changed on reload); also the msgMaxSize and snmpEngineMaxMessageSize
    /// an SNMPv3 agent announces.
    pub fn set_max_message_size(&mut self, size: usize) {
        self.config.max_message_size = size;
        if let Some(e) = &self.engine {
            let engine = Arc::new(EngineInfo {
                max_message_size: size.clamp(484, i32::MAX as usize) as u32,
                ..(**e).clone()
            });
            for v in &mut self.views {
                v.set_engine(engine.clone());
            }
            self.engine = Some(engine);
        }
    }

    /// Limits the requests each source address may send (`None`: no
    /// limit). Buckets of an earlier limit are forgotten.
    pub fn set_rate_limit(&mut self, limit: Option<RateLimit>) {
        self.limiter = limit.map(Limiter::new);
    }

    /// Whether a datagram from `source` at `now` may be handled: always
    /// without a rate limit. One that may not is counted as dropped.
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> bool {
        let Some(limiter) = self.limiter.as_mut() else {
            return true;
        };
        if limiter.admit(source, now) {
            return true;
        }
        self.counters.dropped += 1;
        self.counters.rate_limited += 1;
        false
    }

    /// Serves view `view` from another store from now on (a snapshot was
    /// recompiled). Values SET into the old store are dropped with it.
    pub fn swap_store(&mut self, view: usize, store: Arc<Store>) -> bool {
        if view >= self.views.len() {
            return false;
        }
        // make_view keeps the SNMPv3 engine objects live in the new view.
        self.views[view] = self.make_view(store);
        true
    }

    /// Answers one datagram. On `Reply`, `frame.as_slice()` is the response.
    pub fn handle(&mut self, datagram: &[u8], now: Instant, frame: &mut Frame) -> Outcome {
        self.counters.in_pkts = self.counters.in_pkts.wrapping_add(1);
        let outcome = self.answer(datagram, now, frame);
        match outcome {
            Outcome::Reply => {
                self.counters.out_pkts = self.counters.out_pkts.wrapping_add(1);
                self.counters.requests += 1;
            }
            Outcome::Dropped(why) => {
                self.counters.dropped += 1;
                let c = &mut self.counters;
                match why {
                    Drop::Parse => c.in_asn_parse_errs = c.in_asn_parse_errs.wrapping_add(1),
                    Drop::BadVersion => c.in_bad_versions = c.in_bad_versions.wrapping_add(1),
                    Drop::BadCommunity => {
                        c.in_bad_community_names = c.in_bad_community_names.wrapping_add(1)
                    }
                    Drop::NotARequest => {}
                    Drop::TooBig => c.silent_drops = c.silent_drops.wrapping_add(1),
                    // Counted where they were found.
                    Drop::UnknownSecurityModel | Drop::InvalidMsg | Drop::Unreported => {}
                }
            }
        }
        outcome
    }

    fn answer(&mut self, datagram: &[u8], now: Instant, frame: &mut Frame) -> Outcome {
        match ber::peek_version(datagram) {
            Some(version @ (0 | 1)) => {
                let mut request = std::mem::take(&mut self.request);
                let outcome = self.answer_community(datagram, version, &mut request, now, frame);
                self.request = request;
                outcome
            }
            Some(3) => self.answer_v3(datagram, now, frame),
            Some(_) => Outcome::Dropped(Drop::BadVersion),
            None => Outcome::Dropped(Drop::Parse),
        }
    }

    /// Answers a v1 (`version` 0) or v2c (1) message, decoded into
    /// `request`.
    fn answer_community(
        &mut self,
        datagram: &[u8],
        version: i64,
        request: &mut Request,
        now: Instant,
        frame: &mut Frame,
    ) -> Outcome {
        let slow_community;
        let community: &[u8] = match fast::decode(datagram, request) {
            Some(c) => c,
            None => {
                let decoded = match version {
                    0 => decode_v1(datagram),
                    _ => decode_v2c(datagram),
                };
                match decoded {
                    Ok((r, c)) => {
                        *request = r;
                        slow_community = c;
                        &slow_community
                    }
                    Err(d) => return Outcome::Dropped(d),
                }
            }
        };
        let request = &*request;
        let v1 = request.version == Version::V1;
        let Some(access) = self
            .config
            .communities
            .iter()
            .find(|a| a.community.as_slice() == community && if v1 { a.v1 } else { a.v2c })
        else {
            return Outcome::Dropped(Drop::BadCommunity);
        };
        let (view_index, write) = (access.view, access.write);
        // Room for everything but the varbind list: message and PDU headers
        // (at most 4 length bytes each), version, community, request-id,
        // error-status and error-index.
        let overhead = 48 + community.len();
        let headroom = overhead + 16;
        let budget = self.config.max_message_size.saturating_sub(overhead);
        let handler_failed =
            match self.run_pdu(request, view_index, write, budget, headroom, now, frame) {
                Ok(failed) => failed,
                Err(d) => return Outcome::Dropped(d),
            };
        if request.kind == Kind::Set && handler_failed && !write {
            self.counters.in_bad_community_uses =
                self.counters.in_bad_community_uses.wrapping_add(1);
        }
        frame.prepend_tlv(ber::TAG_OCTET_STRING, community);
        frame.prepend_int(if v1 { 0 } else { 1 });
        frame.wrap(ber::TAG_SEQUENCE);
        Outcome::Reply
    }

    /// Answers `request` from view `view_index`: leaves the Response PDU in
    /// `frame` (reset with `headroom` bytes in front) and returns whether the
    /// handler failed. `budget` is the most the message may take besides
    /// its headers.
    #[allow(clippy::too_many_arguments)]
    fn run_pdu(
        &mut self,
        request: &Request,
        view_index: usize,
        write: bool,
        budget: usize,
        headroom: usize,
        now: Instant,
        frame: &mut Frame,
    ) -> Result<bool, Drop> {
        let v1 = request.version == Version::V1;
        let Some(view) = self.views.get_mut(view_index) else {
            return Err(Drop::BadCommunity);
        };
        let uptime = now.saturating_duration_since(self.start);
        let counters = self.counters.clone();
        let mut ctx = Ctx {
            view,
            now: Now {
                uptime,
                counters: &counters,
            },
            v1,
            write,
            max_varbinds: self.config.max_varbinds.max(1),
            budget: budget + headroom,
            cursors: &mut self.cursors,
            ended: &mut self.ended,
        };
        frame.reset(headroom);
        let result = match request.kind {
            Kind::Get => get::handle(&mut ctx, request, frame.body()),
            Kind::GetNext => getnext::handle(&mut ctx, request, frame.body()),
            Kind::GetBulk { .. } => getbulk::handle(&mut ctx, request, frame.body()),
            Kind::Set => set::handle(&mut ctx, request, frame.body()),
        };
        let (status, index) = match result {
            Ok(()) => (0, 0),
            Err((s, i)) => (if v1 { s.to_v1() } else { s } as u8, i),
        };
        finish_pdu(frame, request, status, index, headroom, budget)?;
        Ok(result.is_err())
    }
}

/// Wraps the varbinds in `frame` into a Response PDU with `status` and
/// `index`. An error response carries the request's varbinds instead; a
/// response too big for `budget` becomes tooBig (a v1 one is dropped).
fn finish_pdu(
    frame: &mut Frame,
    request: &Request,
    mut status: u8,
    mut index: u32,
    headroom: usize,
    budget: usize,
) -> Result<(), Drop> {
    let v1 = request.version == Version::V1;
    if status == 0 && frame.len() > budget {
        status = ErrorStatus::TooBig as u8;
        index = 0;
    }
    if status != 0 {
        // Error responses carry the request's varbinds (RFC 1157 §4.1,
        // RFC 3416 §4.2.5), except a v2 tooBig, which carries none.
        frame.reset(headroom);
        if v1 || status != ErrorStatus::TooBig as u8 {
            echo_varbinds(request, frame.body());
        }
        if frame.len() > budget {
            if v1 {
                return Err(Drop::TooBig);
            }
            frame.reset(headroom);
            status = ErrorStatus::TooBig as u8;
            index = 0;
        }
    }
    frame.wrap(ber::TAG_SEQUENCE);
    frame.prepend_int(i64::from(index));
    frame.prepend_int(i64::from(status));
    frame.prepend_int(i64::from(request.request_id));
    frame.wrap(0xa2);
    Ok(())
}

/// For the fuzzer and the tests: whether the in-place decoders ([`fast`])
/// read `datagram` as rasn does wherever they accept it (an error says how
/// not): as a v1/v2c or v3 message, and as a decrypted scopedPDU followed
/// by up to 8 bytes of padding.
#[doc(hidden)]
pub fn check_fast_decoder(datagram: &[u8]) -> Result<(), String> {
    check_fast_message(datagram)?;
    check_fast_scoped(datagram, 8)
}

fn check_fast_message(datagram: &[u8]) -> Result<(), String> {
    let mut request = Request::default();
    match ber::peek_version(datagram) {
        Some(version @ (0 | 1)) => {
            let Some(community) = fast::decode(datagram, &mut request) else {
                return Ok(());
            };
            let slow = match version {
                0 => decode_v1(datagram),
                _ => decode_v2c(datagram),
            };
            let (want, want_community) =
                slow.map_err(|d| format!("the fast path took what rasn drops ({d:?})"))?;
            if request == want && community == want_community.as_slice() {
                Ok(())
            } else {
                Err(format!("the fast path read {request:?}, rasn {want:?}"))
            }
        }
        Some(3) => {
            let Some(m) = fast::decode_v3(datagram, &mut request) else {
                return Ok(());
            };
            let slow = match rasn::ber::decode_with_remainder::<rasn_snmp::v3::Message>(datagram) {
                Ok((msg, [])) => msg,
                _ => return Err("the fast path took a message rasn refuses".into()),
            };
            let usm = match rasn::ber::decode_with_remainder::<rasn_snmp::v3::USMSecurityParameters>(
                &slow.security_parameters,
            ) {
                Ok((u, [])) => u,
                _ => return Err("the fast path took USM parameters rasn refuses".into()),
            };
            let int = |i: &Integer| i64::try_from(i).ok();
            let g = &slow.global_data;
            let header = (
                int(&g.message_id),
                int(&g.max_size),
                &g.flags[..],
                int(&g.security_model),
            ) == (
                Some(m.msg_id),
                Some(m.max_size),
                m.flags,
                Some(m.security_model),
            );
            let usm_same = (
                &usm.authoritative_engine_id[..],
                int(&usm.authoritative_engine_boots),
                int(&usm.authoritative_engine_time),
                &usm.user_name[..],
                &usm.authentication_parameters[..],
                &usm.privacy_parameters[..],
            ) == (
                m.usm.engine_id,
                Some(m.usm.boots),
                Some(m.usm.time),
                m.usm.user_name,
                m.usm.auth,
                m.usm.privacy,
            );
            let data_same = match (&slow.scoped_data, &m.data) {
                (rasn_snmp::v3::ScopedPduData::EncryptedPdu(e), fast::V3Data::Encrypted(f)) => {
                    &e[..] == *f
                }
                (rasn_snmp::v3::ScopedPduData::CleartextPdu(s), fast::V3Data::Clear(f)) => {
                    &s.engine_id[..] == f.engine_id
                        && &s.name[..] == f.name
                        && request_from_pdus(s.data.clone(), Version::V3)
                            .is_ok_and(|want| request == want)
                }
                _ => false,
            };
            if header && usm_same && data_same {
                Ok(())
            } else {
                Err(format!(
                    "the fast path read {m:?} and {request:?}, rasn {slow:?} and {usm:?}"
                ))
            }
        }
        _ => Ok(()),
    }
}

/// The same for a decrypted scopedPDU followed by up to `max_pad` bytes.
fn check_fast_scoped(plaintext: &[u8], max_pad: usize) -> Result<(), String> {
    let mut request = Request::default();
    let Some(f) = fast::decode_scoped(plaintext, max_pad, &mut request) else {
        return Ok(());
    };
    match rasn::ber::decode_with_remainder::<rasn_snmp::v3::ScopedPdu>(plaintext) {
        Ok((s, rest))
            if rest.len() <= max_pad
                && &s.engine_id[..] == f.engine_id
                && &s.name[..] == f.name
                && request_from_pdus(s.data.clone(), Version::V3)
                    .is_ok_and(|want| request == want) =>
        {
            Ok(())
        }
        other => Err(format!(
            "the fast path read {f:?} and {request:?}, rasn {other:?}"
        )),
    }
}

/// Appends the request's own varbinds (for error responses).
fn echo_varbinds(request: &Request, out: &mut Vec<u8>) {
    for (i, name) in request.names.iter().enumerate() {
        ber::push_varbind_with(out, name, |v| {
            ber::push_value(v, request.values.get(i).unwrap_or(&Value::Null));
        });
    }
}

fn decode_all<T: rasn::Decode>(datagram: &[u8]) -> Result<T, Drop> {
    match rasn::ber::decode_with_remainder::<T>(datagram) {
        Ok((msg, [])) => Ok(msg),
        _ => Err(Drop::Parse),
    }
}

fn int_i32(i: &Integer) -> Option<i32> {
    i64::try_from(i.clone())
        .ok()
        .and_then(|v| i32::try_from(v).ok())
}

fn decode_v1(datagram: &[u8]) -> Result<(Request, Vec<u8>), Drop> {
    let msg: v1::Message<v1::Pdus> = decode_all(datagram)?;
    let (kind, pdu) = match msg.data {
        v1::Pdus::GetRequest(p) => (Kind::Get, p.0),
        v1::Pdus::GetNextRequest(p) => (Kind::GetNext, p.0),
        v1::Pdus::SetRequest(p) => (Kind::Set, p.0),
        v1::Pdus::GetResponse(_) | v1::Pdus::Trap(_) => return Err(Drop::NotARequest),
    };
    let request_id = int_i32(&pdu.request_id).ok_or(Drop::Parse)?;
    let mut names = Names::default();
    let mut values = Vec::with_capacity(pdu.variable_bindings.len());
    for vb in pdu.variable_bindings {
        names.push(&vb.name);
        values.push(value_from_v1(vb.value).ok_or(Drop::Parse)?);
    }
    let request = Request {
        version: Version::V1,
        kind,
        request_id,
        names,
        values,
    };
    Ok((request, msg.community.to_vec()))
}

fn decode_v2c(datagram: &[u8]) -> Result<(Request, Vec<u8>), Drop> {
    let msg: v2c::Message<v2::Pdus> = decode_all(datagram)?;
    let request = request_from_pdus(msg.data, Version::V2c)?;
    Ok((request, msg.community.to_vec()))
}

/// A request from SNMPv2 PDUs (those of v2c and of a v3 scopedPDU).
pub(crate) fn request_from_pdus(pdus: v2::Pdus, version: Version) -> Result<Request, Drop> {
    let (kind, request_id, bindings) = match pdus {
        v2::Pdus::GetRequest(p) => (Kind::Get, p.0.request_id, p.0.variable_bindings),
        v2::Pdus::GetNextRequest(p) => (Kind::GetNext, p.0.request_id, p.0.variable_bindings),
        v2::Pdus::SetRequest(p) => (Kind::Set, p.0.request_id, p.0.variable_bindings),
        v2::Pdus::GetBulkRequest(p) => (
            Kind::GetBulk {
                non_repeaters: p.0.non_repeaters,
                max_repetitions: p.0.max_repetitions,
            },
            p.0.request_id,
            p.0.variable_bindings,
        ),
        v2::Pdus::Response(_)
        | v2::Pdus::InformRequest(_)
        | v2::Pdus::Trap(_)
        | v2::Pdus::Report(_) => return Err(Drop::NotARequest),
    };
    let mut names = Names::default();
    let mut values = Vec::with_capacity(bindings.len());
    for vb in bindings {
        names.push(&vb.name);
        values.push(match vb.value {
            v2::VarBindValue::Value(v) => value_from_v2(v).ok_or(Drop::Parse)?,
            v2::VarBindValue::Unspecified => Value::Null,
            v2::VarBindValue::NoSuchObject => Value::NoSuchObject,
            v2::VarBindValue::NoSuchInstance => Value::NoSuchInstance,
            v2::VarBindValue::EndOfMibView => Value::EndOfMibView,
        });
    }
    Ok(Request {
        version,
        kind,
        request_id,
        names,
        values,
    })
}

fn value_from_v1(v: smi1::ObjectSyntax) -> Option<Value> {
    use smi1::{ApplicationSyntax as A, NetworkAddress, ObjectSyntax as O, SimpleSyntax as S};
    Some(match v {
        O::Simple(S::Number(i)) => Value::Integer(i64::try_from(i).ok()?),
        O::Simple(S::String(s)) => Value::OctetString(s.to_vec()),
        O::Simple(S::Object(o)) => Value::ObjectId(o.to_vec()),
        O::Simple(S::Empty) => Value::Null,
        O::ApplicationWide(A::Address(NetworkAddress::Internet(a))) => Value::IpAddress(*a.0),
        O::ApplicationWide(A::Counter(c)) => Value::Counter32(c.0),
        O::ApplicationWide(A::Gauge(g)) => Value::Gauge32(g.0),
        O::ApplicationWide(A::Ticks(t)) => Value::TimeTicks(t.0),
        O::ApplicationWide(A::Arbitrary(o)) => Value::Opaque(o.as_ref().to_vec()),
    })
}

fn value_from_v2(v: smi2::ObjectSyntax) -> Option<Value> {
    use smi2::{ApplicationSyntax as A, ObjectSyntax as O, SimpleSyntax as S};
    Some(match v {
        O::Simple(S::Integer(i)) => Value::Integer(i64::try_from(i).ok()?),
        O::Simple(S::String(s)) => Value::OctetString(s.to_vec()),
        O::Simple(S::ObjectId(o)) => Value::ObjectId(o.to_vec()),
        O::ApplicationWide(A::Address(a)) => Value::IpAddress(*a.0),
        O::ApplicationWide(A::Counter(c)) => Value::Counter32(c.0),
        O::ApplicationWide(A::Ticks(t)) => Value::TimeTicks(t.0),
        O::ApplicationWide(A::Arbitrary(o)) => Value::Opaque(o.as_ref().to_vec()),
        O::ApplicationWide(A::BigCounter(c)) => Value::Counter64(c.0),
        O::ApplicationWide(A::Unsigned(g)) => Value::Gauge32(g.0),
    })
}

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests;
