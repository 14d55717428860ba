//! The agent crate's only `unsafe`: taking ownership of file descriptors the
//! supervisor passed at exec time.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of an inherited descriptor, after checking it is open.
pub fn adopt_fd(fd: RawFd) -> std::io::Result<OwnedFd> {
    // fcntl(F_GETFD) only reads the descriptor's flags: it tells whether the
    // descriptor exists without touching it.
    let r = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and was inherited for
    // this process alone; nothing else in the process owns it, and this is
    // called at most once per descriptor by the start-up code.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
