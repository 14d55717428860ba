//! What one agent answers from: a compiled store, plus the device's own
//! values over it ([`crate::data::values`]), plus the values SETs have
//! written over both, plus the objects the agent serves live (sysUpTime.0,
//! the SNMPv2-MIB `snmp` group counters and, for agents that speak SNMPv3,
//! the SNMP-FRAMEWORK-MIB engine objects, the MPD, target and USM
//! statistics), plus computed variations.
//!
//! Pure: time comes in as an argument, nothing here does I/O.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::data::animate::Animate;
use crate::data::store::{FLAG_COUNTER64, FLAG_EXCEPTION, FLAG_UPTIME, Store};
use crate::data::values::Own;
use crate::data::variation::Variation;
use crate::wire::ber;
use crate::wire::pdu::Drops;

/// Counters of the SNMPv2-MIB `snmp` group (RFC 3418), of SNMPv3 message
/// processing, and our own request tallies. Plain integers: one agent is
/// served by one thread. Each field is the MIB object it is served as.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// snmpInPkts.
    pub in_pkts: u32,
    /// snmpOutPkts.
    pub out_pkts: u32,
    /// snmpInBadVersions.
    pub in_bad_versions: u32,
    /// snmpInBadCommunityNames.
    pub in_bad_community_names: u32,
    /// snmpInBadCommunityUses.
    pub in_bad_community_uses: u32,
    /// snmpInASNParseErrs.
    pub in_asn_parse_errs: u32,
    /// snmpSilentDrops.
    pub silent_drops: u32,
    /// snmpProxyDrops.
    pub proxy_drops: u32,
    /// snmpUnknownSecurityModels (SNMP-MPD-MIB, RFC 3412 §5).
    pub unknown_security_models: u32,
    /// snmpInvalidMsgs (SNMP-MPD-MIB).
    pub invalid_msgs: u32,
    /// snmpUnknownPDUHandlers (SNMP-MPD-MIB).
    pub unknown_pdu_handlers: u32,
    /// snmpUnavailableContexts (SNMP-TARGET-MIB, RFC 3413 §4.1.1).
    pub unavailable_contexts: u32,
    /// snmpUnknownContexts (SNMP-TARGET-MIB).
    pub unknown_contexts: u32,
    /// usmStatsUnsupportedSecLevels (SNMP-USER-BASED-SM-MIB, RFC 3414 §5).
    pub usm_unsupported_sec_levels: u32,
    /// usmStatsNotInTimeWindows.
    pub usm_not_in_time_windows: u32,
    /// usmStatsUnknownUserNames.
    pub usm_unknown_user_names: u32,
    /// usmStatsUnknownEngineIDs.
    pub usm_unknown_engine_ids: u32,
    /// usmStatsWrongDigests.
    pub usm_wrong_digests: u32,
    /// usmStatsDecryptionErrors.
    pub usm_decryption_errors: u32,
    /// Requests answered (any PDU type).
    pub requests: u64,
    /// Datagrams dropped for any reason.
    pub dropped: u64,
    /// Datagrams dropped by the per-source rate limit (also in `dropped`).
    pub rate_limited: u64,
    /// Datagrams dropped, by reason (their sum is `dropped`).
    pub drops: Drops,
}

/// An object the agent computes itself instead of reading the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Live {
    SysUpTime,
    InPkts,
    OutPkts,
    InBadVersions,
    InBadCommunityNames,
    InBadCommunityUses,
    InAsnParseErrs,
    EnableAuthenTraps,
    SilentDrops,
    ProxyDrops,
    EngineId,
    EngineBoots,
    EngineTime,
    EngineMaxMessageSize,
    UnknownSecurityModels,
    InvalidMsgs,
    UnknownPduHandlers,
    UnavailableContexts,
    UnknownContexts,
    UsmUnsupportedSecLevels,
    UsmNotInTimeWindows,
    UsmUnknownUserNames,
    UsmUnknownEngineIds,
    UsmWrongDigests,
    UsmDecryptionErrors,
}

type LiveTable = &'static [(&'static [u32], Live)];

/// What every agent serves live. Sorted by OID.
const LIVE: LiveTable = &[
    (&[1, 3, 6, 1, 2, 1, 1, 3, 0], Live::SysUpTime),
    (&[1, 3, 6, 1, 2, 1, 11, 1, 0], Live::InPkts),
    (&[1, 3, 6, 1, 2, 1, 11, 2, 0], Live::OutPkts),
    (&[1, 3, 6, 1, 2, 1, 11, 3, 0], Live::InBadVersions),
    (&[1, 3, 6, 1, 2, 1, 11, 4, 0], Live::InBadCommunityNames),
    (&[1, 3, 6, 1, 2, 1, 11, 5, 0], Live::InBadCommunityUses),
    (&[1, 3, 6, 1, 2, 1, 11, 6, 0], Live::InAsnParseErrs),
    (&[1, 3, 6, 1, 2, 1, 11, 30, 0], Live::EnableAuthenTraps),
    (&[1, 3, 6, 1, 2, 1, 11, 31, 0], Live::SilentDrops),
    (&[1, 3, 6, 1, 2, 1, 11, 32, 0], Live::ProxyDrops),
];

/// What an agent that speaks SNMPv3 serves live: [`LIVE`] and the SNMPv3
/// engine and statistics objects. Sorted by OID.
const LIVE_V3: LiveTable = &[
    (&[1, 3, 6, 1, 2, 1, 1, 3, 0], Live::SysUpTime),
    (&[1, 3, 6, 1, 2, 1, 11, 1, 0], Live::InPkts),
    (&[1, 3, 6, 1, 2, 1, 11, 2, 0], Live::OutPkts),
    (&[1, 3, 6, 1, 2, 1, 11, 3, 0], Live::InBadVersions),
    (&[1, 3, 6, 1, 2, 1, 11, 4, 0], Live::InBadCommunityNames),
    (&[1, 3, 6, 1, 2, 1, 11, 5, 0], Live::InBadCommunityUses),
    (&[1, 3, 6, 1, 2, 1, 11, 6, 0], Live::InAsnParseErrs),
    (&[1, 3, 6, 1, 2, 1, 11, 30, 0], Live::EnableAuthenTraps),
    (&[1, 3, 6, 1, 2, 1, 11, 31, 0], Live::SilentDrops),
    (&[1, 3, 6, 1, 2, 1, 11, 32, 0], Live::ProxyDrops),
    (&[1, 3, 6, 1, 6, 3, 10, 2, 1, 1, 0], Live::EngineId),
    (&[1, 3, 6, 1, 6, 3, 10, 2, 1, 2, 0], Live::EngineBoots),
    (&[1, 3, 6, 1, 6, 3, 10, 2, 1, 3, 0], Live::EngineTime),
    (
        &[1, 3, 6, 1, 6, 3, 10, 2, 1, 4, 0],
        Live::EngineMaxMessageSize,
    ),
    (
        &[1, 3, 6, 1, 6, 3, 11, 2, 1, 1, 0],
        Live::UnknownSecurityModels,
    ),
    (&[1, 3, 6, 1, 6, 3, 11, 2, 1, 2, 0], Live::InvalidMsgs),
    (
        &[1, 3, 6, 1, 6, 3, 11, 2, 1, 3, 0],
        Live::UnknownPduHandlers,
    ),
    (&[1, 3, 6, 1, 6, 3, 12, 1, 4, 0], Live::UnavailableContexts),
    (&[1, 3, 6, 1, 6, 3, 12, 1, 5, 0], Live::UnknownContexts),
    (
        &[1, 3, 6, 1, 6, 3, 15, 1, 1, 1, 0],
        Live::UsmUnsupportedSecLevels,
    ),
    (
        &[1, 3, 6, 1, 6, 3, 15, 1, 1, 2, 0],
        Live::UsmNotInTimeWindows,
    ),
    (
        &[1, 3, 6, 1, 6, 3, 15, 1, 1, 3, 0],
        Live::UsmUnknownUserNames,
    ),
    (
        &[1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0],
        Live::UsmUnknownEngineIds,
    ),
    (&[1, 3, 6, 1, 6, 3, 15, 1, 1, 5, 0], Live::UsmWrongDigests),
    (
        &[1, 3, 6, 1, 6, 3, 15, 1, 1, 6, 0],
        Live::UsmDecryptionErrors,
    ),
];

/// The SNMPv3 engine as served in SNMP-FRAMEWORK-MIB's snmpEngine group;
/// snmpEngineTime is the agent's uptime in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    pub engine_id: Vec<u8>,
    pub boots: u32,
    pub max_message_size: u32,
}

/// A located object: in the store, among the device's own values, or live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Obj {
    Store(usize),
    Own(usize),
    Live(usize),
}

/// The answer to a GET that found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    NoSuchObject,
    NoSuchInstance,
}

/// The per-request context the values depend on.
#[derive(Debug, Clone, Copy)]
pub struct Now<'a> {
    /// Time since the agent started.
    pub uptime: Duration,
    pub counters: &'a Counters,
}

impl Now<'_> {
    /// sysUpTime in hundredths of a second, wrapping like a real agent's.
    pub fn ticks(&self) -> u32 {
        (self.uptime.as_millis() / 10) as u32
    }
}

/// One snapshot as served by one agent.
#[derive(Debug)]
pub struct View {
    store: Arc<Store>,
    /// The device's own values: they answer for (or hide) the store's
    /// records of the same OIDs, and add objects between them.
    own: Own,
    /// Values written by SET, by object, as value TLVs.
    overlay: HashMap<Obj, Vec<u8>>,
    /// Parsed variations, by store index.
    variations: HashMap<usize, Variation>,
    /// The objects served live: [`LIVE`], or [`LIVE_V3`] with `engine`.
    live: LiveTable,
    engine: Option<Arc<EngineInfo>>,
    /// `counters: animate`: the store's counters count up.
    animate: Option<Animate>,
}

impl View {
    pub fn new(store: Arc<Store>, start: Instant) -> View {
        let variations = store
            .variations()
            .map(|(i, name, params)| (i, Variation::parse(name, params, start)))
            .collect();
        View {
            store,
            own: Own::default(),
            overlay: HashMap::new(),
            variations,
            live: LIVE,
            engine: None,
            animate: None,
        }
    }

    /// Serves the SNMPv3 engine and statistics objects live too (they hide
    /// the snapshot's recorded values).
    pub fn with_engine(mut self, engine: Arc<EngineInfo>) -> View {
        self.live = LIVE_V3;
        self.engine = Some(engine);
        self
    }

    /// Makes the store's Counter32/Counter64 values count up from now on
    /// (`counters: animate`), or serves them as recorded (`None`).
    pub fn set_animate(&mut self, animate: Option<Animate>) {
        self.animate = animate;
    }

    /// The unsigned value the store records for `oid` (INTEGER, Counter,
    /// Gauge…), if it records one there.
    fn store_uint(&self, oid: &[u32]) -> Option<u64> {
        let item = self.store.item(self.store.lower_bound(oid))?;
        if item.oid != oid || item.flags & FLAG_EXCEPTION != 0 {
            return None;
        }
        let (_, start, len) = ber::read_header(item.value, 0)?;
        let content = item.value.get(start..start + len)?;
        if content.is_empty() || content.len() > 9 || content[0] & 0x80 != 0 {
            return None;
        }
        Some(content.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)))
    }

    /// Serves the device's own values over the store from now on.
    pub fn set_own(&mut self, own: Own) {
        self.own = own;
    }

    /// The device's own values, leaving none (for the view that replaces
    /// this one).
    pub fn take_own(&mut self) -> Own {
        std::mem::take(&mut self.own)
    }

    /// The store this view serves.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store this view serves, shared.
    pub fn store_arc(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// Bytes the device's own values take.
    pub fn own_bytes(&self) -> usize {
        self.own.heap_bytes()
    }

    /// Serves another engine description (a changed msgMaxSize).
    pub fn set_engine(&mut self, engine: Arc<EngineInfo>) {
        self.engine = Some(engine);
    }

    fn live_oid(&self, i: usize) -> &'static [u32] {
        self.live.get(i).map(|(o, _)| *o).unwrap_or_default()
    }

    /// The OID of an object.
    pub fn oid(&self, obj: Obj) -> &[u32] {
        match obj {
            Obj::Store(i) => self.store.item(i).map(|it| it.oid).unwrap_or_default(),
            Obj::Own(i) => self.own.oid(i),
            Obj::Live(i) => self.live_oid(i),
        }
    }

    /// Exact lookup.
    pub fn get(&self, oid: &[u32]) -> Result<Obj, Missing> {
        if let Ok(i) = self.live.binary_search_by(|(o, _)| (*o).cmp(oid)) {
            return Ok(Obj::Live(i));
        }
        if !self.own.is_empty()
            && let Ok(i) = self.own.find(oid)
        {
            return Ok(Obj::Own(i));
        }
        let i = self.store.lower_bound(oid);
        if let Some(item) = self.store.item(i)
            && item.oid == oid
        {
            if self.own.hides(item.oid) {
                return Err(Missing::NoSuchInstance);
            }
            if item.flags & FLAG_EXCEPTION != 0 {
                return Err(if item.value.first() == Some(&ber::TAG_NO_SUCH_OBJECT) {
                    Missing::NoSuchObject
                } else {
                    Missing::NoSuchInstance
                });
            }
            return Ok(Obj::Store(i));
        }
        Err(self.classify_miss(oid, i))
    }

    /// noSuchObject when the OID names no object type of this agent (it is
    /// an interior node, or nothing shares its parent), noSuchInstance when
    /// objects under the same parent exist but not this instance.
    fn classify_miss(&self, oid: &[u32], at: usize) -> Missing {
        let Some((_, parent)) = oid.split_last() else {
            return Missing::NoSuchObject;
        };
        let next = self.store.item(at).map(|it| it.oid);
        if next.is_some_and(|n| n.starts_with(oid)) {
            return Missing::NoSuchObject;
        }
        let prev = at
            .checked_sub(1)
            .and_then(|p| self.store.item(p))
            .map(|it| it.oid);
        let sibling =
            |o: Option<&[u32]>| o.is_some_and(|o| o.len() > parent.len() && o.starts_with(parent));
        if !parent.is_empty() && (sibling(next) || sibling(prev)) {
            Missing::NoSuchInstance
        } else {
            Missing::NoSuchObject
        }
    }

    /// The first object after `oid` in lexicographic order. `v1` skips what
    /// SNMPv1 cannot carry (Counter64); recorded exceptions are never
    /// returned by a walk.
    pub fn next(&self, oid: &[u32], v1: bool) -> Option<Obj> {
        let live = self.live.partition_point(|(o, _)| *o <= oid);
        let mut i = self.store.next_after(oid);
        let mut j = match self.own.is_empty() {
            true => 0,
            false => self.own.next_after(oid),
        };
        loop {
            let item = self.store.item(i);
            if let Some(it) = item
                && (it.flags & FLAG_EXCEPTION != 0 || (v1 && it.flags & FLAG_COUNTER64 != 0))
            {
                i += 1;
                continue;
            }
            if let Some(after) = item.and_then(|it| self.own.hidden_by(it.oid)) {
                // Past the whole hidden subtree at once.
                i = self.store.lower_bound(after).max(i + 1);
                continue;
            }
            let mut found = item.map(|it| (Obj::Store(i), it.oid));
            if j < self.own.len() {
                let o = self.own.oid(j);
                if found.is_none_or(|(_, s)| o <= s) {
                    // An own value comes first, or answers for the store's
                    // record of the same OID.
                    let shadows = found.is_some_and(|(_, s)| s == o);
                    if v1 && self.own.tag(j) == Some(ber::TAG_COUNTER64) {
                        j += 1;
                        if shadows {
                            i += 1;
                        }
                        continue;
                    }
                    found = Some((Obj::Own(j), o));
                }
            }
            return match (found, self.live.get(live)) {
                (Some((obj, o)), Some((lo, _))) if o < *lo => Some(obj),
                (Some((obj, _)), None) => Some(obj),
                (_, Some(_)) => Some(Obj::Live(live)),
                (None, None) => None,
            };
        }
    }

    /// True when SNMPv1 cannot carry this object's value.
    pub fn is_counter64(&self, obj: Obj) -> bool {
        match obj {
            Obj::Store(i) => self
                .store
                .item(i)
                .is_some_and(|it| it.flags & FLAG_COUNTER64 != 0),
            Obj::Own(i) => self.own.tag(i) == Some(ber::TAG_COUNTER64),
            Obj::Live(_) => false,
        }
    }

    /// Appends the VarBind of `obj` with its current value.
    pub fn push_varbind(&self, obj: Obj, now: &Now<'_>, out: &mut Vec<u8>) {
        match obj {
            Obj::Live(i) => {
                ber::push_varbind_with(out, self.live_oid(i), |v| {
                    if let Some((_, live)) = self.live.get(i) {
                        push_live(*live, now, self.engine.as_deref(), v);
                    }
                });
            }
            Obj::Own(i) => match self.overlay.get(&obj) {
                Some(v) => ber::push_varbind(out, self.own.oid(i), v),
                None => out.extend_from_slice(self.own.varbind(i).unwrap_or_default()),
            },
            Obj::Store(i) => {
                let Some(item) = self.store.item(i) else {
                    return;
                };
                if let Some(v) = self.overlay.get(&obj) {
                    ber::push_varbind(out, item.oid, v);
                } else if let Some(Variation::Multiplex(m)) = self.variations.get(&i) {
                    // Handlers skip an object its current snapshot lacks.
                    let tlv = m
                        .value(now.uptime)
                        .unwrap_or(&[ber::TAG_NO_SUCH_INSTANCE, 0]);
                    ber::push_varbind(out, item.oid, tlv);
                } else if let Some(Variation::Numeric(n)) = self.variations.get(&i) {
                    ber::push_varbind_with(out, item.oid, |v| {
                        n.push_value(item.value.first().copied(), now.uptime, v);
                    });
                } else if let Some(a) = &self.animate
                    && let Some(&tag @ (ber::TAG_COUNTER32 | ber::TAG_COUNTER64)) =
                        item.value.first()
                    && let Some(recorded) = self.store_uint(item.oid)
                {
                    let lookup = |o: &[u32]| self.store_uint(o);
                    let v = a.value(
                        item.oid,
                        tag == ber::TAG_COUNTER64,
                        recorded,
                        now.uptime,
                        &lookup,
                    );
                    ber::push_varbind_with(out, item.oid, |out| ber::push_u64(out, tag, v));
                } else if item.flags & FLAG_UPTIME != 0 {
                    ber::push_varbind_with(out, item.oid, |v| {
                        ber::push_u64(v, ber::TAG_TIMETICKS, u64::from(now.ticks()));
                    });
                } else {
                    out.extend_from_slice(item.varbind);
                }
            }
        }
    }

    /// The BER tag of the object's value (for SET type checks).
    pub fn value_tag(&self, obj: Obj) -> Option<u8> {
        match obj {
            Obj::Store(i) => self.store.item(i)?.value.first().copied(),
            Obj::Own(i) => self.own.tag(i),
            Obj::Live(i) => match self.live.get(i)?.1 {
                Live::SysUpTime => Some(ber::TAG_TIMETICKS),
                Live::EnableAuthenTraps
                | Live::EngineBoots
                | Live::EngineTime
                | Live::EngineMaxMessageSize => Some(ber::TAG_INTEGER),
                Live::EngineId => Some(ber::TAG_OCTET_STRING),
                _ => Some(ber::TAG_COUNTER32),
            },
        }
    }

    /// Whether the object is not served at `uptime`: a multiplexed object
    /// the snapshot served then does not have.
    pub fn absent_at(&self, obj: Obj, uptime: Duration) -> bool {
        matches!(self.variation(obj), Some(Variation::Multiplex(m)) if m.value(uptime).is_none())
    }

    /// The variation of a store object, if it has one.
    pub fn variation(&self, obj: Obj) -> Option<&Variation> {
        match obj {
            Obj::Store(i) => self.variations.get(&i),
            Obj::Own(_) | Obj::Live(_) => None,
        }
    }

    /// Whether a SET may change this object regardless of the community's
    /// write right (snmpsim's `writecache` variation).
    pub fn is_writecache(&self, obj: Obj) -> bool {
        matches!(obj, Obj::Store(i) if matches!(self.variations.get(&i), Some(Variation::WriteCache)))
    }

    /// Stores a new value (a value TLV) for a store object or an own value.
    pub fn set(&mut self, obj: Obj, value_tlv: Vec<u8>) {
        if matches!(obj, Obj::Store(_) | Obj::Own(_)) {
            self.overlay.insert(obj, value_tlv);
        }
    }
}

fn push_live(live: Live, now: &Now<'_>, engine: Option<&EngineInfo>, out: &mut Vec<u8>) {
    let c = now.counters;
    let int = |n: u32| (ber::TAG_INTEGER, u64::from(n));
    let counter = |n: u32| (ber::TAG_COUNTER32, u64::from(n));
    let (tag, v) = match live {
        Live::SysUpTime => (ber::TAG_TIMETICKS, u64::from(now.ticks())),
        Live::InPkts => counter(c.in_pkts),
        Live::OutPkts => counter(c.out_pkts),
        Live::InBadVersions => counter(c.in_bad_versions),
        Live::InBadCommunityNames => counter(c.in_bad_community_names),
        Live::InBadCommunityUses => counter(c.in_bad_community_uses),
        Live::InAsnParseErrs => counter(c.in_asn_parse_errs),
        // disabled(2): authentication-failure traps are not sent yet.
        Live::EnableAuthenTraps => (ber::TAG_INTEGER, 2),
        Live::SilentDrops => counter(c.silent_drops),
        Live::ProxyDrops => counter(c.proxy_drops),
        Live::EngineId => {
            let id = engine.map(|e| e.engine_id.as_slice()).unwrap_or_default();
            out.push(ber::TAG_OCTET_STRING);
            ber::push_len(out, id.len());
            out.extend_from_slice(id);
            return;
        }
        Live::EngineBoots => int(engine.map_or(0, |e| e.boots)),
        Live::EngineTime => int(now.uptime.as_secs().min(i32::MAX as u64) as u32),
        Live::EngineMaxMessageSize => int(engine.map_or(484, |e| e.max_message_size)),
        Live::UnknownSecurityModels => counter(c.unknown_security_models),
        Live::InvalidMsgs => counter(c.invalid_msgs),
        Live::UnknownPduHandlers => counter(c.unknown_pdu_handlers),
        Live::UnavailableContexts => counter(c.unavailable_contexts),
        Live::UnknownContexts => counter(c.unknown_contexts),
        Live::UsmUnsupportedSecLevels => counter(c.usm_unsupported_sec_levels),
        Live::UsmNotInTimeWindows => counter(c.usm_not_in_time_windows),
        Live::UsmUnknownUserNames => counter(c.usm_unknown_user_names),
        Live::UsmUnknownEngineIds => counter(c.usm_unknown_engine_ids),
        Live::UsmWrongDigests => counter(c.usm_wrong_digests),
        Live::UsmDecryptionErrors => counter(c.usm_decryption_errors),
    };
    if tag == ber::TAG_INTEGER {
        ber::push_i64(out, tag, v as i64);
    } else {
        ber::push_u64(out, tag, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::snapshot::Record;
    use crate::wire::value::Value;

    fn view(oids: &[&[u32]]) -> View {
        let records: Vec<Record> = oids
            .iter()
            .map(|o| Record {
                oid: o.to_vec(),
                value: Value::Integer(1),
                variation: None,
                line: 1,
            })
            .collect();
        View::new(
            Arc::new(Store::from_records(&records).unwrap()),
            Instant::now(),
        )
    }

    #[test]
    fn misses_are_classified_like_a_real_agent() {
        let v = view(&[
            &[1, 3, 6, 1, 2, 1, 1, 1, 0],
            &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 1],
        ]);
        // sysDescr without instance: an object, not an instance
        assert_eq!(v.get(&[1, 3, 6, 1, 2, 1, 1, 1]), Err(Missing::NoSuchObject));
        // sysDescr.1: the object exists, the instance does not
        assert_eq!(
            v.get(&[1, 3, 6, 1, 2, 1, 1, 1, 1]),
            Err(Missing::NoSuchInstance)
        );
        // ifDescr.7
        assert_eq!(
            v.get(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 7]),
            Err(Missing::NoSuchInstance)
        );
        assert_eq!(
            v.get(&[1, 3, 6, 1, 4, 1, 99, 0]),
            Err(Missing::NoSuchObject)
        );
        assert_eq!(v.get(&[1, 3, 6, 1, 2, 1, 1, 1, 0]), Ok(Obj::Store(0)));
    }

    #[test]
    fn walk_merges_live_objects_in_order() {
        let v = view(&[
            &[1, 3, 6, 1, 2, 1, 1, 1, 0],
            &[1, 3, 6, 1, 2, 1, 1, 5, 0],
            &[1, 3, 6, 1, 2, 1, 11, 1, 0],
        ]);
        let mut oid: Vec<u32> = vec![1, 3];
        let mut seen = Vec::new();
        while let Some(o) = v.next(&oid, false) {
            oid = v.oid(o).to_vec();
            seen.push((oid.clone(), o));
        }
        let oids: Vec<_> = seen.iter().map(|(o, _)| o.clone()).collect();
        let mut sorted = oids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(oids, sorted, "strictly increasing");
        assert_eq!(oids[0], vec![1, 3, 6, 1, 2, 1, 1, 1, 0]);
        assert_eq!(
            oids[1],
            vec![1, 3, 6, 1, 2, 1, 1, 3, 0],
            "sysUpTime is live"
        );
        // snmpInPkts exists in both: the live one is served, once
        let in_pkts = seen
            .iter()
            .filter(|(o, _)| o == &[1, 3, 6, 1, 2, 1, 11, 1, 0])
            .collect::<Vec<_>>();
        assert_eq!(in_pkts.len(), 1);
        assert!(matches!(in_pkts[0].1, Obj::Live(_)));
        assert_eq!(oids.len(), 2 + LIVE.len());
    }

    #[test]
    fn live_tables_are_sorted_and_v3_extends_the_base() {
        for table in [LIVE, LIVE_V3] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
        assert_eq!(&LIVE_V3[..LIVE.len()], LIVE);
    }

    #[test]
    fn engine_objects_are_live_only_with_an_engine() {
        let engine = Arc::new(EngineInfo {
            engine_id: vec![0x80, 0, 0x1f, 0x88, 5, 1, 2, 3],
            boots: 7,
            max_message_size: 65507,
        });
        let plain = view(&[&[1, 3, 6, 1, 6, 3, 10, 2, 1, 2, 0]]);
        let boots: &[u32] = &[1, 3, 6, 1, 6, 3, 10, 2, 1, 2, 0];
        assert_eq!(plain.get(boots), Ok(Obj::Store(0)));
        let v3 = view(&[&[1, 3, 6, 1, 6, 3, 10, 2, 1, 2, 0]]).with_engine(engine);
        let obj = v3.get(boots).unwrap();
        assert!(matches!(obj, Obj::Live(_)));
        let counters = Counters {
            usm_wrong_digests: 3,
            ..Counters::default()
        };
        let now = Now {
            uptime: Duration::from_secs(42),
            counters: &counters,
        };
        let mut out = Vec::new();
        v3.push_varbind(obj, &now, &mut out);
        assert_eq!(&out[out.len() - 3..], &[ber::TAG_INTEGER, 1, 7]);
        let mut out = Vec::new();
        let time = v3.get(&[1, 3, 6, 1, 6, 3, 10, 2, 1, 3, 0]).unwrap();
        v3.push_varbind(time, &now, &mut out);
        assert_eq!(&out[out.len() - 3..], &[ber::TAG_INTEGER, 1, 42]);
        let mut out = Vec::new();
        let id = v3.get(&[1, 3, 6, 1, 6, 3, 10, 2, 1, 1, 0]).unwrap();
        v3.push_varbind(id, &now, &mut out);
        assert_eq!(
            &out[out.len() - 10..],
            &[4, 8, 0x80, 0, 0x1f, 0x88, 5, 1, 2, 3]
        );
        let mut out = Vec::new();
        let wd = v3.get(&[1, 3, 6, 1, 6, 3, 15, 1, 1, 5, 0]).unwrap();
        v3.push_varbind(wd, &now, &mut out);
        assert_eq!(&out[out.len() - 3..], &[ber::TAG_COUNTER32, 1, 3]);
        assert_eq!(v3.value_tag(id), Some(ber::TAG_OCTET_STRING));
    }
}
