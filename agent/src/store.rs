//! The store: a snapshot compiled once into a sorted, BER-pre-encoded binary
//! file in the cache directory and memory-mapped read-only by every agent
//! process that serves it, so the page cache holds one copy for all of them.
//!
//! File layout (native endian, checked by the header):
//!
//! ```text
//! header   128 bytes: magic, format version, endian mark, counts, section offsets, source hash
//! arcs     u32 × total arcs         every record's OID arcs, back to back
//! entries  Entry × count            sorted by OID (numeric arc order)
//! vars     VarRef × nvars           records that carry a variation, by entry index
//! blob     bytes                    per record: the whole VarBind TLV; then variation texts
//! ```
//!
//! GET is a binary search over `entries`; GETNEXT/GETBULK walk the array.
//! Every read goes through bounds-checked accessors, so a damaged cache file
//! yields "no such object", never a panic.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};
use sha2::{Digest, Sha256};

use crate::ber;
use crate::snapshot::{self, Record, Snapshot, SnapshotError};
use crate::value::Oid;

const MAGIC: [u8; 8] = *b"ACSTORE\0";
/// Bumped whenever the layout or the encoding of any section changes.
const FORMAT_VERSION: u32 = 1;
const ENDIAN_MARK: u32 = 0x0102_0304;
const HEADER_LEN: usize = 128;

/// The record carries a variation (see the `vars` section).
pub const FLAG_VARIATION: u16 = 1;
/// sysUpTime.0: answered from the agent's own clock.
pub const FLAG_UPTIME: u16 = 2;
/// The value is Counter64, which SNMPv1 cannot carry (RFC 2576 §4.2.1).
pub const FLAG_COUNTER64: u16 = 4;
/// The value is an exception (noSuchObject/noSuchInstance/endOfMibView).
pub const FLAG_EXCEPTION: u16 = 8;

const SYS_UPTIME_0: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Header {
    magic: [u8; 8],
    version: u32,
    endian: u32,
    count: u64,
    arcs_off: u64,
    arcs_count: u64,
    entries_off: u64,
    vars_off: u64,
    vars_count: u64,
    blob_off: u64,
    blob_len: u64,
    source_hash: [u8; 32],
    reserved: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Entry {
    arcs_start: u32,
    arcs_len: u16,
    flags: u16,
    vb_off: u32,
    vb_len: u32,
    /// Offset of the value TLV inside the VarBind TLV.
    value_rel: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct VarRef {
    entry: u32,
    name_off: u32,
    name_len: u32,
    params_off: u32,
    params_len: u32,
}

/// Why a store could not be built or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a store of this version (recompile it)", path.display())]
    Format { path: PathBuf },
    #[error("{}: too large for the store format", path.display())]
    TooLarge { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Parsed records laid out as a store, ready to be written. The OID arcs
/// are not copied: they are written straight from the records.
struct Layout<'a> {
    records: &'a [Record],
    header: Header,
    entries: Vec<Entry>,
    vars: Vec<VarRef>,
    blob: Vec<u8>,
}

impl<'a> Layout<'a> {
    fn new(records: &'a [Record], source_hash: [u8; 32]) -> Option<Layout<'a>> {
        let mut arcs_total: usize = 0;
        let mut entries: Vec<Entry> = Vec::with_capacity(records.len());
        let mut vars: Vec<VarRef> = Vec::new();
        // Roughly what a varbind of a real device takes, to grow once or twice.
        let mut blob: Vec<u8> = Vec::with_capacity(records.len() * 48);
        let mut value = Vec::with_capacity(64);
        for r in records {
            value.clear();
            ber::push_value(&mut value, &r.value);
            let vb_off = u32::try_from(blob.len()).ok()?;
            ber::push_varbind(&mut blob, &r.oid, &value);
            let vb_len = u32::try_from(blob.len()).ok()? - vb_off;
            let mut flags = 0;
            if r.oid == SYS_UPTIME_0 {
                flags |= FLAG_UPTIME;
            }
            if value.first() == Some(&ber::TAG_COUNTER64) {
                flags |= FLAG_COUNTER64;
            }
            if matches!(value.first(), Some(0x80..=0x82)) {
                flags |= FLAG_EXCEPTION;
            }
            if r.variation.is_some() {
                flags |= FLAG_VARIATION;
            }
            entries.push(Entry {
                arcs_start: u32::try_from(arcs_total).ok()?,
                arcs_len: u16::try_from(r.oid.len()).ok()?,
                flags,
                vb_off,
                vb_len,
                value_rel: vb_len - value.len() as u32,
            });
            arcs_total += r.oid.len();
        }
        for (i, r) in records.iter().enumerate() {
            if let Some(v) = &r.variation {
                let name_off = u32::try_from(blob.len()).ok()?;
                blob.extend_from_slice(v.name.as_bytes());
                let params_off = u32::try_from(blob.len()).ok()?;
                blob.extend_from_slice(v.params.as_bytes());
                vars.push(VarRef {
                    entry: u32::try_from(i).ok()?,
                    name_off,
                    name_len: v.name.len() as u32,
                    params_off,
                    params_len: v.params.len() as u32,
                });
            }
        }
        let arcs_off = HEADER_LEN;
        let entries_off = align8(arcs_off + arcs_total * 4);
        let vars_off = align8(entries_off + entries.len() * size_of::<Entry>());
        let blob_off = align8(vars_off + vars.len() * size_of::<VarRef>());
        let header = Header {
            magic: MAGIC,
            version: FORMAT_VERSION,
            endian: ENDIAN_MARK,
            count: entries.len() as u64,
            arcs_off: arcs_off as u64,
            arcs_count: arcs_total as u64,
            entries_off: entries_off as u64,
            vars_off: vars_off as u64,
            vars_count: vars.len() as u64,
            blob_off: blob_off as u64,
            blob_len: blob.len() as u64,
            source_hash,
            reserved: [0; 16],
        };
        Some(Layout {
            records,
            header,
            entries,
            vars,
            blob,
        })
    }

    fn len(&self) -> usize {
        self.header.blob_off as usize + self.blob.len()
    }

    /// Writes the store file's bytes, section by section.
    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut at = 0usize;
        let put = |w: &mut dyn Write, bytes: &[u8], at: &mut usize| {
            *at += bytes.len();
            w.write_all(bytes)
        };
        let pad = |w: &mut dyn Write, to: u64, at: &mut usize| -> std::io::Result<()> {
            let n = (to as usize).saturating_sub(*at);
            *at += n;
            w.write_all(&[0u8; 8][..n])
        };
        put(w, bytemuck::bytes_of(&self.header), &mut at)?;
        for r in self.records {
            put(w, bytemuck::cast_slice(&r.oid), &mut at)?;
        }
        pad(w, self.header.entries_off, &mut at)?;
        put(w, bytemuck::cast_slice(&self.entries), &mut at)?;
        pad(w, self.header.vars_off, &mut at)?;
        put(w, bytemuck::cast_slice(&self.vars), &mut at)?;
        pad(w, self.header.blob_off, &mut at)?;
        put(w, &self.blob, &mut at)
    }
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Serialises parsed records into the store format.
pub fn encode(records: &[Record], source_hash: [u8; 32]) -> Option<Vec<u8>> {
    let layout = Layout::new(records, source_hash)?;
    let mut out = Vec::with_capacity(layout.len());
    layout.write_to(&mut out).ok()?;
    Some(out)
}

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

/// One record of a store, borrowed from the mapping.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub index: usize,
    pub oid: &'a [u32],
    /// The whole pre-encoded VarBind TLV.
    pub varbind: &'a [u8],
    /// The value TLV alone.
    pub value: &'a [u8],
    pub flags: u16,
}

impl Store {
    /// Builds a store in memory from records (tests and tools).
    pub fn from_records(records: &[Record]) -> Option<Store> {
        let bytes = encode(records, [0; 32])?;
        Store::from_bytes(bytes, None)
    }

    fn from_bytes(bytes: Vec<u8>, path: Option<PathBuf>) -> Option<Store> {
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

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The cache file this store was mapped from.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
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
        let value = varbind.get(e.value_rel as usize..)?;
        Some(Item {
            index,
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
    pub fn next_after(&self, oid: &[u32]) -> usize {
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
    pub fn variation(&self, index: usize) -> Option<(&str, &str)> {
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
    pub fn variations(&self) -> impl Iterator<Item = (usize, &str, &str)> + '_ {
        self.var_slice().unwrap_or_default().iter().filter_map(|v| {
            let (name, params) = self.variation(v.entry as usize)?;
            Some((v.entry as usize, name, params))
        })
    }

    /// Opens a compiled store file (read-only mapping).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let file = fs::File::open(path).map_err(io_err(path))?;
        // SAFETY: the mapping is read-only and the file is only ever replaced
        // by rename (never written in place), so its bytes do not change
        // under us; every access is bounds-checked.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(path))?;
        Store::with_backing(Backing::Mapped(map), Some(path.to_owned())).ok_or_else(|| {
            StoreError::Format {
                path: path.to_owned(),
            }
        })
    }
}

/// The content hash that names a compiled store.
pub fn source_hash(data: &[u8], path: &Path) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(FORMAT_VERSION.to_le_bytes());
    // The format is chosen by extension, so the same bytes under another
    // extension are another store.
    h.update(
        path.extension()
            .map(|e| e.as_encoded_bytes())
            .unwrap_or_default(),
    );
    h.update([0]);
    h.update(data);
    h.finalize().into()
}

/// The result of [`compile`]: where the store is and what parsing said.
#[derive(Debug)]
pub struct Compiled {
    pub store_path: PathBuf,
    /// Warnings from parsing (duplicates); empty when the cache was reused.
    pub warnings: Vec<snapshot::Diagnostic>,
    pub records: usize,
    /// `false` when an existing cache file was reused.
    pub built: bool,
}

/// Compiles `source` into `cache_dir` unless a store of the same content is
/// already there. The file is written to a temporary name and renamed, so a
/// reader never sees a half-written store.
pub fn compile(source: &Path, cache_dir: &Path) -> Result<Compiled, StoreError> {
    let data = fs::read(source).map_err(io_err(source))?;
    let hash = source_hash(&data, source);
    let store_path = cache_dir.join(format!("{}.store", hex::encode(&hash[..16])));
    if let Ok(existing) = Store::open(&store_path) {
        return Ok(Compiled {
            store_path,
            warnings: Vec::new(),
            records: existing.len(),
            built: false,
        });
    }
    let format =
        snapshot::Format::from_path(source).ok_or_else(|| SnapshotError::UnknownFormat {
            path: source.to_owned(),
        })?;
    let Snapshot { records, warnings } = snapshot::parse(&data, format, source)?;
    drop(data);
    let layout = Layout::new(&records, hash).ok_or_else(|| StoreError::TooLarge {
        path: source.to_owned(),
    })?;
    fs::create_dir_all(cache_dir).map_err(io_err(cache_dir))?;
    let (tmp_path, file) = tempfile_in(cache_dir).map_err(io_err(cache_dir))?;
    let written = (|| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        layout.write_to(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_data()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp_path);
        return Err(io_err(&tmp_path)(e));
    }
    fs::rename(&tmp_path, &store_path).map_err(io_err(&store_path))?;
    Ok(Compiled {
        store_path,
        warnings,
        records: records.len(),
        built: true,
    })
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let mut n = 0u32;
    loop {
        let p = dir.join(format!(".tmp-{}-{}.store", std::process::id(), n));
        match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Compiles and opens, sharing one mapping per store within a process.
pub fn load(source: &Path, cache_dir: &Path) -> Result<(Arc<Store>, Compiled), StoreError> {
    let compiled = compile(source, cache_dir)?;
    let store = Store::open(&compiled.store_path)?;
    Ok((Arc::new(store), compiled))
}

/// Sorted records → OIDs, for tests and tools.
pub fn oids(store: &Store) -> Vec<Oid> {
    (0..store.len())
        .filter_map(|i| store.item(i).map(|it| it.oid.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Variation;
    use crate::value::Value;

    fn rec(oid: &[u32], value: Value) -> Record {
        Record {
            oid: oid.to_vec(),
            value,
            variation: None,
            line: 1,
        }
    }

    fn sample() -> Store {
        let mut records = vec![
            rec(
                &[1, 3, 6, 1, 2, 1, 1, 1, 0],
                Value::OctetString(b"box".to_vec()),
            ),
            rec(&[1, 3, 6, 1, 2, 1, 1, 3, 0], Value::TimeTicks(42)),
            rec(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 10, 1], Value::Counter64(7)),
            rec(
                &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 1],
                Value::OctetString(b"eth0".to_vec()),
            ),
        ];
        records.push(Record {
            variation: Some(Variation {
                name: "writecache".into(),
                params: "value=x".into(),
            }),
            ..rec(&[1, 3, 6, 1, 4, 1, 9, 1], Value::OctetString(b"x".to_vec()))
        });
        records.sort_by(|a, b| a.oid.cmp(&b.oid));
        Store::from_records(&records).unwrap()
    }

    #[test]
    fn lookups_follow_numeric_arc_order() {
        let s = sample();
        assert_eq!(s.len(), 5);
        assert_eq!(s.find(&[1, 3, 6, 1, 2, 1, 1, 1, 0]), Some(0));
        assert_eq!(s.find(&[1, 3, 6, 1, 2, 1, 1, 1]), None);
        assert_eq!(s.next_after(&[1, 3, 6, 1, 2, 1, 1, 1]), 0);
        assert_eq!(s.next_after(&[1, 3, 6, 1, 2, 1, 1, 1, 0]), 1);
        // 2.2.1.2 sorts before 2.2.1.10
        assert_eq!(s.item(2).unwrap().oid, &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 1]);
        assert_eq!(s.next_after(&[1, 3, 6, 1, 4, 1, 9, 1]), 5);
        assert_eq!(s.next_after(&[2]), 5);
        assert!(s.item(5).is_none());
    }

    #[test]
    fn items_carry_preencoded_varbinds_and_flags() {
        let s = sample();
        let up = s.item(1).unwrap();
        assert_eq!(up.flags & FLAG_UPTIME, FLAG_UPTIME);
        assert_eq!(up.value, &[0x43, 0x01, 42]);
        let c64 = s.item(3).unwrap();
        assert_eq!(c64.flags & FLAG_COUNTER64, FLAG_COUNTER64);
        let first = s.item(0).unwrap();
        assert_eq!(
            first.varbind,
            &[
                0x30, 0x0f, 0x06, 0x08, 0x2b, 6, 1, 2, 1, 1, 1, 0, 0x04, 0x03, b'b', b'o', b'x'
            ]
        );
        assert_eq!(s.variation(4), Some(("writecache", "value=x")));
        assert_eq!(s.variation(0), None);
        assert_eq!(s.variations().count(), 1);
    }

    #[test]
    fn damaged_bytes_never_panic() {
        let mut records = Vec::new();
        for i in 0..50u32 {
            records.push(rec(&[1, 3, 6, 1, i], Value::Integer(i64::from(i))));
        }
        let good = encode(&records, [0; 32]).unwrap();
        for cut in [0, 10, 127, 128, 200, good.len() - 1] {
            assert!(Store::from_bytes(good[..cut].to_vec(), None).is_none());
        }
        // Scribble over the entries: lookups may miss but must not panic.
        let mut bad = good.clone();
        for b in bad.iter_mut().skip(HEADER_LEN).step_by(3) {
            *b = 0xff;
        }
        if let Some(s) = Store::from_bytes(bad, None) {
            for i in 0..60 {
                let _ = s.item(i);
                let _ = s.find(&[1, 3, 6, 1, i as u32]);
                let _ = s.next_after(&[1, 3, 6, 1, i as u32]);
            }
        }
    }

    #[test]
    fn compile_reuses_the_cache_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("d.snmprec");
        fs::write(
            &src,
            "1.3.6.1.2.1.1.1.0|4|hello\n1.3.6.1.2.1.1.5.0|4|name\n",
        )
        .unwrap();
        let cache = dir.path().join("cache");
        let a = compile(&src, &cache).unwrap();
        assert!(a.built);
        assert_eq!(a.records, 2);
        let b = compile(&src, &cache).unwrap();
        assert!(!b.built);
        assert_eq!(a.store_path, b.store_path);
        fs::write(&src, "1.3.6.1.2.1.1.1.0|4|changed\n").unwrap();
        let c = compile(&src, &cache).unwrap();
        assert!(c.built);
        assert_ne!(a.store_path, c.store_path);
        let s = Store::open(&c.store_path).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.item(0).unwrap().value,
            &[0x04, 7, b'c', b'h', b'a', b'n', b'g', b'e', b'd']
        );
    }
}
