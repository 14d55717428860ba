//! Writers for the three snapshot formats. Each writes what its own parser
//! reads back to the same records, and what snmpsim reads too:
//!
//! - `.snmprec`: printable ASCII strings as they are, anything else as hex
//!   (`4x|…`), Opaque always hex, variations as `TAG:module|params`;
//! - `.snmpwalk`: `snmpwalk -ObentU` output, one line a record (strings with
//!   control characters, non-ASCII bytes, `"` or `\` as `Hex-STRING`, since
//!   snmpsim reads neither multi-line values nor escapes; TimeTicks as the
//!   bare number of `-Ot`);
//! - `.sapwalk`: `OID, Type, Value`; strings that would not survive the
//!   format's trimming or look like hex are written as `0x…`. NULL, Opaque
//!   and the exception values have no sapwalk type: writing one is an error.

use std::io::{self, Write};

use super::snmprec::{Encoding, variation_value};
use super::{Format, Record};
use crate::wire::value::{DisplayOid, Value};

/// Flush to the caller's writer in chunks of about this size.
const CHUNK: usize = 64 * 1024;

pub(super) fn write(records: &[Record], format: Format, out: &mut impl Write) -> io::Result<()> {
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    for r in records {
        if r.oid.is_empty() {
            return Err(invalid(format!(
                "record from line {} has an empty OID",
                r.line
            )));
        }
        match format {
            Format::Snmprec => snmprec(r, &mut buf)?,
            Format::Snmpwalk => snmpwalk(r, &mut buf)?,
            Format::Sapwalk => sapwalk(r, &mut buf)?,
        }
        if buf.len() >= CHUNK {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn push_oid(buf: &mut Vec<u8>, oid: &[u32], leading_dot: bool) {
    for (i, arc) in oid.iter().enumerate() {
        if i > 0 || leading_dot {
            buf.push(b'.');
        }
        push_u64(buf, u64::from(*arc));
    }
}

fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

fn push_i64(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    push_u64(buf, v.unsigned_abs());
}

fn push_hex(buf: &mut Vec<u8>, bytes: &[u8], upper: bool, sep: &[u8]) {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    for &b in bytes {
        buf.push(digits[usize::from(b >> 4)]);
        buf.push(digits[usize::from(b & 0xf)]);
        buf.extend_from_slice(sep);
    }
}

fn push_ip(buf: &mut Vec<u8>, ip: &[u8; 4]) {
    for (i, b) in ip.iter().enumerate() {
        if i > 0 {
            buf.push(b'.');
        }
        push_u64(buf, u64::from(*b));
    }
}

fn printable(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| (0x20..=0x7e).contains(b))
}

fn empty_oid_value(r: &Record) -> io::Error {
    invalid(format!(
        "{} (line {}): an OBJECT IDENTIFIER value needs at least one arc",
        DisplayOid(&r.oid),
        r.line
    ))
}

fn snmprec(r: &Record, buf: &mut Vec<u8>) -> io::Result<()> {
    push_oid(buf, &r.oid, false);
    buf.push(b'|');
    let tag = r.value.snmprec_tag();
    push_u64(buf, u64::from(tag));
    if let Some(var) = &r.variation {
        if var.name.is_empty()
            || var.name.contains(['|', '\n', '\r'])
            || var.params.contains(['\n', '\r'])
        {
            return Err(invalid(format!(
                "{} (line {}): variation {:?} with parameters {:?} cannot be written on one line",
                DisplayOid(&r.oid),
                r.line,
                var.name,
                var.params
            )));
        }
        // The tag suffix under which the parameters give back this value.
        let suffix = [Encoding::Hex, Encoding::Escaped].into_iter().find(|&enc| {
            variation_value(tag, Encoding::Plain, &var.name, &var.params).as_ref() != Ok(&r.value)
                && variation_value(tag, enc, &var.name, &var.params).as_ref() == Ok(&r.value)
        });
        match suffix {
            Some(Encoding::Hex) => buf.push(b'x'),
            Some(Encoding::Escaped) => buf.push(b'e'),
            _ => {}
        }
        buf.push(b':');
        buf.extend_from_slice(var.name.as_bytes());
        buf.push(b'|');
        buf.extend_from_slice(var.params.as_bytes());
        buf.push(b'\n');
        return Ok(());
    }
    match &r.value {
        Value::Integer(v) => {
            buf.push(b'|');
            push_i64(buf, *v);
        }
        Value::OctetString(s) => {
            // The line is stripped when read, so trailing whitespace needs hex.
            if printable(s) && s.last() != Some(&b' ') {
                buf.push(b'|');
                buf.extend_from_slice(s);
            } else {
                buf.extend_from_slice(b"x|");
                push_hex(buf, s, false, b"");
            }
        }
        Value::Opaque(s) if s.is_empty() => buf.push(b'|'),
        Value::Opaque(s) => {
            buf.extend_from_slice(b"x|");
            push_hex(buf, s, false, b"");
        }
        Value::ObjectId(o) if o.is_empty() => return Err(empty_oid_value(r)),
        Value::ObjectId(o) => {
            buf.push(b'|');
            push_oid(buf, o, false);
        }
        Value::IpAddress(ip) => {
            buf.push(b'|');
            push_ip(buf, ip);
        }
        Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => {
            buf.push(b'|');
            push_u64(buf, u64::from(*v));
        }
        Value::Counter64(v) => {
            buf.push(b'|');
            push_u64(buf, *v);
        }
        Value::Null | Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView => {
            buf.push(b'|');
        }
    }
    buf.push(b'\n');
    Ok(())
}

fn snmpwalk(r: &Record, buf: &mut Vec<u8>) -> io::Result<()> {
    push_oid(buf, &r.oid, true);
    buf.extend_from_slice(b" = ");
    match &r.value {
        Value::Integer(v) => {
            buf.extend_from_slice(b"INTEGER: ");
            push_i64(buf, *v);
        }
        Value::OctetString(s) if s.is_empty() => buf.extend_from_slice(b"\"\""),
        Value::OctetString(s) if printable(s) && !s.contains(&b'"') && !s.contains(&b'\\') => {
            buf.extend_from_slice(b"STRING: \"");
            buf.extend_from_slice(s);
            buf.push(b'"');
        }
        Value::OctetString(s) => {
            buf.extend_from_slice(b"Hex-STRING: ");
            push_hex(buf, s, true, b" ");
        }
        Value::Null => buf.extend_from_slice(b"NULL"),
        Value::ObjectId(o) if o.is_empty() => return Err(empty_oid_value(r)),
        Value::ObjectId(o) => {
            buf.extend_from_slice(b"OID: ");
            push_oid(buf, o, true);
        }
        Value::IpAddress(ip) => {
            buf.extend_from_slice(b"IpAddress: ");
            push_ip(buf, ip);
        }
        Value::Counter32(v) => {
            buf.extend_from_slice(b"Counter32: ");
            push_u64(buf, u64::from(*v));
        }
        Value::Gauge32(v) => {
            buf.extend_from_slice(b"Gauge32: ");
            push_u64(buf, u64::from(*v));
        }
        Value::TimeTicks(v) => push_u64(buf, u64::from(*v)),
        Value::Opaque(s) => {
            buf.extend_from_slice(b"Opaque: ");
            push_hex(buf, s, true, b" ");
        }
        Value::Counter64(v) => {
            buf.extend_from_slice(b"Counter64: ");
            push_u64(buf, *v);
        }
        Value::NoSuchObject => {
            buf.extend_from_slice(b"No Such Object available on this agent at this OID");
        }
        Value::NoSuchInstance => {
            buf.extend_from_slice(b"No Such Instance currently exists at this OID");
        }
        Value::EndOfMibView => buf.extend_from_slice(
            b"No more variables left in this MIB View (It is past the end of the MIB tree)",
        ),
    }
    buf.push(b'\n');
    Ok(())
}

fn sapwalk(r: &Record, buf: &mut Vec<u8>) -> io::Result<()> {
    push_oid(buf, &r.oid, false);
    match &r.value {
        Value::Integer(v) => {
            buf.extend_from_slice(b", Integer, ");
            push_i64(buf, *v);
        }
        Value::OctetString(s) => {
            buf.extend_from_slice(b", OctetString, ");
            let plain = printable(s)
                && s.first() != Some(&b' ')
                && s.last() != Some(&b' ')
                && !s.starts_with(b"0x");
            if plain {
                buf.extend_from_slice(s);
            } else {
                buf.extend_from_slice(b"0x");
                push_hex(buf, s, false, b"");
            }
        }
        Value::ObjectId(o) if o.is_empty() => return Err(empty_oid_value(r)),
        Value::ObjectId(o) => {
            buf.extend_from_slice(b", ObjectID, ");
            push_oid(buf, o, false);
        }
        Value::IpAddress(ip) => {
            buf.extend_from_slice(b", IpAddress, ");
            push_ip(buf, ip);
        }
        Value::Counter32(v) => {
            buf.extend_from_slice(b", Counter, ");
            push_u64(buf, u64::from(*v));
        }
        Value::Gauge32(v) => {
            buf.extend_from_slice(b", Gauge, ");
            push_u64(buf, u64::from(*v));
        }
        Value::TimeTicks(v) => {
            buf.extend_from_slice(b", TimeTicks, ");
            push_u64(buf, u64::from(*v));
        }
        Value::Counter64(v) => {
            buf.extend_from_slice(b", Counter64, ");
            push_u64(buf, *v);
        }
        Value::Null
        | Value::Opaque(_)
        | Value::NoSuchObject
        | Value::NoSuchInstance
        | Value::EndOfMibView => {
            return Err(invalid(format!(
                "{} (line {}): sapwalk has no type for {}; write .snmprec instead",
                DisplayOid(&r.oid),
                r.line,
                match r.value {
                    Value::Null => "NULL",
                    Value::Opaque(_) => "Opaque",
                    Value::NoSuchObject => "noSuchObject",
                    Value::NoSuchInstance => "noSuchInstance",
                    _ => "endOfMibView",
                }
            )));
        }
    }
    buf.push(b'\n');
    Ok(())
}
