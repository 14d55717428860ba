//! snmpsim's `delay`: the answer to a request touching the object leaves
//! `wait` milliseconds (± `deviation`) late; past 99,999 ms it is not sent
//! at all. The responder only says how long; the serving loop parks the
//! answer, so other requests and other agents are not held up (snmpsim
//! sleeps, holding up everything).

use std::time::Duration;

use super::{items, number};

/// Beyond this many milliseconds snmpsim drops the answer.
const DROP_ABOVE_MS: f64 = 99_999.0;

/// A parsed `delay` record.
#[derive(Debug, Clone, PartialEq)]
pub struct Delay {
    /// Milliseconds (snmpsim's default: 500).
    pub wait: f64,
    /// Milliseconds either side of `wait`, drawn per request.
    pub deviation: f64,
}

/// What a delay makes of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Sent this much later.
    For(Duration),
    /// Never sent.
    Drop,
}

impl Delay {
    /// The record's parameters: `wait`, `deviation` (`value`/`hexvalue`
    /// are the static value, read by the snapshot parser; snmpsim's
    /// `vlist` and `tlist` are accepted and not simulated).
    pub fn parse(params: &str) -> Result<Delay, String> {
        let mut d = Delay {
            wait: 500.0,
            deviation: 0.0,
        };
        for (k, v) in items(params) {
            match k {
                "wait" => d.wait = number(k, v)?,
                "deviation" => d.deviation = number(k, v)?.abs(),
                _ => {}
            }
        }
        Ok(d)
    }

    /// The hold for one request; `noise` is a fresh pseudo-random number.
    /// The deviation is drawn as snmpsim draws it: a whole number of
    /// milliseconds in `[-deviation, deviation)`.
    pub fn hold(&self, noise: u64) -> Hold {
        let mut ms = self.wait;
        let span = (2.0 * self.deviation).floor() as u64;
        if span > 0 {
            ms += (noise % span) as f64 - self.deviation.floor();
        }
        if ms > DROP_ABOVE_MS {
            Hold::Drop
        } else {
            Hold::For(Duration::from_secs_f64(ms.max(0.0) / 1000.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_params() {
        assert_eq!(
            Delay::parse("value=x").unwrap(),
            Delay {
                wait: 500.0,
                deviation: 0.0
            }
        );
        let d = Delay::parse("value=x,wait=250,deviation=-20,vlist=eq:1:9").unwrap();
        assert_eq!((d.wait, d.deviation), (250.0, 20.0));
        assert!(Delay::parse("wait=").is_err());
    }

    #[test]
    fn hold_stays_within_the_deviation_and_drops_past_the_limit() {
        let d = Delay::parse("wait=100,deviation=10").unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for noise in 0..1000 {
            let Hold::For(t) = d.hold(noise) else {
                panic!("dropped")
            };
            let ms = t.as_millis();
            assert!((90..110).contains(&ms), "{ms}");
            seen.insert(ms);
        }
        assert_eq!(seen.len(), 20, "every value of the range is drawn");
        let exact = Delay::parse("wait=300").unwrap();
        assert_eq!(exact.hold(7), Hold::For(Duration::from_millis(300)));
        assert_eq!(
            Delay::parse("wait=100000").unwrap().hold(0),
            Hold::Drop,
            "snmpsim drops answers held longer than 99999 ms"
        );
        assert_eq!(
            Delay::parse("wait=-5").unwrap().hold(0),
            Hold::For(Duration::ZERO)
        );
    }
}
