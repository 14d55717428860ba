//! A request as the handlers see it, whatever message it came in: its
//! version, kind, request-id and varbinds ([`Request`]), filled by the
//! in-place decoder ([`super::fast`]) or from rasn's types
//! ([`super::decode`]); and why a datagram gets no answer ([`Drop`]).

use crate::wire::value::Value;

/// The message version a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2c,
    V3,
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

impl Request {
    /// No request yet (a GET in v1 without varbinds), allocating nothing.
    pub const EMPTY: Request = Request {
        version: Version::V1,
        kind: Kind::Get,
        request_id: 0,
        names: Names {
            arcs: Vec::new(),
            ends: Vec::new(),
        },
        values: Vec::new(),
    };
}

impl Default for Request {
    fn default() -> Request {
        Request::EMPTY
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
    pub(super) fn begin(&mut self) {
        self.arcs.truncate(self.ends.last().copied().unwrap_or(0));
    }

    pub(super) fn push_arc(&mut self, arc: u32) {
        self.arcs.push(arc);
    }

    pub(super) fn finish(&mut self) {
        self.ends.push(self.arcs.len());
    }
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
    /// (snmpUnknownSecurityModels, counted by SNMPv3 message
    /// processing).
    UnknownSecurityModel,
    /// SNMPv3 with privacy but no authentication (snmpInvalidMsgs, counted
    /// by SNMPv3 message processing).
    InvalidMsg,
    /// An SNMPv3 check failed on a message without the reportable flag; its
    /// usmStats/snmp counter was counted by SNMPv3 message processing.
    Unreported,
    /// Over the per-source rate limit (`cluster.rate_limit`): never looked
    /// at.
    RateLimited,
}

impl Drop {
    /// Every reason, in the order [`Drops`] keeps them.
    pub const ALL: [Drop; 9] = [
        Drop::Parse,
        Drop::BadVersion,
        Drop::BadCommunity,
        Drop::NotARequest,
        Drop::TooBig,
        Drop::UnknownSecurityModel,
        Drop::InvalidMsg,
        Drop::Unreported,
        Drop::RateLimited,
    ];

    /// The reason's name where operators read it (the `reason` label of
    /// the supervisor's metrics).
    pub const fn name(self) -> &'static str {
        match self {
            Drop::Parse => "parse",
            Drop::BadVersion => "bad_version",
            Drop::BadCommunity => "bad_community",
            Drop::NotARequest => "not_a_request",
            Drop::TooBig => "too_big",
            Drop::UnknownSecurityModel => "unknown_security_model",
            Drop::InvalidMsg => "invalid_msg",
            Drop::Unreported => "usm",
            Drop::RateLimited => "rate_limited",
        }
    }

    const fn index(self) -> usize {
        match self {
            Drop::Parse => 0,
            Drop::BadVersion => 1,
            Drop::BadCommunity => 2,
            Drop::NotARequest => 3,
            Drop::TooBig => 4,
            Drop::UnknownSecurityModel => 5,
            Drop::InvalidMsg => 6,
            Drop::Unreported => 7,
            Drop::RateLimited => 8,
        }
    }
}

/// Datagrams dropped so far, by [`Drop`] reason. Travels in heartbeats as
/// an array in the order of [`Drop::ALL`] (both ends are one build).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Drops([u64; Drop::ALL.len()]);

impl Drops {
    /// Counts one drop for `why`.
    pub fn add(&mut self, why: Drop) {
        let n = &mut self.0[why.index()];
        *n = n.wrapping_add(1);
    }

    /// Adds every count of `other` (the drops of an earlier process).
    pub fn add_all(&mut self, other: &Drops) {
        for (n, m) in self.0.iter_mut().zip(other.0) {
            *n = n.wrapping_add(m);
        }
    }

    /// The drops counted for `why`.
    pub fn get(&self, why: Drop) -> u64 {
        self.0[why.index()]
    }

    /// Every reason with its count, in the order of [`Drop::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (Drop, u64)> + '_ {
        Drop::ALL.into_iter().map(|d| (d, self.get(d)))
    }
}
