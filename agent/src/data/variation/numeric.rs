//! snmpsim's `numeric`: a value computed from the agent's uptime.

use std::time::{Duration, Instant};

use crate::wire::ber;

/// snmpsim's `numeric`: `v = (initial + f(elapsed × rate)) × scale + offset`,
/// plus a random deviation, kept within `min..=max`. Beyond `max` a `wrap`
/// value starts again from `min` (as a counter does); otherwise it sticks at
/// `max`.
#[derive(Debug, Clone, PartialEq)]
pub struct Numeric {
    pub min: f64,
    pub max: Option<f64>,
    pub initial: f64,
    pub rate: f64,
    pub scale: f64,
    pub offset: f64,
    pub deviation: f64,
    pub wrap: bool,
    pub increasing: bool,
    pub function: Option<Function>,
    seed: u64,
}

/// The `function` parameter: a function of `elapsed × rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Sin,
    Cos,
    Tan,
    Log,
    Log10,
    Exp,
    Sqrt,
    Abs,
}

impl Numeric {
    pub fn parse(params: &str, seed_from: Instant) -> Numeric {
        let mut n = Numeric {
            min: 0.0,
            max: None,
            initial: f64::NAN,
            rate: 1.0,
            scale: 1.0,
            offset: 0.0,
            deviation: 0.0,
            wrap: false,
            increasing: false,
            function: None,
            seed: seed_from.elapsed().as_nanos() as u64 | 1,
        };
        for kv in params.split(',') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let num = v.trim().parse::<f64>().ok().filter(|x| x.is_finite());
            match (k.trim(), num) {
                ("min", Some(x)) => n.min = x,
                ("max", Some(x)) => n.max = Some(x),
                ("initial", Some(x)) => n.initial = x,
                ("rate", Some(x)) => n.rate = x,
                ("scale", Some(x)) => n.scale = x,
                ("offset", Some(x)) => n.offset = x,
                ("deviation", Some(x)) => n.deviation = x.abs(),
                ("wrap", x) => n.wrap = x.is_none_or(|x| x != 0.0),
                ("increasing", x) => n.increasing = x.is_none_or(|x| x != 0.0),
                ("function", _) => {
                    n.function = match v.trim() {
                        "sin" => Some(Function::Sin),
                        "cos" => Some(Function::Cos),
                        "tan" => Some(Function::Tan),
                        "log" => Some(Function::Log),
                        "log10" => Some(Function::Log10),
                        "exp" => Some(Function::Exp),
                        "sqrt" => Some(Function::Sqrt),
                        "abs" | "fabs" => Some(Function::Abs),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        if n.initial.is_nan() {
            n.initial = n.min;
        }
        n
    }

    /// The value at `elapsed` since the agent started, for a value of type
    /// `tag` (which bounds it: Integer32, Counter64 or 32-bit unsigned).
    pub fn value_at(&self, tag: Option<u8>, elapsed: Duration) -> f64 {
        let (lo, hi) = match tag {
            Some(ber::TAG_INTEGER) => (f64::from(i32::MIN), f64::from(i32::MAX)),
            Some(ber::TAG_COUNTER64) => (0.0, u64::MAX as f64),
            _ => (0.0, f64::from(u32::MAX)),
        };
        let min = self.min.max(lo);
        let max = self.max.unwrap_or(hi).min(hi);
        let x = elapsed.as_secs_f64() * self.rate;
        let f = match self.function {
            None => x,
            Some(Function::Sin) => x.sin(),
            Some(Function::Cos) => x.cos(),
            Some(Function::Tan) => x.tan(),
            Some(Function::Log) => x.ln(),
            Some(Function::Log10) => x.log10(),
            Some(Function::Exp) => x.exp(),
            Some(Function::Sqrt) => x.sqrt(),
            Some(Function::Abs) => x.abs(),
        };
        let mut v = self.initial + if f.is_finite() { f } else { 0.0 };
        if self.increasing {
            v = v.abs();
        }
        v = v * self.scale + self.offset;
        if self.deviation > 0.0 {
            // A cheap, stateless noise: the same second gives the same value.
            let s = crate::util::xorshift::step(
                self.seed ^ elapsed.as_secs().wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            let unit = (s % 2_000_001) as f64 / 1_000_000.0 - 1.0;
            v += if self.increasing {
                unit.abs() * self.deviation
            } else {
                unit * self.deviation
            };
        }
        if v < min {
            min
        } else if v > max {
            let span = max - min + 1.0;
            if self.wrap && span > 0.0 {
                min + (v - min).rem_euclid(span)
            } else {
                max
            }
        } else {
            v
        }
    }

    /// Appends the value TLV, typed as `tag` (the recorded type).
    pub fn push_value(&self, tag: Option<u8>, elapsed: Duration, out: &mut Vec<u8>) {
        let v = self.value_at(tag, elapsed).floor();
        match tag {
            Some(ber::TAG_INTEGER) | None => ber::push_i64(out, ber::TAG_INTEGER, v as i64),
            Some(t) => ber::push_u64(out, t, v as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: &Numeric, secs: u64) -> f64 {
        n.value_at(Some(ber::TAG_INTEGER), Duration::from_secs(secs))
    }

    #[test]
    fn counter_grows_with_rate_and_wraps() {
        let n = Numeric::parse("min=1,max=2,initial=2,wrap=1", Instant::now());
        // 2, then past max: wraps to 1, 2, 1 …
        assert_eq!(at(&n, 0), 2.0);
        assert_eq!(at(&n, 1), 1.0);
        assert_eq!(at(&n, 2), 2.0);
        let c = Numeric::parse("initial=100,rate=10", Instant::now());
        assert_eq!(at(&c, 3), 130.0);
    }

    #[test]
    fn without_wrap_the_value_sticks_at_max() {
        let n = Numeric::parse("min=0,max=50,initial=40,rate=5", Instant::now());
        assert_eq!(at(&n, 1), 45.0);
        assert_eq!(at(&n, 10), 50.0);
    }

    #[test]
    fn deviation_stays_within_bounds() {
        let n = Numeric::parse("initial=1000,rate=0,deviation=10", Instant::now());
        for s in 0..200 {
            let v = at(&n, s);
            assert!((990.0..=1010.0).contains(&v), "{v}");
        }
    }

    #[test]
    fn typed_encoding() {
        let n = Numeric::parse("initial=300,rate=0", Instant::now());
        let mut out = Vec::new();
        n.push_value(Some(ber::TAG_GAUGE32), Duration::ZERO, &mut out);
        assert_eq!(out, [0x42, 0x02, 0x01, 0x2c]);
    }
}
