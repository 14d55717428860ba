//! Small helpers that know nothing of SNMP: reproducible pseudo-random
//! numbers ([`xorshift`]), work spread over the cores ([`lanes`]) and the
//! host's monotonic clock as a number ([`clock`]).
//!
//! Depends on nothing else in the crate; any layer may use it.

pub mod clock;
pub(crate) mod lanes;
pub mod xorshift;

/// Test builds: a current-thread runtime with I/O and timers, as an agent
/// process serves on (so the test allocator counts what serving takes).
#[cfg(test)]
pub(crate) fn one_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
