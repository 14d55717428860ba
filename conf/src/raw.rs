//! Stage 1: the YAML exactly as written. serde structs that refuse unknown
//! keys and keep the position of every value validation may complain about;
//! no defaults, no checks beyond types (that is [`crate::validate`]'s job).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// A whole file: the main configuration, or an included agents file (which
/// may only hold `agents` and `include`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub cluster: Option<Spanned<RawCluster>>,
    pub events: Option<Spanned<RawEvents>>,
    pub include: Option<Spanned<OneOrMany<Spanned<String>>>>,
    /// `None` entries are `- ~` items (or items recovery had to drop).
    pub agents: Option<Spanned<Vec<Spanned<Option<RawAgent>>>>>,
    /// Scheduled faults. Main file only.
    pub scenarios: Option<Spanned<Vec<Spanned<RawScenario>>>>,
}

/// One of `scenarios:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub agents: Option<Spanned<String>>,
    pub fault: Option<Spanned<String>>,
    pub arg: Option<Spanned<String>>,
    pub at: Option<Spanned<String>>,
    pub every: Option<Spanned<String>>,
    #[serde(rename = "for")]
    pub for_: Option<Spanned<String>>,
    pub jitter: Option<Spanned<String>>,
    pub seed: Option<Spanned<UInt>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub node: Option<Spanned<String>>,
    pub state_dir: Option<Spanned<String>>,
    pub cache_dir: Option<Spanned<String>>,
    pub control_socket: Option<Spanned<String>>,
    pub start_tokens: Option<Spanned<UInt>>,
    pub start_timeout: Option<Spanned<String>>,
    pub heartbeat: Option<Spanned<String>>,
    pub inactive_after: Option<Spanned<String>>,
    pub stop_timeout: Option<Spanned<String>>,
    pub agents_per_process: Option<Spanned<UInt>>,
    pub restart: Option<Spanned<RawRestart>>,
    pub probe: Option<Spanned<RawProbe>>,
    pub snmp: Option<Spanned<RawClusterSnmp>>,
    /// `cluster.metrics`: where the supervisor serves Prometheus metrics.
    pub metrics: Option<Spanned<RawClusterMetrics>>,
    pub etcd: Option<Spanned<RawEtcd>>,
    /// `cluster.max_varbinds`: most varbinds
    /// one response may carry, GETBULK is cut there. Default 1000, at least
    /// 1; each agent may override it with its own `max_varbinds`.
    pub max_varbinds: Option<Spanned<UInt>>,
    /// `cluster.user` and `cluster.group`: the
    /// account agent processes run as, a name or a numeric id. Checked to
    /// exist in /etc/passwd and /etc/group.
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    /// `cluster.memory_max`: memory limit of
    /// each agent process, a size (`64M`, `1.5GiB`, bytes); more than 0. No
    /// default (no limit); each agent may override it with its own
    /// `memory_max`.
    pub memory_max: Option<Spanned<String>>,
    /// `cluster.max_response_bytes`: the
    /// largest response datagram an agent sends, the amplification guard
    /// (a GETBULK is cut, tooBig past it). 484..=65507, default 65507.
    pub max_response_bytes: Option<Spanned<UInt>>,
    /// `cluster.rate_limit`: requests per
    /// second each agent accepts from one source address; off when absent.
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    /// `cluster.snapshot_max_loss`: the
    /// share of its records a reloaded snapshot may lose before it is
    /// refused, a percentage (`50%`).
    pub snapshot_max_loss: Option<Spanned<String>>,
    /// `cluster.cache_max_age`: compiled stores unused for longer are
    /// removed from `cache_dir`; a duration, 0 turns it off.
    pub cache_max_age: Option<Spanned<String>>,
    /// `cluster.addresses`: listen addresses
    /// missing on the host are added to an interface.
    pub addresses: Option<Spanned<RawAddresses>>,
    /// `cluster.steering`: whether agent processes receive their devices'
    /// datagrams on one socket each (a BPF program steers them there).
    pub steering: Option<Spanned<bool>>,
}

/// `addresses: { interface: lo, create: true }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAddresses {
    /// The interface the missing addresses are added to; required.
    pub interface: Option<Spanned<String>>,
    /// Whether an absent interface is created (as a dummy link).
    pub create: Option<Spanned<bool>>,
}

/// `rate_limit: { per_source: 1000, burst: 2000 }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    /// Requests per second, sustained; at least 1.
    pub per_source: Option<Spanned<UInt>>,
    /// Requests at once after a quiet spell; at least 1, default
    /// `per_source`.
    pub burst: Option<Spanned<UInt>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRestart {
    pub policy: Option<Spanned<String>>,
    pub backoff: Option<Spanned<String>>,
    pub max_restarts: Option<Spanned<UInt>>,
    pub window: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbe {
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClusterSnmp {
    pub listen: Option<Spanned<OneOrMany<Spanned<String>>>>,
    pub community: Option<Spanned<String>>,
}

/// `metrics: { listen: 127.0.0.1:9464 }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClusterMetrics {
    pub listen: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEtcd {
    pub endpoints: Option<Spanned<OneOrMany<Spanned<String>>>>,
    pub prefix: Option<Spanned<String>>,
    pub lease_ttl: Option<Spanned<String>>,
    /// Address ranges (`10.1.0.0/16`, `127.0.0.1`) this node can bind.
    pub serves: Option<Spanned<OneOrMany<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEvents {
    pub kvp: Option<Spanned<RawKvp>>,
    pub notify: Option<Spanned<Vec<Spanned<RawNotify>>>>,
    /// Dotted OID where AGENTCLUSTER-MIB is rooted (a site's own PEN).
    pub mib_root: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKvp {
    pub path: Option<Spanned<String>>,
    pub max_records: Option<Spanned<UInt>>,
}

/// One notification target (`events.notify[]` or an agent's `notify[]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    pub target: Spanned<String>,
    /// `1`, `2c` or `3`; YAML gives the numbers as integers, we read text.
    pub version: Option<Spanned<String>>,
    pub community: Option<Spanned<String>>,
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub events: Option<Spanned<Vec<Spanned<String>>>>,
    pub user: Option<Spanned<String>>,
    pub auth: Option<Spanned<RawKey>>,
    #[serde(rename = "priv")]
    pub privacy: Option<Spanned<RawKey>>,
    pub retries: Option<Spanned<UInt>>,
    pub timeout: Option<Spanned<String>>,
}

/// `{ protocol, password }` of USM authentication or privacy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    pub protocol: Spanned<String>,
    pub password: Spanned<String>,
}

/// One `agents[]` entry: an agent, or a template when `count` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgent {
    pub name: Spanned<String>,
    pub count: Option<Spanned<UInt>>,
    pub active: Option<Spanned<bool>>,
    pub listen: Option<Spanned<OneOrMany<Spanned<String>>>>,
    pub engine_id: Option<Spanned<String>>,
    pub data: Option<Spanned<String>>,
    /// `data_dir`: an snmpsim data directory, every snapshot file under it
    /// served as the community (and v3 context) of its relative path.
    pub data_dir: Option<Spanned<String>>,
    pub snmpv1: Option<Spanned<RawCommunitySection>>,
    pub snmpv2c: Option<Spanned<RawCommunitySection>>,
    pub snmpv3: Option<Spanned<RawV3>>,
    pub notify: Option<Spanned<RawAgentNotify>>,
    /// Per-agent `max_varbinds`; default: `cluster.max_varbinds`.
    pub max_varbinds: Option<Spanned<UInt>>,
    /// Per-agent `memory_max`; default: `cluster.memory_max`.
    pub memory_max: Option<Spanned<String>>,
    /// `values:`: OID → value served over the snapshot for this device only.
    pub values: Option<Spanned<OrderedMap<Spanned<String>, Spanned<RawValue>>>>,
    /// `identity: true` or a mapping of what to derive from the device.
    pub identity: Option<Spanned<RawIdentity>>,
    /// `counters: static | animate`.
    pub counters: Option<Spanned<String>>,
}

/// One of `values:`: a plain scalar (the snapshot's type for the OID), or
/// `{ type: TAG, value: V }`.
#[derive(Debug, Clone)]
pub(crate) enum RawValue {
    Plain(String),
    Typed(RawTypedValue),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTypedValue {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub value: Spanned<String>,
}

/// `identity: true|false`, or `{ sys_name, addresses, phys_address }`
/// (each a bool, default true).
#[derive(Debug, Clone)]
pub(crate) enum RawIdentity {
    All(bool),
    Some(RawIdentityParts),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentityParts {
    pub sys_name: Option<Spanned<bool>>,
    pub addresses: Option<Spanned<bool>>,
    pub phys_address: Option<Spanned<bool>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCommunitySection {
    pub communities: Spanned<RawCommunities>,
}

/// `communities: [public, private]` or
/// `communities: { public: {}, private: { data: …, write: true } }`.
#[derive(Debug, Clone)]
pub(crate) enum RawCommunities {
    List(Vec<Spanned<String>>),
    Map(Vec<(Spanned<String>, Option<RawCommunityOpts>)>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCommunityOpts {
    pub data: Option<Spanned<String>>,
    pub write: Option<Spanned<bool>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawV3 {
    pub users: Option<Spanned<Vec<Spanned<RawUser>>>>,
    pub contexts: Option<Spanned<OrderedMap<Spanned<String>, Spanned<String>>>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub name: Spanned<String>,
    pub auth: Option<Spanned<RawKey>>,
    #[serde(rename = "priv")]
    pub privacy: Option<Spanned<RawKey>>,
    pub write: Option<Spanned<bool>>,
}

/// `notify: inherit` (any word: validation checks it) or a list of targets.
#[derive(Debug, Clone)]
pub(crate) enum RawAgentNotify {
    Word(String),
    Targets(Vec<Spanned<RawNotify>>),
}

/// A non-negative integer. Its own type (rather than `u32`) so that `-1`,
/// `1.5` and `ten` get messages naming what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UInt(pub u64);

impl<'de> Deserialize<'de> for UInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = UInt;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<UInt, E> {
                Ok(UInt(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<UInt, E> {
                u64::try_from(v)
                    .map(UInt)
                    .map_err(|_| E::custom(format!("{v} is negative: expected a whole number")))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<UInt, E> {
                u64::try_from(v)
                    .map(UInt)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<UInt, E> {
                u64::try_from(v)
                    .map(UInt)
                    .map_err(|_| E::custom(format!("{v} is out of range: expected a whole number")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list, or one item written without brackets (`listen: "127.0.0.1:161"`).
/// A lone item has no position of its own: see [`crate::problem::Pos::of_or`].
#[derive(Debug, Clone, Default)]
pub(crate) struct OneOrMany<T>(pub Vec<T>);

impl<'de> Deserialize<'de> for OneOrMany<Spanned<String>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany<Spanned<String>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(item) = seq.next_element()? {
                    v.push(item);
                }
                Ok(OneOrMany(v))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![unspanned(s.to_string())]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![unspanned(v.to_string())]))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping kept in file order (the model's lists are ordered).
#[derive(Debug, Clone, Default)]
pub(crate) struct OrderedMap<K, V>(pub Vec<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for Vis<K, V> {
            type Value = OrderedMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = map.next_key()? {
                    v.push((k, map.next_value()?));
                }
                Ok(OrderedMap(v))
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}

impl<'de> Deserialize<'de> for RawCommunities {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCommunities;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of community names, or a mapping name: { data, write }")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(item) = seq.next_element()? {
                    v.push(item);
                }
                Ok(RawCommunities::List(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = map.next_key()? {
                    v.push((k, map.next_value()?));
                }
                Ok(RawCommunities::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawAgentNotify {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAgentNotify;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`inherit`, `none` or a list of notification targets")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(RawAgentNotify::Word(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(item) = seq.next_element()? {
                    v.push(item);
                }
                Ok(RawAgentNotify::Targets(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value, or a mapping { type, value }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(RawValue::Plain(s.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(RawValue::Plain(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawValue::Plain(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(RawValue::Plain(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawValue::Plain(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawTypedValue::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawValue::Typed)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawIdentity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawIdentity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or a mapping { sys_name, addresses, phys_address }")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawIdentity::All(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawIdentityParts::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawIdentity::Some)
            }
        }
        d.deserialize_any(V)
    }
}

/// A value without a position (filled in from its container's).
pub(crate) fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}

/// A value at `loc` (for structs built by hand, as legacy files are).
pub(crate) fn spanned_at<T>(value: T, loc: Location) -> Spanned<T> {
    Spanned::new(value, loc, loc)
}

/// Visits every string of an agent that a template may expand: all of them
/// but passwords and protocol names (secrets are copied as written).
pub(crate) trait TemplateStrings {
    fn each_string(&mut self, f: &mut dyn FnMut(&mut Spanned<String>));
}

impl TemplateStrings for RawAgent {
    fn each_string(&mut self, f: &mut dyn FnMut(&mut Spanned<String>)) {
        f(&mut self.name);
        if let Some(listen) = &mut self.listen {
            listen.value.0.iter_mut().for_each(&mut *f);
        }
        self.engine_id.iter_mut().for_each(&mut *f);
        self.data.iter_mut().for_each(&mut *f);
        self.data_dir.iter_mut().for_each(&mut *f);
        for section in [&mut self.snmpv1, &mut self.snmpv2c].into_iter().flatten() {
            match &mut section.value.communities.value {
                RawCommunities::List(names) => names.iter_mut().for_each(&mut *f),
                RawCommunities::Map(entries) => {
                    for (name, opts) in entries {
                        f(name);
                        if let Some(data) = opts.as_mut().and_then(|o| o.data.as_mut()) {
                            f(data);
                        }
                    }
                }
            }
        }
        if let Some(v3) = &mut self.snmpv3 {
            if let Some(users) = &mut v3.value.users {
                for u in &mut users.value {
                    f(&mut u.value.name);
                }
            }
            if let Some(contexts) = &mut v3.value.contexts {
                for (name, data) in &mut contexts.value.0 {
                    f(name);
                    f(data);
                }
            }
        }
        if let Some(values) = &mut self.values {
            for (oid, value) in &mut values.value.0 {
                f(oid);
                match &mut value.value {
                    RawValue::Plain(text) => {
                        // A plain value has no position of its own: its
                        // entry's.
                        let mut s =
                            Spanned::new(std::mem::take(text), value.referenced, value.defined);
                        f(&mut s);
                        *text = s.value;
                    }
                    RawValue::Typed(t) => f(&mut t.value),
                }
            }
        }
        if let Some(notify) = &mut self.notify
            && let RawAgentNotify::Targets(targets) = &mut notify.value
        {
            for t in targets {
                t.value.each_string(f);
            }
        }
    }
}

impl TemplateStrings for RawNotify {
    fn each_string(&mut self, f: &mut dyn FnMut(&mut Spanned<String>)) {
        f(&mut self.target);
        self.community.iter_mut().for_each(&mut *f);
        self.user.iter_mut().for_each(&mut *f);
    }
}
