//! The supervisor's only `unsafe`: what must run in a child between fork
//! and exec (placing inherited descriptors, the parent-death signal,
//! dropping privileges; only async-signal-safe calls are made there), the
//! spawn helper's fork, and watching and reaping agent processes.
//!
//! `unsafe` is allowed here and nowhere else in the crate: every block says
//! why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Duplicates `fd` to a new close-on-exec descriptor numbered at least
/// `min`, so that placing descriptors at 3, 4, … in the child cannot
/// overwrite a source that is still needed.
pub fn dup_above(fd: &impl AsRawFd, min: RawFd) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // F_DUPFD_CLOEXEC only creates a descriptor; it has no memory effects.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `r` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Privileges the child drops to before exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// A connected pair of Unix sequenced-packet sockets (close-on-exec): the
/// supervisor's end and a helper's (spawn helper, socket holder).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Installs the between-fork-and-exec step of the spawn helper on `cmd`:
/// `sock` becomes descriptor 3 (without close-on-exec),
/// PR_SET_PDEATHSIG(SIGKILL) ties the helper to the spawning thread, the
/// helper gets a process group of its own, and the parent is re-checked (it
/// may have died before the prctl).
pub fn prepare_helper(cmd: &mut std::process::Command, sock: RawFd, parent: libc::pid_t) {
    use std::os::unix::process::CommandExt;
    let closure = move || -> io::Result<()> {
        // dup2 clears FD_CLOEXEC on the target: it survives exec.
        if unsafe { libc::dup2(sock, 3) } < 0 {
            return Err(io::Error::last_os_error());
        }
        if unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        if unsafe { libc::setpgid(0, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        if unsafe { libc::getppid() } != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the closure only calls async-signal-safe functions (dup2,
    // prctl, setpgid, getppid) and allocates nothing.
    unsafe {
        cmd.pre_exec(closure);
    }
}

/// What the spawn helper's child needs, all built before the fork: nothing
/// may allocate between fork and exec.
pub struct Exec<'a> {
    pub program: &'a std::ffi::CStr,
    /// NULL-terminated.
    pub argv: &'a [*const libc::c_char],
    /// NULL-terminated.
    pub envp: &'a [*const libc::c_char],
    /// Become 3, 4, … in the child, in this order; each must be numbered
    /// at least `3 + fds.len()` (see [`dup_above`]).
    pub fds: &'a [RawFd],
    /// The supervisor: the child's parent, re-checked after the prctl.
    pub parent: libc::pid_t,
    pub creds: Option<Credentials>,
}

/// Creates an agent process from the (single-threaded) spawn helper: a fork
/// with CLONE_PARENT, so the new process is the supervisor's child (its
/// parent-death signal follows the supervisor's thread that started the
/// helper, and the supervisor reaps it), whose child places the descriptors,
/// clears ambient capabilities, sets PR_SET_PDEATHSIG(SIGKILL), takes a
/// process group of its own, re-checks its parent, drops privileges if
/// asked, restores SIGPIPE's default action and execs.
///
/// Returns the pid and 0, or the pid and the errno of the step that failed
/// in the child (which then has exited with status 127 and still needs
/// reaping by the supervisor), or an error if no process was created.
pub fn spawn_agent(exec: &Exec<'_>) -> io::Result<(libc::pid_t, i32)> {
    assert_eq!(exec.argv.last(), Some(&std::ptr::null()));
    assert_eq!(exec.envp.last(), Some(&std::ptr::null()));
    let floor = 3 + exec.fds.len() as RawFd;
    assert!(exec.fds.iter().all(|&fd| fd >= floor));
    // The child reports a failure before exec through this pipe; a
    // successful exec closes it (close-on-exec) without a word.
    let mut pipe = [0 as RawFd; 2];
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: both descriptors were just created and nothing else owns them.
    let (read_end, low_write_end) =
        unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
    // Above the descriptors' targets, or placing them would close it.
    let write_end = dup_above(&low_write_end, floor)?;
    drop(low_write_end);
    // SAFETY: a fork (no new stack, no shared memory) of a single-threaded
    // process: the child runs on its own copy of this stack and only makes
    // raw system calls until execve or _exit, so no lock or allocator state
    // matters. CLONE_PARENT is refused only to init processes, which the
    // helper never is.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let errno = unsafe { child_steps(exec) };
        // Only reached on failure.
        let bytes = errno.to_ne_bytes();
        unsafe {
            libc::write(write_end.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127);
        }
    }
    drop(write_end);
    let mut bytes = [0u8; 4];
    let mut got = 0;
    while got < bytes.len() {
        let r = unsafe {
            libc::read(
                read_end.as_raw_fd(),
                bytes[got..].as_mut_ptr().cast(),
                bytes.len() - got,
            )
        };
        match r {
            0 => break,
            r if r > 0 => got += r as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return Err(io::Error::last_os_error()),
        }
    }
    let errno = if got == bytes.len() {
        i32::from_ne_bytes(bytes).max(1)
    } else {
        0
    };
    Ok((pid as libc::pid_t, errno))
}

/// The child's side of [`spawn_agent`]; returns the errno of the step that
/// failed (execve returns only on failure).
///
/// # Safety
/// Only in the child of a fork; makes raw system calls only.
unsafe fn child_steps(exec: &Exec<'_>) -> i32 {
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    unsafe {
        for (i, &fd) in exec.fds.iter().enumerate() {
            // dup2 clears FD_CLOEXEC on the target: it survives exec.
            if libc::dup2(fd, 3 + i as RawFd) < 0 {
                return errno();
            }
        }
        // Agents need no capability (their sockets come bound): drop any
        // ambient ones the supervisor got (CAP_NET_BIND_SERVICE under
        // systemd). EINVAL on kernels without ambient capabilities is fine.
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) < 0
        {
            return errno();
        }
        // A process group of its own: a terminal's Ctrl-C or a group-wide
        // SIGTERM reaches the supervisor, which stops agents in order.
        if libc::setpgid(0, 0) < 0 {
            return errno();
        }
        if libc::getppid() != exec.parent {
            // The supervisor died before the prctl took effect.
            return libc::ESRCH;
        }
        if let Some(c) = exec.creds {
            // Raw system calls: the C library's wrappers coordinate with
            // other threads, which a forked child must not rely on.
            let groups = [c.gid];
            if libc::syscall(libc::SYS_setgroups, 1usize, groups.as_ptr()) < 0
                || libc::syscall(libc::SYS_setgid, c.gid as usize) < 0
                || libc::syscall(libc::SYS_setuid, c.uid as usize) < 0
            {
                return errno();
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::execve(
            exec.program.as_ptr(),
            exec.argv.as_ptr(),
            exec.envp.as_ptr(),
        );
        errno()
    }
}

/// A descriptor that becomes readable when process `pid`, a child of this
/// process, exits.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // pidfd_open only creates a descriptor.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `r` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Reaps child `pid` if it has exited (`block`: waits until it does).
pub fn reap(pid: libc::pid_t, block: bool) -> io::Result<Option<std::process::ExitStatus>> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    loop {
        // waitpid only writes `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, if block { 0 } else { libc::WNOHANG }) };
        return match r {
            0 => Ok(None),
            r if r == pid => Ok(Some(std::process::ExitStatus::from_raw(status))),
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            _ => Err(io::Error::last_os_error()),
        };
    }
}

/// Sends one message with `fds` (none: no control message), EINTR
/// retried.
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(
            sock,
            &[io::IoSlice::new(data)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r.map(|_| ()).map_err(io::Error::from),
        }
    }
}

/// Receives one message with the descriptors it carries (close-on-exec).
/// `Ok((0, _))` is the end of the stream.
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::FromRawFd;
    let mut space = nix::cmsg_space!([RawFd; 253]);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.map_err(io::Error::from)?,
        }
    };
    let mut fds = Vec::new();
    // SCM_RIGHTS carries at most 253 descriptors, which `space` holds: the
    // control data is never truncated.
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these descriptors in this
            // process for this message; nothing else owns them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((msg.bytes, fds))
}

/// An inotify instance, as tokio's readiness machinery wants it.
pub struct InotifyFd(pub nix::sys::inotify::Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

/// Registers an inotify instance with the runtime's reactor, for readiness.
pub fn async_inotify(
    inotify: nix::sys::inotify::Inotify,
) -> io::Result<tokio::io::unix::AsyncFd<InotifyFd>> {
    let watcher = InotifyFd(inotify);
    // SAFETY: `InotifyFd` owns the inotify descriptor, which stays open until
    // the AsyncFd (and with it the InotifyFd) is dropped, and `as_raw_fd`
    // always returns that same descriptor.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(watcher, tokio::io::Interest::READABLE)
    }?;
    Ok(fd)
}

/// Registers a pidfd with the runtime's reactor, for readiness (exit).
pub fn async_pidfd(pidfd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the descriptor, which stays open until the
    // AsyncFd is dropped, and `as_raw_fd` always returns that descriptor.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts().1)
}

/// Why the account `creds` cannot execute `program`, judged by the mode
/// bits of the program and of every directory above it (owner, group,
/// others; supplementary groups and ACLs are not looked at, so this only
/// explains a refusal the kernel already made). `None` if the bits allow it.
pub fn exec_denied(program: &std::path::Path, creds: Credentials) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let allows = |m: &std::fs::Metadata| {
        let bits = if m.uid() == creds.uid {
            0o100
        } else if m.gid() == creds.gid {
            0o010
        } else {
            0o001
        };
        m.mode() & bits != 0
    };
    let mut dirs: Vec<&std::path::Path> = program.ancestors().skip(1).collect();
    dirs.reverse();
    for dir in dirs.into_iter().filter(|d| !d.as_os_str().is_empty()) {
        let m = std::fs::metadata(dir).ok()?;
        if !allows(&m) {
            return Some(format!(
                "uid {} cannot enter {} (mode {:o}, owner uid {})",
                creds.uid,
                dir.display(),
                m.mode() & 0o7777,
                m.uid()
            ));
        }
    }
    let m = std::fs::metadata(program).ok()?;
    (!allows(&m)).then(|| {
        format!(
            "uid {} cannot execute {} (mode {:o}, owner uid {})",
            creds.uid,
            program.display(),
            m.mode() & 0o7777,
            m.uid()
        )
    })
}

#[cfg(test)]
mod exec_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_closed_directory_on_the_way_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("bin");
        std::fs::create_dir(&inner).unwrap();
        let prog = inner.join("agent");
        std::fs::write(&prog, "").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        // An account that owns none of it and is in none of its groups.
        let other = Credentials {
            uid: 65_534,
            gid: 65_534,
        };
        let why = exec_denied(&prog, other).expect("denied");
        assert!(
            why.contains(&format!("cannot enter {}", dir.path().display()))
                && why.contains("mode 700"),
            "{why}"
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(exec_denied(&prog, other), None);
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o750)).unwrap();
        let why = exec_denied(&prog, other).expect("denied");
        assert!(why.contains("cannot execute"), "{why}");
        // Its owner may.
        let me = Credentials {
            uid: nix::unistd::getuid().as_raw(),
            gid: 65_534,
        };
        assert_eq!(exec_denied(&prog, me), None);
    }
}
