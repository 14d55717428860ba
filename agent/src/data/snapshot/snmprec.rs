//! snmpsim's `.snmprec` format: one `OID|TAG|VALUE` record a line.
//!
//! What snmpsim accepts, and so what we accept (snmpsim `grammar/snmprec.py`,
//! `record/snmprec.py`, `variation.py`, `mltsplit.py`):
//!
//! - the line is stripped of surrounding whitespace, then split on the first
//!   two `|` only, so a value may hold `|`; blank lines and lines starting
//!   with `#` are skipped;
//! - `TAG` is the BER tag as decimal (2, 4, 5, 6, 64–68, 70, 128–130), with
//!   an optional suffix: `x` — the value is hex (`4x|414243`), `e` — the
//!   value holds Python escapes (`\\ \' \" \a \b \f \n \r \t \v \xHH`);
//! - `TAG:module|params` routes the record to a variation module
//!   (`2:numeric|min=1,max=9`, `4:writecache|value=abc`). The parameters are
//!   kept raw in [`Variation`]; the record's static value comes from
//!   `hexvalue=`/`value=`, for `numeric` from `initial` or `min`, else it is
//!   the type's zero value. Parameters are split as snmpsim's `mltsplit`
//!   does: on `,,,` if present, else `,,`, else `,`.
//!
//! Deliberate differences: an arc must fit in 32 bits; a dangling `\` or
//! `\x` escape is an error (snmpsim drops it); a subtree record (`:module`
//! with no type) is refused, except `:multiplex` (read by [`parse`], whose
//! caller expands it: see `crate::data::variation::multiplex`).

use super::lex::{
    decode_hex, find_byte, hex_digit, parse_i64, parse_ipv4, parse_oid, parse_u32, parse_u64, show,
};
use super::{EncodedSink, Record, Sink, Variation};
use crate::wire::ber;
use crate::wire::value::Value;

/// How a value's text is encoded: the tag's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Encoding {
    Plain,
    /// `x`: hex digits.
    Hex,
    /// `e`: Python string escapes.
    Escaped,
}

/// Parses a whole `.snmprec` buffer; records in file order, errors as
/// `(line, message)`.
pub(super) fn parse(data: &[u8], sink: &mut Sink) {
    let mut lines = super::lex::Lines::new(data);
    while let Some((line_no, raw)) = lines.next_line() {
        let line = raw.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        if let Some(subtree) = multiplex_subtree(line) {
            match subtree {
                Ok((oid, params)) => sink.subtrees.push((line_no, oid, params)),
                Err(msg) => sink.errors.push((line_no, msg)),
            }
            continue;
        }
        match parse_record(line) {
            Ok((oid, value, variation)) => {
                sink.records.push(Record {
                    oid,
                    value,
                    variation,
                    line: line_no,
                });
            }
            Err(msg) => sink.errors.push((line_no, msg)),
        }
    }
}

/// Compiles a piece of `.snmprec` text into store sections: the records
/// [`parse`] reads, each encoded as the store holds it. The common records
/// (plain and hex strings, numbers) are read straight into the part; any
/// other line goes through the same [`parse_record`] as [`parse`], so both
/// read every line alike.
pub(super) fn compile(data: &[u8], part: &mut impl EncodedSink, out: &mut super::PieceParse) {
    let mut lines = super::lex::Lines::new(data);
    let mut value = Vec::with_capacity(256);
    let mut oid = [0u8; COMMON_OID_BYTES];
    while let Some((line_no, raw)) = lines.next_line() {
        let line = raw.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let start = part.arcs().len();
        if let Some(n) = common_record(line, part.arcs(), &mut oid, &mut value) {
            part.push_record(start, &oid[..n], &value, None, line_no);
            continue;
        }
        match parse_record(line) {
            Ok((oid, v, variation)) => {
                value.clear();
                ber::push_value(&mut value, &v);
                part.push(&oid, &value, variation.as_ref(), line_no);
            }
            Err(msg) => out.errors.push((line_no, msg)),
        }
    }
    out.lines = lines.mark().1;
}

/// Longest OID read by [`common_record`]; longer ones go the general way.
const COMMON_ARCS: usize = 128;
/// The longest BER encoding of such an OID: up to 5 bytes an arc, 6 for
/// the first two together.
const COMMON_OID_BYTES: usize = COMMON_ARCS * 5 + 6;

/// Puts `v` in base 128 at `out[at..]`, as BER writes an OID's
/// sub-identifiers; where it ends.
#[inline]
fn put_base128(out: &mut [u8; COMMON_OID_BYTES], mut at: usize, v: u64) -> Option<usize> {
    if v < 0x80 {
        *out.get_mut(at)? = v as u8;
        return Some(at + 1);
    }
    let mut shift = (63 - v.leading_zeros()) / 7 * 7;
    while shift > 0 {
        *out.get_mut(at)? = 0x80 | ((v >> shift) & 0x7f) as u8;
        at += 1;
        shift -= 7;
    }
    *out.get_mut(at)? = (v & 0x7f) as u8;
    Some(at + 1)
}

/// A record of the common kinds, read without allocating: a plain dotted
/// OID of up to [`COMMON_ARCS`] arcs (appended to `arcs`, their BER encoding
/// put in `oid`: its length is returned), a tag of digits with an optional
/// `x`, and a value that [`parse_record`] would read; the value's TLV goes
/// to `value`. `None` for anything else, left to
/// [`parse_record`] (`arcs` as it was, `oid` and `value` scribbled on).
fn common_record(
    line: &[u8],
    arcs: &mut Vec<u32>,
    oid: &mut [u8; COMMON_OID_BYTES],
    value: &mut Vec<u8>,
) -> Option<usize> {
    let mut read = [0u32; COMMON_ARCS];
    let mut n = 0;
    let mut i = 0;
    let mut arc: u64 = 0;
    let mut digits = 0;
    loop {
        let c = *line.get(i)?;
        i += 1;
        match c {
            b'0'..=b'9' if digits < 10 => {
                arc = arc * 10 + u64::from(c - b'0');
                digits += 1;
            }
            b'.' | b'|' if digits > 0 => {
                *read.get_mut(n)? = u32::try_from(arc).ok()?;
                n += 1;
                (arc, digits) = (0, 0);
                if c == b'|' {
                    break;
                }
            }
            _ => return None,
        }
    }
    let read = &read[..n];
    // BER puts the first two arcs in one sub-identifier (a missing second
    // arc counts as 0).
    let first = u64::from(read[0]) * 40 + read.get(1).map_or(0, |&a| u64::from(a));
    let mut oid_len = put_base128(oid, 0, first)?;
    for &a in read.iter().skip(2) {
        oid_len = put_base128(oid, oid_len, u64::from(a))?;
    }
    let tag_start = i;
    let mut tag = 0u32;
    while let Some(c) = line.get(i).filter(|c| c.is_ascii_digit())
        && i - tag_start < 3
    {
        tag = tag * 10 + u32::from(c - b'0');
        i += 1;
    }
    let hex = i > tag_start && line.get(i) == Some(&b'x');
    i += usize::from(hex);
    if i == tag_start || line.get(i) != Some(&b'|') {
        return None;
    }
    let tag = u8::try_from(tag).ok().filter(|&t| is_known_tag(t))?;
    let text = &line[i + 1..];
    value.clear();
    let hex_into = |value: &mut Vec<u8>, t: &[u8]| -> Option<()> {
        let start = value.len();
        value.resize(start + t.len() / 2, 0);
        for (byte, pair) in value[start..].iter_mut().zip(t.chunks_exact(2)) {
            *byte = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
        }
        Some(())
    };
    match (tag, hex) {
        (4, false) => {
            value.push(ber::TAG_OCTET_STRING);
            ber::push_len(value, text.len());
            value.extend_from_slice(text);
        }
        (4, true) => {
            // Odd or not hex: an error, said by parse_record.
            let t = text.trim_ascii();
            if !t.len().is_multiple_of(2) {
                return None;
            }
            value.push(ber::TAG_OCTET_STRING);
            ber::push_len(value, t.len() / 2);
            hex_into(value, t)?;
        }
        (64, true) => {
            let t = text.trim_ascii();
            if t.len() != 8 {
                return None;
            }
            value.extend_from_slice(&[ber::TAG_IP_ADDRESS, 4]);
            hex_into(value, t)?;
        }
        (_, false) => ber::push_value(value, &decode(tag, Encoding::Plain, text).ok()?),
        (_, true) => return None,
    }
    arcs.extend_from_slice(read);
    Some(oid_len)
}

type Parsed = (crate::wire::value::Oid, Value, Option<Variation>);

/// A `multiplex` subtree record (`OID|:multiplex|PARAMS`): its OID and
/// parameters; `None` for any other line.
fn multiplex_subtree(line: &[u8]) -> Option<Result<(crate::wire::value::Oid, String), String>> {
    let p1 = find_byte(line, b'|')?;
    let rest = line.get(p1 + 1..)?;
    let params = rest.strip_prefix(b":multiplex|")?;
    Some(
        parse_oid(line[..p1].trim_ascii())
            .ok_or_else(|| format!("bad OID {}", show(&line[..p1])))
            .and_then(|oid| {
                std::str::from_utf8(params)
                    .map(|p| (oid, p.to_string()))
                    .map_err(|_| format!("variation parameters {} are not UTF-8", show(params)))
            }),
    )
}

/// One record.
fn parse_record(line: &[u8]) -> Result<Parsed, String> {
    let Some(p1) = find_byte(line, b'|') else {
        return Err(format!("expected OID|TAG|VALUE, got {}", show(line)));
    };
    let (oid_text, rest) = (&line[..p1], &line[p1 + 1..]);
    let Some(p2) = find_byte(rest, b'|') else {
        return Err(format!("expected OID|TAG|VALUE, got {}", show(line)));
    };
    let (tag_text, value_text) = (&rest[..p2], &rest[p2 + 1..]);
    let oid = parse_oid(oid_text.trim_ascii()).ok_or_else(|| {
        format!(
            "bad OID {} (expected dotted decimal arcs < 2^32)",
            show(oid_text)
        )
    })?;

    let (type_text, module) = match find_byte(tag_text, b':') {
        Some(i) => (&tag_text[..i], Some(&tag_text[i + 1..])),
        None => (tag_text, None),
    };
    // snmpsim treats `2:` (no module name) as no variation at all.
    let module = module.filter(|m| !m.is_empty());
    if type_text.is_empty() {
        return Err(match module {
            Some(m) => format!(
                "subtree variation record (tag {}) has no type; of subtree records agentcluster serves `multiplex` only",
                show(&[b":", m].concat())
            ),
            None => "empty tag".to_string(),
        });
    }
    let RecordType { tag, encoding } = parse_type(type_text)?;

    match module {
        // A hex value that is not hex (`4x|zz`, `4x|abc`, `64x|zz`; seen in
        // real recordings: `1.3.6.1.2.1.1.1.0|4x|Juniper`) is an error like
        // any value that cannot be decoded: snmpsim fails that OID at query
        // time, and a guess at what was meant is not data.
        None => Ok((oid, decode(tag, encoding, value_text)?, None)),
        Some(module) => {
            let name = std::str::from_utf8(module)
                .map_err(|_| format!("variation module name {} is not UTF-8", show(module)))?;
            let params = std::str::from_utf8(value_text)
                .map_err(|_| format!("variation parameters {} are not UTF-8", show(value_text)))?;
            crate::data::variation::check(name, params)?;
            let value = variation_value(tag, encoding, name, params)?;
            let variation = Variation {
                name: name.to_string(),
                params: params.to_string(),
            };
            Ok((oid, value, Some(variation)))
        }
    }
}

/// A record's type as `.snmprec` writes it (`4`, `4x`, `2`, `64`, `4e`…):
/// the BER tag, and how the value's text is encoded. What per-device values
/// name their types with; [`RecordType::decode`] reads a value as a record
/// of this type is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordType {
    /// The BER tag (snmpsim writes it in decimal).
    pub tag: u8,
    encoding: Encoding,
}

impl RecordType {
    /// The type of a value written as plain text (no suffix).
    pub fn plain(tag: u8) -> Option<RecordType> {
        is_known_tag(tag).then_some(RecordType {
            tag,
            encoding: Encoding::Plain,
        })
    }

    /// The value `text` stands for in a record of this type.
    pub fn decode(&self, text: &[u8]) -> Result<Value, String> {
        decode(self.tag, self.encoding, text)
    }
}

impl std::str::FromStr for RecordType {
    type Err = String;

    /// A tag as a record's second field holds it, without variation.
    fn from_str(s: &str) -> Result<RecordType, String> {
        if s.contains(':') {
            return Err(format!(
                "type {s:?}: variation modules are for snapshot files, not for values"
            ));
        }
        parse_type(s.trim().as_bytes())
    }
}

impl std::fmt::Display for RecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let suffix = match self.encoding {
            Encoding::Plain => "",
            Encoding::Hex => "x",
            Encoding::Escaped => "e",
        };
        write!(f, "{}{suffix}", self.tag)
    }
}

/// A record's tag without its variation: a known BER tag in decimal, with an
/// optional `x` or `e` suffix.
fn parse_type(type_text: &[u8]) -> Result<RecordType, String> {
    let (number, encoding) = match type_text.last() {
        Some(b'x') => (&type_text[..type_text.len() - 1], Encoding::Hex),
        Some(b'e') => (&type_text[..type_text.len() - 1], Encoding::Escaped),
        _ => (type_text, Encoding::Plain),
    };
    let tag = parse_u32(number)
        .and_then(|n| u8::try_from(n).ok())
        .filter(|&t| is_known_tag(t))
        .ok_or_else(|| {
            format!(
                "unknown tag {} (expected 2, 4, 5, 6, 64, 65, 66, 67, 68, 70, 128, 129 or 130, \
                 optionally with an x or e suffix)",
                show(type_text)
            )
        })?;
    Ok(RecordType { tag, encoding })
}

pub(super) fn is_known_tag(tag: u8) -> bool {
    matches!(
        tag,
        2 | 4 | 5 | 6 | 64 | 65 | 66 | 67 | 68 | 70 | 128 | 129 | 130
    )
}

fn type_name(tag: u8) -> &'static str {
    match tag {
        2 => "Integer32",
        4 => "OCTET STRING",
        5 => "NULL",
        6 => "OBJECT IDENTIFIER",
        64 => "IpAddress",
        65 => "Counter32",
        66 => "Gauge32",
        67 => "TimeTicks",
        68 => "Opaque",
        70 => "Counter64",
        128 => "noSuchObject",
        129 => "noSuchInstance",
        _ => "endOfMibView",
    }
}

/// The value of a record of type `tag` from its text.
pub(super) fn decode(tag: u8, encoding: Encoding, text: &[u8]) -> Result<Value, String> {
    match encoding {
        Encoding::Plain => from_text(tag, text),
        Encoding::Hex => {
            let bytes = decode_hex(text.trim_ascii()).ok_or_else(|| {
                format!(
                    "bad hex value {} (expected pairs of hex digits)",
                    show(text)
                )
            })?;
            match tag {
                4 => Ok(Value::OctetString(bytes)),
                68 => Ok(Value::Opaque(bytes)),
                64 => <[u8; 4]>::try_from(bytes.as_slice())
                    .map(Value::IpAddress)
                    .map_err(|_| format!("IpAddress needs 4 bytes, got {}", bytes.len())),
                _ => Err(format!(
                    "hex values (x suffix) are for OCTET STRING, IpAddress and Opaque, not {}",
                    type_name(tag)
                )),
            }
        }
        Encoding::Escaped => {
            let bytes = unescape(text)?;
            match tag {
                4 => Ok(Value::OctetString(bytes)),
                68 => Ok(Value::Opaque(bytes)),
                64 if bytes.len() == 4 => {
                    Ok(Value::IpAddress([bytes[0], bytes[1], bytes[2], bytes[3]]))
                }
                _ => from_text(tag, &bytes),
            }
        }
    }
}

fn from_text(tag: u8, text: &[u8]) -> Result<Value, String> {
    let bad = |what: &str| format!("bad {} value {}: {what}", type_name(tag), show(text));
    let t = text.trim_ascii();
    match tag {
        2 => parse_i64(t)
            .map(Value::Integer)
            .ok_or_else(|| bad("expected a signed integer")),
        4 => Ok(Value::OctetString(text.to_vec())),
        68 => Ok(Value::Opaque(text.to_vec())),
        6 => parse_oid(t)
            .map(Value::ObjectId)
            .ok_or_else(|| bad("expected a dotted OID")),
        // pysnmp takes a 4-character IpAddress as the raw address bytes.
        64 => match <[u8; 4]>::try_from(text) {
            Ok(raw) => Ok(Value::IpAddress(raw)),
            Err(_) => parse_ipv4(t)
                .map(Value::IpAddress)
                .ok_or_else(|| bad("expected a dotted quad or 4 raw bytes")),
        },
        65 => parse_u32(t)
            .map(Value::Counter32)
            .ok_or_else(|| bad("expected 0..4294967295")),
        66 => parse_u32(t)
            .map(Value::Gauge32)
            .ok_or_else(|| bad("expected 0..4294967295")),
        67 => parse_u32(t)
            .map(Value::TimeTicks)
            .ok_or_else(|| bad("expected 0..4294967295")),
        70 => parse_u64(t)
            .map(Value::Counter64)
            .ok_or_else(|| bad("expected 0..18446744073709551615")),
        5 | 128 | 129 | 130 if !t.is_empty() => Err(bad("this type takes no value")),
        5 => Ok(Value::Null),
        128 => Ok(Value::NoSuchObject),
        129 => Ok(Value::NoSuchInstance),
        _ => Ok(Value::EndOfMibView),
    }
}

/// snmpsim's `evaluateRawString`: Python escapes to bytes; other bytes pass
/// through unchanged.
fn unescape(text: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let Some(&e) = text.get(i + 1) else {
            return Err(format!("dangling \\ at the end of {}", show(text)));
        };
        let byte = match e {
            b'\\' => b'\\',
            b'\'' => b'\'',
            b'"' => b'"',
            b'a' => 7,
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 11,
            b'x' => {
                let hex = text.get(i + 2..i + 4).and_then(decode_hex);
                let Some(hex) = hex else {
                    return Err(format!("bad \\x escape in {}", show(text)));
                };
                out.push(hex[0]);
                i += 4;
                continue;
            }
            other => {
                return Err(format!(
                    "unknown escape \\{} in {}",
                    char::from(other).escape_debug(),
                    show(text)
                ));
            }
        };
        out.push(byte);
        i += 2;
    }
    Ok(out)
}

/// snmpsim's `mltsplit`: split on the separator tripled if it occurs, else
/// doubled, else single — so values can hold the single separator.
pub(crate) fn mltsplit(s: &str, sep: char) -> Vec<&str> {
    for n in [3, 2] {
        let multi: String = std::iter::repeat_n(sep, n).collect();
        if s.contains(&multi) {
            return s.split(multi.as_str()).collect();
        }
    }
    s.split(sep).collect()
}

/// Looks up a variation parameter (`key=value` items, split as snmpsim does).
pub(crate) fn param<'a>(params: &'a str, key: &str) -> Option<&'a str> {
    if params.is_empty() {
        return None;
    }
    mltsplit(params, ',').into_iter().rev().find_map(|item| {
        let kv = mltsplit(item, '=');
        let (k, v) = match kv.as_slice() {
            [k, v] => (*k, *v),
            _ => item.split_once('=').unwrap_or((item, "")),
        };
        (k.trim() == key).then_some(v)
    })
}

/// The static value of a variation record: what the record answers before
/// the module changes anything.
pub(super) fn variation_value(
    tag: u8,
    encoding: Encoding,
    module: &str,
    params: &str,
) -> Result<Value, String> {
    if let Some(h) = param(params, "hexvalue") {
        return decode(tag, Encoding::Hex, h.as_bytes());
    }
    if let Some(v) = param(params, "value") {
        return decode(tag, encoding, v.as_bytes());
    }
    if module == "numeric"
        && let Some(start) = param(params, "initial").or_else(|| param(params, "min"))
    {
        return numeric_start(tag, start);
    }
    Ok(zero(tag))
}

/// `numeric` keeps floats; the static value is the number truncated to the
/// record's type.
fn numeric_start(tag: u8, text: &str) -> Result<Value, String> {
    if let Ok(v) = from_text(tag, text.as_bytes()) {
        return Ok(v);
    }
    let f: f64 = text.trim().parse().map_err(|_| {
        format!(
            "bad numeric start value {} for {}",
            show(text.as_bytes()),
            type_name(tag)
        )
    })?;
    let t = f.trunc();
    let v = match tag {
        2 => Value::Integer(t as i64),
        65 => Value::Counter32(t as u32),
        66 => Value::Gauge32(t as u32),
        67 => Value::TimeTicks(t as u32),
        70 => Value::Counter64(t as u64),
        _ => {
            return Err(format!(
                "numeric variation on a non-numeric type {}",
                type_name(tag)
            ));
        }
    };
    Ok(v)
}

/// The value a type starts from when a variation gives none.
fn zero(tag: u8) -> Value {
    match tag {
        2 => Value::Integer(0),
        4 => Value::OctetString(Vec::new()),
        5 => Value::Null,
        6 => Value::ObjectId(vec![0, 0]),
        64 => Value::IpAddress([0; 4]),
        65 => Value::Counter32(0),
        66 => Value::Gauge32(0),
        67 => Value::TimeTicks(0),
        68 => Value::Opaque(Vec::new()),
        70 => Value::Counter64(0),
        128 => Value::NoSuchObject,
        129 => Value::NoSuchInstance,
        _ => Value::EndOfMibView,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base128_is_what_ber_writes() {
        let mut out = [0u8; COMMON_OID_BYTES];
        for v in [0u32, 1, 127, 128, 16383, 16384, 2_097_152, u32::MAX] {
            let n = put_base128(&mut out, 1, u64::from(v)).unwrap();
            // ber writes `0.0` as one zero byte, then the arc.
            let mut b = Vec::new();
            ber::push_oid_content(&mut b, &[0, 0, v]);
            assert_eq!(out[1..n], b[1..], "{v}");
        }
        // The first two arcs together can pass 32 bits.
        let n = put_base128(&mut out, 0, 2 * 40 + u64::from(u32::MAX)).unwrap();
        let mut b = Vec::new();
        ber::push_oid_content(&mut b, &[2, u32::MAX]);
        assert_eq!(out[..n], b[..]);
        assert_eq!(put_base128(&mut out, COMMON_OID_BYTES, 1), None);
    }
}
