//! The host's monotonic clock as a number, so that two processes can name
//! the same instant: the supervisor says when a device's reboot began, and
//! the agent process that carries it out ends the outage at the very
//! instant the supervisor announces the device up again (`fault-cleared`).
//! [`std::time::Instant`] reads the same clock (CLOCK_MONOTONIC) but does
//! not show its value.

use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_gettime};

/// Nanoseconds of CLOCK_MONOTONIC now (0 if the clock cannot be read,
/// which Linux never refuses).
pub fn monotonic_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64)
    })
}

/// The [`Instant`] of `ns` nanoseconds of CLOCK_MONOTONIC, as read by
/// [`monotonic_ns`] in this or another process of the host.
pub fn instant_of(ns: u64) -> Instant {
    let (now, now_ns) = (Instant::now(), monotonic_ns());
    if ns >= now_ns {
        now + Duration::from_nanos(ns - now_ns)
    } else {
        now.checked_sub(Duration::from_nanos(now_ns - ns))
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_named_by_number_is_the_same_instant() {
        let before = Instant::now();
        let ns = monotonic_ns();
        let after = Instant::now();
        let back = instant_of(ns);
        // Reading the two clocks takes time; the instant falls between.
        assert!(
            back >= before - Duration::from_micros(50),
            "{back:?} {before:?}"
        );
        assert!(
            back <= after + Duration::from_micros(50),
            "{back:?} {after:?}"
        );
        let later = instant_of(ns + 2_000_000_000);
        assert!(later >= before + Duration::from_secs(2) - Duration::from_micros(50));
    }
}
