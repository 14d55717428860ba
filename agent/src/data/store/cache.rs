//! The cache directory: a store is named by the hash of its source's
//! content (read and hashed on every core), compiled only when no store of
//! that name is there yet, and written under a temporary name then renamed,
//! so a reader never sees a half-written store.

use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::build::write_store;
use super::format::FORMAT_VERSION;
use super::reader::Store;
use super::{StoreError, io_err};
use crate::data::snapshot::{self, SnapshotError};
use crate::util::lanes::{on_lanes, threads};

/// The source is hashed in pieces of this size, each on its own, and the
/// store is named by the hash of the pieces' hashes: the pieces are hashed
/// on every core at once, and the name does not depend on how many cores
/// there are.
const HASH_PIECE: usize = 1 << 20;

/// From this size on, a source is read and hashed by several threads.
const PARALLEL_READ_FROM: u64 = 4 << 20;

/// The version of the rules a source is compiled by. A store compiled by
/// other rules is another store, so a change of what a snapshot may hold
/// never reuses what older rules let through. 2: files without records,
/// binary data and non-hex under a hex tag are errors. 3: `delay`, `error`
/// and `notification` records with parameters that cannot be served are
/// errors.
const RULES: u32 = 3;

/// The name of a store from the digests of the source's pieces.
fn key(len: usize, path: &Path, digests: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(FORMAT_VERSION.to_le_bytes());
    h.update(RULES.to_le_bytes());
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
pub(super) fn source_hash(data: &[u8], path: &Path) -> [u8; 32] {
    let count = data.len().div_ceil(HASH_PIECE);
    key(
        data.len(),
        path,
        &digests(data.chunks(HASH_PIECE).enumerate(), count),
    )
}

/// The name of a store whose `multiplex` records read other snapshots:
/// their names and contents count too, so a changed directory is another
/// store. A file that cannot be read counts as empty (compiling then says
/// why).
fn with_multiplexed(hash: [u8; 32], data: &[u8], source: &Path) -> [u8; 32] {
    if !crate::data::variation::multiplex::has_subtrees(data) {
        return hash;
    }
    let mut h = Sha256::new();
    h.update(hash);
    for input in crate::data::variation::multiplex::inputs(data, source) {
        h.update(input.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(Sha256::digest(fs::read(&input).unwrap_or_default()));
    }
    h.finalize().into()
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
    /// The store file in the cache directory.
    pub store_path: PathBuf,
    /// Warnings from parsing (duplicates); empty when the cache was reused.
    pub warnings: Vec<snapshot::Diagnostic>,
    /// Records in the store.
    pub records: usize,
    /// `false` when an existing cache file was reused.
    pub built: bool,
}

/// Compiles `source` into `cache_dir` unless a store of the same content is
/// already there. The file is written to a temporary name and renamed, so a
/// reader never sees a half-written store.
pub fn compile(source: &Path, cache_dir: &Path) -> Result<Compiled, StoreError> {
    let (data, hash) = read_source(source).map_err(io_err(source))?;
    let hash = with_multiplexed(hash, &data, source);
    let store_path = store_file(cache_dir, &hash);
    if let Ok(existing) = Store::open(&store_path) {
        // Used now: not pruned for a while (a cache directory that is not
        // ours to write still serves).
        if let Err(e) = super::prune::touch(&store_path) {
            tracing::debug!(store = %store_path.display(), cause = %e, "store not marked as used");
        }
        // Compiled before a file without records was an error (an empty
        // store of an earlier run in the cache): still an error.
        if existing.is_empty() {
            return Err(snapshot::no_records(source).into());
        }
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

/// The store of a source of content hash `hash` in `cache_dir`.
fn store_file(cache_dir: &Path, hash: &[u8; 32]) -> PathBuf {
    cache_dir.join(format!("{}.store", hex::encode(&hash[..16])))
}

/// Where the store compiled from `source` is, or would be, in `cache_dir`
/// (the source is read and hashed, not compiled).
pub fn store_path(source: &Path, cache_dir: &Path) -> std::io::Result<PathBuf> {
    let (data, hash) = read_source(source)?;
    Ok(store_file(
        cache_dir,
        &with_multiplexed(hash, &data, source),
    ))
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
