//! The parallel builder: `.snmprec` text compiled piece by piece on every
//! core, each piece placed in the data region as soon as the sizes of the
//! pieces before it are known; other formats through their records; then
//! the index and the header written last, so a file cut short never passes
//! for a store.

use std::fs;
use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError};

use super::format::{Entry, Header, header, total_len};
use super::merge::{Index, index};
use super::out::{Fail, Out};
use super::part::{Part, Placed};
use super::reader::Store;
use super::{StoreError, io_err};
use crate::data::snapshot::{self, EncodedSink, Record, Snapshot, SnapshotError};
use crate::util::lanes::{on_lanes, threads};
use crate::wire::ber;

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
pub(super) struct Built {
    pub(super) placed: Vec<Placed>,
    pub(super) data_len: usize,
    /// The parser's warnings.
    pub(super) warnings: Vec<snapshot::Diagnostic>,
}

/// Compiles `.snmprec` text into the data region of `out`: in pieces of
/// about `piece` bytes on every core, each piece parsed into a part that is
/// placed in source order as soon as the sizes of the pieces before it are
/// known, then reused. Fails as [`snapshot::parse`] does: naming every
/// broken line, with the repeated OIDs among the other lines as warnings;
/// on binary data; on a file without records.
pub(super) fn compile_snmprec(
    data: &[u8],
    source: &Path,
    out: &dyn Out,
    piece: usize,
) -> Result<Built, StoreError> {
    snapshot::refuse_binary(data, source)?;
    if crate::data::variation::multiplex::has_subtrees(data) {
        // A `multiplex` subtree reads a directory of snapshots: through
        // records, which expand it.
        let Snapshot { records, warnings } =
            snapshot::parse(data, snapshot::Format::Snmprec, source)?;
        let mut built = place_records(&records, out).map_err(|e| match e {
            Fail::Io(e) => io_err(source)(e),
            Fail::TooLarge => StoreError::TooLarge {
                path: source.to_owned(),
            },
        })?;
        built.warnings = warnings;
        return Ok(built);
    }
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
    let mut errors = Vec::new();
    let mut failed = None;
    let mut line_base = 0;
    for (_, parsed, p) in done {
        errors.extend(
            parsed
                .errors
                .into_iter()
                .map(|(line, message)| snapshot::Diagnostic {
                    file: source.to_path_buf(),
                    line: line + line_base,
                    message,
                }),
        );
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
        // The repeats among the good lines, as the parser reports them
        // (when every part was placed: else there is no telling).
        let warnings = match failed {
            None => index(&placed, out, true)
                .map(|index| diagnostics(source, index.warnings))
                .unwrap_or_default(),
            Some(_) => Vec::new(),
        };
        return Err(SnapshotError::Invalid { errors, warnings }.into());
    }
    match failed {
        Some(Fail::Io(e)) => Err(StoreError::Io {
            path: source.to_owned(),
            source: e,
        }),
        Some(Fail::TooLarge) => Err(StoreError::TooLarge {
            path: source.to_owned(),
        }),
        None if placed.iter().all(|p| p.entries.is_empty()) => {
            Err(snapshot::no_records(source).into())
        }
        None => Ok(Built {
            placed,
            data_len: placement.end(),
            warnings: Vec::new(),
        }),
    }
}

/// `(line, message)` pairs of `source` as diagnostics.
pub(super) fn diagnostics(
    source: &Path,
    messages: Vec<(usize, String)>,
) -> Vec<snapshot::Diagnostic> {
    messages
        .into_iter()
        .map(|(line, message)| snapshot::Diagnostic {
            file: source.to_owned(),
            line,
            message,
        })
        .collect()
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
pub(super) fn finish_in_memory(
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
pub(super) fn encode(records: &[Record], source_hash: [u8; 32]) -> Option<Vec<u8>> {
    let out = Mutex::new(Vec::new());
    let built = place_records(records, &out).ok()?;
    finish_in_memory(out, &built, false, source_hash)
        .ok()
        .map(|(bytes, _)| bytes)
}

/// A `.snmprec` file is compiled in pieces of about this size, as many at
/// once as there are cores.
pub(super) const COMPILE_PIECE: usize = 1 << 20;

/// Compiles snapshot text into `file` (at `path`, a new file) and syncs it
/// to the disk: the number of records and the warnings.
pub(super) fn write_store(
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
    warnings.extend(diagnostics(source, index.warnings));
    Ok((index.count, warnings))
}

impl Store {
    /// Builds a store in memory from records (tests and tools).
    pub fn from_records(records: &[Record]) -> Option<Store> {
        let bytes = encode(records, [0; 32])?;
        Store::from_bytes(bytes, None)
    }
}
