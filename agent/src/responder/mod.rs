//! The command responder (SNMPv1, v2c and v3): a datagram in, a datagram (or
//! a counted drop) out. No I/O and no clock of its own, so every path is
//! testable with byte vectors. The usual v1/v2c GET, GETNEXT and GETBULK
//! requests are read straight from the datagram into reused buffers
//! (`crate::wire::fast`), everything else is decoded with rasn
//! (`crate::wire::decode`); responses are framed by hand around the
//! store's pre-encoded varbinds (see [`crate::wire::ber::Frame`]).
//! A GET, GETNEXT or GETBULK, in any version and at any SNMPv3 security
//! level, allocates nothing once the buffers have grown to fit. SNMPv3
//! messages go through [`crate::security::v3`] first and then reach the same
//! handlers: one file per PDU type (`get`, `getnext`, `getbulk`, `set`),
//! the SNMPv3 glue (`v3`) and the per-source rate limit ([`ratelimit`]).
//!
//! Depends on `crate::security` (SNMPv3 processing), `crate::data` (the
//! MIB view and its stores) and `crate::wire` (requests, framing); the
//! agent process (`crate::runtime`) and the supervisor use it.

mod get;
mod getbulk;
mod getnext;
pub mod ratelimit;
mod set;
mod v3;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

pub use crate::data::mib::Counters;
use crate::data::mib::{EngineInfo, Now, Obj, View};
use crate::data::store::Store;
use crate::data::values::{self, Values};
use crate::data::variation::Variation;
pub use crate::data::variation::delay::Hold;
use crate::data::variation::error::Answer;
use crate::wire::ber::{self, Frame};
use crate::wire::decode::{decode_v1, decode_v2c};
use crate::wire::fast;
#[doc(hidden)]
pub use crate::wire::fast::check_fast_decoder;
pub use crate::wire::pdu::{Drop, Drops};
use crate::wire::pdu::{Kind, Request, Version};
use crate::wire::value::Value;
use ratelimit::{Limiter, RateLimit};

/// The error-status values of RFC 3416 (the `error` variation answers any
/// of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ErrorStatus {
    TooBig = 1,
    NoSuchName = 2,
    BadValue = 3,
    ReadOnly = 4,
    GenErr = 5,
    NoAccess = 6,
    WrongType = 7,
    WrongLength = 8,
    WrongEncoding = 9,
    WrongValue = 10,
    NoCreation = 11,
    InconsistentValue = 12,
    ResourceUnavailable = 13,
    CommitFailed = 14,
    UndoFailed = 15,
    /// SNMPv3 only: the request is below the user's security level.
    AuthorizationError = 16,
    NotWritable = 17,
    InconsistentName = 18,
}

impl ErrorStatus {
    /// The status of a number (1–18).
    pub fn from_u8(n: u8) -> Option<ErrorStatus> {
        use ErrorStatus::*;
        Some(match n {
            1 => TooBig,
            2 => NoSuchName,
            3 => BadValue,
            4 => ReadOnly,
            5 => GenErr,
            6 => NoAccess,
            7 => WrongType,
            8 => WrongLength,
            9 => WrongEncoding,
            10 => WrongValue,
            11 => NoCreation,
            12 => InconsistentValue,
            13 => ResourceUnavailable,
            14 => CommitFailed,
            15 => UndoFailed,
            16 => AuthorizationError,
            17 => NotWritable,
            18 => InconsistentName,
            _ => return None,
        })
    }

    /// The SNMPv1 form of a v2 error (RFC 2576 §4.3).
    pub fn to_v1(self) -> ErrorStatus {
        use ErrorStatus::*;
        match self {
            TooBig | NoSuchName | BadValue | ReadOnly | GenErr => self,
            NoAccess | NotWritable | NoCreation | InconsistentName | AuthorizationError => {
                NoSuchName
            }
            WrongValue | WrongEncoding | WrongType | WrongLength | InconsistentValue => BadValue,
            ResourceUnavailable | CommitFailed | UndoFailed => GenErr,
        }
    }
}

/// What answering a request asks of the serving loop besides sending the
/// response: variations the request touched (`delay`, `notification`).
#[derive(Debug, Default)]
pub struct Effects {
    /// Hold the response this long, or never send it (`delay`).
    pub hold: Option<Hold>,
    /// Notifications to send from the endpoint the request came to.
    pub notices: Vec<Notice>,
}

impl Effects {
    /// Whether the response goes out at once and nothing else happens.
    pub fn is_empty(&self) -> bool {
        self.hold.is_none() && self.notices.is_empty()
    }

    /// Holds the response for `hold` more (holds add up; a drop wins).
    pub fn add_hold(&mut self, hold: Hold) {
        self.hold = Some(match (self.hold, hold) {
            (Some(Hold::Drop), _) | (_, Hold::Drop) => Hold::Drop,
            (Some(Hold::For(a)), Hold::For(b)) => Hold::For(a + b),
            (None, h) => h,
        });
    }
}

/// A notification a `notification` variation asks for.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Where to and how.
    pub target: crate::notify::Target,
    /// What (its `agent_addr` is the record's, or zero: the sender fills in
    /// the endpoint's).
    pub notification: crate::notify::Notification,
    /// Whether the record named the SNMPv1 agent-addr.
    pub agent_addr_given: bool,
}

/// What a community may do, and which snapshot it sees.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CommunityAccess {
    /// The community string.
    pub community: Vec<u8>,
    /// Accepted in SNMPv1 messages.
    pub v1: bool,
    /// Accepted in SNMPv2c messages.
    pub v2c: bool,
    /// Index into the responder's views.
    pub view: usize,
    /// SET may change any existing object (else only `writecache` ones).
    pub write: bool,
}

/// The fixed parameters of a responder.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// The communities v1/v2c requests may use.
    pub communities: Vec<CommunityAccess>,
    /// Most varbinds in one response (GETBULK is cut here).
    pub max_varbinds: usize,
    /// Largest response datagram we send.
    pub max_message_size: usize,
    /// SNMPv3: engine, users, contexts. `None`: v3 messages are bad
    /// versions.
    #[serde(default)]
    pub v3: Option<crate::security::v3::V3Config>,
}

/// A responder configuration that cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A user's keys are unusable.
    #[error("SNMPv3 user {user:?}: {cause}")]
    User {
        /// The user's name (never its keys).
        user: String,
        /// What is wrong with its keys.
        cause: crate::security::usm::KeyError,
    },
}

/// The outcome of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The frame holds the response.
    Reply,
    /// No answer; counted.
    Dropped(Drop),
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
    /// What the variations touched ask of the serving loop.
    pub effects: &'a mut Effects,
    /// Noise for `delay`'s deviation.
    pub noise: &'a mut crate::util::xorshift::Rng,
}

/// What answering a request works in: the decoded request and GETBULK's
/// cursors, reused from request to request. The responders of a thread
/// share the thread's ([`Scratch::take`]): a packed process asked by a
/// walk over its devices then works in one set of buffers, warm in the
/// cache, instead of one set per device, cold at each device's turn (and
/// a device's memory does not keep them).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    request: Request,
    bulk: Bulk,
}

/// GETBULK's cursors and which of them ended.
#[derive(Debug, Default)]
pub(crate) struct Bulk {
    cursors: Vec<Vec<u32>>,
    ended: Vec<bool>,
}

thread_local! {
    /// The thread's scratch while no request is being answered.
    static SCRATCH: std::cell::Cell<Scratch> = const {
        std::cell::Cell::new(Scratch {
            request: Request::EMPTY,
            bulk: Bulk {
                cursors: Vec::new(),
                ended: Vec::new(),
            },
        })
    };
}

impl Scratch {
    /// The thread's scratch (an empty one if it is lent already, or the
    /// thread is going away).
    fn take() -> Scratch {
        SCRATCH.try_with(std::cell::Cell::take).unwrap_or_default()
    }

    /// Gives the scratch back to the thread, for its next request.
    fn give_back(self) {
        // try_with: a thread going away keeps nothing.
        let _ = SCRATCH.try_with(|s| s.set(self));
    }
}

/// What a touched object's variation makes of its varbind.
pub(crate) enum Touched {
    /// Its value, as usual.
    Value,
    /// This exception instead (SNMPv2: an `error` variation's
    /// noSuchObject, noSuchInstance or endOfMibView).
    Exception(u8),
}

impl Ctx<'_> {
    /// Applies the variation of `obj`, touched by varbind `index`
    /// (1-based) of a read or (`set`) a SET: an `error` fails the request,
    /// a `delay` holds the response, a `notification` is queued.
    pub fn touch(&mut self, obj: Obj, set: bool, index: u32) -> Result<Touched, Failure> {
        match self.view.variation(obj) {
            Some(Variation::Error(e)) if e.op.applies(set) => match e.answer {
                Some(Answer::Status(n)) => Err((
                    ErrorStatus::from_u8(n).unwrap_or(ErrorStatus::GenErr),
                    index,
                )),
                Some(Answer::Exception(_)) if self.v1 || set => {
                    Err((ErrorStatus::NoSuchName, index))
                }
                Some(Answer::Exception(tag)) => Ok(Touched::Exception(tag)),
                None => Ok(Touched::Value),
            },
            Some(Variation::Delay(d)) => {
                let hold = d.hold(self.noise.next_u64());
                self.effects.add_hold(hold);
                Ok(Touched::Value)
            }
            Some(Variation::Notification(n)) if n.op.applies(set) => {
                let notification = crate::notify::Notification {
                    trap_oid: n.trap_oid.clone(),
                    uptime: n.uptime.unwrap_or_else(|| self.now.ticks()),
                    varbinds: n.varbinds.clone(),
                    agent_addr: n.agent_address.unwrap_or([0; 4]),
                };
                self.effects.notices.push(Notice {
                    target: n.target.clone(),
                    notification,
                    agent_addr_given: n.agent_address.is_some(),
                });
                Ok(Touched::Value)
            }
            _ => Ok(Touched::Value),
        }
    }

    /// The first object after `from` that is served now (a multiplexed
    /// object the current snapshot lacks is passed over).
    pub fn next_served<'s>(&'s self, from: &'s [u32]) -> Option<Obj> {
        let mut at = from;
        loop {
            let obj = self.view.next(at, self.v1)?;
            if !self.view.absent_at(obj, self.now.uptime) {
                return Some(obj);
            }
            at = self.view.oid(obj);
        }
    }

    /// Appends `obj`'s varbind as a read touching it (varbind `index`)
    /// makes it: its value, or the exception an `error` variation names.
    pub fn push_read(&mut self, obj: Obj, index: u32, out: &mut Vec<u8>) -> Result<(), Failure> {
        match self.touch(obj, false, index)? {
            Touched::Value => self.view.push_varbind(obj, &self.now, out),
            Touched::Exception(tag) => ber::push_varbind(out, self.view.oid(obj), &[tag, 0]),
        }
        Ok(())
    }
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
    v3: Option<crate::security::v3::Engine>,
    /// What SNMPv3 agents serve in the snmpEngine group.
    engine: Option<Arc<EngineInfo>>,
    /// The per-source rate limit, when one is set.
    limiter: Option<Limiter>,
    /// What the last request asks of the serving loop.
    effects: Effects,
    noise: crate::util::xorshift::Rng,
    /// The device's snmpEngineID, what its SNMPv3 notifications are sent
    /// as (set by the agent process).
    notify_engine_id: Vec<u8>,
    /// `counters: animate`: how the views' counters count.
    animate: Option<crate::data::animate::Animate>,
}

impl Responder {
    /// `stores[i]` is the snapshot of view `i` named by the communities and
    /// contexts. An SNMPv3 section whose keys are unusable is logged (user
    /// name and reason, never key material) and SNMPv3 is then off; use
    /// [`Responder::try_new`] to get that as an error instead.
    pub fn new(mut config: Config, stores: Vec<Arc<Store>>, start: Instant) -> Responder {
        let v3 = match config.v3.as_ref().map(crate::security::v3::Engine::new) {
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
                crate::security::v3::Engine::new(c)
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
        v3: Option<crate::security::v3::Engine>,
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
            effects: Effects::default(),
            notify_engine_id: Vec::new(),
            animate: None,
            noise: crate::util::xorshift::Rng::new(
                start.elapsed().as_nanos() as u64 ^ u64::from(std::process::id()),
            ),
        };
        r.views = stores.into_iter().map(|s| r.make_view(s)).collect();
        r
    }

    fn make_view(&self, store: Arc<Store>) -> View {
        let mut view = View::new(store, self.start);
        view.set_animate(self.animate);
        match &self.engine {
            Some(e) => view.with_engine(e.clone()),
            None => view,
        }
    }

    /// The agent's counters (the `snmp` group, SNMPv3 statistics, tallies).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Largest message sent from now on (`cluster.max_response_bytes`
    /// changed on reload); also the msgMaxSize and snmpEngineMaxMessageSize
    /// an SNMPv3 agent announces.
    pub(crate) fn set_max_message_size(&mut self, size: usize) {
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
    pub(crate) fn set_rate_limit(&mut self, limit: Option<RateLimit>) {
        self.limiter = limit.map(Limiter::new);
    }

    /// Whether a datagram from `source` at `now` may be handled: always
    /// without a rate limit. One that may not is counted as dropped.
    pub(crate) fn admit(&mut self, source: IpAddr, now: Instant) -> bool {
        let Some(limiter) = self.limiter.as_mut() else {
            return true;
        };
        if limiter.admit(source, now) {
            return true;
        }
        self.counters.dropped += 1;
        self.counters.rate_limited += 1;
        self.counters.drops.add(Drop::RateLimited);
        false
    }

    /// Serves the device's own values over every view from now on; values
    /// SET before are dropped. `Err` names the first value that does not
    /// fit its type, and nothing changes.
    pub fn set_values(&mut self, values: &Values) -> Result<(), String> {
        let owns = self
            .views
            .iter()
            .map(|v| values::build(v.store(), values))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, own) in owns.into_iter().enumerate() {
            let mut view = self.make_view(self.views[i].store_arc());
            view.set_own(own);
            self.views[i] = view;
        }
        Ok(())
    }

    /// The device rebooted at `start` (`fault reboot` of an agent that
    /// shares its process): sysUpTime and snmpEngineTime count from there,
    /// and an SNMPv3 agent is at `boots` from now on. Values and SETs stay.
    pub fn reboot(&mut self, start: Instant, boots: u32) {
        self.start = start;
        if let Some(c) = &mut self.config.v3 {
            c.engine_boots = boots;
        }
        if let Some(v3) = &mut self.v3 {
            v3.set_boots(boots);
        }
        if let Some(e) = &self.engine {
            let engine = Arc::new(EngineInfo {
                boots,
                ..(**e).clone()
            });
            for v in &mut self.views {
                v.set_engine(engine.clone());
            }
            self.engine = Some(engine);
        }
    }

    /// When the device started (its sysUpTime counts from here).
    pub fn started(&self) -> Instant {
        self.start
    }

    /// The INTEGER value the first view's snapshot records for `oid`, if
    /// it has one (an interface's ifAdminStatus, whether an ifIndex exists).
    pub fn recorded_integer(&self, oid: &[u32]) -> Option<i64> {
        let store = self.views.first()?.store();
        let item = store.item(store.find(oid)?)?;
        let (&tag, rest) = item.value.split_first()?;
        let (&len, bytes) = rest.split_first()?;
        if tag != ber::TAG_INTEGER
            || len == 0
            || usize::from(len) > 8
            || bytes.len() < usize::from(len)
        {
            return None;
        }
        let bytes = &bytes[..usize::from(len)];
        let mut v: i64 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
        for b in bytes {
            v = (v << 8) | i64::from(*b);
        }
        Some(v)
    }

    /// Bytes the device's own values take in every view.
    pub fn own_bytes(&self) -> usize {
        self.views.iter().map(View::own_bytes).sum()
    }

    /// Serves view `view` from another store from now on (a snapshot was
    /// recompiled). Values SET into the old store are dropped with it; the
    /// device's own values stay, as they were encoded when they were set.
    pub fn swap_store(&mut self, view: usize, store: Arc<Store>) -> bool {
        if view >= self.views.len() {
            return false;
        }
        let own = self.views[view].take_own();
        // make_view keeps the SNMPv3 engine objects live in the new view.
        let mut new = self.make_view(store);
        new.set_own(own);
        self.views[view] = new;
        true
    }

    /// Answers one datagram. On `Reply`, `frame.as_slice()` is the response.
    pub fn handle(&mut self, datagram: &[u8], now: Instant, frame: &mut Frame) -> Outcome {
        self.effects.hold = None;
        self.effects.notices.clear();
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
                c.drops.add(why);
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
                    // Counted where it is decided (`admit`).
                    Drop::RateLimited => {}
                }
            }
        }
        outcome
    }

    /// Makes every view's Counter32/Counter64 values count up from their
    /// recorded values (`counters: animate`), seeded per device (`None`:
    /// served as recorded).
    pub fn set_animate(&mut self, animate: Option<crate::data::animate::Animate>) {
        self.animate = animate;
        for v in &mut self.views {
            v.set_animate(animate);
        }
    }

    /// The device's snmpEngineID for the notifications its `notification`
    /// variations send over SNMPv3.
    pub fn set_notify_engine_id(&mut self, engine_id: Vec<u8>) {
        self.notify_engine_id = engine_id;
    }

    /// The engine the device's notifications are sent as.
    pub fn notify_engine(&self) -> crate::notify::LocalEngine {
        let boots = self
            .config
            .v3
            .as_ref()
            .map_or(1, |v3| v3.engine_boots.max(1));
        crate::notify::LocalEngine {
            engine_id: self.notify_engine_id.clone(),
            boots,
            start: self.start,
        }
    }

    /// What answering the last datagram asks of the serving loop besides
    /// sending the response (see [`Effects`]), leaving none.
    pub fn take_effects(&mut self) -> Effects {
        std::mem::take(&mut self.effects)
    }

    /// Whether answering the last datagram asked for anything besides
    /// sending the response.
    pub fn has_effects(&self) -> bool {
        !self.effects.is_empty()
    }

    fn answer(&mut self, datagram: &[u8], now: Instant, frame: &mut Frame) -> Outcome {
        let mut scratch = Scratch::take();
        let outcome = match ber::peek_version(datagram) {
            Some(version @ (0 | 1)) => {
                self.answer_community(datagram, version, &mut scratch, now, frame)
            }
            Some(3) => self.answer_v3(datagram, now, &mut scratch, frame),
            Some(_) => Outcome::Dropped(Drop::BadVersion),
            None => Outcome::Dropped(Drop::Parse),
        };
        scratch.give_back();
        outcome
    }

    /// Answers a v1 (`version` 0) or v2c (1) message, decoded into the
    /// scratch's request.
    fn answer_community(
        &mut self,
        datagram: &[u8],
        version: i64,
        scratch: &mut Scratch,
        now: Instant,
        frame: &mut Frame,
    ) -> Outcome {
        let Scratch { request, bulk } = scratch;
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
        let handler_failed = match self.run_pdu(
            request, bulk, view_index, write, budget, headroom, now, frame,
        ) {
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
        bulk: &mut Bulk,
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
            cursors: &mut bulk.cursors,
            ended: &mut bulk.ended,
            effects: &mut self.effects,
            noise: &mut self.noise,
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

/// Appends the request's own varbinds (for error responses).
fn echo_varbinds(request: &Request, out: &mut Vec<u8>) {
    for (i, name) in request.names.iter().enumerate() {
        ber::push_varbind_with(out, name, |v| {
            ber::push_value(v, request.values.get(i).unwrap_or(&Value::Null));
        });
    }
}

#[cfg(test)]
pub(crate) mod tests;
