//! The one place with `unsafe`: children that die with the benchmark.

use std::os::unix::process::CommandExt as _;
use std::process::Command;

/// Makes `cmd`'s process receive SIGKILL when this process dies, so a
/// benchmark killed half-way leaves no supervisor (and through its own
/// parent-death signal, no agent) behind.
pub fn kill_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls
    // prctl(2), which is async-signal-safe; it allocates nothing and
    // touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}
