//! Byte-level helpers shared by the snapshot parsers: line cursor, trimming,
//! OID, number and hex scanning. Everything works on `&[u8]` so that a
//! snapshot is parsed without per-line `String`s.

use crate::wire::value::Oid;

/// Walks a byte buffer line by line, counting lines from 1. A line is the
/// bytes up to (not including) `\n`; a final line without `\n` counts too.
pub(super) struct Lines<'a> {
    data: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Lines {
            data,
            pos: 0,
            line: 0,
        }
    }

    /// The next line and its 1-based number.
    pub(super) fn next_line(&mut self) -> Option<(usize, &'a [u8])> {
        if self.pos >= self.data.len() {
            return None;
        }
        let rest = &self.data[self.pos..];
        let (line, advance) = match find_byte(rest, b'\n') {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        self.pos += advance;
        self.line += 1;
        Some((self.line, line))
    }

    /// The next line without consuming it.
    pub(super) fn peek_line(&self) -> Option<&'a [u8]> {
        if self.pos >= self.data.len() {
            return None;
        }
        let rest = &self.data[self.pos..];
        Some(match find_byte(rest, b'\n') {
            Some(i) => &rest[..i],
            None => rest,
        })
    }

    /// Where the cursor stands, to come back with [`Lines::rewind`].
    pub(super) fn mark(&self) -> (usize, usize) {
        (self.pos, self.line)
    }

    pub(super) fn rewind(&mut self, mark: (usize, usize)) {
        (self.pos, self.line) = mark;
    }
}

/// The first `b` in `s`, eight bytes at a time.
pub(super) fn find_byte(s: &[u8], b: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES * u64::from(b);
    let mut words = s.chunks_exact(8);
    let mut at = 0;
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let x = u64::from_le_bytes(word) ^ pattern;
        // The lowest flagged byte is the first zero byte of `x` (a borrow
        // only ever flags bytes above a zero one).
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            return Some(at + zero.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&c| c == b)
        .map(|i| at + i)
}

pub(super) fn find_seq(s: &[u8], pat: &[u8]) -> Option<usize> {
    if pat.is_empty() || s.len() < pat.len() {
        return None;
    }
    s.windows(pat.len()).position(|w| w == pat)
}

/// `s` without `prefix`, comparing ASCII case-insensitively.
pub(super) fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    if s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// A dotted numeric OID, with or without a leading dot. `None` on an empty
/// OID, an empty arc, a non-digit or an arc beyond 2^32-1.
pub(super) fn parse_oid(s: &[u8]) -> Option<Oid> {
    let s = s.strip_prefix(b".").unwrap_or(s);
    let mut oid = Vec::with_capacity(s.len() / 2 + 1);
    // Up to 10 digits fit a u64 without overflow; range-check at each dot.
    let mut arc: u64 = 0;
    let mut digits = 0usize;
    for &c in s {
        let d = c.wrapping_sub(b'0');
        if d < 10 {
            arc = arc * 10 + u64::from(d);
            digits += 1;
            if digits > 10 {
                return None;
            }
        } else if c == b'.' {
            oid.push(u32::try_from(arc).ok().filter(|_| digits > 0)?);
            arc = 0;
            digits = 0;
        } else {
            return None;
        }
    }
    oid.push(u32::try_from(arc).ok().filter(|_| digits > 0)?);
    Some(oid)
}

/// Unsigned decimal, digits only (an optional `+` is allowed, as Python's
/// `int()` does).
pub(super) fn parse_u64(s: &[u8]) -> Option<u64> {
    let s = s.strip_prefix(b"+").unwrap_or(s);
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

pub(super) fn parse_u32(s: &[u8]) -> Option<u32> {
    parse_u64(s).and_then(|v| u32::try_from(v).ok())
}

/// Signed decimal with an optional sign.
pub(super) fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.first() {
        Some(b'-') => {
            let m = parse_u64(&s[1..])?;
            if s.get(1) == Some(&b'+') {
                return None;
            }
            0i64.checked_sub_unsigned(m)
        }
        _ => parse_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

pub(super) fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Contiguous hex (`414243`), even length, either case.
pub(super) fn decode_hex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 2);
    for pair in s.chunks_exact(2) {
        out.push(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?);
    }
    Some(out)
}

/// One byte written as one or two hex digits (`0A`, `a`).
pub(super) fn hex_byte(tok: &[u8]) -> Option<u8> {
    match *tok {
        [a] => hex_digit(a),
        [a, b] => Some(hex_digit(a)? << 4 | hex_digit(b)?),
        _ => None,
    }
}

/// A dotted quad, each part 0..=255.
pub(super) fn parse_ipv4(s: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split(|&c| c == b'.');
    for slot in &mut out {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 {
            return None;
        }
        *slot = u8::try_from(parse_u64(part)?).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}

/// Whitespace-separated tokens of a line.
pub(super) fn tokens(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|c| c.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
}

/// Input text quoted for a message: lossy UTF-8, control characters
/// escaped, cut at 80 characters.
pub(super) fn show(s: &[u8]) -> String {
    const MAX: usize = 80;
    let text = String::from_utf8_lossy(s);
    let mut out = String::with_capacity(text.len().min(MAX) + 2);
    out.push('"');
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids() {
        assert_eq!(parse_oid(b"1.3.6"), Some(vec![1, 3, 6]));
        assert_eq!(parse_oid(b".1.3.6"), Some(vec![1, 3, 6]));
        assert_eq!(parse_oid(b"1.4294967295"), Some(vec![1, u32::MAX]));
        assert_eq!(parse_oid(b"1.4294967296"), None);
        assert_eq!(parse_oid(b"1..3"), None);
        assert_eq!(parse_oid(b"1.3."), None);
        assert_eq!(parse_oid(b""), None);
        assert_eq!(parse_oid(b"."), None);
        assert_eq!(parse_oid(b"1.a"), None);
        assert_eq!(parse_oid(b"99999999999999999999999"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"+5"), Some(5));
        assert_eq!(parse_i64(b"-+5"), None);
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b" 1"), None);
    }

    #[test]
    fn hex_and_ip() {
        assert_eq!(decode_hex(b"00fFA0"), Some(vec![0, 0xff, 0xa0]));
        assert_eq!(decode_hex(b"0"), None);
        assert_eq!(decode_hex(b"zz"), None);
        assert_eq!(hex_byte(b"a"), Some(10));
        assert_eq!(parse_ipv4(b"10.0.255.1"), Some([10, 0, 255, 1]));
        assert_eq!(parse_ipv4(b"10.0.256.1"), None);
        assert_eq!(parse_ipv4(b"10.0.1"), None);
        assert_eq!(parse_ipv4(b"10.0.1.2.3"), None);
    }

    #[test]
    fn lines_and_show() {
        let mut l = Lines::new(b"a\r\n\nb");
        assert_eq!(l.next_line(), Some((1, &b"a\r"[..])));
        assert_eq!(l.peek_line(), Some(&b""[..]));
        assert_eq!(l.next_line(), Some((2, &b""[..])));
        assert_eq!(l.next_line(), Some((3, &b"b"[..])));
        assert_eq!(l.next_line(), None);
        assert_eq!(show(b"a\nb"), "\"a\\nb\"");
    }
}
