//! A device's own values: the OID → value pairs one agent is given (`values:`
//! in the fleet, and the objects `identity` derives from the device's name
//! and addresses), served on top of the shared store without copying it.
//!
//! [`Values`] is what travels to the agent process; `Own` is what a view
//! serves from: one sorted, packed overlay per view, built against that
//! view's store (a plain value takes the type the snapshot records for its
//! OID): values BER-encoded once, here, and the subtrees of the store not
//! served (the recorded address rows that `identity` replaces).
//!
//! Pure: no I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::data::snapshot::RecordType;
use crate::data::store::{FLAG_EXCEPTION, Store};
use crate::wire::ber;
use crate::wire::value::{DisplayOid, Value};

/// What an agent serves of its own on top of its snapshots: the same for
/// every view (community, context) of the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Values {
    /// Explicit values (`values:`); they win over `identity`.
    #[serde(default)]
    pub entries: Vec<ValueSpec>,
    /// The objects to derive from the device itself (`identity:`).
    #[serde(default)]
    pub identity: Option<Identity>,
}

impl Values {
    /// Nothing of its own: the snapshot alone is served.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.identity.is_none()
    }
}

/// One explicit value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueSpec {
    /// The object instance.
    pub oid: Vec<u32>,
    /// A `.snmprec` type (`2`, `4`, `4x`, `64`…); `None`: the type the
    /// snapshot records for this OID, OCTET STRING where it has none.
    #[serde(default)]
    pub kind: Option<String>,
    /// The value as a `.snmprec` record of that type writes it.
    pub value: String,
}

/// The per-device objects derived from the device itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The agent's name: sysName.0, and the seed of its MAC addresses.
    pub name: String,
    /// Its listen addresses: the rows of the address tables.
    pub addresses: Vec<IpAddr>,
    /// Serve sysName.0 as the name.
    pub sys_name: bool,
    /// Serve ipAdEntTable (and ipAddressTable where the snapshot has it)
    /// rows for the listen addresses instead of the recorded rows.
    pub ip_addresses: bool,
    /// Serve a locally administered MAC derived from the name and ifIndex
    /// as the ifPhysAddress of every interface row that has one.
    pub phys_address: bool,
}

/// One entry of an overlay: where its OID and its varbind are packed.
#[derive(Debug, Clone, Copy)]
struct Entry {
    arcs_at: u32,
    arcs_len: u16,
    /// The value's BER tag (a walk for SNMPv1 skips Counter64).
    tag: u8,
    vb_at: u32,
    vb_len: u32,
}

/// A view's own values, sorted by OID, packed into three vectors, and the
/// subtrees of the store they hide: what one device costs beyond the
/// shared store is its values and 16 bytes each. Built against one store,
/// it is kept when the view's store is swapped.
#[derive(Debug, Default)]
pub(crate) struct Own {
    arcs: Vec<u32>,
    blob: Vec<u8>,
    entries: Vec<Entry>,
    /// Subtrees of the store that are not served.
    hidden: Vec<Subtree>,
}

/// A subtree of the store: its prefix, and the first OID after it (where a
/// walk resumes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subtree {
    prefix: &'static [u32],
    after: &'static [u32],
}

impl Own {
    /// No entry and nothing hidden: the view is the store alone.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.hidden.is_empty()
    }

    /// Entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of memory the overlay holds.
    pub fn heap_bytes(&self) -> usize {
        self.arcs.capacity() * 4
            + self.blob.capacity()
            + self.entries.capacity() * size_of::<Entry>()
            + self.hidden.capacity() * size_of::<Subtree>()
    }

    /// The OID of entry `i`.
    #[inline]
    pub fn oid(&self, i: usize) -> &[u32] {
        self.entries
            .get(i)
            .and_then(|e| {
                let at = e.arcs_at as usize;
                self.arcs.get(at..at + usize::from(e.arcs_len))
            })
            .unwrap_or_default()
    }

    /// The varbind of entry `i`.
    #[inline]
    pub fn varbind(&self, i: usize) -> Option<&[u8]> {
        let e = self.entries.get(i)?;
        let at = e.vb_at as usize;
        self.blob.get(at..at + e.vb_len as usize)
    }

    /// The value's BER tag of entry `i`.
    #[inline]
    pub fn tag(&self, i: usize) -> Option<u8> {
        self.entries.get(i).map(|e| e.tag)
    }

    /// `Ok(i)`: entry `i` is `oid`; `Err(i)`: where it would be.
    #[inline]
    pub fn find(&self, oid: &[u32]) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| {
            let at = e.arcs_at as usize;
            self.arcs
                .get(at..at + usize::from(e.arcs_len))
                .unwrap_or_default()
                .cmp(oid)
        })
    }

    /// Index of the first entry strictly after `oid`.
    #[inline]
    pub fn next_after(&self, oid: &[u32]) -> usize {
        match self.find(oid) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// Whether the store's record of `oid` is hidden.
    #[inline]
    pub fn hides(&self, oid: &[u32]) -> bool {
        self.hidden_by(oid).is_some()
    }

    /// The first OID after the hidden subtree `oid` is in, if it is in one.
    #[inline]
    pub fn hidden_by(&self, oid: &[u32]) -> Option<&'static [u32]> {
        if self.hidden.is_empty() {
            return None;
        }
        self.hidden
            .iter()
            .find(|h| oid.starts_with(h.prefix))
            .map(|h| h.after)
    }

    /// Packs `map` (OID → value TLV) and the hidden subtrees.
    fn pack(map: BTreeMap<Vec<u32>, Vec<u8>>, hidden: Vec<Subtree>) -> Own {
        let mut own = Own {
            arcs: Vec::with_capacity(map.keys().map(Vec::len).sum()),
            blob: Vec::new(),
            entries: Vec::with_capacity(map.len()),
            hidden: Vec::new(),
        };
        for (oid, value) in map {
            let arcs_at = own.arcs.len() as u32;
            own.arcs.extend_from_slice(&oid);
            let vb_at = own.blob.len() as u32;
            ber::push_varbind(&mut own.blob, &oid, &value);
            own.entries.push(Entry {
                arcs_at,
                arcs_len: oid.len().min(usize::from(u16::MAX)) as u16,
                tag: value.first().copied().unwrap_or_default(),
                vb_at,
                vb_len: own.blob.len() as u32 - vb_at,
            });
        }
        own.blob.shrink_to_fit();
        own.hidden = hidden;
        own.hidden.shrink_to_fit();
        own
    }
}

/// What a view serves of its own before packing: values by OID, and the
/// subtrees of the store that are not served.
#[derive(Default)]
struct Plan {
    values: BTreeMap<Vec<u32>, Vec<u8>>,
    hide: Vec<Subtree>,
}

/// Whether `values` can be served over `store` (what the agent process
/// checks at its start): `Err((oid, why))` for the first value that does
/// not fit the type the store records for its OID.
pub fn check(store: &Store, values: &Values) -> Result<(), (Vec<u32>, String)> {
    for v in &values.entries {
        encode(store, v).map_err(|e| (v.oid.clone(), e))?;
    }
    Ok(())
}

/// The overlay of `values` over `store`. The error names the OID whose
/// value does not fit its type.
pub(crate) fn build(store: &Store, values: &Values) -> Result<Own, String> {
    if values.is_empty() {
        return Ok(Own::default());
    }
    let mut plan = Plan::default();
    if let Some(id) = &values.identity {
        identity(store, id, &mut plan);
    }
    for v in &values.entries {
        let tlv = encode(store, v).map_err(|e| format!("value of {}: {e}", DisplayOid(&v.oid)))?;
        plan.values.insert(v.oid.clone(), tlv);
    }
    Ok(Own::pack(plan.values, plan.hide))
}

/// The value TLV of one explicit value.
fn encode(store: &Store, v: &ValueSpec) -> Result<Vec<u8>, String> {
    let kind = match &v.kind {
        Some(k) => k.parse::<RecordType>()?,
        None => recorded_type(store, &v.oid)
            .or_else(|| RecordType::plain(ber::TAG_OCTET_STRING))
            .ok_or("no type")?,
    };
    if matches!(
        kind.tag,
        ber::TAG_NO_SUCH_OBJECT | ber::TAG_NO_SUCH_INSTANCE | ber::TAG_END_OF_MIB_VIEW
    ) {
        return Err(format!("type {kind} is an exception, not a value"));
    }
    let value = kind.decode(v.value.as_bytes()).map_err(|e| match &v.kind {
        Some(_) => e,
        None => format!("{e} (the type the snapshot records for it; give `type` to change it)"),
    })?;
    let mut tlv = Vec::new();
    ber::push_value(&mut tlv, &value);
    Ok(tlv)
}

/// The type of the store's record of `oid`, if it has one (not an
/// exception).
fn recorded_type(store: &Store, oid: &[u32]) -> Option<RecordType> {
    let item = store.item(store.find(oid)?)?;
    if item.flags & FLAG_EXCEPTION != 0 {
        return None;
    }
    RecordType::plain(*item.value.first()?)
}

const SYS_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 5, 0];
const IF_INDEX: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 1];
const IF_PHYS_ADDRESS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 6];
/// ipAddrEntry (RFC 1213): ipAdEntAddr(1), IfIndex(2), NetMask(3),
/// BcastAddr(4), ReasmMaxSize(5), indexed by the address.
const IP_AD_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 4, 20, 1];
const IP_AD_TABLE: Subtree = Subtree {
    prefix: IP_AD_ENTRY,
    after: &[1, 3, 6, 1, 2, 1, 4, 20, 2],
};
/// ipAddressEntry (RFC 4293), indexed by type, length and address.
const IP_ADDRESS_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 4, 34, 1];
const IP_ADDRESS_TABLE: Subtree = Subtree {
    prefix: IP_ADDRESS_ENTRY,
    after: &[1, 3, 6, 1, 2, 1, 4, 34, 2],
};
const IP_ADDRESS_PREFIX: u32 = 5;

/// A table row's value TLVs, by column.
type Columns = BTreeMap<u32, Vec<u8>>;

/// The store's records under `prefix`, in order.
fn subtree<'s>(
    store: &'s Store,
    prefix: &'s [u32],
) -> impl Iterator<Item = crate::data::store::Item<'s>> + 's {
    (store.lower_bound(prefix)..store.len())
        .map_while(move |i| store.item(i).filter(|it| it.oid.starts_with(prefix)))
}

fn tlv(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ber::push_value(&mut out, value);
    out
}

/// Adds what `id` derives to `map`.
fn identity(store: &Store, id: &Identity, plan: &mut Plan) {
    let map = &mut plan.values;
    if id.sys_name {
        map.insert(
            SYS_NAME.to_vec(),
            tlv(&Value::OctetString(id.name.as_bytes().to_vec())),
        );
    }
    let if_indexes: Vec<u32> = subtree(store, IF_INDEX)
        .filter(|it| it.oid.len() == IF_INDEX.len() + 1)
        .filter_map(|it| it.oid.last().copied())
        .collect();
    if id.phys_address {
        for &if_index in &if_indexes {
            let oid = [IF_PHYS_ADDRESS, &[if_index]].concat();
            // An interface recorded without an address (loopback, tunnel)
            // keeps having none.
            let recorded = store.find(&oid).and_then(|i| store.item(i));
            if recorded.is_some_and(|it| it.value == [ber::TAG_OCTET_STRING, 0]) {
                continue;
            }
            map.insert(
                oid,
                tlv(&Value::OctetString(mac(&id.name, if_index).to_vec())),
            );
        }
    }
    if id.ip_addresses {
        let mut addresses: Vec<IpAddr> = Vec::new();
        for a in &id.addresses {
            if !a.is_unspecified() && !addresses.contains(a) {
                addresses.push(*a);
            }
        }
        let first_if = if_indexes.first().copied().unwrap_or(1);
        ip_ad_entries(store, &addresses, first_if, map);
        ip_address_entries(store, &addresses, map);
        // The recorded rows are another device's addresses.
        plan.hide.extend([IP_AD_TABLE, IP_ADDRESS_TABLE]);
    }
}

/// The recorded rows of the table `entry`, by index.
fn rows(store: &Store, entry: &[u32]) -> BTreeMap<Vec<u32>, Columns> {
    let mut rows: BTreeMap<Vec<u32>, Columns> = BTreeMap::new();
    for it in subtree(store, entry) {
        if let (Some(&col), Some(index)) = (it.oid.get(entry.len()), it.oid.get(entry.len() + 1..))
        {
            rows.entry(index.to_vec())
                .or_default()
                .insert(col, it.value.to_vec());
        }
    }
    rows
}

/// A test of a row's index.
type RowTest<'t> = dyn Fn(&[u32]) -> bool + 't;

/// The first row whose index passes the first test that any row passes.
fn pick<'r>(rows: &'r BTreeMap<Vec<u32>, Columns>, tests: &[&RowTest]) -> Option<&'r Columns> {
    tests
        .iter()
        .find_map(|t| rows.iter().find(|(index, _)| t(index)).map(|(_, c)| c))
}

/// ipAdEntTable: one row per IPv4 address, with the interface, mask and
/// other columns of a recorded row (a loopback one for a loopback address,
/// else another).
fn ip_ad_entries(
    store: &Store,
    addresses: &[IpAddr],
    first_if: u32,
    map: &mut BTreeMap<Vec<u32>, Vec<u8>>,
) {
    let recorded = rows(store, IP_AD_ENTRY);
    for a in addresses {
        let IpAddr::V4(v4) = a else { continue };
        let loopback = v4.is_loopback();
        let template = pick(
            &recorded,
            &[&|i| (i.first() == Some(&127)) == loopback, &|_| true],
        );
        let get = |col: u32| template.and_then(|t| t.get(&col)).cloned();
        let octets = v4.octets();
        let index = octets.map(u32::from);
        let mut put = |col: u32, value: Vec<u8>| {
            map.insert([IP_AD_ENTRY, &[col], &index].concat(), value);
        };
        put(1, tlv(&Value::IpAddress(octets)));
        put(
            2,
            get(2).unwrap_or_else(|| tlv(&Value::Integer(i64::from(first_if)))),
        );
        put(
            3,
            get(3).unwrap_or_else(|| tlv(&Value::IpAddress([255, 255, 255, 0]))),
        );
        for (col, value) in template.into_iter().flatten().filter(|(c, _)| **c > 3) {
            put(*col, value.clone());
        }
    }
}

/// ipAddressTable, where the snapshot has it: one row per address with the
/// columns of a recorded row of its type (and loopback or not, as it is),
/// without a prefix.
fn ip_address_entries(store: &Store, addresses: &[IpAddr], map: &mut BTreeMap<Vec<u32>, Vec<u8>>) {
    let recorded = rows(store, IP_ADDRESS_ENTRY);
    if recorded.is_empty() {
        return;
    }
    for a in addresses {
        let (kind, octets): (u32, Vec<u8>) = match a {
            IpAddr::V4(v) => (1, v.octets().to_vec()),
            IpAddr::V6(v) => (2, v.octets().to_vec()),
        };
        let mut index = vec![kind, octets.len() as u32];
        index.extend(octets.iter().map(|b| u32::from(*b)));
        let loopback = a.is_loopback();
        let is_loopback = |i: &[u32]| match i {
            [1, 4, 127, ..] => true,
            [2, 16, rest @ ..] => rest == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            _ => false,
        };
        let Some(template) = pick(
            &recorded,
            &[
                &|i| i.first() == Some(&kind) && is_loopback(i) == loopback,
                &|i| i.first() == Some(&kind),
                &|_| true,
            ],
        ) else {
            continue;
        };
        for (&col, value) in template {
            let value = match col {
                // zeroDotZero: no prefix known (RFC 4293).
                IP_ADDRESS_PREFIX => tlv(&Value::ObjectId(vec![0, 0])),
                _ => value.clone(),
            };
            map.insert([IP_ADDRESS_ENTRY, &[col], &index].concat(), value);
        }
    }
}

/// A locally administered unicast MAC (`02:…`) derived from the device's
/// name and the interface: 40 bits of a 64-bit hash of both, so the same
/// device has the same addresses across restarts and hosts.
pub(crate) fn mac(name: &str, if_index: u32) -> [u8; 6] {
    // FNV-1a, then a SplitMix64 finaliser to spread the bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain([0]).chain(if_index.to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let b = h.to_be_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}
