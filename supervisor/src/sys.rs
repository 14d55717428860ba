//! The supervisor's only `unsafe`: what must run in the child between fork
//! and exec (placing inherited descriptors, the parent-death signal,
//! dropping privileges). Only async-signal-safe calls are made there.

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
#[derive(Debug, Clone, Copy)]
pub struct Credentials {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Installs the between-fork-and-exec step on `cmd`: descriptors `fds[i]`
/// become `3 + i` (without close-on-exec), PR_SET_PDEATHSIG(SIGKILL) ties the
/// child to the spawning thread, the child gets a process group of its
/// own, the parent is re-checked (it may have died
/// before the prctl), and privileges are dropped if asked.
pub fn prepare_child(
    cmd: &mut tokio::process::Command,
    fds: Vec<RawFd>,
    parent: libc::pid_t,
    creds: Option<Credentials>,
) {
    let closure = move || -> io::Result<()> {
        for (i, &fd) in fds.iter().enumerate() {
            let target = 3 + i as RawFd;
            // dup2 clears FD_CLOEXEC on the target: it survives exec.
            if unsafe { libc::dup2(fd, target) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Agents need no capability (their sockets come bound): drop any
        // ambient ones the supervisor got (CAP_NET_BIND_SERVICE under
        // systemd). EINVAL on kernels without ambient capabilities is fine.
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
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
        // A process group of its own: a terminal's Ctrl-C or a group-wide
        // SIGTERM reaches the supervisor, which stops agents in order.
        if unsafe { libc::setpgid(0, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        if unsafe { libc::getppid() } != parent {
            // The parent died before the prctl took effect. (No message:
            // nothing may allocate between fork and exec.)
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        if let Some(c) = creds {
            let groups = [c.gid];
            if unsafe { libc::setgroups(1, groups.as_ptr()) } < 0
                || unsafe { libc::setgid(c.gid) } < 0
                || unsafe { libc::setuid(c.uid) } < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the closure only calls async-signal-safe functions (dup2,
    // prctl (ambient capabilities, parent-death signal), setpgid, getppid, setgroups, setgid, setuid) and allocates nothing: the
    // descriptor list was built before the fork and is only read here.
    unsafe {
        cmd.pre_exec(closure);
    }
}

/// Registers an inotify instance with the runtime's reactor, for readiness.
pub fn async_inotify(
    inotify: nix::sys::inotify::Inotify,
) -> io::Result<tokio::io::unix::AsyncFd<crate::watcher::Watcher>> {
    let watcher = crate::watcher::Watcher(inotify);
    // SAFETY: `Watcher` owns the inotify descriptor, which stays open until
    // the AsyncFd (and with it the Watcher) is dropped, and `as_raw_fd`
    // always returns that same descriptor.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(watcher, tokio::io::Interest::READABLE)
    }?;
    Ok(fd)
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
