//! Records being compiled into the store's data region: a part collects the
//! records of one piece of source (encoded as the store holds them, whether
//! a snapshot format pushes them or [`super::build`] does), then is placed
//! at its offset in the data region and says where its records went.

use super::format::{
    DATA_OFF, Entry, FLAG_COUNTER64, FLAG_EXCEPTION, FLAG_UPTIME, FLAG_VARIATION, VarRef,
};
use super::out::{Fail, Out};
use crate::data::snapshot::{EncodedSink, Variation};
use crate::wire::ber;

const SYS_UPTIME_0: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];

/// Records being compiled, in source order: their arcs and blob bytes
/// exactly as they go into the store, and per record where they are. A
/// large snapshot is compiled piece by piece, each piece into a part that is
/// then placed in the file and reused for the next piece.
#[derive(Debug)]
pub(super) struct Part {
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
pub(super) struct VarText {
    pub(super) rec: u32,
    pub(super) name_off: u32,
    pub(super) name_len: u32,
    pub(super) params_off: u32,
    pub(super) params_len: u32,
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
    pub(super) fn clear(&mut self) {
        self.arcs.clear();
        self.blob.clear();
        self.recs.clear();
        self.vars.clear();
        self.in_order = true;
        self.too_large = false;
    }

    pub(super) fn oid(&self, i: u32) -> &[u32] {
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
    pub(super) fn region_len(&self) -> usize {
        (self.arcs.len() * 4 + self.blob.len()).next_multiple_of(4)
    }

    /// What placing needs to know of the order of the records, worked out
    /// while they are at hand: the order, if the source did not have it, and
    /// whether an OID repeats.
    pub(super) fn order(&self) -> (Option<Vec<u32>>, bool) {
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
    pub(super) fn place(
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
pub(super) struct Placed {
    /// In OID order; records with the same OID in source order.
    pub(super) entries: Vec<Entry>,
    /// Each entry's line within its piece.
    pub(super) lines: Vec<u32>,
    /// Variations, by position in `entries`.
    pub(super) vars: Vec<VarText>,
    /// Some OID occurs more than once.
    pub(super) repeats: bool,
    /// The least and the greatest OID; `None` without records.
    pub(super) range: Option<(Vec<u32>, Vec<u32>)>,
    /// Its arcs: index of the first in the arcs section, and count.
    pub(super) arcs_at: usize,
    pub(super) arcs_n: usize,
    /// Lines of the source before its piece.
    pub(super) line_base: usize,
}

impl Placed {
    /// The OID of entry `k`, from this part's `arcs` read back.
    pub(super) fn oid<'a>(&self, arcs: &'a [u32], k: u32) -> &'a [u32] {
        self.entries
            .get(k as usize)
            .and_then(|e| {
                let s = (e.arcs_start as usize).checked_sub(self.arcs_at)?;
                arcs.get(s..s + usize::from(e.arcs_len))
            })
            .unwrap_or_default()
    }

    /// The variation of entry `k`, as a store variation of entry 0.
    pub(super) fn var(&self, k: u32) -> Option<VarRef> {
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
    pub(super) fn read_arcs(&self, out: &dyn Out) -> std::io::Result<Vec<u32>> {
        let mut arcs = vec![0u32; self.arcs_n];
        out.read_at(
            DATA_OFF + self.arcs_at * 4,
            bytemuck::cast_slice_mut(&mut arcs),
        )?;
        Ok(arcs)
    }
}
