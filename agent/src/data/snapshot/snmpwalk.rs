//! net-snmp `snmpwalk` output as a snapshot: `OID = TYPE: VALUE` records.
//!
//! Both `snmpwalk -ObentU` (numeric OIDs, enums and timeticks, no units —
//! what snmpsim recommends) and the default `-On` form are read, with or
//! without MIBs loaded. What net-snmp 5.9 prints (`snmplib/mib.c`,
//! `sprint_realloc_*`), checked against a live `snmpd`:
//!
//! - `STRING: "text"` — quoted, `\"` and `\\` escaped, newlines printed raw,
//!   so a quoted string runs on until its closing quote; with a DISPLAY-HINT
//!   (MIB loaded) `STRING: text` is unquoted and may also span lines: the
//!   lines up to the next `OID = ` line belong to it. The bytes between
//!   quotes are kept exactly, a CR included. An unquoted one-line
//!   value made of `:`-separated hex groups (`0:1a:2b`, the `1x:` hint of
//!   MAC addresses) is taken as those bytes, as snmpsim does;
//! - `""` — the empty string, with no type;
//! - `Hex-STRING: 41 42 0A`, 16 bytes a line, continuing on further lines;
//! - `INTEGER: 5`, `INTEGER: up(1)`, `INTEGER: 21474836.47` (a `d-2` hint:
//!   the digits are the number), units after the number are ignored;
//! - `Gauge32:`, `Counter32:`, `Counter64:`, `UInteger32:`/`Unsigned32:`
//!   (as Gauge32), `IpAddress: 1.2.3.4`, `Network Address: 0A:00:00:01`,
//!   `OID: .1.3.6.1` (also `iso.3.6.1`, `ccitt.0`), `NULL`;
//! - `Timeticks: (12345) 0:02:03.45`, and with `-Ot` the bare number
//!   `= 12345` (a bare number is taken as TimeTicks, as snmpsim does);
//! - `BITS: 80 00 0 ` — the hex bytes, then the numbers (or `name(n)`) of
//!   the set bits; the bit list is checked against the bytes;
//! - `Opaque: ` hex, or net-snmp's special opaque types `Opaque: Float:`,
//!   `Double:`, `Counter64:`, `UInt64:`, `Int64:` — re-encoded as net-snmp
//!   sends them (`9f 78 04 <float>` …), so net-snmp tools print them again;
//! - `No Such Object available on this agent at this OID`, `No Such Instance
//!   currently exists at this OID`, `No more variables left in this MIB View
//!   (It is past the end of the MIB tree)`;
//! - `Wrong Type (should be X): <value>` — the value that follows is used.
//!
//! The `No more variables left…` line that ends a walk repeats the last OID;
//! it marks the end and is dropped when it follows a record for that OID.
//! Type names are matched case-insensitively (snmpsim upper-cases them).
//! Blank lines, `#` lines and snmpwalk's `End of MIB` trailer are skipped.
//! Symbolic OIDs (`IF-MIB::ifDescr.1`) cannot be resolved without MIBs and
//! are reported: walk with `-On`.

use super::lex::{
    Lines, find_byte, find_seq, hex_byte, parse_i64, parse_ipv4, parse_oid, parse_u32, parse_u64,
    show, strip_prefix_ci, tokens,
};
use super::{Record, Sink};
use crate::wire::value::{Oid, Value};

/// Parses a whole walk; records in file order, errors as `(line, message)`.
pub(super) fn parse(data: &[u8], sink: &mut Sink) {
    let mut lines = Lines::new(data);
    while let Some((line_no, raw)) = lines.next_line() {
        let line = raw.trim_ascii();
        if line.is_empty() || line[0] == b'#' || line == b"End of MIB" {
            continue;
        }
        match parse_record(raw, &mut lines) {
            // snmpwalk ends a walk with `<last OID> = No more variables left…`:
            // the end marker, not a value for that OID.
            Ok((oid, Value::EndOfMibView)) if sink.records.last().is_some_and(|r| r.oid == oid) => {
            }
            Ok((oid, value)) => sink.records.push(Record {
                oid,
                value,
                variation: None,
                line: line_no,
            }),
            Err(msg) => sink.errors.push((line_no, msg)),
        }
    }
}

fn parse_record<'a>(raw: &'a [u8], lines: &mut Lines<'a>) -> Result<(Oid, Value), String> {
    let (oid_text, value_raw) = match find_seq(raw, b" = ") {
        Some(i) => (&raw[..i], &raw[i + 3..]),
        None => {
            let t = raw.trim_ascii_end();
            match t.strip_suffix(b" =") {
                Some(oid) => (oid, &b""[..]),
                None => return Err(format!("expected `OID = VALUE`, got {}", show(raw))),
            }
        }
    };
    let oid = parse_walk_oid(oid_text.trim_ascii())?;
    let value = parse_value(value_raw, lines)?;
    Ok((oid, value))
}

/// A numeric OID as snmpwalk prints it: `.1.3.6.1`, or without `-On` and
/// without MIBs `iso.3.6.1` (the root arcs are the only names it uses then).
fn parse_walk_oid(s: &[u8]) -> Result<Oid, String> {
    let (root, rest) = match find_byte(s, b'.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, &b""[..]),
    };
    let root_arc = match root {
        b"iso" => Some(1),
        b"ccitt" => Some(0),
        b"joint-iso-ccitt" => Some(2),
        _ => None,
    };
    let parsed = match root_arc {
        Some(arc) if rest.is_empty() => Some(vec![arc]),
        Some(arc) => parse_oid(rest).map(|tail| {
            let mut oid = Vec::with_capacity(tail.len() + 1);
            oid.push(arc);
            oid.extend(tail);
            oid
        }),
        None => parse_oid(s),
    };
    parsed.ok_or_else(|| {
        if find_seq(s, b"::").is_some() || s.iter().any(u8::is_ascii_alphabetic) {
            format!(
                "symbolic OID {} cannot be resolved without its MIB; record the walk with \
                 `snmpwalk -On` or `-ObentU`",
                show(s)
            )
        } else {
            format!("bad OID {} (expected dotted decimal arcs < 2^32)", show(s))
        }
    })
}

/// `raw` is everything after ` = ` on the record's first line, untrimmed
/// (a quoted string keeps its bytes exactly).
fn parse_value<'a>(raw: &'a [u8], lines: &mut Lines<'a>) -> Result<Value, String> {
    let v = raw.trim_ascii();
    if v == b"\"\"" {
        return Ok(Value::OctetString(Vec::new()));
    }
    if let Some(rest) = strip_prefix_ci(v, b"Wrong Type (should be ") {
        let Some(i) = find_seq(rest, b"): ") else {
            return Err(format!("bad `Wrong Type` value {}", show(v)));
        };
        let skip = raw.len() - raw.trim_ascii_start().len();
        let actual = &raw[skip + (v.len() - rest.len()) + i + 3..];
        return parse_value(actual, lines);
    }
    if strip_prefix_ci(v, b"No Such Object available").is_some() {
        return Ok(Value::NoSuchObject);
    }
    if strip_prefix_ci(v, b"No Such Instance currently exists").is_some() {
        return Ok(Value::NoSuchInstance);
    }
    if strip_prefix_ci(v, b"No more variables left in this MIB View").is_some() {
        return Ok(Value::EndOfMibView);
    }
    if v.eq_ignore_ascii_case(b"NULL") {
        return Ok(Value::Null);
    }
    let Some(colon) = find_byte(v, b':') else {
        // `-Ot` prints TimeTicks as a bare number, without a type.
        return match parse_u32(v) {
            Some(t) => Ok(Value::TimeTicks(t)),
            None if v.is_empty() => Err("missing value after `=`".to_string()),
            None => Err(format!("unknown value {} (no `TYPE:` prefix)", show(v))),
        };
    };
    let ty = &v[..colon];
    // The value after `TYPE:`, still raw at its end (for strings).
    let lead = raw.len() - raw.trim_ascii_start().len();
    let after = &raw[lead + colon + 1..];
    let rest = after.trim_ascii();
    let is = |name: &[u8]| ty.eq_ignore_ascii_case(name);

    if is(b"STRING") {
        parse_string(after.strip_prefix(b" ").unwrap_or(after), lines)
    } else if is(b"Hex-STRING") || is(b"NsapAddress") {
        hex_bytes(rest, lines, ty).map(Value::OctetString)
    } else if is(b"INTEGER") {
        number_token(first_token(rest))
            .and_then(parse_i64_hinted)
            .map(Value::Integer)
            .ok_or_else(|| bad(ty, rest))
    } else if is(b"Gauge32") || is(b"Unsigned32") || is(b"UInteger32") || is(b"Gauge") {
        number_token(first_token(rest))
            .and_then(parse_i64_hinted)
            .and_then(|n| u32::try_from(n).ok())
            .map(Value::Gauge32)
            .ok_or_else(|| bad(ty, rest))
    } else if is(b"Counter32") || is(b"Counter") {
        parse_u32(first_token(rest))
            .map(Value::Counter32)
            .ok_or_else(|| bad(ty, rest))
    } else if is(b"Counter64") {
        parse_u64(first_token(rest))
            .map(Value::Counter64)
            .ok_or_else(|| bad(ty, rest))
    } else if is(b"Timeticks") {
        let tok = first_token(rest);
        let num = tok
            .strip_prefix(b"(")
            .and_then(|t| t.strip_suffix(b")"))
            .unwrap_or(tok);
        parse_u32(num)
            .map(Value::TimeTicks)
            .ok_or_else(|| bad(ty, rest))
    } else if is(b"OID") {
        parse_walk_oid(first_token(rest)).map(Value::ObjectId)
    } else if is(b"IpAddress") {
        parse_ipv4(first_token(rest))
            .map(Value::IpAddress)
            .ok_or_else(|| bad(ty, rest))
    } else if is(b"Network Address") {
        let parts: Option<Vec<u8>> = first_token(rest)
            .split(|&c| c == b':')
            .map(hex_byte)
            .collect();
        parts
            .and_then(|p| <[u8; 4]>::try_from(p.as_slice()).ok())
            .map(Value::IpAddress)
            .ok_or_else(|| bad(ty, rest))
    } else if is(b"Opaque") {
        parse_opaque(rest, lines)
    } else if is(b"BITS") {
        parse_bits(rest, lines).map(Value::OctetString)
    } else {
        Err(format!("unknown value type {}", show(ty)))
    }
}

fn bad(ty: &[u8], rest: &[u8]) -> String {
    format!("bad {} value {}", String::from_utf8_lossy(ty), show(rest))
}

fn first_token(s: &[u8]) -> &[u8] {
    tokens(s).next().unwrap_or(b"")
}

/// The number in an INTEGER token: `5`, `up(1)` (enum label), `21474836.47`
/// (a `d-N` DISPLAY-HINT puts a point among the digits).
fn number_token(tok: &[u8]) -> Option<&[u8]> {
    if let Some(inner) = tok.strip_suffix(b")") {
        let open = inner.iter().rposition(|&c| c == b'(')?;
        return Some(&inner[open + 1..]);
    }
    Some(tok)
}

fn parse_i64_hinted(tok: &[u8]) -> Option<i64> {
    if tok.contains(&b'.') {
        let digits: Vec<u8> = tok.iter().copied().filter(|&c| c != b'.').collect();
        parse_i64(&digits)
    } else {
        parse_i64(tok)
    }
}

/// Does this line start a new record (`OID = …`)? Used to find where a
/// multi-line value ends.
fn is_record_start(line: &[u8]) -> bool {
    let t = line.trim_ascii_start();
    let Some(first) = t.first() else {
        return false;
    };
    if !(first.is_ascii_alphanumeric() || *first == b'.') {
        return false;
    }
    let end = t
        .iter()
        .position(|c| c.is_ascii_whitespace())
        .unwrap_or(t.len());
    let after = t[end..].trim_ascii_start();
    after.first() == Some(&b'=') && after.get(1).is_none_or(|c| c.is_ascii_whitespace())
}

/// A STRING value; `s` starts right after `STRING: `.
fn parse_string<'a>(s: &'a [u8], lines: &mut Lines<'a>) -> Result<Value, String> {
    if let Some(body) = s.strip_prefix(b"\"") {
        let mark = lines.mark();
        return match quoted(body, lines) {
            Some(bytes) => Ok(Value::OctetString(bytes)),
            None => {
                // Resume right after this record's line so the rest of the
                // file is still checked.
                lines.rewind(mark);
                Err("quoted STRING has no closing quote before the end of the file".to_string())
            }
        };
    }
    // Unquoted (DISPLAY-HINT) string: runs on over following lines until the
    // next record.
    let mut cont: Vec<&[u8]> = Vec::new();
    while let Some(next) = lines.peek_line() {
        if is_record_start(next) {
            break;
        }
        cont.push(next);
        lines.next_line();
    }
    while cont.last().is_some_and(|l| l.trim_ascii().is_empty()) {
        cont.pop();
    }
    if cont.is_empty() {
        let text = s.trim_ascii_end();
        if let Some(bytes) = colon_hex(text) {
            return Ok(Value::OctetString(bytes));
        }
        return Ok(Value::OctetString(text.to_vec()));
    }
    let mut out = s.to_vec();
    let last = cont.len() - 1;
    for (i, l) in cont.into_iter().enumerate() {
        out.push(b'\n');
        out.extend_from_slice(if i == last { l.trim_ascii_end() } else { l });
    }
    Ok(Value::OctetString(out))
}

/// The body of a quoted string after its opening quote, over as many lines
/// as it takes. `None` when the file ends first.
fn quoted<'a>(mut seg: &'a [u8], lines: &mut Lines<'a>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(seg.len());
    loop {
        while let Some(i) = seg.iter().position(|&c| c == b'"' || c == b'\\') {
            out.extend_from_slice(&seg[..i]);
            if seg[i] == b'"' {
                return Some(out);
            }
            match seg.get(i + 1) {
                Some(&c @ (b'"' | b'\\')) => {
                    out.push(c);
                    seg = &seg[i + 2..];
                }
                _ => {
                    out.push(b'\\');
                    seg = &seg[i + 1..];
                }
            }
        }
        out.extend_from_slice(seg);
        let (_, next) = lines.next_line()?;
        out.push(b'\n');
        seg = next;
    }
}

/// snmpsim's reading of an unquoted `a:b:c` string: all groups 1–2 hex
/// digits, at least two groups.
fn colon_hex(s: &[u8]) -> Option<Vec<u8>> {
    find_byte(s, b':')?;
    s.split(|&c| c == b':').map(hex_byte).collect()
}

/// Hex bytes (`41 42 0A`) on the first line and on continuation lines made of
/// hex bytes only.
fn hex_bytes(first: &[u8], lines: &mut Lines<'_>, ty: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(first.len() / 3 + 1);
    for tok in tokens(first) {
        out.push(hex_byte(tok).ok_or_else(|| bad(ty, first))?);
    }
    while let Some(next) = lines.peek_line() {
        if is_record_start(next)
            || next.trim_ascii().is_empty()
            || !tokens(next).all(|t| hex_byte(t).is_some())
        {
            break;
        }
        out.extend(tokens(next).filter_map(hex_byte));
        lines.next_line();
    }
    Ok(out)
}

/// `BITS: 50 40 73 … 1 3 9 17`: hex bytes, then the set bits' numbers (or
/// `name(n)`). A two-digit bit number looks like a hex byte, so the split is
/// the one where the listed bits are exactly the bits set in the bytes.
fn parse_bits(first: &[u8], lines: &mut Lines<'_>) -> Result<Vec<u8>, String> {
    let is_bits_token =
        |t: &[u8]| hex_byte(t).is_some() || parse_u32(number_token(t).unwrap_or(t)).is_some();
    let mut toks: Vec<&[u8]> = tokens(first).collect();
    while let Some(next) = lines.peek_line() {
        if is_record_start(next) || next.trim_ascii().is_empty() || !tokens(next).all(is_bits_token)
        {
            break;
        }
        toks.extend(tokens(next));
        lines.next_line();
    }
    let hex_run = toks
        .iter()
        .take_while(|t| t.len() == 2 && hex_byte(t).is_some())
        .count();
    let listed: Vec<Option<u32>> = toks
        .iter()
        .map(|t| number_token(t).and_then(parse_u32))
        .collect();
    for k in (0..=hex_run).rev() {
        let bytes: Vec<u8> = toks[..k].iter().filter_map(|t| hex_byte(t)).collect();
        let set = (0..bytes.len() * 8).filter(|&b| bytes[b / 8] & (0x80 >> (b % 8)) != 0);
        if set
            .map(|b| u32::try_from(b).ok())
            .eq(listed[k..].iter().copied())
        {
            return Ok(bytes);
        }
    }
    Err(format!(
        "BITS value {} does not match its list of set bits",
        show(first)
    ))
}

/// `Opaque:` hex, or one of net-snmp's typed opaque values.
fn parse_opaque(rest: &[u8], lines: &mut Lines<'_>) -> Result<Value, String> {
    let bad_opaque = || format!("bad Opaque value {}", show(rest));
    let typed = |prefix: &[u8]| strip_prefix_ci(rest, prefix).map(first_token);
    let bytes = if let Some(t) = typed(b"Float:") {
        let f: f32 = std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad_opaque)?;
        [&[0x9f, 0x78, 4][..], &f.to_be_bytes()].concat()
    } else if let Some(t) = typed(b"Double:") {
        let f: f64 = std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad_opaque)?;
        [&[0x9f, 0x79, 8][..], &f.to_be_bytes()].concat()
    } else if let Some(t) = typed(b"Counter64:") {
        opaque_int(0x76, &ber_unsigned(parse_u64(t).ok_or_else(bad_opaque)?))
    } else if let Some(t) = typed(b"UInt64:") {
        opaque_int(0x7b, &ber_unsigned(parse_u64(t).ok_or_else(bad_opaque)?))
    } else if let Some(t) = typed(b"Int64:") {
        opaque_int(0x7a, &ber_signed(parse_i64(t).ok_or_else(bad_opaque)?))
    } else {
        hex_bytes(rest, lines, b"Opaque")?
    };
    Ok(Value::Opaque(bytes))
}

fn opaque_int(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 3);
    out.extend_from_slice(&[0x9f, tag, content.len() as u8]);
    out.extend_from_slice(content);
    out
}

/// Minimal BER INTEGER content of an unsigned number.
fn ber_unsigned(v: u64) -> Vec<u8> {
    let (bytes, skip, pad) = crate::wire::ber::uint_content(v);
    let mut out = Vec::with_capacity(9);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(&bytes[skip..]);
    out
}

/// Minimal BER INTEGER content of a signed number.
fn ber_signed(v: i64) -> Vec<u8> {
    let (bytes, skip) = crate::wire::ber::int_content(v);
    bytes[skip..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ber_integers() {
        assert_eq!(ber_unsigned(0), vec![0]);
        assert_eq!(ber_unsigned(127), vec![127]);
        assert_eq!(ber_unsigned(128), vec![0, 128]);
        assert_eq!(ber_unsigned(u64::MAX), [&[0u8][..], &[0xff; 8]].concat());
        assert_eq!(ber_signed(0), vec![0]);
        assert_eq!(ber_signed(-1), vec![0xff]);
        assert_eq!(ber_signed(-128), vec![0x80]);
        assert_eq!(ber_signed(-129), vec![0xff, 0x7f]);
        assert_eq!(ber_signed(128), vec![0, 0x80]);
        assert_eq!(ber_signed(i64::MIN), i64::MIN.to_be_bytes().to_vec());
    }

    #[test]
    fn record_start() {
        assert!(is_record_start(b".1.3.6 = INTEGER: 1"));
        assert!(is_record_start(b"iso.3.6 = \"\""));
        assert!(is_record_start(b".1.3 ="));
        assert!(!is_record_start(b"41 42 43"));
        assert!(!is_record_start(b"line two = x"));
        assert!(!is_record_start(b""));
        assert!(!is_record_start(b"\"x = 1"));
    }
}
