//! Device snapshots: `.snmprec`, `.snmpwalk` and `.sapwalk` files parsed into
//! sorted, de-duplicated records, and written back in any of the formats;
//! `.snmprec` also compiled straight into encoded records for the store
//! (`EncodedSink`), without knowing the store.
//!
//! Depends on `crate::wire` (values, BER) only.

use std::path::{Path, PathBuf};

use crate::wire::value::{DisplayOid, Oid, Value};

mod lex;
mod sapwalk;
mod snmprec;
mod snmpwalk;
mod write;

#[cfg(test)]
mod tests;

pub use snmprec::RecordType;
pub(crate) use snmprec::mltsplit;

/// A variation tag attached to a record (snmprec `TAG:variation|params`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variation {
    /// The module name, e.g. `numeric`, `writecache`.
    pub name: String,
    /// The raw parameter text after the second `|`, e.g. `min=1,max=2,wrap=1`.
    pub params: String,
}

/// One managed object instance of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The instance's OID.
    pub oid: Oid,
    /// The static value: the recorded value, or for a variation the value it
    /// starts from (`value=` of writecache, `initial` of numeric).
    pub value: Value,
    /// The variation that computes the value, if any.
    pub variation: Option<Variation>,
    /// 1-based line in the source file, for messages.
    pub line: usize,
}

/// A message about one place in a snapshot file, or about the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The snapshot file.
    pub file: PathBuf,
    /// 1-based line in it; 0 when the message is about the whole file (it
    /// holds no record).
    pub line: usize,
    /// What is wrong there.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file.display(), self.message),
            line => write!(f, "{}:{line}: {}", self.file.display(), self.message),
        }
    }
}

/// The file formats we read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// snmpsim's `.snmprec`: `OID|TAG|VALUE` lines.
    Snmprec,
    /// `snmpwalk` output (net-snmp), in any of its usual output options.
    Snmpwalk,
    /// SAP's `.sapwalk`.
    Sapwalk,
}

impl Format {
    /// The format named by a file's extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "snmprec" => Some(Format::Snmprec),
            "snmpwalk" => Some(Format::Snmpwalk),
            "sapwalk" => Some(Format::Sapwalk),
            _ => None,
        }
    }
}

/// A parsed snapshot: records sorted by OID with duplicates removed (the last
/// one in the file wins, and each duplicate is reported in `warnings`).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The records, sorted by OID, each OID once.
    pub records: Vec<Record>,
    /// What was read but is worth a look (repeated OIDs).
    pub warnings: Vec<Diagnostic>,
}

/// Why a snapshot could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's extension names no format we read.
    #[error("{}: unknown snapshot format (expected .snmprec, .snmpwalk or .sapwalk)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// Every broken record of the file, each naming its line (or the whole
    /// file: binary data, no record at all), and the warnings about the
    /// records that were read, as a good file would have them.
    #[error("{}", .errors.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// What makes the file unusable; never empty.
        errors: Vec<Diagnostic>,
        /// What is worth a look besides (repeated OIDs).
        warnings: Vec<Diagnostic>,
    },
}

/// Reads and parses a snapshot file, the format chosen by its extension.
pub fn load(path: &Path) -> Result<Snapshot, SnapshotError> {
    let format = Format::from_path(path).ok_or_else(|| SnapshotError::UnknownFormat {
        path: path.to_path_buf(),
    })?;
    let data = std::fs::read(path).map_err(|source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&data, format, path)
}

/// Parses snapshot text. `file` only names the source in messages.
///
/// The records come back sorted by OID (arc by arc, numerically). When an OID
/// occurs more than once the last record wins and a warning names both
/// lines. Any broken record fails the whole parse with
/// [`SnapshotError::Invalid`], which lists every broken record with its line
/// and the warnings about the others; so does a file of binary data (a NUL
/// byte: one error, naming its line) and a file without any record.
pub fn parse(data: &[u8], format: Format, file: &Path) -> Result<Snapshot, SnapshotError> {
    refuse_binary(data, file)?;
    // Most snapshots are one record a line; a cheap count saves regrowth.
    let estimate = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut sink = Sink {
        records: Vec::with_capacity(estimate),
        errors: Vec::new(),
        subtrees: Vec::new(),
    };
    match format {
        // One record a line: a large file is parsed in two halves at once.
        Format::Snmprec if data.len() >= PARALLEL_FROM => {
            snmprec_in_halves(data, &mut sink);
        }
        Format::Snmprec => snmprec::parse(data, &mut sink),
        Format::Snmpwalk => snmpwalk::parse(data, &mut sink),
        Format::Sapwalk => sapwalk::parse(data, &mut sink),
    }
    let Sink {
        mut records,
        mut errors,
        subtrees,
    } = sink;
    for (line, oid, params) in subtrees {
        match crate::data::variation::multiplex::expand(file, &oid, &params, line) {
            Ok(more) => records.extend(more),
            Err(e) => errors.push((line, e)),
        }
    }
    let diagnostic = |(line, message): (usize, String)| Diagnostic {
        file: file.to_path_buf(),
        line,
        message,
    };
    // Repeats are looked for among the good records of a broken file too,
    // so that every message comes at once.
    let warnings = sort_dedup(&mut records)
        .into_iter()
        .map(diagnostic)
        .collect();
    if !errors.is_empty() {
        return Err(SnapshotError::Invalid {
            errors: errors.into_iter().map(diagnostic).collect(),
            warnings,
        });
    }
    if records.is_empty() {
        return Err(no_records(file));
    }
    Ok(Snapshot { records, warnings })
}

/// Fails on binary data: text never holds a NUL byte, and a binary file
/// read line by line would only give a heap of garbage errors. The one
/// error names the line of the first NUL.
pub(crate) fn refuse_binary(data: &[u8], file: &Path) -> Result<(), SnapshotError> {
    let Some(at) = lex::find_byte(data, 0) else {
        return Ok(());
    };
    let line = data[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    Err(SnapshotError::Invalid {
        errors: vec![Diagnostic {
            file: file.to_path_buf(),
            line,
            message: "binary data (a NUL byte): a snapshot is a text file (write such values in hex: 4x|00ff…)".into(),
        }],
        warnings: Vec::new(),
    })
}

/// The error of a file without records (empty, or only blank lines and
/// comments): it would serve nothing, and is more likely a file cut short
/// or the wrong file than a device without data.
pub(crate) fn no_records(file: &Path) -> SnapshotError {
    SnapshotError::Invalid {
        errors: vec![Diagnostic {
            file: file.to_path_buf(),
            line: 0,
            message: "no records: the file is empty or holds only blank lines and comments".into(),
        }],
        warnings: Vec::new(),
    }
}

/// What a format parser produces: records in file order, and errors as
/// `(line, text)`.
struct Sink {
    records: Vec<Record>,
    errors: Vec<(usize, String)>,
    /// `.snmprec` `multiplex` subtree records (line, OID, parameters),
    /// expanded once the file is read.
    subtrees: Vec<(usize, crate::wire::value::Oid, String)>,
}

/// From this size on, a `.snmprec` file is parsed by two threads.
const PARALLEL_FROM: usize = 4 << 20;

/// Parses a `.snmprec` file as two halves split at a line boundary, the
/// second on a thread of its own, and joins them in file order (line
/// numbers of the second half shifted), so the result is exactly that of
/// one pass.
fn snmprec_in_halves(data: &[u8], sink: &mut Sink) {
    let mid = data.len() / 2;
    let split = data[mid..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(data.len(), |i| mid + i + 1);
    let (first, second) = data.split_at(split);
    let lines_before = first.iter().filter(|&&b| b == b'\n').count();
    let capacity = sink.records.capacity() / 2 + 1;
    let parse_tail = move || {
        let mut tail = Sink {
            records: Vec::with_capacity(capacity),
            errors: Vec::new(),
            subtrees: Vec::new(),
        };
        snmprec::parse(second, &mut tail);
        tail
    };
    let tail = std::thread::scope(|scope| {
        let worker = scope.spawn(parse_tail);
        snmprec::parse(first, sink);
        // The parser does not panic on input; if it ever did, the half is
        // parsed here again so the failure surfaces as it would in one pass.
        worker.join().unwrap_or_else(|_| parse_tail())
    });
    let shift = |(line, msg): (usize, String)| (line + lines_before, msg);
    sink.records.extend(tail.records.into_iter().map(|mut r| {
        r.line += lines_before;
        r
    }));
    sink.errors.extend(tail.errors.into_iter().map(shift));
    sink.subtrees.extend(
        tail.subtrees
            .into_iter()
            .map(|(line, oid, params)| (line + lines_before, oid, params)),
    );
}

/// `.snmprec` text cut at line ends into pieces of about `piece` bytes (the
/// last may be shorter; a piece holds at least one line).
pub(crate) fn snmprec_pieces(data: &[u8], piece: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::with_capacity(data.len() / piece.max(1) + 1);
    let mut start = 0;
    while start < data.len() {
        let from = start.saturating_add(piece.max(1) - 1);
        let end = match data.get(from..) {
            Some(rest) => lex::find_byte(rest, b'\n').map_or(data.len(), |i| from + i + 1),
            None => data.len(),
        };
        pieces.push(&data[start..end]);
        start = end;
    }
    pieces
}

/// Where `.snmprec` text compiled straight into encoded records goes (the
/// store's builder implements it, so the formats here need not know the
/// store). A parser appends a record's OID arcs to [`EncodedSink::arcs`]
/// itself and then calls [`EncodedSink::push_record`], or hands over the
/// whole record with [`EncodedSink::push`].
pub(crate) trait EncodedSink {
    /// Every record's arcs so far, back to back; a parser appends the next
    /// record's arcs here.
    fn arcs(&mut self) -> &mut Vec<u32>;

    /// Adds a record whose arcs are already at `arcs()[arcs_start..]`;
    /// `oid_content` is their BER encoding (the OID TLV's content), `value`
    /// the value TLV, `line` the record's line within the piece.
    fn push_record(
        &mut self,
        arcs_start: usize,
        oid_content: &[u8],
        value: &[u8],
        variation: Option<&Variation>,
        line: usize,
    );

    /// Adds a record: its OID, value TLV and variation.
    fn push(&mut self, oid: &[u32], value: &[u8], variation: Option<&Variation>, line: usize);
}

/// One piece of `.snmprec` text compiled by [`compile_snmprec_piece`]:
/// errors as `(line, text)` with lines counted within the piece, and how
/// many lines it had.
pub(crate) struct PieceParse {
    pub(crate) errors: Vec<(usize, String)>,
    pub(crate) lines: usize,
}

/// Compiles a piece of `.snmprec` text straight into encoded records (no
/// [`Record`] per line): exactly the records [`parse`] reads, in source
/// order, before sorting (the store finds the repeated OIDs, and refuses
/// binary data and a file without records, as [`parse`] does).
pub(crate) fn compile_snmprec_piece(text: &[u8], part: &mut impl EncodedSink) -> PieceParse {
    let mut out = PieceParse {
        errors: Vec::new(),
        lines: 0,
    };
    snmprec::compile(text, part, &mut out);
    out
}

/// Sorts records by OID and drops duplicates, keeping the one read last.
/// Returns a `(line, message)` warning per duplicate.
fn sort_dedup(records: &mut Vec<Record>) -> Vec<(usize, String)> {
    // Walks and recordings are usually in order already: one pass checks.
    if records.windows(2).all(|w| w[0].oid < w[1].oid) {
        return Vec::new();
    }
    // Stable, so records with the same OID stay in file order.
    records.sort_by(|a, b| a.oid.cmp(&b.oid));
    let mut warnings = Vec::new();
    // `later` follows `kept` in the slice; keep the later one's contents.
    records.dedup_by(|later, kept| {
        if later.oid != kept.oid {
            return false;
        }
        warnings.push((
            later.line,
            format!(
                "duplicate OID {}: line {} replaces line {}",
                DisplayOid(&later.oid),
                later.line,
                kept.line
            ),
        ));
        std::mem::swap(later, kept);
        true
    });
    warnings
}

/// Writes records in `format`. The records are written in the order given
/// (a [`Snapshot`]'s are sorted). Fails with `InvalidInput` on a record the
/// format cannot hold (say an Opaque value in `.sapwalk`); what was written
/// before it stays written.
pub fn write(
    records: &[Record],
    format: Format,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    write::write(records, format, out)
}
