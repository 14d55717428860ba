//! The small part of BER that the hot path writes by hand: responses are
//! built back to front around pre-encoded varbinds from the store, so no
//! value is ever decoded and re-encoded to answer a request. Decoding of
//! requests goes through rasn; [`peek_version`] only looks at the first bytes.

use crate::wire::value::Value;

/// INTEGER (and Integer32).
pub const TAG_INTEGER: u8 = 0x02;
/// OCTET STRING.
pub const TAG_OCTET_STRING: u8 = 0x04;
/// NULL.
pub const TAG_NULL: u8 = 0x05;
/// OBJECT IDENTIFIER.
pub const TAG_OID: u8 = 0x06;
/// SEQUENCE (messages, PDUs' varbind lists, varbinds).
pub const TAG_SEQUENCE: u8 = 0x30;
/// IpAddress (RFC 2578, `[APPLICATION 0]`).
pub const TAG_IP_ADDRESS: u8 = 0x40;
/// Counter32 (`[APPLICATION 1]`).
pub const TAG_COUNTER32: u8 = 0x41;
/// Gauge32 and Unsigned32 (`[APPLICATION 2]`).
pub const TAG_GAUGE32: u8 = 0x42;
/// TimeTicks (`[APPLICATION 3]`).
pub const TAG_TIMETICKS: u8 = 0x43;
/// Opaque (`[APPLICATION 4]`).
pub const TAG_OPAQUE: u8 = 0x44;
/// Counter64 (`[APPLICATION 6]`).
pub const TAG_COUNTER64: u8 = 0x46;
/// The noSuchObject exception of a varbind (RFC 3416, `[0]`).
pub const TAG_NO_SUCH_OBJECT: u8 = 0x80;
/// The noSuchInstance exception (`[1]`).
pub const TAG_NO_SUCH_INSTANCE: u8 = 0x81;
/// The endOfMibView exception (`[2]`).
pub const TAG_END_OF_MIB_VIEW: u8 = 0x82;

/// Appends a BER definite length.
pub(crate) fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// How many bytes a tag + length header takes for content of `len` bytes.
pub(crate) fn header_len(len: usize) -> usize {
    1 + if len < 0x80 {
        1
    } else {
        1 + (8 - (len as u64).leading_zeros() as usize / 8)
    }
}

/// Appends a two's-complement INTEGER (or an application integer type when
/// `tag` says so) in the minimal number of bytes.
pub(crate) fn push_i64(out: &mut Vec<u8>, tag: u8, v: i64) {
    let (bytes, skip) = int_content(v);
    out.push(tag);
    push_len(out, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

/// The content octets of `v` as a minimal two's-complement INTEGER:
/// `bytes[skip..]` (leading bytes that only repeat the sign are skipped).
pub(crate) fn int_content(v: i64) -> ([u8; 8], usize) {
    let bytes = v.to_be_bytes();
    let mut skip = 0;
    while skip < 7 && redundant_sign_byte(bytes[skip], bytes[skip + 1]) {
        skip += 1;
    }
    (bytes, skip)
}

/// The content octets of unsigned `v`: a zero byte when `pad` (the top bit
/// of the first byte is set), then `bytes[skip..]`.
pub(crate) fn uint_content(v: u64) -> ([u8; 8], usize, bool) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    (bytes, skip, bytes[skip] & 0x80 != 0)
}

/// Appends an unsigned application integer (Counter32, Gauge32, TimeTicks,
/// Counter64): a leading zero byte is added when the top bit is set.
pub(crate) fn push_u64(out: &mut Vec<u8>, tag: u8, v: u64) {
    let (bytes, skip, pad) = uint_content(v);
    out.push(tag);
    push_len(out, 8 - skip + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(&bytes[skip..]);
}

fn push_base128(out: &mut Vec<u8>, v: u64) {
    let mut shift = 63 - (v | 1).leading_zeros() as i32;
    shift -= shift % 7;
    while shift > 0 {
        out.push(0x80 | ((v >> shift) & 0x7f) as u8);
        shift -= 7;
    }
    out.push((v & 0x7f) as u8);
}

/// Appends the content octets of an OID (no tag, no length). OIDs of fewer
/// than two arcs are encoded as if the missing arc were 0, which is what
/// net-snmp does for `0`-style OIDs.
pub(crate) fn push_oid_content(out: &mut Vec<u8>, arcs: &[u32]) {
    let first = u64::from(arcs.first().copied().unwrap_or(0));
    let second = u64::from(arcs.get(1).copied().unwrap_or(0));
    push_base128(out, first * 40 + second);
    for &arc in arcs.iter().skip(2) {
        push_base128(out, u64::from(arc));
    }
}

/// Appends a whole OID TLV.
pub(crate) fn push_oid(out: &mut Vec<u8>, arcs: &[u32]) {
    let mut content = Vec::with_capacity(arcs.len() + 4);
    push_oid_content(&mut content, arcs);
    out.push(TAG_OID);
    push_len(out, content.len());
    out.extend_from_slice(&content);
}

fn push_bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    push_len(out, b.len());
    out.extend_from_slice(b);
}

/// Appends the TLV of a value.
pub(crate) fn push_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Integer(i) => push_i64(out, TAG_INTEGER, *i),
        Value::OctetString(b) => push_bytes(out, TAG_OCTET_STRING, b),
        Value::Null => out.extend_from_slice(&[TAG_NULL, 0]),
        Value::ObjectId(arcs) => push_oid(out, arcs),
        Value::IpAddress(a) => push_bytes(out, TAG_IP_ADDRESS, a),
        Value::Counter32(n) => push_u64(out, TAG_COUNTER32, u64::from(*n)),
        Value::Gauge32(n) => push_u64(out, TAG_GAUGE32, u64::from(*n)),
        Value::TimeTicks(n) => push_u64(out, TAG_TIMETICKS, u64::from(*n)),
        Value::Opaque(b) => push_bytes(out, TAG_OPAQUE, b),
        Value::Counter64(n) => push_u64(out, TAG_COUNTER64, *n),
        Value::NoSuchObject => out.extend_from_slice(&[TAG_NO_SUCH_OBJECT, 0]),
        Value::NoSuchInstance => out.extend_from_slice(&[TAG_NO_SUCH_INSTANCE, 0]),
        Value::EndOfMibView => out.extend_from_slice(&[TAG_END_OF_MIB_VIEW, 0]),
    }
}

/// Appends a VarBind SEQUENCE made of an OID and an already encoded value TLV.
pub fn push_varbind(out: &mut Vec<u8>, arcs: &[u32], value_tlv: &[u8]) {
    // Sized first, so nothing is allocated or moved: this runs for every
    // record of a compile and every live value of a response.
    let oid_len = oid_content_len(arcs);
    let oid_tlv_len = header_len(oid_len) + oid_len;
    out.reserve(header_len(oid_tlv_len + value_tlv.len()) + oid_tlv_len + value_tlv.len());
    out.push(TAG_SEQUENCE);
    push_len(out, oid_tlv_len + value_tlv.len());
    out.push(TAG_OID);
    push_len(out, oid_len);
    push_oid_content(out, arcs);
    out.extend_from_slice(value_tlv);
}

/// Appends a VarBind SEQUENCE of an OID and the value TLV that `value`
/// appends, without a buffer of its own: the value is written at the end of
/// `out`, then set behind the headers through the stack (values of live
/// objects are small).
pub(crate) fn push_varbind_with(out: &mut Vec<u8>, arcs: &[u32], value: impl FnOnce(&mut Vec<u8>)) {
    let mark = out.len();
    value(out);
    let mut tmp = [0u8; 64];
    let n = out.len() - mark;
    if n <= tmp.len() {
        tmp[..n].copy_from_slice(&out[mark..]);
        out.truncate(mark);
        push_varbind(out, arcs, &tmp[..n]);
    } else {
        let v = out.split_off(mark);
        push_varbind(out, arcs, &v);
    }
}

/// Bytes of base-128 encoding of `v`.
fn base128_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The length of an OID's content octets, as [`push_oid_content`] writes
/// them.
pub(crate) fn oid_content_len(arcs: &[u32]) -> usize {
    let first = u64::from(arcs.first().copied().unwrap_or(0));
    let second = u64::from(arcs.get(1).copied().unwrap_or(0));
    base128_len(first * 40 + second)
        + arcs
            .iter()
            .skip(2)
            .map(|a| base128_len(u64::from(*a)))
            .sum::<usize>()
}

/// A message being built back to front: the body (varbinds) is appended
/// first, then each enclosing header is prepended into reserved headroom, so
/// the finished message is one contiguous slice with no copy of the body.
#[derive(Debug, Default)]
pub struct Frame {
    buf: Vec<u8>,
    start: usize,
}

impl Frame {
    /// Clears the frame, keeping its allocation, with `headroom` bytes
    /// reserved in front for headers.
    pub fn reset(&mut self, headroom: usize) {
        self.buf.clear();
        self.buf.resize(headroom, 0);
        self.start = headroom;
    }

    /// The body, to append to.
    pub fn body(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Bytes from the current front to the end.
    pub(crate) fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Total length of the underlying buffer: where the body ends.
    pub(crate) fn end(&self) -> usize {
        self.buf.len()
    }

    /// Prepends raw bytes.
    pub(crate) fn prepend(&mut self, bytes: &[u8]) {
        if bytes.len() > self.start {
            let grow = bytes.len() - self.start + 64;
            self.buf.splice(0..0, std::iter::repeat_n(0, grow));
            self.start += grow;
        }
        self.start -= bytes.len();
        self.buf[self.start..self.start + bytes.len()].copy_from_slice(bytes);
    }

    /// Prepends a tag and a length.
    pub(crate) fn prepend_header(&mut self, tag: u8, len: usize) {
        let mut h = [0u8; 10];
        h[0] = tag;
        let n = if len < 0x80 {
            h[1] = len as u8;
            2
        } else {
            let bytes = (len as u64).to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            h[1] = 0x80 | (8 - skip) as u8;
            h[2..2 + 8 - skip].copy_from_slice(&bytes[skip..]);
            2 + 8 - skip
        };
        self.prepend(&h[..n]);
    }

    /// Wraps everything from the front to the end in a TLV with `tag`.
    pub fn wrap(&mut self, tag: u8) {
        let len = self.len();
        self.prepend_header(tag, len);
    }

    /// Prepends a complete TLV.
    pub fn prepend_tlv(&mut self, tag: u8, content: &[u8]) {
        self.prepend(content);
        self.prepend_header(tag, content.len());
    }

    /// Prepends an INTEGER TLV.
    pub fn prepend_int(&mut self, v: i64) {
        let (bytes, skip) = int_content(v);
        self.prepend_tlv(TAG_INTEGER, &bytes[skip..]);
    }

    /// The finished message.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Reads a tag and a definite length at `pos`. Returns (tag, content start,
/// content length). Indefinite lengths and multi-byte tags are refused: SNMP
/// does not use them.
pub fn read_header(data: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
    let tag = *data.get(pos)?;
    let first = *data.get(pos + 1)?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (len, start) = if first < 0x80 {
        (usize::from(first), pos + 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = data.get(pos + 2..pos + 2 + n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, pos + 2 + n)
    };
    if start.checked_add(len)? > data.len() {
        return None;
    }
    Some((tag, start, len))
}

/// The `msgVersion` of an SNMP message (0 = v1, 1 = v2c, 3 = v3), read from
/// the first bytes without decoding the rest.
pub fn peek_version(data: &[u8]) -> Option<i64> {
    let (tag, start, _) = read_header(data, 0)?;
    if tag != TAG_SEQUENCE {
        return None;
    }
    let (tag, vstart, vlen) = read_header(data, start)?;
    if tag != TAG_INTEGER || vlen == 0 || vlen > 8 {
        return None;
    }
    Some(int_from(&data[vstart..vstart + vlen]))
}

/// Whether INTEGER content octets `first`, `next`, … could drop `first`:
/// it only repeats the sign of `next` (not the shortest form).
pub(crate) fn redundant_sign_byte(first: u8, next: u8) -> bool {
    (first == 0 && next & 0x80 == 0) || (first == 0xff && next & 0x80 != 0)
}

/// The value of INTEGER content octets (two's complement, at most 8).
pub(crate) fn int_from(bytes: &[u8]) -> i64 {
    let mut v: i64 = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        -1
    } else {
        0
    };
    for b in bytes {
        v = (v << 8) | i64::from(*b);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        push_value(&mut out, v);
        out
    }

    #[test]
    fn a_prepended_integer_is_the_appended_one() {
        let mut values = vec![0, 1, -1, 127, 128, -128, -129, 255, 256, i64::MIN, i64::MAX];
        for shift in 0..63 {
            values.extend([
                1i64 << shift,
                (1i64 << shift) - 1,
                -(1i64 << shift),
                !(1i64 << shift),
            ]);
        }
        for v in values {
            let mut frame = Frame::default();
            frame.reset(16);
            frame.prepend_int(v);
            let mut want = Vec::new();
            push_i64(&mut want, TAG_INTEGER, v);
            assert_eq!(frame.as_slice(), want, "{v}");
        }
    }

    #[test]
    fn integers_are_minimal_twos_complement() {
        assert_eq!(tlv(&Value::Integer(0)), [0x02, 0x01, 0x00]);
        assert_eq!(tlv(&Value::Integer(127)), [0x02, 0x01, 0x7f]);
        assert_eq!(tlv(&Value::Integer(128)), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(tlv(&Value::Integer(-1)), [0x02, 0x01, 0xff]);
        assert_eq!(tlv(&Value::Integer(-128)), [0x02, 0x01, 0x80]);
        assert_eq!(tlv(&Value::Integer(-129)), [0x02, 0x02, 0xff, 0x7f]);
        assert_eq!(
            tlv(&Value::Integer(i64::from(i32::MIN))),
            [0x02, 0x04, 0x80, 0, 0, 0]
        );
    }

    #[test]
    fn unsigned_types_get_a_leading_zero_when_needed() {
        assert_eq!(tlv(&Value::Counter32(0)), [0x41, 0x01, 0x00]);
        assert_eq!(tlv(&Value::Gauge32(255)), [0x42, 0x02, 0x00, 0xff]);
        assert_eq!(
            tlv(&Value::TimeTicks(u32::MAX)),
            [0x43, 0x05, 0x00, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            tlv(&Value::Counter64(u64::MAX)),
            [
                0x46, 0x09, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ]
        );
    }

    #[test]
    fn oids_use_base128_and_combine_the_first_two_arcs() {
        // 1.3.6.1.2.1.1.1.0 sysDescr.0
        assert_eq!(
            tlv(&Value::ObjectId(vec![1, 3, 6, 1, 2, 1, 1, 1, 0])),
            [0x06, 0x08, 0x2b, 6, 1, 2, 1, 1, 1, 0]
        );
        // 1.3.6.1.4.1.2680 (arc 2680 = 0x94 0x78)
        assert_eq!(
            tlv(&Value::ObjectId(vec![1, 3, 6, 1, 4, 1, 2680])),
            [0x06, 0x07, 0x2b, 6, 1, 4, 1, 0x94, 0x78]
        );
        // the largest arc
        assert_eq!(
            tlv(&Value::ObjectId(vec![1, 3, u32::MAX])),
            [0x06, 0x06, 0x2b, 0x8f, 0xff, 0xff, 0xff, 0x7f]
        );
        // 2.999 combines into 1079
        assert_eq!(
            tlv(&Value::ObjectId(vec![2, 999])),
            [0x06, 0x02, 0x88, 0x37]
        );
    }

    #[test]
    fn values_round_trip_through_rasn() {
        use rasn_smi::v2::{ApplicationSyntax, ObjectSyntax, SimpleSyntax};
        let v: ObjectSyntax = rasn::ber::decode(&tlv(&Value::Counter64(1 << 40))).unwrap();
        assert_eq!(
            v,
            ObjectSyntax::ApplicationWide(ApplicationSyntax::BigCounter(rasn_smi::v2::Counter64(
                1 << 40
            )))
        );
        let v: ObjectSyntax = rasn::ber::decode(&tlv(&Value::OctetString(vec![0; 300]))).unwrap();
        assert_eq!(
            v,
            ObjectSyntax::Simple(SimpleSyntax::String(vec![0u8; 300].into()))
        );
    }

    #[test]
    fn oid_content_len_matches_the_encoding() {
        for arcs in [
            vec![],
            vec![1],
            vec![1, 3],
            vec![1, 3, 6, 1, 2, 1, 1, 1, 0],
            vec![2, 999, 127, 128, 16383, 16384, u32::MAX],
        ] {
            let mut out = Vec::new();
            push_oid_content(&mut out, &arcs);
            assert_eq!(oid_content_len(&arcs), out.len(), "{arcs:?}");
        }
    }

    #[test]
    fn long_lengths() {
        let mut out = Vec::new();
        push_len(&mut out, 0x80);
        assert_eq!(out, [0x81, 0x80]);
        out.clear();
        push_len(&mut out, 0x1234);
        assert_eq!(out, [0x82, 0x12, 0x34]);
        assert_eq!(header_len(0x7f), 2);
        assert_eq!(header_len(0x80), 3);
        assert_eq!(header_len(0x1234), 4);
        assert_eq!(header_len(0x10000), 5);
    }

    #[test]
    fn frame_prepends_headers_around_the_body() {
        let mut f = Frame::default();
        f.reset(4);
        f.body().extend_from_slice(&[0xaa; 200]);
        f.wrap(TAG_SEQUENCE);
        f.prepend_int(-1);
        let s = f.as_slice();
        assert_eq!(&s[..6], &[0x02, 0x01, 0xff, 0x30, 0x81, 200]);
        assert_eq!(s.len(), 206);
    }

    #[test]
    fn peek_version_reads_only_the_front() {
        // v2c GET public sysDescr.0 as sent by snmpget
        let msg = [
            0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0,
            0x1c, 0x02, 0x04, 0x12, 0x34, 0x56, 0x78, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30,
            0x0e, 0x30, 0x0c, 0x06, 0x08, 0x2b, 6, 1, 2, 1, 1, 1, 0, 0x05, 0x00,
        ];
        assert_eq!(peek_version(&msg), Some(1));
        assert_eq!(peek_version(&msg[..4]), None);
        assert_eq!(peek_version(&[0x30, 0x80, 0x02, 0x01, 0x00]), None);
    }
}
