//! snmpsim's `.sapwalk` format (walks saved by the "SNMP Agent Player"
//! style tools): `OID , Type , Value` a line, columns padded with spaces.
//!
//! As snmpsim reads it (`grammar/sap.py`): the line is split on the first two
//! commas (so a value may hold commas) and each field is stripped; the types
//! are `Counter`, `Gauge`, `Integer`, `IpAddress`, `ObjectID`, `OctetString`,
//! `TimeTicks` and `Counter64`; an `OctetString` starting with `0x` is hex
//! (`0x000e35d33d53`). Blank and `#` lines are skipped. Type names are
//! matched case-insensitively here; the format has no NULL, Opaque or
//! exception values.

use super::lex::{
    Lines, find_byte, hex_byte, parse_i64, parse_ipv4, parse_oid, parse_u32, parse_u64, show,
};
use super::{Record, Sink};
use crate::wire::value::Value;

/// Parses a whole `.sapwalk` buffer; records in file order, errors as
/// `(line, message)`.
pub(super) fn parse(data: &[u8], sink: &mut Sink) {
    let mut lines = Lines::new(data);
    while let Some((line_no, raw)) = lines.next_line() {
        let line = raw.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        match parse_record(line) {
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

fn parse_record(line: &[u8]) -> Result<(crate::wire::value::Oid, Value), String> {
    let malformed = || format!("expected `OID, Type, Value`, got {}", show(line));
    let c1 = find_byte(line, b',').ok_or_else(malformed)?;
    let rest = &line[c1 + 1..];
    let c2 = find_byte(rest, b',').ok_or_else(malformed)?;
    let oid_text = line[..c1].trim_ascii();
    let ty = rest[..c2].trim_ascii();
    let v = rest[c2 + 1..].trim_ascii();
    let oid = parse_oid(oid_text).ok_or_else(|| {
        format!(
            "bad OID {} (expected dotted decimal arcs < 2^32)",
            show(oid_text)
        )
    })?;
    let bad = || format!("bad {} value {}", String::from_utf8_lossy(ty), show(v));
    let is = |name: &[u8]| ty.eq_ignore_ascii_case(name);
    let value = if is(b"OctetString") {
        match v.strip_prefix(b"0x") {
            Some(hex) => Value::OctetString(
                hex.chunks(2)
                    .map(hex_byte)
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(bad)?,
            ),
            None => Value::OctetString(v.to_vec()),
        }
    } else if is(b"Integer") {
        Value::Integer(parse_i64(v).ok_or_else(bad)?)
    } else if is(b"Counter") {
        Value::Counter32(parse_u32(v).ok_or_else(bad)?)
    } else if is(b"Gauge") {
        Value::Gauge32(parse_u32(v).ok_or_else(bad)?)
    } else if is(b"TimeTicks") {
        Value::TimeTicks(parse_u32(v).ok_or_else(bad)?)
    } else if is(b"Counter64") {
        Value::Counter64(parse_u64(v).ok_or_else(bad)?)
    } else if is(b"IpAddress") {
        Value::IpAddress(parse_ipv4(v).ok_or_else(bad)?)
    } else if is(b"ObjectID") {
        Value::ObjectId(parse_oid(v).ok_or_else(bad)?)
    } else {
        return Err(format!(
            "unknown type {} (expected Counter, Gauge, Integer, IpAddress, ObjectID, \
             OctetString, TimeTicks or Counter64)",
            show(ty)
        ));
    };
    Ok((oid, value))
}
