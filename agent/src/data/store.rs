//! The store: a snapshot compiled once into a sorted, BER-pre-encoded binary
//! file in the cache directory and memory-mapped read-only by every agent
//! process that serves it, so the page cache holds one copy for all of them.
//!
//! File layout (native endian, checked by the header):
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
//!
//! GET is a binary search over `entries`; GETNEXT/GETBULK walk the array.
//! Every read goes through bounds-checked accessors, so a damaged cache file
//! yields "no such object", never a panic.

use std::borrow::Cow;
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use bytemuck::{Pod, Zeroable};
use sha2::{Digest, Sha256};

use crate::data::snapshot::{self, EncodedSink, Record, Snapshot, SnapshotError, Variation};
use crate::wire::ber;
use crate::wire::value::{DisplayOid, Oid};

const MAGIC: [u8; 8] = *b"ACSTORE\0";
/// Bumped whenever the layout or the encoding of any section changes, or
/// the way the source hash is computed.
const FORMAT_VERSION: u32 = 3;
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
    /// The whole VarBind TLV; the value TLV is found after its OID.
    vb_off: u32,
    vb_len: u32,
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

/// Where the data region starts: right after the header.
const DATA_OFF: usize = HEADER_LEN;

/// Why a store could not be built, before a path is put to it.
#[derive(Debug)]
enum Fail {
    Io(std::io::Error),
    /// An offset or a length outgrew the format's integers.
    TooLarge,
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Fail {
        Fail::Io(e)
    }
}

/// A store file being written, or a store being built in memory: bytes at
/// offsets, written from several threads at once, and read back.
trait Out: Sync {
    fn write_at(&self, off: usize, bytes: &[u8]) -> std::io::Result<()>;
    fn read_at(&self, off: usize, buf: &mut [u8]) -> std::io::Result<()>;
}

impl Out for fs::File {
    fn write_at(&self, off: usize, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all_at(bytes, off as u64)
    }

    fn read_at(&self, off: usize, buf: &mut [u8]) -> std::io::Result<()> {
        self.read_exact_at(buf, off as u64)
    }
}

impl Out for Mutex<Vec<u8>> {
    fn write_at(&self, off: usize, bytes: &[u8]) -> std::io::Result<()> {
        let mut v = self.lock().unwrap_or_else(PoisonError::into_inner);
        let end = off + bytes.len();
        if v.len() < end {
            v.resize(end, 0);
        }
        v[off..end].copy_from_slice(bytes);
        Ok(())
    }

    fn read_at(&self, off: usize, buf: &mut [u8]) -> std::io::Result<()> {
        let v = self.lock().unwrap_or_else(PoisonError::into_inner);
        let src = v
            .get(off..off + buf.len())
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Records being compiled, in source order: their arcs and blob bytes
/// exactly as they go into the store, and per record where they are. A
/// large snapshot is compiled piece by piece, each piece into a part that is
/// then placed in the file and reused for the next piece.
#[derive(Debug)]
pub(crate) struct Part {
    /// Every record's arcs, back to back. A parser appends a record's arcs
    /// here itself, then calls [`EncodedSink::push_record`].
    arcs: Vec<u32>,
    blob: Vec<u8>,
    recs: Vec<Rec>,
    vars: Vec<VarText>,
    /// Every record's OID is greater than the one before it.
    in_order: bool,
    /// Some offset or length did not fit the format's integers.
    too_large: bool,
    /// The BER content of an OID, for [`Part::push`].
    scratch: Vec<u8>,
}

impl Default for Part {
    fn default() -> Part {
        Part {
            arcs: Vec::new(),
            blob: Vec::new(),
            recs: Vec::new(),
            vars: Vec::new(),
            in_order: true,
            too_large: false,
            scratch: Vec::new(),
        }
    }
}

/// Where one record is: first relative to its part, once placed relative to
/// the store's sections.
#[derive(Debug, Clone, Copy)]
struct Rec {
    arcs_start: u32,
    vb_off: u32,
    vb_len: u32,
    /// Line within the piece of source (1-based), for duplicate warnings.
    line: u32,
    arcs_len: u16,
    flags: u16,
}

/// A record's variation texts in the blob.
#[derive(Debug, Clone, Copy)]
struct VarText {
    rec: u32,
    name_off: u32,
    name_len: u32,
    params_off: u32,
    params_len: u32,
}

/// Appends a BER tag and definite length (the short form inline: it is
/// nearly every one).
#[inline]
fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    if len < 0x80 {
        out.extend_from_slice(&[tag, len as u8]);
    } else {
        out.push(tag);
        ber::push_len(out, len);
    }
}

impl Part {
    /// An empty part sized for about `bytes` of snapshot text.
    pub(crate) fn for_text(bytes: usize) -> Part {
        Part {
            arcs: Vec::with_capacity(bytes / 3),
            blob: Vec::with_capacity(bytes / 2),
            ..Part::default()
        }
    }

    /// Ready for the next piece; keeps the buffers.
    fn clear(&mut self) {
        self.arcs.clear();
        self.blob.clear();
        self.recs.clear();
        self.vars.clear();
        self.in_order = true;
        self.too_large = false;
    }

    fn oid(&self, i: u32) -> &[u32] {
        self.recs
            .get(i as usize)
            .and_then(|r| {
                let s = r.arcs_start as usize;
                self.arcs.get(s..s + usize::from(r.arcs_len))
            })
            .unwrap_or_default()
    }

    /// Bytes this part takes in the data region: its arcs, then its blob,
    /// padded so the next part's arcs are aligned.
    fn region_len(&self) -> usize {
        (self.arcs.len() * 4 + self.blob.len()).next_multiple_of(4)
    }

    /// What placing needs to know of the order of the records, worked out
    /// while they are at hand: the order, if the source did not have it, and
    /// whether an OID repeats.
    fn order(&self) -> (Option<Vec<u32>>, bool) {
        if self.in_order {
            return (None, false);
        }
        let mut order: Vec<u32> = (0..self.recs.len() as u32).collect();
        // Stable, so records with the same OID stay in source order.
        order.sort_by(|&a, &b| self.oid(a).cmp(self.oid(b)));
        let repeats = order.windows(2).any(|w| self.oid(w[0]) == self.oid(w[1]));
        (Some(order), repeats)
    }

    /// Writes the part at `off` in the data region and says where its
    /// records went, as store entries in OID order; the part is left to be
    /// cleared and reused.
    fn place(
        &mut self,
        off: usize,
        (order, repeats): (Option<Vec<u32>>, bool),
        out: &dyn Out,
    ) -> Result<Placed, Fail> {
        if self.too_large {
            return Err(Fail::TooLarge);
        }
        let n = self.recs.len();
        let at = |k: usize| order.as_ref().map_or(k as u32, |o| o[k]);
        let range = (n > 0).then(|| (self.oid(at(0)).to_vec(), self.oid(at(n - 1)).to_vec()));
        out.write_at(DATA_OFF + off, bytemuck::cast_slice(&self.arcs))?;
        out.write_at(DATA_OFF + off + self.arcs.len() * 4, &self.blob)?;
        let arcs_at = off / 4;
        let base = |b: usize| u32::try_from(b).map_err(|_| Fail::TooLarge);
        let (arcs_base, blob_base) = (base(arcs_at)?, base(off + self.arcs.len() * 4)?);
        base(off + self.region_len())?;
        // Within the region checked just above, so these fit.
        let mut entries = Vec::with_capacity(n);
        let mut lines = Vec::with_capacity(n);
        for k in 0..n {
            let r = &self.recs[at(k) as usize];
            entries.push(Entry {
                arcs_start: arcs_base + r.arcs_start,
                arcs_len: r.arcs_len,
                flags: r.flags,
                vb_off: blob_base + r.vb_off,
                vb_len: r.vb_len,
            });
            lines.push(r.line);
        }
        let mut vars = self.vars.clone();
        if let Some(order) = &order {
            let mut position = vec![0u32; n];
            for (k, &i) in order.iter().enumerate() {
                position[i as usize] = k as u32;
            }
            for v in &mut vars {
                v.rec = position[v.rec as usize];
            }
            vars.sort_by_key(|v| v.rec);
        }
        for v in &mut vars {
            v.name_off += blob_base;
            v.params_off += blob_base;
        }
        Ok(Placed {
            entries,
            lines,
            vars,
            repeats,
            range,
            arcs_at,
            arcs_n: self.arcs.len(),
            line_base: 0,
        })
    }
}

impl EncodedSink for Part {
    #[inline]
    fn arcs(&mut self) -> &mut Vec<u32> {
        &mut self.arcs
    }

    /// Appends a record whose arcs are already at `arcs[arcs_start..]`;
    /// `oid_content` is their BER encoding (the OID TLV's content), `value`
    /// the value TLV, `line` the record's line within the piece.
    fn push_record(
        &mut self,
        arcs_start: usize,
        oid_content: &[u8],
        value: &[u8],
        variation: Option<&Variation>,
        line: usize,
    ) {
        let oid = self.arcs.get(arcs_start..).unwrap_or_default();
        if self.in_order
            && let Some(prev) = self.recs.last()
        {
            let s = prev.arcs_start as usize;
            self.in_order = self.arcs.get(s..s + usize::from(prev.arcs_len)) < Some(oid);
        }
        let vb_off = self.blob.len();
        let oid_tlv = ber::header_len(oid_content.len()) + oid_content.len();
        let content = oid_tlv + value.len();
        self.blob.reserve(ber::header_len(content) + content);
        push_header(&mut self.blob, ber::TAG_SEQUENCE, content);
        push_header(&mut self.blob, ber::TAG_OID, oid_content.len());
        self.blob.extend_from_slice(oid_content);
        self.blob.extend_from_slice(value);
        let vb_len = self.blob.len() - vb_off;
        let mut flags = 0;
        if oid == SYS_UPTIME_0 {
            flags |= FLAG_UPTIME;
        }
        match value.first() {
            Some(&ber::TAG_COUNTER64) => flags |= FLAG_COUNTER64,
            Some(0x80..=0x82) => flags |= FLAG_EXCEPTION,
            _ => {}
        }
        let rec_index = self.recs.len();
        if let Some(v) = variation {
            flags |= FLAG_VARIATION;
            let name_off = self.blob.len();
            self.blob.extend_from_slice(v.name.as_bytes());
            let params_off = self.blob.len();
            self.blob.extend_from_slice(v.params.as_bytes());
            let text = (|| {
                Some(VarText {
                    rec: u32::try_from(rec_index).ok()?,
                    name_off: u32::try_from(name_off).ok()?,
                    name_len: u32::try_from(v.name.len()).ok()?,
                    params_off: u32::try_from(params_off).ok()?,
                    params_len: u32::try_from(v.params.len()).ok()?,
                })
            })();
            match text {
                Some(t) => self.vars.push(t),
                None => self.too_large = true,
            }
        }
        let rec = (|| {
            Some(Rec {
                arcs_start: u32::try_from(arcs_start).ok()?,
                vb_off: u32::try_from(vb_off).ok()?,
                vb_len: u32::try_from(vb_len).ok()?,
                line: u32::try_from(line).unwrap_or(u32::MAX),
                arcs_len: u16::try_from(oid.len()).ok()?,
                flags,
            })
        })();
        self.recs.push(rec.unwrap_or_else(|| {
            self.too_large = true;
            Rec {
                arcs_start: 0,
                vb_off: 0,
                vb_len: 0,
                line: 0,
                arcs_len: 0,
                flags,
            }
        }));
    }

    /// Appends a record: its OID, value TLV and variation.
    fn push(&mut self, oid: &[u32], value: &[u8], variation: Option<&Variation>, line: usize) {
        let start = self.arcs.len();
        self.arcs.extend_from_slice(oid);
        let mut content = std::mem::take(&mut self.scratch);
        content.clear();
        ber::push_oid_content(&mut content, oid);
        self.push_record(start, &content, value, variation, line);
        self.scratch = content;
    }
}

/// A part written to the data region: its records as store entries, and
/// what the sort needs to know of them.
#[derive(Debug)]
struct Placed {
    /// In OID order; records with the same OID in source order.
    entries: Vec<Entry>,
    /// Each entry's line within its piece.
    lines: Vec<u32>,
    /// Variations, by position in `entries`.
    vars: Vec<VarText>,
    /// Some OID occurs more than once.
    repeats: bool,
    /// The least and the greatest OID; `None` without records.
    range: Option<(Vec<u32>, Vec<u32>)>,
    /// Its arcs: index of the first in the arcs section, and count.
    arcs_at: usize,
    arcs_n: usize,
    /// Lines of the source before its piece.
    line_base: usize,
}

impl Placed {
    /// The OID of entry `k`, from this part's `arcs` read back.
    fn oid<'a>(&self, arcs: &'a [u32], k: u32) -> &'a [u32] {
        self.entries
            .get(k as usize)
            .and_then(|e| {
                let s = (e.arcs_start as usize).checked_sub(self.arcs_at)?;
                arcs.get(s..s + usize::from(e.arcs_len))
            })
            .unwrap_or_default()
    }

    /// The variation of entry `k`, as a store variation of entry 0.
    fn var(&self, k: u32) -> Option<VarRef> {
        let v = self.vars[self.vars.binary_search_by_key(&k, |v| v.rec).ok()?];
        Some(VarRef {
            entry: 0,
            name_off: v.name_off,
            name_len: v.name_len,
            params_off: v.params_off,
            params_len: v.params_len,
        })
    }

    /// Reads its arcs back from the store.
    fn read_arcs(&self, out: &dyn Out) -> std::io::Result<Vec<u32>> {
        let mut arcs = vec![0u32; self.arcs_n];
        out.read_at(
            DATA_OFF + self.arcs_at * 4,
            bytemuck::cast_slice_mut(&mut arcs),
        )?;
        Ok(arcs)
    }
}

/// The offsets of the parts of a data region, handed out in source order
/// as the parts' sizes become known (from several threads).
struct Placement {
    state: Mutex<PlacementState>,
    known: Condvar,
}

struct PlacementState {
    sizes: Vec<Option<usize>>,
    offsets: Vec<Option<usize>>,
    /// Parts `..next` have offsets; `end` is where part `next` goes.
    next: usize,
    end: usize,
    /// A thread stopped (panicked): nobody waits any more.
    abandoned: bool,
}

impl Placement {
    fn new(n: usize) -> Placement {
        Placement {
            state: Mutex::new(PlacementState {
                sizes: vec![None; n],
                offsets: vec![None; n],
                next: 0,
                end: 0,
                abandoned: false,
            }),
            known: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlacementState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Part `k` takes `size` bytes.
    fn size(&self, k: usize, size: usize) {
        let mut s = self.lock();
        s.sizes[k] = Some(size);
        while let Some(&Some(size)) = s.sizes.get(s.next) {
            let (next, end) = (s.next, s.end);
            s.offsets[next] = Some(end);
            s.end += size;
            s.next += 1;
        }
        self.known.notify_all();
    }

    /// Where part `k` goes, once the parts before it have their sizes.
    fn offset(&self, k: usize) -> Option<usize> {
        let mut s = self.lock();
        loop {
            if let Some(off) = s.offsets[k] {
                return Some(off);
            }
            if s.abandoned {
                return None;
            }
            s = self.known.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn abandon(&self) {
        self.lock().abandoned = true;
        self.known.notify_all();
    }

    /// The data region's length.
    fn end(&self) -> usize {
        self.lock().end
    }
}

/// Gives up the placement if its thread unwinds, so no other waits forever.
struct AbandonOnPanic<'a>(&'a Placement);

impl Drop for AbandonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abandon();
        }
    }
}

/// A data region written, and what the index needs.
struct Built {
    placed: Vec<Placed>,
    data_len: usize,
    /// The parser's warnings.
    warnings: Vec<snapshot::Diagnostic>,
}

/// Compiles `.snmprec` text into the data region of `out`: in pieces of
/// about `piece` bytes on every core, each piece parsed into a part that is
/// placed in source order as soon as the sizes of the pieces before it are
/// known, then reused. Fails as [`snapshot::parse`] does, naming every
/// broken line.
fn compile_snmprec(
    data: &[u8],
    source: &Path,
    out: &dyn Out,
    piece: usize,
) -> Result<Built, StoreError> {
    let pieces = snapshot::snmprec_pieces(data, piece);
    let n = pieces.len();
    let placement = Placement::new(n);
    let lanes_n = threads().min(n).max(1);
    let mut lanes: Vec<Vec<(usize, &[u8])>> = (0..lanes_n).map(|_| Vec::new()).collect();
    // Dealt round robin: each thread places its piece soon after the one
    // before it was parsed by the other.
    for (k, text) in pieces.into_iter().enumerate() {
        lanes[k % lanes_n].push((k, text));
    }
    let placement = &placement;
    let mut done: Vec<_> = on_lanes(lanes, |lane| {
        let _guard = AbandonOnPanic(placement);
        let mut part = Part::for_text(piece.min(data.len()));
        lane.into_iter()
            .map(|(k, text)| {
                part.clear();
                let parsed = snapshot::compile_snmprec_piece(text, &mut part);
                placement.size(k, part.region_len());
                let order = part.order();
                let placed = match placement.offset(k) {
                    Some(off) => part.place(off, order, out),
                    // Another thread panicked; its panic goes on below.
                    None => Err(Fail::TooLarge),
                };
                (k, parsed, placed)
            })
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    done.sort_by_key(|(k, ..)| *k);
    let mut placed = Vec::with_capacity(done.len());
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let mut failed = None;
    let mut line_base = 0;
    for (_, parsed, p) in done {
        let shift = |(line, message): (usize, String)| snapshot::Diagnostic {
            file: source.to_path_buf(),
            line: line + line_base,
            message,
        };
        errors.extend(parsed.errors.into_iter().map(shift));
        warnings.extend(parsed.warnings.into_iter().map(shift));
        match p {
            Ok(mut p) => {
                p.line_base = line_base;
                placed.push(p);
            }
            Err(e) => failed = failed.or(Some(e)),
        }
        line_base += parsed.lines;
    }
    if !errors.is_empty() {
        return Err(SnapshotError::Invalid(errors).into());
    }
    match failed {
        Some(Fail::Io(e)) => Err(StoreError::Io {
            path: source.to_owned(),
            source: e,
        }),
        Some(Fail::TooLarge) => Err(StoreError::TooLarge {
            path: source.to_owned(),
        }),
        None => Ok(Built {
            placed,
            data_len: placement.end(),
            warnings,
        }),
    }
}

/// Records, sorted and unique already, into the data region of `out`.
fn place_records(records: &[Record], out: &dyn Out) -> Result<Built, Fail> {
    let mut part = Part::default();
    let mut value = Vec::with_capacity(64);
    for r in records {
        value.clear();
        ber::push_value(&mut value, &r.value);
        part.push(&r.oid, &value, r.variation.as_ref(), r.line);
    }
    let data_len = part.region_len();
    let placed = part.place(0, (None, false), out)?;
    Ok(Built {
        placed: vec![placed],
        data_len,
        warnings: Vec::new(),
    })
}

/// The index of a store: its sorted entries, in runs, and variations.
struct Index<'a> {
    /// A part's entries as they are, or those of merged parts.
    runs: Vec<Cow<'a, [Entry]>>,
    count: usize,
    vars: Vec<VarRef>,
    /// Duplicates dropped, as `(line, message)`, in OID order.
    warnings: Vec<(usize, String)>,
}

impl<'a> Index<'a> {
    /// All of a part's entries, in their order.
    fn part(&mut self, p: &'a Placed) -> Result<(), Fail> {
        for v in &p.vars {
            self.vars.push(VarRef {
                entry: u32::try_from(self.count + v.rec as usize).map_err(|_| Fail::TooLarge)?,
                name_off: v.name_off,
                name_len: v.name_len,
                params_off: v.params_off,
                params_len: v.params_len,
            });
        }
        self.count += p.entries.len();
        self.runs.push(Cow::Borrowed(&p.entries));
        Ok(())
    }
}

/// A record as (part, position in the part's entries).
type At = (u32, u32);

/// The index of placed parts. With `sort` false the records are taken in
/// the order given (known to be sorted and unique). Otherwise the parts are
/// cut into groups where all OIDs before a cut sort below all OIDs after
/// it; a part alone, without repeats, goes as it is, and the records of a
/// group (their arcs read back from `out`) are merged and stripped of
/// repeats, groups on every core at once: of the records with one OID the
/// one read last is kept, each dropped one named in a warning.
fn index<'a>(placed: &'a [Placed], out: &dyn Out, sort: bool) -> Result<Index<'a>, Fail> {
    let mut index = Index {
        runs: Vec::with_capacity(placed.len()),
        count: 0,
        vars: Vec::new(),
        warnings: Vec::new(),
    };
    if !sort {
        for p in placed {
            index.part(p)?;
        }
        return Ok(index);
    }
    // A group ends where all before it sort below all after it.
    let mut below: Vec<Option<&[u32]>> = vec![None; placed.len() + 1];
    for k in (0..placed.len()).rev() {
        let lo = placed[k].range.as_ref().map(|(lo, _)| lo.as_slice());
        below[k] = match (lo, below[k + 1]) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let mut groups = Vec::new();
    let mut start = 0;
    let mut hi: Option<&[u32]> = None;
    for k in 0..placed.len() {
        if let Some((_, h)) = &placed[k].range {
            hi = hi.max(Some(h.as_slice()));
        }
        let ends = match (hi, below[k + 1]) {
            (Some(h), Some(b)) => h < b,
            _ => true,
        };
        if ends {
            groups.push(&placed[start..=k]);
            start = k + 1;
        }
    }
    // Groups to merge, dealt to every core; each merged on its own.
    let merging: Vec<usize> = (0..groups.len())
        .filter(|&g| {
            let mut filled = groups[g].iter().filter(|p| !p.entries.is_empty());
            match (filled.next(), filled.next()) {
                (Some(p), None) => p.repeats,
                (first, second) => first.is_some() && second.is_some(),
            }
        })
        .collect();
    let lanes_n = threads().min(merging.len()).max(1);
    let mut lanes: Vec<Vec<usize>> = (0..lanes_n).map(|_| Vec::new()).collect();
    for (k, &g) in merging.iter().enumerate() {
        lanes[k % lanes_n].push(g);
    }
    let mut merged: Vec<Option<Result<Merged, Fail>>> = (0..groups.len()).map(|_| None).collect();
    for (g, m) in on_lanes(lanes, |lane| {
        lane.into_iter()
            .map(|g| (g, merge_group(groups[g], out)))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    {
        merged[g] = Some(m);
    }
    for (group, m) in groups.into_iter().zip(merged) {
        match m {
            Some(m) => {
                let m = m?;
                for mut v in m.vars {
                    v.entry = u32::try_from(index.count + v.entry as usize)
                        .map_err(|_| Fail::TooLarge)?;
                    index.vars.push(v);
                }
                index.warnings.extend(m.warnings);
                index.count += m.entries.len();
                index.runs.push(Cow::Owned(m.entries));
            }
            None => {
                for p in group.iter().filter(|p| !p.entries.is_empty()) {
                    index.part(p)?;
                }
            }
        }
    }
    Ok(index)
}

/// A group of parts merged: its entries and variations (numbered from the
/// group's first entry), and the duplicates dropped.
struct Merged {
    entries: Vec<Entry>,
    vars: Vec<VarRef>,
    warnings: Vec<(usize, String)>,
}

/// The records of overlapping parts in OID order, each OID once.
fn merge_group(group: &[Placed], out: &dyn Out) -> Result<Merged, Fail> {
    let arcs: Vec<Vec<u32>> = group
        .iter()
        .map(|p| p.read_arcs(out))
        .collect::<Result<_, _>>()?;
    let oid = |(p, k): At| group[p as usize].oid(&arcs[p as usize], k);
    let line = |(p, k): At| {
        let part = &group[p as usize];
        part.line_base + part.lines.get(k as usize).map_or(0, |&l| l as usize)
    };
    let mut order: Vec<At> = Vec::new();
    let mut runs = Vec::with_capacity(group.len() + 1);
    for (p, part) in group.iter().enumerate() {
        runs.push(order.len());
        order.extend((0..part.entries.len() as u32).map(|k| (p as u32, k)));
    }
    runs.push(order.len());
    // Merge neighbouring runs, pairwise, until one is left.
    let mut tmp: Vec<At> = Vec::new();
    while runs.len() > 2 {
        let mut next = Vec::with_capacity(runs.len() / 2 + 2);
        let mut k = 0;
        while k + 2 < runs.len() {
            let (a, b, c) = (runs[k], runs[k + 1], runs[k + 2]);
            merge(&mut order[a..c], b - a, &mut tmp, oid);
            next.push(a);
            k += 2;
        }
        if k + 1 < runs.len() {
            next.push(runs[k]);
        }
        next.push(order.len());
        runs = next;
    }
    // Repeats are neighbours now, in source order: keep the last of each.
    let mut m = Merged {
        entries: Vec::with_capacity(order.len()),
        vars: Vec::new(),
        warnings: Vec::new(),
    };
    let keep = |m: &mut Merged, (p, k): At| -> Result<(), Fail> {
        let part = &group[p as usize];
        if let Some(v) = part.var(k) {
            m.vars.push(VarRef {
                entry: u32::try_from(m.entries.len()).map_err(|_| Fail::TooLarge)?,
                ..v
            });
        }
        m.entries.extend(part.entries.get(k as usize));
        Ok(())
    };
    let mut kept: Option<At> = None;
    for at in order {
        if let Some(prev) = kept {
            if oid(prev) == oid(at) {
                let (later, replaced) = (line(at), line(prev));
                m.warnings.push((
                    later,
                    format!(
                        "duplicate OID {}: line {later} replaces line {replaced}",
                        DisplayOid(oid(at)),
                    ),
                ));
            } else {
                keep(&mut m, prev)?;
            }
        }
        kept = Some(at);
    }
    if let Some(last) = kept {
        keep(&mut m, last)?;
    }
    Ok(m)
}

/// Merges the sorted runs `v[..mid]` and `v[mid..]` in place, stably (of
/// equal keys, those of the first run first). Only the overlap moves: the
/// head of the first run that sorts before the second, and the tail of the
/// second that sorts after the first, stay where they are.
fn merge<'a>(v: &mut [At], mid: usize, tmp: &mut Vec<At>, key: impl Fn(At) -> &'a [u32]) {
    let (Some(&last_a), Some(&first_b)) = (mid.checked_sub(1).and_then(|i| v.get(i)), v.get(mid))
    else {
        return;
    };
    let (last_a, first_b) = (key(last_a), key(first_b));
    if last_a <= first_b {
        return;
    }
    let lo = v[..mid].partition_point(|&x| key(x) <= first_b);
    let hi = mid + v[mid..].partition_point(|&x| key(x) < last_a);
    tmp.clear();
    let (a, b) = (&v[lo..mid], &v[mid..hi]);
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if key(b[j]) < key(a[i]) {
            tmp.push(b[j]);
            j += 1;
        } else {
            tmp.push(a[i]);
            i += 1;
        }
    }
    tmp.extend_from_slice(&a[i..]);
    tmp.extend_from_slice(&b[j..]);
    v[lo..hi].copy_from_slice(tmp);
}

/// Section offsets of a store with a data region of `data_len` bytes.
fn header(data_len: usize, count: usize, vars: usize, source_hash: [u8; 32]) -> Header {
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
fn total_len(h: &Header) -> usize {
    h.vars_off as usize + h.vars_count as usize * size_of::<VarRef>()
}

/// Writes the entries and vars sections, then the header (last, so a file
/// cut short never passes for a store).
fn write_index(out: &dyn Out, index: &Index, h: &Header) -> std::io::Result<()> {
    let mut at = h.entries_off as usize;
    for run in &index.runs {
        out.write_at(at, bytemuck::cast_slice(run))?;
        at += run.len() * size_of::<Entry>();
    }
    out.write_at(h.vars_off as usize, bytemuck::cast_slice(&index.vars))?;
    out.write_at(0, bytemuck::bytes_of(h))
}

/// The bytes of a store built in memory.
fn finish_in_memory(
    out: Mutex<Vec<u8>>,
    built: &Built,
    sort: bool,
    source_hash: [u8; 32],
) -> Result<(Vec<u8>, Index<'_>), Fail> {
    let index = index(&built.placed, &out, sort)?;
    let h = header(built.data_len, index.count, index.vars.len(), source_hash);
    write_index(&out, &index, &h)?;
    let mut bytes = out.into_inner().unwrap_or_else(PoisonError::into_inner);
    bytes.resize(total_len(&h), 0);
    Ok((bytes, index))
}

/// Serialises parsed records into the store format, in the order given.
pub fn encode(records: &[Record], source_hash: [u8; 32]) -> Option<Vec<u8>> {
    let out = Mutex::new(Vec::new());
    let built = place_records(records, &out).ok()?;
    finish_in_memory(out, &built, false, source_hash)
        .ok()
        .map(|(bytes, _)| bytes)
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

/// Where the value TLV starts in a VarBind TLV (`SEQUENCE { OID, value }`):
/// after the sequence's header and the whole OID TLV.
#[inline]
fn value_start(varbind: &[u8]) -> Option<usize> {
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
        let value = varbind.get(value_start(varbind)?..)?;
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

/// The source is hashed in pieces of this size, each on its own, and the
/// store is named by the hash of the pieces' hashes: the pieces are hashed
/// on every core at once, and the name does not depend on how many cores
/// there are.
const HASH_PIECE: usize = 1 << 20;

/// From this size on, a source is read and hashed by several threads.
const PARALLEL_READ_FROM: u64 = 4 << 20;

/// How many threads one compile uses.
pub(crate) fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8)
}

/// Runs `work` once per lane, lanes `1..` on threads of their own and lane 0
/// on this one; the results in lane order.
pub(crate) fn on_lanes<T: Send, R: Send>(lanes: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    let work = &work;
    std::thread::scope(|scope| {
        let mut lanes = lanes.into_iter();
        let first = lanes.next();
        let others: Vec<_> = lanes.map(|lane| scope.spawn(move || work(lane))).collect();
        let mut out = Vec::with_capacity(others.len() + 1);
        out.extend(first.map(work));
        for h in others {
            // Nothing here panics on input; if it did, the panic goes on
            // here as it would have on one thread.
            out.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        out
    })
}

/// The name of a store from the digests of the source's pieces.
fn key(len: usize, path: &Path, digests: &[[u8; 32]]) -> [u8; 32] {
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
    h.update((len as u64).to_le_bytes());
    for d in digests {
        h.update(d);
    }
    h.finalize().into()
}

/// Digests of `pieces` (index, bytes), on all lanes.
fn digests<'a>(pieces: impl Iterator<Item = (usize, &'a [u8])>, count: usize) -> Vec<[u8; 32]> {
    let n = threads().min(count).max(1);
    let mut lanes: Vec<Vec<(usize, &[u8])>> = (0..n).map(|_| Vec::new()).collect();
    for (k, piece) in pieces {
        lanes[k % n].push((k, piece));
    }
    let mut out = vec![[0u8; 32]; count];
    for lane in on_lanes(lanes, |lane| {
        lane.into_iter()
            .map(|(k, piece)| (k, Sha256::digest(piece).into()))
            .collect::<Vec<(usize, [u8; 32])>>()
    }) {
        for (k, d) in lane {
            out[k] = d;
        }
    }
    out
}

/// The content hash that names a compiled store.
pub fn source_hash(data: &[u8], path: &Path) -> [u8; 32] {
    let count = data.len().div_ceil(HASH_PIECE);
    key(
        data.len(),
        path,
        &digests(data.chunks(HASH_PIECE).enumerate(), count),
    )
}

/// Reads a snapshot file and computes its content hash; a large file is read
/// and hashed piece by piece on every core (each piece hashed while it is
/// still in the cache).
fn read_source(path: &Path) -> std::io::Result<(Vec<u8>, [u8; 32])> {
    let file = fs::File::open(path)?;
    let meta = file.metadata()?;
    let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    let whole = |file: &fs::File| -> std::io::Result<(Vec<u8>, [u8; 32])> {
        let mut data = Vec::with_capacity(len.min(PARALLEL_READ_FROM as usize));
        (&*file).read_to_end(&mut data)?;
        let hash = source_hash(&data, path);
        Ok((data, hash))
    };
    if !meta.is_file() || meta.len() < PARALLEL_READ_FROM {
        return whole(&file);
    }
    let mut data = vec![0u8; len];
    let count = len.div_ceil(HASH_PIECE);
    let n = threads().min(count);
    let mut lanes: Vec<Vec<(usize, &mut [u8])>> = (0..n).map(|_| Vec::new()).collect();
    for (k, piece) in data.chunks_mut(HASH_PIECE).enumerate() {
        lanes[k % n].push((k, piece));
    }
    let file = &file;
    let mut digests = vec![[0u8; 32]; count];
    for lane in on_lanes(lanes, |lane| {
        lane.into_iter()
            .map(|(k, piece)| {
                file.read_exact_at(piece, (k * HASH_PIECE) as u64)?;
                Ok((k, Sha256::digest(&*piece).into()))
            })
            .collect::<std::io::Result<Vec<(usize, [u8; 32])>>>()
    }) {
        for (k, d) in lane? {
            digests[k] = d;
        }
    }
    // Grown since we looked: read it as a whole instead.
    if FileExt::read_at(file, &mut [0u8; 1], meta.len())? != 0 {
        return whole(file);
    }
    Ok((data, key(len, path, &digests)))
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

/// A `.snmprec` file is compiled in pieces of about this size, as many at
/// once as there are cores.
const COMPILE_PIECE: usize = 1 << 20;

/// Compiles `source` into `cache_dir` unless a store of the same content is
/// already there. The file is written to a temporary name and renamed, so a
/// reader never sees a half-written store.
pub fn compile(source: &Path, cache_dir: &Path) -> Result<Compiled, StoreError> {
    let (data, hash) = read_source(source).map_err(io_err(source))?;
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
    fs::create_dir_all(cache_dir).map_err(io_err(cache_dir))?;
    let (tmp_path, file) = tempfile_in(cache_dir).map_err(io_err(cache_dir))?;
    let written = write_store(data, format, source, &file, &tmp_path, hash);
    drop(file);
    let written = written.and_then(|w| {
        fs::rename(&tmp_path, &store_path).map_err(io_err(&store_path))?;
        Ok(w)
    });
    let (records, warnings) = written.inspect_err(|_| {
        let _ = fs::remove_file(&tmp_path);
    })?;
    Ok(Compiled {
        store_path,
        warnings,
        records,
        built: true,
    })
}

/// Compiles snapshot text into `file` (at `path`, a new file) and syncs it
/// to the disk: the number of records and the warnings.
fn write_store(
    data: Vec<u8>,
    format: snapshot::Format,
    source: &Path,
    file: &fs::File,
    path: &Path,
    source_hash: [u8; 32],
) -> Result<(usize, Vec<snapshot::Diagnostic>), StoreError> {
    let fail = |e: Fail| match e {
        Fail::Io(e) => io_err(path)(e),
        Fail::TooLarge => StoreError::TooLarge {
            path: source.to_owned(),
        },
    };
    // `.snmprec` is compiled straight into the file, on every core; the
    // others go through records (sorted and unique already).
    let (built, sort) = match format {
        snapshot::Format::Snmprec => (compile_snmprec(&data, source, file, COMPILE_PIECE)?, true),
        _ => {
            let Snapshot { records, warnings } = snapshot::parse(&data, format, source)?;
            let mut built = place_records(&records, file).map_err(fail)?;
            built.warnings = warnings;
            (built, false)
        }
    };
    // The data region goes to the disk (and the source is freed) while the
    // index is made.
    let (index, synced) = std::thread::scope(|scope| {
        let sync = scope.spawn(move || {
            drop(data);
            file.sync_data()
        });
        let index = index(&built.placed, file, sort);
        let synced = sync.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (index, synced)
    });
    synced.map_err(io_err(path))?;
    let index = index.map_err(fail)?;
    let h = header(built.data_len, index.count, index.vars.len(), source_hash);
    write_index(file, &index, &h)
        .and_then(|()| file.set_len(total_len(&h) as u64))
        .and_then(|()| file.sync_data())
        .map_err(io_err(path))?;
    let mut warnings = built.warnings;
    warnings.extend(
        index
            .warnings
            .into_iter()
            .map(|(line, message)| snapshot::Diagnostic {
                file: source.to_owned(),
                line,
                message,
            }),
    );
    Ok((index.count, warnings))
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let mut n = 0u32;
    loop {
        let p = dir.join(format!(".tmp-{}-{}.store", std::process::id(), n));
        match fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)
        {
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
    use crate::data::snapshot::Variation;
    use crate::wire::value::Value;

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
    fn values_are_found_behind_long_lengths() {
        let long_oid: Vec<u32> = std::iter::once(1)
            .chain(std::iter::repeat_n(16384, 100))
            .collect();
        let mut records = vec![
            rec(&[1, 3, 6, 1, 1], Value::OctetString(vec![b'a'; 200])),
            rec(&[1, 3, 6, 1, 2], Value::OctetString(vec![b'b'; 70_000])),
            rec(&long_oid, Value::Integer(-5)),
        ];
        records.sort_by(|a, b| a.oid.cmp(&b.oid));
        let s = Store::from_records(&records).unwrap();
        for (i, r) in records.iter().enumerate() {
            let it = s.item(i).unwrap();
            let mut value = Vec::new();
            ber::push_value(&mut value, &r.value);
            assert_eq!(it.value, value, "{i}");
            let mut varbind = Vec::new();
            ber::push_varbind(&mut varbind, &r.oid, &value);
            assert_eq!(it.varbind, varbind, "{i}");
            assert_eq!(it.oid, r.oid);
        }
        assert_eq!(value_start(&[0x30, 0x84, 0xff]), None);
        assert_eq!(value_start(&[0x30, 0x89, 0, 0, 0, 0, 0, 0, 0, 0, 1]), None);
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

    /// `.snmprec` text with every kind of record, out of order, with
    /// duplicates near and far (three of one OID), and lines that only the
    /// general parser reads (variations, escapes, text under a hex tag).
    fn mixed_snmprec() -> String {
        let mut t = String::from("# a recording\n\n");
        for i in (0..40u32).rev() {
            t.push_str(&format!("1.3.6.1.2.1.2.2.1.2.{i}|4|eth{i}\n"));
        }
        for i in 0..300u32 {
            t.push_str(&format!(
                "1.3.6.1.2.1.31.1.1.1.6.{i}|70|{}\n",
                u64::MAX - u64::from(i)
            ));
            t.push_str(&format!(
                "1.3.6.1.2.1.31.1.1.1.{}.{}|2|-{i}\n",
                i % 3,
                i * 997
            ));
        }
        t.push_str(concat!(
            "1.3.6.1.2.1.1.3.0|67|6257926\n",
            "1.3.6.1.2.1.1.1.0|4| leading space kept\r\n",
            "  1.3.6.1.2.1.1.4.0|4x|52 \n",
            "1.3.6.1.2.1.1.5.0|4x|Juniper\n",
            "1.3.6.1.2.1.1.6.0|4e|a\\x41\\n\n",
            "1.3.6.1.2.1.1.7.0|2:numeric|min=1,max=9\n",
            "1.3.6.1.2.1.1.8.0|4:writecache|value=abc\n",
            ".1.3.6.1.2.1.1.9.0|6|.1.3.6.1.4.1.2011.2.89.5\n",
            "1.3.6.1.2.1.1.10.0|64|10.0.0.1\n",
            "1.3.6.1.2.1.1.11.0|64x|0a000002\n",
            "1.3.6.1.2.1.1.12.0|64|abcd\n",
            "1.3.6.1.2.1.1.13.0|65|4294967295\n",
            "1.3.6.1.2.1.1.14.0|66|+7\n",
            "1.3.6.1.2.1.1.15.0|68x|0102\n",
            "1.3.6.1.2.1.1.16.0|5|\n",
            "1.3.6.1.2.1.1.17.0|128|\n",
            "1.3.6.1.2.1.1.18.0|129|\n",
            "1.3.6.1.2.1.1.19.0|130|\n",
            "1.3.6.1.2.1.1.20.0|004|a|b|c\n",
            "2.999.4294967295.128.16384.2097152|2|1\n",
            "7|2|1\n",
            "0|4|\n",
            "1.3.6.1.2.1.1.1.0|4|second\n",
        ));
        for i in 0..40u32 {
            t.push_str(&format!("1.3.6.1.2.1.2.2.1.2.{i}|4x|{:02x}\n", i));
        }
        t.push_str("1.3.6.1.2.1.1.1.0|4|third\n");
        t.push_str("1.3.6.1.2.1.1.3.0|67|1");
        t
    }

    /// A `.snmprec` text compiled in pieces of `piece` bytes, as `compile`
    /// does, and the warnings.
    fn compiled_in_pieces(text: &str, piece: usize) -> (Store, Vec<String>) {
        let out = Mutex::new(Vec::new());
        let built = compile_snmprec(text.as_bytes(), Path::new("t.snmprec"), &out, piece).unwrap();
        let (bytes, index) = finish_in_memory(out, &built, true, [0; 32]).unwrap();
        let mut warnings = built.warnings.clone();
        warnings.extend(
            index
                .warnings
                .into_iter()
                .map(|(line, message)| snapshot::Diagnostic {
                    file: "t.snmprec".into(),
                    line,
                    message,
                }),
        );
        let store = Store::from_bytes(bytes, None).unwrap();
        (store, warnings.iter().map(|w| w.to_string()).collect())
    }

    fn assert_same(a: &Store, b: &Store) {
        assert_eq!(a.len(), b.len());
        for i in 0..a.len() {
            let (x, y) = (a.item(i).unwrap(), b.item(i).unwrap());
            assert_eq!(
                (x.oid, x.varbind, x.value, x.flags),
                (y.oid, y.varbind, y.value, y.flags),
                "record {i}"
            );
            assert_eq!(a.variation(i), b.variation(i), "record {i}");
        }
        assert!(a.variations().eq(b.variations()));
    }

    /// `.snmprec` text as the general parser reads it: the snapshot, its
    /// store and its warnings.
    fn by_the_general_parser(text: &str) -> (Snapshot, Store, Vec<String>) {
        let snap = snapshot::parse(
            text.as_bytes(),
            snapshot::Format::Snmprec,
            Path::new("t.snmprec"),
        )
        .unwrap();
        let store = Store::from_records(&snap.records).unwrap();
        let warnings = snap.warnings.iter().map(|w| w.to_string()).collect();
        (snap, store, warnings)
    }

    #[test]
    fn snmprec_compiled_in_pieces_is_the_store_of_its_records() {
        let text = mixed_snmprec();
        let (snap, expect, expect_warnings) = by_the_general_parser(&text);
        assert!(expect_warnings.len() > 40, "{expect_warnings:?}");
        for piece in [1, 7, 64, 500, 4096, usize::MAX] {
            let (store, warnings) = compiled_in_pieces(&text, piece);
            assert_same(&store, &expect);
            assert_eq!(warnings, expect_warnings, "pieces of {piece}");
        }
        // Sorted input takes no sort at all, and gives the same store.
        let mut sorted = Vec::new();
        snapshot::write(&snap.records, snapshot::Format::Snmprec, &mut sorted).unwrap();
        let sorted = String::from_utf8(sorted).unwrap();
        for piece in [1, 100, usize::MAX] {
            let (store, warnings) = compiled_in_pieces(&sorted, piece);
            assert_same(&store, &expect);
            assert!(warnings.is_empty());
        }
    }

    #[test]
    fn snmprec_in_any_order_compiled_in_any_pieces_is_the_store_of_its_records() {
        // The same cases every run.
        let mut rng = crate::util::xorshift::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut rand = move |n: u64| rng.below(n);
        for case in 0..40 {
            let lines = 1 + rand(300);
            let spread = 1 + rand(if case % 2 == 0 { 20 } else { 2000 });
            let mut text = String::new();
            let mut run = rand(spread);
            for n in 0..lines {
                // runs of ascending OIDs from random starting points
                run = if rand(8) == 0 { rand(spread) } else { run + 1 };
                text.push_str(&format!("1.3.6.1.{}.{}|2|{n}\n", run % 7, run));
            }
            let (_, expect, expect_warnings) = by_the_general_parser(&text);
            for _ in 0..4 {
                let piece = 1 + rand(text.len() as u64 / 3 + 1) as usize;
                let (store, warnings) = compiled_in_pieces(&text, piece);
                assert_same(&store, &expect);
                assert_eq!(warnings, expect_warnings, "case {case}, pieces of {piece}");
            }
        }
    }

    #[test]
    fn snmprec_compiled_in_pieces_names_broken_lines_as_parse_does() {
        let mut text = mixed_snmprec();
        text.push_str("\n1.3.6.1.9|2|x\nnot a record\n1.3.6.1.10|99|1\n");
        text.insert_str(0, "1.3..6|2|1\n");
        let Err(SnapshotError::Invalid(expect)) = snapshot::parse(
            text.as_bytes(),
            snapshot::Format::Snmprec,
            Path::new("t.snmprec"),
        ) else {
            panic!("parses");
        };
        assert_eq!(expect.len(), 4);
        for piece in [1, 50, usize::MAX] {
            let out = Mutex::new(Vec::new());
            match compile_snmprec(text.as_bytes(), Path::new("t.snmprec"), &out, piece) {
                Err(StoreError::Snapshot(SnapshotError::Invalid(got))) => assert_eq!(got, expect),
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("compiles"),
            }
        }
    }

    #[test]
    fn merge_moves_only_the_overlap_and_is_stable() {
        let keys: Vec<[u32; 1]> = vec![[5], [1], [3], [3], [2], [4], [9], [3]];
        let key = |(_, i): At| &keys[i as usize][..];
        // runs [1 3 3 5] and [2 3 4 9]
        let mut v: Vec<At> = vec![
            (0, 1),
            (0, 2),
            (0, 3),
            (0, 0),
            (0, 4),
            (0, 7),
            (0, 5),
            (0, 6),
        ];
        let mut tmp = Vec::new();
        merge(&mut v, 4, &mut tmp, key);
        assert_eq!(
            v,
            vec![
                (0, 1),
                (0, 4),
                (0, 2),
                (0, 3),
                (0, 7),
                (0, 5),
                (0, 0),
                (0, 6)
            ]
        );
        let mut w: Vec<At> = vec![(0, 1), (0, 4), (0, 7), (0, 6)];
        merge(&mut w, 2, &mut tmp, key);
        assert_eq!(w, vec![(0, 1), (0, 4), (0, 7), (0, 6)]);
    }

    /// Compiles every `.snmprec` under `$AGENTCLUSTER_SNAPSHOT_CORPUS`
    /// (default `/tmp/sdx`, snmpsim-data unpacked) and checks each store
    /// against the one built from the records `snapshot::parse` reads. Run
    /// with `cargo test --release -p agentcluster-agent
    /// store::tests::corpus_compiles_as_its_records -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs the snmpsim-data corpus on disk"]
    fn corpus_compiles_as_its_records() {
        let dir = std::env::var_os("AGENTCLUSTER_SNAPSHOT_CORPUS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/sdx"));
        let mut files = Vec::new();
        let mut dirs = vec![dir];
        while let Some(d) = dirs.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "snmprec") {
                    files.push(p);
                }
            }
        }
        files.sort();
        assert!(!files.is_empty());
        let cache = tempfile::tempdir().unwrap();
        for f in &files {
            let data = fs::read(f).unwrap();
            let Ok(snap) = snapshot::parse(&data, snapshot::Format::Snmprec, f) else {
                assert!(compile(f, cache.path()).is_err(), "{}", f.display());
                continue;
            };
            let expect = Store::from_records(&snap.records).unwrap();
            let c = compile(f, cache.path()).unwrap();
            let store = Store::open(&c.store_path).unwrap();
            assert_same(&store, &expect);
            assert_eq!(c.warnings, snap.warnings, "{}", f.display());
            println!("ok {:>9} {}", store.len(), f.display());
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
