//! Humane durations: `100ms`, `10s`, `5m`, `1h30m`, `1.5s`, `250us`; a bare
//! number is seconds.

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a duration such as `"100ms"`, `"10s"`, `"5m"`, `"1h"`, `"1.5s"`,
/// `"250us"` or `"1h30m"`. A bare number (`"10"`, `"0.5"`) is seconds.
///
/// Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d`. Returns `None` for
/// anything else, for negative values and for values too large for a
/// [`Duration`].
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(nanos) = number_nanos(s, NANOS_PER_SEC) {
        return to_duration(nanos);
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() {
            return None;
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3_600 * NANOS_PER_SEC,
            "d" => 86_400 * NANOS_PER_SEC,
            _ => return None,
        };
        total = total.checked_add(number_nanos(num, per_unit)?)?;
        rest = after;
    }
    to_duration(total)
}

/// `num` (digits with an optional fraction) times `per_unit` nanoseconds,
/// computed exactly; fractions below a nanosecond are dropped.
fn number_nanos(num: &str, per_unit: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int_val: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut nanos = int_val.checked_mul(per_unit)?;
    // Keep at most 18 fraction digits: beyond that nothing reaches 1 ns.
    let frac = &frac[..frac.len().min(18)];
    if !frac.is_empty() {
        let f: u128 = frac.parse().ok()?;
        let scale = 10u128.pow(u32::try_from(frac.len()).ok()?);
        nanos = nanos.checked_add(f.checked_mul(per_unit)? / scale)?;
    }
    Some(nanos)
}

fn to_duration(nanos: u128) -> Option<Duration> {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).ok()?;
    let sub = u32::try_from(nanos % NANOS_PER_SEC).ok()?;
    Some(Duration::new(secs, sub))
}

/// Parses `MIN..MAX` (for `restart.backoff`), each side a duration.
pub(crate) fn parse_range(s: &str) -> Option<(Duration, Duration)> {
    let (a, b) = s.split_once("..")?;
    Some((parse_duration(a)?, parse_duration(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("100ms"), ms(100));
        assert_eq!(parse_duration("10s"), ms(10_000));
        assert_eq!(parse_duration("5m"), ms(300_000));
        assert_eq!(parse_duration("1h"), ms(3_600_000));
        assert_eq!(parse_duration("1d"), ms(86_400_000));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Some(Duration::from_micros(250)));
        assert_eq!(parse_duration("7ns"), Some(Duration::from_nanos(7)));
    }

    #[test]
    fn fractions_and_bare_numbers() {
        assert_eq!(parse_duration("1.5s"), ms(1_500));
        assert_eq!(parse_duration("0.1s"), ms(100));
        assert_eq!(parse_duration(".5s"), ms(500));
        assert_eq!(parse_duration("10"), ms(10_000));
        assert_eq!(parse_duration("2.25"), ms(2_250));
        assert_eq!(parse_duration(" 3s "), ms(3_000));
    }

    #[test]
    fn compound() {
        assert_eq!(parse_duration("1h30m"), ms(5_400_000));
        assert_eq!(parse_duration("1m 30s"), ms(90_000));
        assert_eq!(parse_duration("1s500ms"), ms(1_500));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            " ",
            "s",
            "10x",
            "-1s",
            "1.2.3s",
            "ten",
            "1 s x",
            "1e3",
            "5M",
            "99999999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("100ms..30s"),
            Some((Duration::from_millis(100), Duration::from_secs(30)))
        );
        assert_eq!(parse_range("100ms-30s"), None);
        assert_eq!(parse_range("x..1s"), None);
    }
}
