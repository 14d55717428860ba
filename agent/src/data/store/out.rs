//! Where a store is written: a file, or memory for a store built in
//! memory, at offsets, from several threads at once; and why writing failed
//! before a path is put to the error.

use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, PoisonError};

/// Why a store could not be built, before a path is put to it.
#[derive(Debug)]
pub(super) enum Fail {
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
pub(super) trait Out: Sync {
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
