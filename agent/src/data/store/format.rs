//! The store file's layout (native endian, checked by the header):
//!
//! ```text
//! header   128 bytes: magic, format version, endian mark, counts, section offsets, source hash
//! data     per piece of the source, in source order: its records' OID arcs
//!          (u32, back to back), then per record the whole VarBind TLV and its
//!          variation's name and parameters; padded to 4 bytes
//! entries  Entry × count            sorted by OID (numeric arc order)
//! vars     VarRef × nvars           records that carry a variation, by entry index
//! ```
//!
//! The header's arcs section (u32) and blob section (bytes) are both the data
//! region: an entry points at its arcs and at its varbind in it. Only the
//! entries are sorted, so a large snapshot is written piece by piece as it is
//! parsed, on every core; a record replaced by a later duplicate leaves its
//! bytes in the data, unreferenced.

use bytemuck::{Pod, Zeroable};

pub(super) const MAGIC: [u8; 8] = *b"ACSTORE\0";
/// Bumped whenever the layout or the encoding of any section changes, or
/// the way the source hash is computed.
pub(super) const FORMAT_VERSION: u32 = 3;
pub(super) const ENDIAN_MARK: u32 = 0x0102_0304;
pub(super) const HEADER_LEN: usize = 128;

/// The record carries a variation (see the `vars` section).
pub const FLAG_VARIATION: u16 = 1;
/// sysUpTime.0: answered from the agent's own clock.
pub const FLAG_UPTIME: u16 = 2;
/// The value is Counter64, which SNMPv1 cannot carry (RFC 2576 §4.2.1).
pub const FLAG_COUNTER64: u16 = 4;
/// The value is an exception (noSuchObject/noSuchInstance/endOfMibView).
pub const FLAG_EXCEPTION: u16 = 8;

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(super) struct Header {
    pub(super) magic: [u8; 8],
    pub(super) version: u32,
    pub(super) endian: u32,
    pub(super) count: u64,
    pub(super) arcs_off: u64,
    pub(super) arcs_count: u64,
    pub(super) entries_off: u64,
    pub(super) vars_off: u64,
    pub(super) vars_count: u64,
    pub(super) blob_off: u64,
    pub(super) blob_len: u64,
    pub(super) source_hash: [u8; 32],
    pub(super) reserved: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(super) struct Entry {
    pub(super) arcs_start: u32,
    pub(super) arcs_len: u16,
    pub(super) flags: u16,
    /// The whole VarBind TLV; the value TLV is found after its OID.
    pub(super) vb_off: u32,
    pub(super) vb_len: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(super) struct VarRef {
    pub(super) entry: u32,
    pub(super) name_off: u32,
    pub(super) name_len: u32,
    pub(super) params_off: u32,
    pub(super) params_len: u32,
}

/// Where the data region starts: right after the header.
pub(super) const DATA_OFF: usize = HEADER_LEN;

/// Section offsets of a store with a data region of `data_len` bytes.
pub(super) fn header(data_len: usize, count: usize, vars: usize, source_hash: [u8; 32]) -> Header {
    let entries_off = align8(DATA_OFF + data_len);
    let vars_off = align8(entries_off + count * size_of::<Entry>());
    Header {
        magic: MAGIC,
        version: FORMAT_VERSION,
        endian: ENDIAN_MARK,
        count: count as u64,
        arcs_off: DATA_OFF as u64,
        arcs_count: (data_len / 4) as u64,
        entries_off: entries_off as u64,
        vars_off: vars_off as u64,
        vars_count: vars as u64,
        blob_off: DATA_OFF as u64,
        blob_len: data_len as u64,
        source_hash,
        reserved: [0; 16],
    }
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// The length of a store file.
pub(super) fn total_len(h: &Header) -> usize {
    h.vars_off as usize + h.vars_count as usize * size_of::<VarRef>()
}
