//! The two locks on a pool file: an OFD `fcntl` lock, which conflicts with
//! the classic POSIX lock `hv_kvp_daemon` takes, and `flock`, which
//! cloud-init takes. Readers take both shared, writers both exclusive.

use std::fs::File;
use std::io;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, Flock, FlockArg, fcntl};

/// A blocking `flock`, retried when a signal interrupts it.
pub(super) fn flock(mut file: File, arg: FlockArg) -> Result<Flock<File>, (File, Errno)> {
    loop {
        match Flock::lock(file, arg) {
            Err((f, Errno::EINTR)) => file = f,
            other => return other,
        }
    }
}

/// A blocking OFD lock (`F_WRLCK` or `F_RDLCK`) over the whole file. It is
/// held by the open file description, so it goes when the file is closed.
pub(super) fn lock(file: &File, kind: libc::c_int) -> io::Result<()> {
    let fl = libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    loop {
        match fcntl(file, FcntlArg::F_OFD_SETLKW(&fl)) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Runs `f` with the pool locked for writing: an OFD write lock first, then
/// `flock(LOCK_EX)` (always in this order, so two of our writers cannot
/// deadlock). Both go when the file is dropped at the end: the flock first
/// (`Flock`'s drop), then the OFD lock with the descriptor.
pub(super) fn with_locks<R>(file: File, f: impl FnOnce(&File) -> io::Result<R>) -> io::Result<R> {
    lock(&file, libc::F_WRLCK)?;
    let locked = flock(file, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))?;
    f(&locked)
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::path::Path;

    use super::*;
    use crate::events::sinks::kvp::record::encode_record;
    use crate::events::sinks::kvp::testutil::{keys, old_boot, ready, seqs, wait_for_waiter};
    use crate::events::sinks::kvp::writer::Writer;

    /// Whether another open file description of `path` sees a conflicting
    /// OFD lock, a classic POSIX lock (what `hv_kvp_daemon` takes) and
    /// flock (what cloud-init takes).
    fn conflicts(path: &Path) -> (bool, bool, bool) {
        let other = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let probe = || libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        let mut ofd = probe();
        fcntl(&other, FcntlArg::F_OFD_GETLK(&mut ofd)).unwrap();
        let mut posix = probe();
        fcntl(&other, FcntlArg::F_GETLK(&mut posix)).unwrap();
        let flocked = match Flock::lock(other, FlockArg::LockExclusiveNonblock) {
            Ok(_) => false,
            Err((_, e)) => {
                assert_eq!(e, Errno::EWOULDBLOCK);
                true
            }
        };
        (
            ofd.l_type == libc::F_WRLCK as libc::c_short,
            posix.l_type == libc::F_WRLCK as libc::c_short,
            flocked,
        )
    }

    #[test]
    fn writes_hold_both_locks_and_release_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        std::fs::write(&path, b"").unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let inside = with_locks(file, |_| Ok(conflicts(&path))).unwrap();
        assert_eq!(inside, (true, true, true));
        assert_eq!(conflicts(&path), (false, false, false));
    }

    #[test]
    fn a_writer_waits_for_each_lock() {
        if std::fs::read_to_string("/proc/locks").is_err() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        std::fs::write(&path, encode_record("other", "x")).unwrap();
        for (seq, held) in [(1, "OFDLCK"), (2, "FLOCK")] {
            let holder = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            let guard = if held == "OFDLCK" {
                lock(&holder, libc::F_WRLCK).unwrap();
                None
            } else {
                Some(Flock::lock(holder.try_clone().unwrap(), FlockArg::LockExclusive).unwrap())
            };
            let before = keys(&path);
            let p = path.clone();
            let writer = std::thread::spawn(move || {
                let mut w = Writer::new(p, 10, old_boot());
                w.write(&[ready(seq)]).map(|d| d.records)
            });
            assert!(wait_for_waiter(&path, held), "no waiter on {held}");
            assert_eq!(keys(&path), before, "wrote while {held} was held");
            drop(guard);
            drop(holder);
            assert_eq!(writer.join().unwrap().unwrap(), 1);
        }
        assert_eq!(seqs(&path), ["other", "1", "2"]);
    }
}
