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

/// A duration for people, in the form [`parse_duration`] reads back:
/// `0s`, `250µs`, `20ms`, `1.5ms`, `1.234s`, `10s`, `1m30s`, `2h5m`. Never
/// more than three decimals, never a unit smaller than the value needs
/// (what Rust's `{:?}` prints, `1.234567891s` or `0ns`, is for programmers).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    // Each unit as long as its rounded value stays below the next one.
    let micros = (nanos + 500) / 1_000;
    if micros < 1_000 {
        return format!("{}µs", micros.max(1));
    }
    let tenth_millis = (nanos + 50_000) / 100_000;
    if tenth_millis < 100 {
        // `{}` of an f64 prints no trailing zeros: 1.5, 10, 2.346.
        return format!("{}ms", tenth_millis as f64 / 10.0);
    }
    let millis = (nanos + 500_000) / 1_000_000;
    if millis < 1_000 {
        return format!("{millis}ms");
    }
    if millis < 60_000 {
        return format!("{}s", millis as f64 / 1_000.0);
    }
    let secs = (nanos + NANOS_PER_SEC / 2) / NANOS_PER_SEC;
    let (h, m, s) = (secs / 3_600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
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
    fn durations_print_for_people_and_read_back() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1µs"),
            (Duration::from_nanos(1_499), "1µs"),
            (Duration::from_micros(250), "250µs"),
            (Duration::from_nanos(999_600), "1ms"),
            (Duration::from_micros(1_500), "1.5ms"),
            (Duration::from_micros(9_999), "10ms"),
            (Duration::from_millis(20), "20ms"),
            (Duration::from_micros(999_600), "1s"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_nanos(1_234_567_891), "1.235s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_micros(59_999_600), "1m"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3_600), "1h"),
            (Duration::from_secs(7_500), "2h5m"),
            (Duration::from_secs(86_401), "24h1s"),
        ];
        for (d, want) in cases {
            let shown = format_duration(d);
            assert_eq!(shown, want, "{d:?}");
            let back = parse_duration(&shown).unwrap_or_else(|| panic!("{shown} reads back"));
            let diff = back.abs_diff(d);
            assert!(
                diff <= d / 200 + Duration::from_micros(1),
                "{d:?} → {shown} → {back:?}"
            );
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
