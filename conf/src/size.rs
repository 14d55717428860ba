//! Humane sizes in bytes: `512k`, `64M`, `64MiB`, `1.5GiB`, `100MB`; a bare
//! number is bytes.

/// Parses a size such as `"64M"`, `"64MiB"`, `"512k"`, `"1G"`, `"1.5GiB"` or
/// `"1048576"` into bytes. A bare number (or a number with `B`) is bytes.
///
/// Units, case-insensitive, optionally after blanks (`64 MiB`):
/// - `K`, `M`, `G`, `T` and `KiB`, `MiB`, `GiB`, `TiB` are powers of 1024
///   (as systemd's `MemoryMax=` and most tools read them: `64M` = `64MiB`);
/// - `KB`, `MB`, `GB`, `TB` (SI) are powers of 1000 (`1MB` = 1 000 000).
///
/// A fraction is allowed with a unit (`1.5GiB`; any part of a byte left over
/// is dropped) but not on plain bytes. Returns `None` for anything else, for
/// negative values and for sizes that do not fit in a `u64`. `0` parses:
/// whether zero makes sense is the caller's business.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let num_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(num_len);
    let unit = unit.trim_start();
    let per_unit: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if num.contains('.') && (per_unit == 1 || frac.contains('.')) {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int_val: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut bytes = int_val.checked_mul(per_unit)?;
    // At most 1 TiB per unit: beyond 13 fraction digits nothing reaches a byte.
    let frac = &frac[..frac.len().min(13)];
    if !frac.is_empty() {
        let f: u128 = frac.parse().ok()?;
        let scale = 10u128.pow(u32::try_from(frac.len()).ok()?);
        bytes = bytes.checked_add(f * per_unit / scale)?;
    }
    u64::try_from(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KI: u64 = 1024;
    const MI: u64 = 1024 * KI;
    const GI: u64 = 1024 * MI;
    const TI: u64 = 1024 * GI;

    #[test]
    fn binary_units() {
        assert_eq!(parse_size("512k"), Some(512 * KI));
        assert_eq!(parse_size("512K"), Some(512 * KI));
        assert_eq!(parse_size("512KiB"), Some(512 * KI));
        assert_eq!(parse_size("64M"), Some(64 * MI));
        assert_eq!(parse_size("64MiB"), Some(64 * MI));
        assert_eq!(parse_size("64m"), Some(64 * MI));
        assert_eq!(parse_size("1G"), Some(GI));
        assert_eq!(parse_size("1gib"), Some(GI));
        assert_eq!(parse_size("2T"), Some(2 * TI));
        assert_eq!(parse_size("2TiB"), Some(2 * TI));
    }

    #[test]
    fn si_units() {
        assert_eq!(parse_size("1KB"), Some(1_000));
        assert_eq!(parse_size("1kB"), Some(1_000));
        assert_eq!(parse_size("100MB"), Some(100_000_000));
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("1TB"), Some(1_000_000_000_000));
    }

    #[test]
    fn bytes_fractions_and_blanks() {
        assert_eq!(parse_size("1048576"), Some(MI));
        assert_eq!(parse_size("4096B"), Some(4096));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("1.5GiB"), Some(3 * GI / 2));
        assert_eq!(parse_size("1.5G"), Some(1_610_612_736));
        assert_eq!(parse_size(".5M"), Some(MI / 2));
        assert_eq!(parse_size("0.1K"), Some(102));
        assert_eq!(parse_size("1.5MB"), Some(1_500_000));
        assert_eq!(parse_size(" 64 MiB "), Some(64 * MI));
        assert_eq!(parse_size("1.00000000000000000001G"), Some(GI));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            " ",
            "M",
            ".M",
            "-1M",
            "1.5",
            "1.5B",
            "1.2.3M",
            "64X",
            "64Mi",
            "64MiBs",
            "64 M B",
            "1e6",
            "ten",
            "1M1K",
            "16777216T",
            "18446744073709551616",
            "99999999999999999999999999999999999999999T",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert_eq!(parse_size("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_size("16777215T"), Some(16_777_215 * TI));
    }
}
