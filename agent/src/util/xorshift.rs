//! xorshift64 (Marsaglia 2003): cheap, reproducible pseudo-random numbers
//! for value noise, restart jitter and generated test cases. Never for
//! anything secret.

/// One step of the generator; `x` must not be 0.
pub(crate) fn step(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// A sequence from a seed: the same seed, the same numbers.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The seed is made odd, so it is never 0.
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = step(self.0);
        self.0
    }

    /// A number in [0, n); `n` must not be 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
