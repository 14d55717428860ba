//! The optional per-source rate limit of an agent: a token bucket for each
//! source address, in a map of bounded size. Pure: the clock comes in, so
//! every path is testable without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Sources tracked at once. A flood from more (spoofed) addresses than this
/// cannot grow the map: see [`Limiter::admit`].
pub(crate) const MAX_SOURCES: usize = 4096;

/// The limit: `per_second` requests a second from one source address,
/// sustained, and up to `burst` at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests a second, sustained (at least 1).
    pub per_second: u32,
    /// Requests at once after a quiet spell (at least 1).
    pub burst: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets of one agent.
#[derive(Debug)]
pub(crate) struct Limiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Limiter {
        Limiter {
            rate: f64::from(limit.per_second.max(1)),
            burst: f64::from(limit.burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Whether a request from `source` at `now` is within the limit (and
    /// if so, takes its token).
    ///
    /// A new source starts with a full bucket. When the map is full, the
    /// sources whose buckets have refilled are forgotten (they lose
    /// nothing: they would start full anyway); if that frees too little
    /// room, because more sources than [`MAX_SOURCES`] are all busy, every
    /// bucket is forgotten. Memory stays bounded and the cost per request
    /// stays O(1) amortized; the price is a fresh burst for everyone after
    /// such a flood.
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> bool {
        if let Some(b) = self.buckets.get_mut(&source) {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
            b.last = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                return true;
            }
            return false;
        }
        if self.buckets.len() >= MAX_SOURCES {
            self.evict(now);
        }
        self.buckets.insert(
            source,
            Bucket {
                tokens: self.burst - 1.0,
                last: now,
            },
        );
        true
    }

    fn evict(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
        if self.buckets.len() > MAX_SOURCES - MAX_SOURCES / 8 {
            self.buckets.clear();
        }
    }

    /// Sources tracked now.
    #[cfg(test)]
    fn sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut l = Limiter::new(RateLimit {
            per_second: 10,
            burst: 5,
        });
        let t0 = Instant::now();
        let admitted = (0..20).filter(|_| l.admit(ip(1), t0)).count();
        assert_eq!(admitted, 5, "the burst, then nothing");
        // Another source has its own bucket.
        assert!(l.admit(ip(2), t0));
        // 10 a second: one more every 100 ms.
        assert!(!l.admit(ip(1), t0 + Duration::from_millis(50)));
        assert!(l.admit(ip(1), t0 + Duration::from_millis(100)));
        assert!(!l.admit(ip(1), t0 + Duration::from_millis(100)));
        // Over a long run, the rate.
        let mut admitted = 0;
        for ms in 0..10_000u64 {
            if l.admit(ip(1), t0 + Duration::from_millis(200 + ms)) {
                admitted += 1;
            }
        }
        assert!((99..=102).contains(&admitted), "{admitted} in 10 s");
        // A quiet spell refills the bucket to the burst, no more.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..20).filter(|_| l.admit(ip(1), later)).count(), 5);
    }

    #[test]
    fn the_clock_going_backwards_refills_nothing() {
        let mut l = Limiter::new(RateLimit {
            per_second: 1,
            burst: 1,
        });
        let t0 = Instant::now() + Duration::from_secs(10);
        assert!(l.admit(ip(1), t0));
        assert!(!l.admit(ip(1), t0 - Duration::from_secs(5)));
    }

    #[test]
    fn a_spoofed_flood_cannot_grow_the_map() {
        let mut l = Limiter::new(RateLimit {
            per_second: 1,
            burst: 2,
        });
        let t0 = Instant::now();
        for n in 0..100_000 {
            assert!(l.admit(ip(n), t0), "a new source is admitted");
            assert!(l.sources() <= MAX_SOURCES);
        }
        // Idle sources are forgotten first; a busy one keeps its bucket.
        let t0 = t0 + Duration::from_secs(120);
        let mut l = Limiter::new(RateLimit {
            per_second: 1,
            burst: 2,
        });
        assert!(l.admit(ip(0), t0));
        assert!(l.admit(ip(0), t0));
        for n in 1..MAX_SOURCES as u32 {
            l.admit(ip(n), t0 - Duration::from_secs(60));
        }
        assert_eq!(l.sources(), MAX_SOURCES);
        assert!(l.admit(ip(999_999), t0));
        assert_eq!(l.sources(), 2, "the refilled ones went");
        assert!(!l.admit(ip(0), t0), "the busy source is still limited");
    }
}
