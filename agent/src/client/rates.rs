//! Two walks of one device, some seconds apart, made into one snapshot
//! whose counters count: a Counter32, Counter64 or TimeTicks object (other
//! than sysUpTime.0, which an agent serves live) whose value changed
//! becomes a `numeric` record going on from its second value at the rate
//! observed between the two; every other object keeps its second value.

use std::collections::HashMap;
use std::time::Instant;

use crate::data::snapshot::{Record, Variation};
use crate::wire::value::{Oid, Value};

/// sysUpTime.0
const SYS_UPTIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];

/// One object as a walk saw it, and when its answer came.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The instance.
    pub oid: Oid,
    /// Its value.
    pub value: Value,
    /// When the answer holding it arrived.
    pub at: Instant,
}

/// How much a counter grew from `a` to `b`, once around at most; `None`
/// for values that are not counters of the same type.
fn growth(a: &Value, b: &Value) -> Option<u64> {
    match (a, b) {
        (Value::Counter32(a), Value::Counter32(b)) | (Value::TimeTicks(a), Value::TimeTicks(b)) => {
            Some(u64::from(b.wrapping_sub(*a)))
        }
        (Value::Counter64(a), Value::Counter64(b)) => Some(b.wrapping_sub(*a)),
        _ => None,
    }
}

/// A rate as `numeric` reads it: at most three decimals, no trailing zeros.
fn rate_text(rate: f64) -> String {
    let text = format!("{rate:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() {
        "0".into()
    } else {
        text.into()
    }
}

/// The records of `second` (in its order), each counter that moved since
/// `first` as a `numeric` variation with the observed rate per second.
pub fn records(first: &[Seen], second: Vec<Seen>) -> Vec<Record> {
    let before: HashMap<&[u32], &Seen> = first.iter().map(|s| (s.oid.as_slice(), s)).collect();
    second
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let moved = before
                .get(s.oid.as_slice())
                .filter(|_| s.oid != SYS_UPTIME)
                .and_then(|a| {
                    let grew = growth(&a.value, &s.value).filter(|&g| g > 0)?;
                    let secs = s.at.saturating_duration_since(a.at).as_secs_f64();
                    (secs > 0.0).then(|| grew as f64 / secs)
                });
            let variation = moved.map(|rate| {
                let initial = match &s.value {
                    Value::Counter32(v) | Value::TimeTicks(v) => u64::from(*v),
                    Value::Counter64(v) => *v,
                    _ => 0,
                };
                Variation {
                    name: "numeric".into(),
                    params: format!("rate={},initial={initial},wrap=1", rate_text(rate)),
                }
            });
            Record {
                oid: s.oid,
                value: s.value,
                variation,
                line: i + 1,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn seen(oid: &[u32], value: Value, at: Instant) -> Seen {
        Seen {
            oid: oid.to_vec(),
            value,
            at,
        }
    }

    #[test]
    fn moved_counters_get_their_rate_and_the_rest_stays() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let in_octets = [1, 3, 6, 1, 2, 1, 2, 2, 1, 10, 1];
        let hc = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 1];
        let errors = [1, 3, 6, 1, 2, 1, 2, 2, 1, 14, 1];
        let name = [1, 3, 6, 1, 2, 1, 1, 5, 0];
        let first = vec![
            seen(SYS_UPTIME, Value::TimeTicks(100), t0),
            seen(&name, Value::OctetString(b"r1".to_vec()), t0),
            seen(&in_octets, Value::Counter32(u32::MAX - 99), t0),
            seen(&errors, Value::Counter32(7), t0),
            seen(&hc, Value::Counter64(1000), t0),
        ];
        let second = vec![
            seen(SYS_UPTIME, Value::TimeTicks(300), t1),
            seen(&name, Value::OctetString(b"r1".to_vec()), t1),
            // wrapped: 100 to the top, 201 after it
            seen(&in_octets, Value::Counter32(201), t1),
            seen(&errors, Value::Counter32(7), t1),
            seen(&hc, Value::Counter64(1005), t1),
        ];
        let r = records(&first, second);
        let params: Vec<Option<&str>> = r
            .iter()
            .map(|r| r.variation.as_ref().map(|v| v.params.as_str()))
            .collect();
        assert_eq!(
            params,
            vec![
                None,
                None,
                Some("rate=150.5,initial=201,wrap=1"),
                None,
                Some("rate=2.5,initial=1005,wrap=1")
            ]
        );
        assert_eq!(r[2].value, Value::Counter32(201));
        // the writer gives it back as the snmprec numeric syntax
        let mut out = Vec::new();
        crate::data::snapshot::write(&r[2..3], crate::data::snapshot::Format::Snmprec, &mut out)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1.3.6.1.2.1.2.2.1.10.1|65:numeric|rate=150.5,initial=201,wrap=1\n"
        );
    }

    #[test]
    fn rates_are_written_plainly() {
        assert_eq!(rate_text(1000.0), "1000");
        assert_eq!(rate_text(0.12349), "0.123");
        assert_eq!(rate_text(0.0001), "0");
    }
}
