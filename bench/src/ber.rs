//! Just enough BER for an SNMP manager: a zero-copy reader over a byte
//! cursor (every value is a slice of the datagram, offsets stay absolute so
//! USM can find its authentication field) and a writer for the few shapes a
//! request needs. Independent of the agent's codec on purpose: the load
//! generator must not share a bug with the thing it checks.

use std::fmt;

/// Tag of an INTEGER (also request-id, error-status, msgID…).
pub const INTEGER: u8 = 0x02;
/// Tag of an OCTET STRING.
pub const OCTET_STRING: u8 = 0x04;
/// Tag of NULL, the value of a varbind in a request.
pub const NULL: u8 = 0x05;
/// Tag of an OBJECT IDENTIFIER.
pub const OID: u8 = 0x06;
/// Tag of a SEQUENCE (messages, varbind lists, varbinds).
pub const SEQUENCE: u8 = 0x30;
/// Tag of a GetRequest-PDU.
pub const GET: u8 = 0xa0;
/// Tag of a GetNextRequest-PDU.
pub const GET_NEXT: u8 = 0xa1;
/// Tag of a Response-PDU.
pub const RESPONSE: u8 = 0xa2;
/// Tag of a GetBulkRequest-PDU.
pub const GET_BULK: u8 = 0xa5;
/// Tag of a Report-PDU (SNMPv3 discovery and USM errors).
pub const REPORT: u8 = 0xa8;
/// Tag of the `noSuchObject` exception value.
pub const NO_SUCH_OBJECT: u8 = 0x80;
/// Tag of the `noSuchInstance` exception value.
pub const NO_SUCH_INSTANCE: u8 = 0x81;
/// Tag of the `endOfMibView` exception value.
pub const END_OF_MIB_VIEW: u8 = 0x82;

/// Why a datagram could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed BER: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// One TLV; `start` is the absolute offset of `value` in the datagram.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    /// The (single-byte) tag.
    pub tag: u8,
    /// The contents, without tag and length.
    pub value: &'a [u8],
    /// Where `value` starts in the whole datagram: how USM finds the
    /// authentication parameters it must zero and check.
    pub start: usize,
    /// The whole TLV (tag, length and value).
    pub raw: &'a [u8],
}

/// A cursor over `buf[pos..end]`.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over all of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// Nothing left to read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// Reads one TLV (single-byte tags, definite lengths up to 4 bytes).
    pub fn tlv(&mut self) -> Result<Tlv<'a>, Malformed> {
        let at = self.pos;
        let tag = *self
            .buf
            .get(at)
            .filter(|_| at < self.end)
            .ok_or(Malformed("truncated tag"))?;
        if tag & 0x1f == 0x1f {
            return Err(Malformed("multi-byte tag"));
        }
        let first = *self
            .buf
            .get(at + 1)
            .filter(|_| at + 1 < self.end)
            .ok_or(Malformed("truncated length"))?;
        let (len, head) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(Malformed("unsupported length form"));
            }
            if at + 2 + n > self.end {
                return Err(Malformed("truncated length"));
            }
            let len = self.buf[at + 2..at + 2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, 2 + n)
        };
        let start = at + head;
        let stop = start.checked_add(len).ok_or(Malformed("length overflow"))?;
        if stop > self.end {
            return Err(Malformed("value runs past its container"));
        }
        self.pos = stop;
        Ok(Tlv {
            tag,
            value: &self.buf[start..stop],
            start,
            raw: &self.buf[at..stop],
        })
    }

    /// Reads one TLV that must carry `tag`.
    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, Malformed> {
        let t = self.tlv()?;
        if t.tag != tag {
            return Err(Malformed(what));
        }
        Ok(t)
    }

    /// Enters a constructed value with `tag`: a reader over its contents.
    pub fn enter(&mut self, tag: u8, what: &'static str) -> Result<Reader<'a>, Malformed> {
        let t = self.expect(tag, what)?;
        Ok(Reader {
            buf: self.buf,
            pos: t.start,
            end: t.start + t.value.len(),
        })
    }

    /// Reads an INTEGER; `what` names it in the error.
    pub fn integer(&mut self, what: &'static str) -> Result<i64, Malformed> {
        let t = self.expect(INTEGER, what)?;
        decode_int(t.value).ok_or(Malformed(what))
    }

    /// Reads an OCTET STRING; `what` names it in the error.
    pub fn octets(&mut self, what: &'static str) -> Result<Tlv<'a>, Malformed> {
        self.expect(OCTET_STRING, what)
    }
}

/// A two's complement INTEGER of 1..=8 bytes.
pub fn decode_int(v: &[u8]) -> Option<i64> {
    if v.is_empty() || v.len() > 8 {
        return None;
    }
    let mut x: i64 = if v[0] & 0x80 != 0 { -1 } else { 0 };
    for b in v {
        x = (x << 8) | i64::from(*b);
    }
    Some(x)
}

/// Appends a definite length.
pub fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// The number of bytes [`push_len`] writes.
pub fn len_len(len: usize) -> usize {
    match len {
        0..0x80 => 1,
        0x80..0x100 => 2,
        0x100..0x1_0000 => 3,
        0x1_0000..0x100_0000 => 4,
        _ => 5,
    }
}

/// Appends a whole TLV.
pub fn push_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    push_len(out, value.len());
    out.extend_from_slice(value);
}

/// Minimal two's complement bytes of `v` (X.690 8.3.2).
pub fn int_bytes(v: i64, buf: &mut [u8; 8]) -> &[u8] {
    *buf = v.to_be_bytes();
    let mut skip = 0;
    while skip < 7 {
        let (a, b) = (buf[skip], buf[skip + 1]);
        if (a == 0 && b & 0x80 == 0) || (a == 0xff && b & 0x80 != 0) {
            skip += 1;
        } else {
            break;
        }
    }
    &buf[skip..]
}

/// Appends `v` under `tag` in its minimal two's complement encoding.
pub fn push_int(out: &mut Vec<u8>, tag: u8, v: i64) {
    let mut b = [0u8; 8];
    push_tlv(out, tag, int_bytes(v, &mut b));
}

/// Parses a dotted OID (`1.3.6.1…`, a leading dot allowed). A lone `1`
/// (the root a walk of `.1` starts at) is encoded as net-snmp does, `1.0`.
pub fn parse_oid(text: &str) -> Result<Vec<u32>, String> {
    let t = text.strip_prefix('.').unwrap_or(text);
    let arcs: Result<Vec<u32>, _> = t.split('.').map(str::parse::<u32>).collect();
    let arcs = arcs.map_err(|_| format!("not a numeric OID: {text:?}"))?;
    if arcs.is_empty() || arcs[0] > 2 || (arcs.len() > 1 && arcs[0] < 2 && arcs[1] > 39) {
        return Err(format!("not a valid OID: {text:?}"));
    }
    Ok(arcs)
}

/// The contents octets of an OID.
pub fn encode_oid(arcs: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arcs.len() + 4);
    let first = arcs.first().copied().unwrap_or(0);
    let second = arcs.get(1).copied().unwrap_or(0);
    push_base128(&mut out, first * 40 + second);
    for a in arcs.iter().skip(2) {
        push_base128(&mut out, *a);
    }
    out
}

fn push_base128(out: &mut Vec<u8>, v: u32) {
    let mut tmp = [0u8; 5];
    let mut n = 0;
    let mut x = v;
    loop {
        tmp[n] = (x & 0x7f) as u8;
        n += 1;
        x >>= 7;
        if x == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(tmp[i] | if i > 0 { 0x80 } else { 0 });
    }
}

/// The arcs of an OID's contents octets.
pub fn decode_oid(v: &[u8]) -> Option<Vec<u32>> {
    let mut arcs = Vec::with_capacity(v.len() + 1);
    let mut acc: u32 = 0;
    let mut fresh = true;
    for b in v {
        if fresh && *b == 0x80 {
            return None; // non-minimal
        }
        acc = acc.checked_mul(128)?.checked_add(u32::from(b & 0x7f))?;
        fresh = b & 0x80 == 0;
        if fresh {
            if arcs.is_empty() {
                let (a, b) = match acc {
                    0..40 => (0, acc),
                    40..80 => (1, acc - 40),
                    _ => (2, acc - 80),
                };
                arcs.push(a);
                arcs.push(b);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    if !fresh || arcs.is_empty() {
        return None;
    }
    Some(arcs)
}

/// `1.3.6.1…` for messages.
pub fn oid_string(arcs: &[u32]) -> String {
    let mut s = String::new();
    for (i, a) in arcs.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        s.push_str(&a.to_string());
    }
    s
}

/// Hex of a byte string, for messages.
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal_and_round_trip() {
        let mut b = [0u8; 8];
        assert_eq!(int_bytes(0, &mut b), [0]);
        assert_eq!(int_bytes(127, &mut b), [0x7f]);
        assert_eq!(int_bytes(128, &mut b), [0x00, 0x80]);
        assert_eq!(int_bytes(-1, &mut b), [0xff]);
        assert_eq!(int_bytes(-129, &mut b), [0xff, 0x7f]);
        assert_eq!(int_bytes(0x7fff_ffff, &mut b), [0x7f, 0xff, 0xff, 0xff]);
        for v in [
            0i64,
            1,
            -1,
            255,
            256,
            -256,
            65_535,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
        ] {
            assert_eq!(decode_int(int_bytes(v, &mut b)), Some(v));
        }
    }

    #[test]
    fn oids_round_trip() {
        // sysDescr.0 = 06 08 2b 06 01 02 01 01 01 00
        let arcs = parse_oid(".1.3.6.1.2.1.1.1.0").unwrap();
        let enc = encode_oid(&arcs);
        assert_eq!(enc, [0x2b, 6, 1, 2, 1, 1, 1, 0]);
        assert_eq!(decode_oid(&enc).unwrap(), arcs);
        let big = parse_oid("1.3.6.1.4.1.4294967295.200").unwrap();
        assert_eq!(decode_oid(&encode_oid(&big)).unwrap(), big);
        assert_eq!(encode_oid(&parse_oid("1").unwrap()), [0x28]);
        assert!(parse_oid("1.3.x").is_err());
        assert!(decode_oid(&[0x2b, 0x86]).is_none());
    }

    #[test]
    fn reader_walks_nested_values_with_absolute_offsets() {
        let mut inner = Vec::new();
        push_int(&mut inner, INTEGER, 1);
        push_tlv(&mut inner, OCTET_STRING, b"public");
        let mut msg = Vec::new();
        push_tlv(&mut msg, SEQUENCE, &inner);
        let mut r = Reader::new(&msg);
        let mut seq = r.enter(SEQUENCE, "seq").unwrap();
        assert!(r.is_empty());
        assert_eq!(seq.integer("v").unwrap(), 1);
        let c = seq.octets("c").unwrap();
        assert_eq!(c.value, b"public");
        assert_eq!(&msg[c.start..c.start + 6], b"public");
        assert!(seq.is_empty());
        // A length running past the end is refused.
        assert!(Reader::new(&[0x30, 0x05, 0x02, 0x01]).tlv().is_err());
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(0u8, 0x80));
        assert_eq!(Reader::new(&long).tlv().unwrap().value.len(), 0x80);
        let mut w = Vec::new();
        push_len(&mut w, 0x80);
        assert_eq!(w, [0x81, 0x80]);
        assert_eq!(len_len(0x80), 2);
        assert_eq!(len_len(300), 3);
    }
}
