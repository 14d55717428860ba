//! A compiled store as the agents read it: a read-only mapping of the cache
//! file (or an owned buffer), looked up by binary search. Every read goes
//! through bounds-checked accessors, so a damaged cache file yields "no
//! such object", never a panic.

use std::fs;
use std::path::{Path, PathBuf};

use super::format::{ENDIAN_MARK, Entry, FORMAT_VERSION, HEADER_LEN, Header, MAGIC, VarRef};
use super::{StoreError, io_err};

/// The bytes behind a store: a read-only mapping of the cache file, or an
/// owned buffer (tests, and stores built in memory).
enum Backing {
    Mapped(memmap2::Mmap),
    Owned(Vec<u64>, usize),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Owned(words, len) => &bytemuck::cast_slice(words)[..*len],
        }
    }
}

/// A compiled, read-only snapshot.
pub struct Store {
    backing: Backing,
    count: usize,
    arcs: (usize, usize),
    entries: (usize, usize),
    vars: (usize, usize),
    blob: (usize, usize),
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("count", &self.count)
            .finish()
    }
}

/// Where the value TLV starts in a VarBind TLV (`SEQUENCE { OID, value }`):
/// after the sequence's header and the whole OID TLV.
#[inline]
pub(super) fn value_start(varbind: &[u8]) -> Option<usize> {
    let (oid_at, _) = tlv_content(varbind, 0)?;
    let (oid_content, oid_len) = tlv_content(varbind, oid_at)?;
    oid_content.checked_add(oid_len)
}

/// Where the content of the TLV at `at` starts, and its length.
#[inline]
fn tlv_content(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let first = *b.get(at.checked_add(1)?)?;
    if first < 0x80 {
        return Some((at + 2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n > size_of::<usize>() {
        return None;
    }
    let len = b
        .get(at + 2..at + 2 + n)?
        .iter()
        .fold(0usize, |len, &byte| len << 8 | usize::from(byte));
    Some((at + 2 + n, len))
}

/// One record of a store, borrowed from the mapping.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The record's OID.
    pub oid: &'a [u32],
    /// The whole pre-encoded VarBind TLV.
    pub(crate) varbind: &'a [u8],
    /// The value TLV alone.
    pub value: &'a [u8],
    pub(crate) flags: u16,
}

impl Store {
    pub(super) fn from_bytes(bytes: Vec<u8>, path: Option<PathBuf>) -> Option<Store> {
        let len = bytes.len();
        let mut words = vec![0u64; len.div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len].copy_from_slice(&bytes);
        Store::with_backing(Backing::Owned(words, len), path)
    }

    fn with_backing(backing: Backing, path: Option<PathBuf>) -> Option<Store> {
        let bytes = backing.bytes();
        let header: Header = bytemuck::try_pod_read_unaligned(bytes.get(..HEADER_LEN)?).ok()?;
        if header.magic != MAGIC || header.version != FORMAT_VERSION || header.endian != ENDIAN_MARK
        {
            return None;
        }
        let section = |off: u64, n: u64, size: usize| -> Option<(usize, usize)> {
            let off = usize::try_from(off).ok()?;
            let len = usize::try_from(n).ok()?.checked_mul(size)?;
            let end = off.checked_add(len)?;
            (end <= bytes.len() && off % size.min(8) == 0).then_some((off, end))
        };
        let count = usize::try_from(header.count).ok()?;
        let store = Store {
            count,
            arcs: section(header.arcs_off, header.arcs_count, 4)?,
            entries: section(header.entries_off, header.count, size_of::<Entry>())?,
            vars: section(header.vars_off, header.vars_count, size_of::<VarRef>())?,
            blob: section(header.blob_off, header.blob_len, 1)?,
            backing,
            path,
        };
        // The casts below must succeed for a well-formed file; check once.
        store.entry_slice()?;
        store.arc_slice()?;
        store.var_slice()?;
        Some(store)
    }

    fn entry_slice(&self) -> Option<&[Entry]> {
        bytemuck::try_cast_slice(self.backing.bytes().get(self.entries.0..self.entries.1)?).ok()
    }

    fn arc_slice(&self) -> Option<&[u32]> {
        bytemuck::try_cast_slice(self.backing.bytes().get(self.arcs.0..self.arcs.1)?).ok()
    }

    fn var_slice(&self) -> Option<&[VarRef]> {
        bytemuck::try_cast_slice(self.backing.bytes().get(self.vars.0..self.vars.1)?).ok()
    }

    fn blob(&self) -> &[u8] {
        self.backing
            .bytes()
            .get(self.blob.0..self.blob.1)
            .unwrap_or_default()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the store has no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn oid_at<'a>(&self, entries: &[Entry], arcs: &'a [u32], i: usize) -> &'a [u32] {
        entries
            .get(i)
            .and_then(|e| {
                let s = e.arcs_start as usize;
                arcs.get(s..s + usize::from(e.arcs_len))
            })
            .unwrap_or_default()
    }

    /// The record at `index`.
    pub fn item(&self, index: usize) -> Option<Item<'_>> {
        let e = self.entry_slice()?.get(index)?;
        let arcs = self.arc_slice()?;
        let s = e.arcs_start as usize;
        let oid = arcs.get(s..s + usize::from(e.arcs_len))?;
        let vb_off = e.vb_off as usize;
        let varbind = self.blob().get(vb_off..vb_off + e.vb_len as usize)?;
        let value = varbind.get(value_start(varbind)?..)?;
        Some(Item {
            oid,
            varbind,
            value,
            flags: e.flags,
        })
    }

    /// Index of the first record whose OID is `>= oid` (`len()` if none).
    pub fn lower_bound(&self, oid: &[u32]) -> usize {
        let (Some(entries), Some(arcs)) = (self.entry_slice(), self.arc_slice()) else {
            return self.count;
        };
        entries.partition_point(|e| {
            let s = e.arcs_start as usize;
            arcs.get(s..s + usize::from(e.arcs_len)).unwrap_or_default() < oid
        })
    }

    /// Exact match.
    pub fn find(&self, oid: &[u32]) -> Option<usize> {
        let i = self.lower_bound(oid);
        let entries = self.entry_slice()?;
        (self.oid_at(entries, self.arc_slice()?, i) == oid && i < self.count).then_some(i)
    }

    /// Index of the first record strictly after `oid`.
    pub(crate) fn next_after(&self, oid: &[u32]) -> usize {
        let i = self.lower_bound(oid);
        match self.find_at(i, oid) {
            true => i + 1,
            false => i,
        }
    }

    fn find_at(&self, i: usize, oid: &[u32]) -> bool {
        match (self.entry_slice(), self.arc_slice()) {
            (Some(e), Some(a)) => i < self.count && self.oid_at(e, a, i) == oid,
            _ => false,
        }
    }

    /// The variation (module name, raw parameters) of a record, if any.
    pub(crate) fn variation(&self, index: usize) -> Option<(&str, &str)> {
        let vars = self.var_slice()?;
        let k = vars
            .binary_search_by_key(&u32::try_from(index).ok()?, |v| v.entry)
            .ok()?;
        let v = vars.get(k)?;
        let blob = self.blob();
        let text = |off: u32, len: u32| {
            blob.get(off as usize..off as usize + len as usize)
                .and_then(|b| std::str::from_utf8(b).ok())
        };
        Some((
            text(v.name_off, v.name_len)?,
            text(v.params_off, v.params_len)?,
        ))
    }

    /// Every record that carries a variation, as (index, name, params).
    pub(crate) fn variations(&self) -> impl Iterator<Item = (usize, &str, &str)> + '_ {
        self.var_slice().unwrap_or_default().iter().filter_map(|v| {
            let (name, params) = self.variation(v.entry as usize)?;
            Some((v.entry as usize, name, params))
        })
    }

    /// Opens a compiled store file (read-only mapping).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let file = fs::File::open(path).map_err(io_err(path))?;
        Store::from_file(&file, path)
    }

    /// Maps a compiled store from a file already open for reading: an
    /// agent process's way, given the descriptor by the supervisor, so its
    /// account needs no access to the cache directory. `path` only names
    /// the store in errors. The file may be closed once this returns.
    pub fn from_file(file: &fs::File, path: &Path) -> Result<Store, StoreError> {
        let map = crate::sys::map_read_only(file).map_err(io_err(path))?;
        Store::with_backing(Backing::Mapped(map), Some(path.to_owned())).ok_or_else(|| {
            StoreError::Format {
                path: path.to_owned(),
            }
        })
    }
}
