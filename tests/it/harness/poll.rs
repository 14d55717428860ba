//! The one bounded poll, for the few states nothing announces: what a file
//! that another process writes holds, whether the kernel lets a port be
//! bound, what an agent answers after its snapshot was rewritten under it,
//! what the supervisor's own SNMP agent serves (its table is rebuilt from
//! the status at most once a second). Everything else is waited on through
//! what proves it: an event, an output line, a process exit.

use std::time::{Duration, Instant};

/// Looks (every `every`) until `look` gives `Ok`, and returns that. `Err`
/// says what it sees now; the last one is in the failure message if
/// `within` passes first.
pub fn poll_until<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut look: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match look() {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= deadline => {
                panic!("waited {within:?} for {what}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(every),
        }
    }
}
