//! The hot path's decoder: SNMPv1/v2c GET, GETNEXT and GETBULK requests in
//! their usual encoding, read straight from the datagram into a reused
//! [`Request`] without allocating, and SNMPv3 messages read in place (their
//! plaintext or decrypted scopedPDU likewise).
//!
//! It accepts a strict subset of BER: definite lengths in their shortest
//! form, single-byte tags, minimal INTEGERs that fit the field, OID arcs
//! without padding that fit `u32`, and NULL values. Whatever falls outside
//! (and every other PDU) is left to rasn, so what is accepted and how it is
//! read stays rasn's: [`check_fast_decoder`] (run by the tests and the
//! fuzzer) checks that both agree wherever this decoder answers.

use rasn::types::Integer;

use super::decode::{decode_v1, decode_v2c, request_from_pdus};
use super::pdu::{Kind, Request, Version};
use crate::wire::ber::{self, TAG_INTEGER, TAG_NULL, TAG_OCTET_STRING, TAG_OID, TAG_SEQUENCE};

const TAG_GET: u8 = 0xa0;
const TAG_GET_NEXT: u8 = 0xa1;
const TAG_GET_BULK: u8 = 0xa5;

/// Decodes `datagram` into `request` and returns the community, or `None`
/// when rasn must decide (`request` is then in an unspecified state).
pub(crate) fn decode<'a>(datagram: &'a [u8], request: &mut Request) -> Option<&'a [u8]> {
    let mut top = Reader::new(datagram);
    let mut message = top.constructed(TAG_SEQUENCE)?;
    top.end()?;
    let version = match message.integer()? {
        0 => Version::V1,
        1 => Version::V2c,
        _ => return None,
    };
    let community = message.primitive(TAG_OCTET_STRING)?;
    pdu(&mut message, version, request)?;
    message.end()?;
    Some(community)
}

/// An SNMPv3 message, read without copying (see [`decode_v3`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct V3<'a> {
    pub msg_id: i64,
    pub max_size: i64,
    pub flags: &'a [u8],
    pub security_model: i64,
    pub usm: Usm<'a>,
    pub data: V3Data<'a>,
}

/// UsmSecurityParameters (RFC 3414 §2.4).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Usm<'a> {
    pub engine_id: &'a [u8],
    pub boots: i64,
    pub time: i64,
    pub user_name: &'a [u8],
    pub auth: &'a [u8],
    pub privacy: &'a [u8],
}

/// A scopedPDU's context; its PDU is in the request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Scoped<'a> {
    pub engine_id: &'a [u8],
    pub name: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum V3Data<'a> {
    /// A plaintext scopedPDU whose PDU was read into the request.
    Clear(Scoped<'a>),
    /// encryptedPDU's content.
    Encrypted(&'a [u8]),
}

/// Decodes an SNMPv3 message (a plaintext PDU into `request`), or `None`
/// when rasn must decide.
pub(crate) fn decode_v3<'a>(datagram: &'a [u8], request: &mut Request) -> Option<V3<'a>> {
    let mut top = Reader::new(datagram);
    let mut message = top.constructed(TAG_SEQUENCE)?;
    top.end()?;
    if message.integer()? != 3 {
        return None;
    }
    let mut global = message.constructed(TAG_SEQUENCE)?;
    let (msg_id, max_size) = (global.integer()?, global.integer()?);
    let flags = global.primitive(TAG_OCTET_STRING)?;
    let security_model = global.integer()?;
    global.end()?;
    let mut params = Reader::new(message.primitive(TAG_OCTET_STRING)?);
    let mut u = params.constructed(TAG_SEQUENCE)?;
    params.end()?;
    let usm = Usm {
        engine_id: u.primitive(TAG_OCTET_STRING)?,
        boots: u.integer()?,
        time: u.integer()?,
        user_name: u.primitive(TAG_OCTET_STRING)?,
        auth: u.primitive(TAG_OCTET_STRING)?,
        privacy: u.primitive(TAG_OCTET_STRING)?,
    };
    u.end()?;
    let data = match message.peek()? {
        TAG_OCTET_STRING => V3Data::Encrypted(message.primitive(TAG_OCTET_STRING)?),
        _ => V3Data::Clear(scoped(&mut message, request)?),
    };
    message.end()?;
    Some(V3 {
        msg_id,
        max_size,
        flags,
        security_model,
        usm,
        data,
    })
}

/// Decodes a decrypted scopedPDU followed by at most `max_pad` bytes of
/// padding (its PDU into `request`), or `None` when rasn must decide.
pub(crate) fn decode_scoped<'a>(
    plaintext: &'a [u8],
    max_pad: usize,
    request: &mut Request,
) -> Option<Scoped<'a>> {
    let mut r = Reader::new(plaintext);
    let s = scoped(&mut r, request)?;
    (r.data.len() <= max_pad).then_some(s)
}

fn scoped<'a>(r: &mut Reader<'a>, request: &mut Request) -> Option<Scoped<'a>> {
    let mut s = r.constructed(TAG_SEQUENCE)?;
    let engine_id = s.primitive(TAG_OCTET_STRING)?;
    let name = s.primitive(TAG_OCTET_STRING)?;
    pdu(&mut s, Version::V3, request)?;
    s.end()?;
    Some(Scoped { engine_id, name })
}

/// Reads a GET, GETNEXT or GETBULK PDU from `r` into `request`.
fn pdu(r: &mut Reader<'_>, version: Version, request: &mut Request) -> Option<()> {
    let tag = r.peek()?;
    let mut pdu = r.constructed(tag)?;
    let request_id = i32::try_from(pdu.integer()?).ok()?;
    // error-status and error-index; non-repeaters and max-repetitions.
    let (a, b) = (pdu.integer()?, pdu.integer()?);
    let kind = match (tag, version) {
        (TAG_GET, _) => Kind::Get,
        (TAG_GET_NEXT, _) => Kind::GetNext,
        (TAG_GET_BULK, Version::V2c | Version::V3) => Kind::GetBulk {
            non_repeaters: u32::try_from(a).ok()?,
            max_repetitions: u32::try_from(b).ok()?,
        },
        _ => return None,
    };
    if version != Version::V1 && (a < 0 || b < 0) {
        // rasn reads v2 error-status and error-index as u32.
        return None;
    }
    request.version = version;
    request.kind = kind;
    request.request_id = request_id;
    request.names.clear();
    request.values.clear();
    let mut list = pdu.constructed(TAG_SEQUENCE)?;
    pdu.end()?;
    while !list.is_empty() {
        let mut binding = list.constructed(TAG_SEQUENCE)?;
        let oid = binding.primitive(TAG_OID)?;
        if !binding.primitive(TAG_NULL)?.is_empty() {
            return None;
        }
        binding.end()?;
        push_oid(oid, request)?;
        request.values.push(crate::wire::value::Value::Null);
    }
    Some(())
}

/// Appends the arcs of OID content `oid` to `request.names`.
fn push_oid(oid: &[u8], request: &mut Request) -> Option<()> {
    request.names.begin();
    let mut first = true;
    let mut arc: u64 = 0;
    let mut fresh = true;
    for &b in oid {
        if fresh && b == 0x80 {
            // Padding: not the shortest form.
            return None;
        }
        fresh = false;
        arc = (arc << 7) | u64::from(b & 0x7f);
        if arc > u64::from(u32::MAX) {
            return None;
        }
        if b & 0x80 == 0 {
            if first {
                let (x, y) = match arc {
                    0..40 => (0, arc),
                    40..80 => (1, arc - 40),
                    _ => (2, arc - 80),
                };
                request.names.push_arc(x);
                request.names.push_arc(y as u32);
                first = false;
            } else {
                request.names.push_arc(arc as u32);
            }
            arc = 0;
            fresh = true;
        }
    }
    // Empty, or ending inside an arc.
    (!first && fresh).then(|| request.names.finish())
}

/// A cursor over BER elements in `data`.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn end(&self) -> Option<()> {
        self.is_empty().then_some(())
    }

    fn peek(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// The next element, if its tag is `tag`: its content.
    fn element(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (&t, rest) = self.data.split_first()?;
        if t != tag || t & 0x1f == 0x1f {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 3 || rest.len() < n || rest[0] == 0 {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            // The shortest form only.
            if len < 0x80 || (n > 1 && len < 1 << (8 * (n - 1))) {
                return None;
            }
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        let (content, rest) = rest.split_at(len);
        self.data = rest;
        Some(content)
    }

    fn constructed(&mut self, tag: u8) -> Option<Reader<'a>> {
        if tag & 0x20 == 0 {
            return None;
        }
        self.element(tag).map(Reader::new)
    }

    fn primitive(&mut self, tag: u8) -> Option<&'a [u8]> {
        if tag & 0x20 != 0 {
            return None;
        }
        self.element(tag)
    }

    /// A minimal INTEGER of at most 4 content bytes.
    fn integer(&mut self) -> Option<i64> {
        let c = self.primitive(TAG_INTEGER)?;
        if c.is_empty() || c.len() > 4 {
            return None;
        }
        if c.len() > 1 && crate::wire::ber::redundant_sign_byte(c[0], c[1]) {
            return None;
        }
        Some(crate::wire::ber::int_from(c))
    }
}

/// For the fuzzer and the tests: whether the in-place decoders of this module
/// read `datagram` as rasn does wherever they accept it (an error says how
/// not): as a v1/v2c or v3 message, and as a decrypted scopedPDU followed
/// by up to 8 bytes of padding.
#[doc(hidden)]
pub fn check_fast_decoder(datagram: &[u8]) -> Result<(), String> {
    check_fast_message(datagram)?;
    check_fast_scoped(datagram, 8)
}

fn check_fast_message(datagram: &[u8]) -> Result<(), String> {
    let mut request = Request::default();
    match ber::peek_version(datagram) {
        Some(version @ (0 | 1)) => {
            let Some(community) = decode(datagram, &mut request) else {
                return Ok(());
            };
            let slow = match version {
                0 => decode_v1(datagram),
                _ => decode_v2c(datagram),
            };
            let (want, want_community) =
                slow.map_err(|d| format!("the fast path took what rasn drops ({d:?})"))?;
            if request == want && community == want_community.as_slice() {
                Ok(())
            } else {
                Err(format!("the fast path read {request:?}, rasn {want:?}"))
            }
        }
        Some(3) => {
            let Some(m) = decode_v3(datagram, &mut request) else {
                return Ok(());
            };
            let slow = match rasn::ber::decode_with_remainder::<rasn_snmp::v3::Message>(datagram) {
                Ok((msg, [])) => msg,
                _ => return Err("the fast path took a message rasn refuses".into()),
            };
            let usm = match rasn::ber::decode_with_remainder::<rasn_snmp::v3::USMSecurityParameters>(
                &slow.security_parameters,
            ) {
                Ok((u, [])) => u,
                _ => return Err("the fast path took USM parameters rasn refuses".into()),
            };
            let int = |i: &Integer| i64::try_from(i).ok();
            let g = &slow.global_data;
            let header = (
                int(&g.message_id),
                int(&g.max_size),
                &g.flags[..],
                int(&g.security_model),
            ) == (
                Some(m.msg_id),
                Some(m.max_size),
                m.flags,
                Some(m.security_model),
            );
            let usm_same = (
                &usm.authoritative_engine_id[..],
                int(&usm.authoritative_engine_boots),
                int(&usm.authoritative_engine_time),
                &usm.user_name[..],
                &usm.authentication_parameters[..],
                &usm.privacy_parameters[..],
            ) == (
                m.usm.engine_id,
                Some(m.usm.boots),
                Some(m.usm.time),
                m.usm.user_name,
                m.usm.auth,
                m.usm.privacy,
            );
            let data_same = match (&slow.scoped_data, &m.data) {
                (rasn_snmp::v3::ScopedPduData::EncryptedPdu(e), V3Data::Encrypted(f)) => {
                    &e[..] == *f
                }
                (rasn_snmp::v3::ScopedPduData::CleartextPdu(s), V3Data::Clear(f)) => {
                    &s.engine_id[..] == f.engine_id
                        && &s.name[..] == f.name
                        && request_from_pdus(s.data.clone(), Version::V3)
                            .is_ok_and(|want| request == want)
                }
                _ => false,
            };
            if header && usm_same && data_same {
                Ok(())
            } else {
                Err(format!(
                    "the fast path read {m:?} and {request:?}, rasn {slow:?} and {usm:?}"
                ))
            }
        }
        _ => Ok(()),
    }
}

/// The same for a decrypted scopedPDU followed by up to `max_pad` bytes.
fn check_fast_scoped(plaintext: &[u8], max_pad: usize) -> Result<(), String> {
    let mut request = Request::default();
    let Some(f) = decode_scoped(plaintext, max_pad, &mut request) else {
        return Ok(());
    };
    match rasn::ber::decode_with_remainder::<rasn_snmp::v3::ScopedPdu>(plaintext) {
        Ok((s, rest))
            if rest.len() <= max_pad
                && &s.engine_id[..] == f.engine_id
                && &s.name[..] == f.name
                && request_from_pdus(s.data.clone(), Version::V3)
                    .is_ok_and(|want| request == want) =>
        {
            Ok(())
        }
        other => Err(format!(
            "the fast path read {f:?} and {request:?}, rasn {other:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ber;

    /// A request as a manager would encode it.
    fn encode(
        version: i64,
        community: &[u8],
        tag: u8,
        id: i64,
        a: i64,
        b: i64,
        oids: &[&[u32]],
    ) -> Vec<u8> {
        let mut list = Vec::new();
        for oid in oids {
            ber::push_varbind(&mut list, oid, &[TAG_NULL, 0]);
        }
        encode_list(version, community, tag, [id, a, b], &list)
    }

    /// A request around the varbind list's content `list`.
    fn encode_list(
        version: i64,
        community: &[u8],
        tag: u8,
        ints: [i64; 3],
        list: &[u8],
    ) -> Vec<u8> {
        message(version, community, &pdu_tlv(tag, ints, list))
    }

    /// A v1/v2c message around the PDU TLV `pdu`.
    fn message(version: i64, community: &[u8], pdu: &[u8]) -> Vec<u8> {
        let mut msg = Vec::new();
        ber::push_i64(&mut msg, TAG_INTEGER, version);
        wrap(&mut msg, TAG_OCTET_STRING, community);
        msg.extend_from_slice(pdu);
        tlv(TAG_SEQUENCE, &msg)
    }

    /// A PDU TLV: request-id and two more INTEGERs, then the list.
    fn pdu_tlv(tag: u8, ints: [i64; 3], list: &[u8]) -> Vec<u8> {
        let mut pdu = Vec::new();
        for i in ints {
            ber::push_i64(&mut pdu, TAG_INTEGER, i);
        }
        wrap(&mut pdu, TAG_SEQUENCE, list);
        tlv(tag, &pdu)
    }

    /// A whole TLV.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        wrap(&mut out, tag, content);
        out
    }

    fn wrap(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
        out.push(tag);
        ber::push_len(out, content.len());
        out.extend_from_slice(content);
    }

    use crate::util::xorshift::Rng;

    /// A random INTEGER value: small, 32-bit, or anything.
    fn random_int(rng: &mut Rng) -> i64 {
        match rng.below(4) {
            0 => 0,
            1 => rng.below(128) as i64,
            2 => rng.next_u64() as i32 as i64,
            _ => (rng.next_u64() as i64) >> rng.below(64),
        }
    }

    fn random_bytes(rng: &mut Rng, most: u64) -> Vec<u8> {
        (0..rng.below(most + 1))
            .map(|_| rng.next_u64() as u8)
            .collect()
    }

    /// A random GET, GETNEXT or GETBULK PDU TLV (SET now and then).
    fn random_pdu(rng: &mut Rng) -> Vec<u8> {
        let tag = [TAG_GET, TAG_GET_NEXT, TAG_GET_BULK, TAG_GET, 0xa3][rng.below(5) as usize];
        let ints = [random_int(rng), random_int(rng), random_int(rng)];
        let mut list = Vec::new();
        for _ in 0..rng.below(5) {
            let mut oid = vec![rng.below(3) as u32, rng.below(40) as u32];
            for _ in 0..rng.below(12) {
                oid.push(match rng.below(3) {
                    0 => rng.below(128) as u32,
                    1 => rng.below(1 << 16) as u32,
                    _ => rng.next_u64() as u32,
                });
            }
            ber::push_varbind(&mut list, &oid, &[TAG_NULL, 0]);
        }
        pdu_tlv(tag, ints, &list)
    }

    fn random_request(rng: &mut Rng) -> Vec<u8> {
        let version = rng.below(2) as i64;
        let community = random_bytes(rng, 12);
        message(version, &community, &random_pdu(rng))
    }

    /// A scopedPDU TLV.
    fn random_scoped(rng: &mut Rng) -> Vec<u8> {
        let mut s = Vec::new();
        wrap(&mut s, TAG_OCTET_STRING, &random_bytes(rng, 34));
        wrap(&mut s, TAG_OCTET_STRING, &random_bytes(rng, 34));
        s.extend_from_slice(&random_pdu(rng));
        tlv(TAG_SEQUENCE, &s)
    }

    /// A random SNMPv3 message, plaintext or encrypted.
    fn random_v3(rng: &mut Rng) -> Vec<u8> {
        let mut global = Vec::new();
        for i in [random_int(rng), random_int(rng)] {
            ber::push_i64(&mut global, TAG_INTEGER, i);
        }
        let flags = if rng.below(8) == 0 {
            random_bytes(rng, 2)
        } else {
            vec![rng.below(8) as u8]
        };
        wrap(&mut global, TAG_OCTET_STRING, &flags);
        ber::push_i64(
            &mut global,
            TAG_INTEGER,
            if rng.below(4) == 0 {
                random_int(rng)
            } else {
                3
            },
        );
        let mut usm = Vec::new();
        wrap(&mut usm, TAG_OCTET_STRING, &random_bytes(rng, 34));
        ber::push_i64(&mut usm, TAG_INTEGER, random_int(rng));
        ber::push_i64(&mut usm, TAG_INTEGER, random_int(rng));
        wrap(&mut usm, TAG_OCTET_STRING, &random_bytes(rng, 34));
        wrap(&mut usm, TAG_OCTET_STRING, &random_bytes(rng, 48));
        wrap(&mut usm, TAG_OCTET_STRING, &random_bytes(rng, 8));
        let mut params = Vec::new();
        wrap(&mut params, TAG_SEQUENCE, &usm);
        let mut msg = Vec::new();
        ber::push_i64(&mut msg, TAG_INTEGER, 3);
        wrap(&mut msg, TAG_SEQUENCE, &global);
        wrap(&mut msg, TAG_OCTET_STRING, &params);
        if rng.below(2) == 0 {
            msg.extend_from_slice(&random_scoped(rng));
        } else {
            wrap(&mut msg, TAG_OCTET_STRING, &random_bytes(rng, 64));
        }
        tlv(TAG_SEQUENCE, &msg)
    }

    /// One to four random changes: flips, overwrites, cuts, insertions.
    fn mutate(rng: &mut Rng, d: &mut Vec<u8>) {
        for _ in 0..=rng.below(3) {
            if d.is_empty() {
                return;
            }
            let at = rng.below(d.len() as u64) as usize;
            match rng.below(4) {
                0 => d[at] ^= 1 << rng.below(8),
                1 => d[at] = rng.next_u64() as u8,
                2 => d.truncate(at),
                _ => d.insert(at, rng.next_u64() as u8),
            }
        }
    }

    #[test]
    fn usual_requests_take_the_fast_path_and_read_as_rasn_reads_them() {
        let mut request = Request::default();
        for (version, tag) in [
            (0, TAG_GET),
            (1, TAG_GET),
            (0, TAG_GET_NEXT),
            (1, TAG_GET_NEXT),
            (1, TAG_GET_BULK),
        ] {
            let oids: &[&[u32]] = &[
                &[1, 3, 6, 1, 2, 1, 1, 5, 0],
                &[1, 3, 6, 1, 4, 1, 9, 9, 4_000_000_000, 7],
            ];
            let d = encode(version, b"public", tag, 1_234_567, 0, 25, oids);
            let community = decode(&d, &mut request).expect("fast path");
            assert_eq!(community, b"public");
            assert_eq!(request.names.len(), 2);
            check_fast_decoder(&d).unwrap();
        }
    }

    #[test]
    fn wherever_the_fast_path_answers_rasn_agrees() {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut request = Request::default();
        // Per generator: well-formed inputs taken, mutants taken.
        let mut taken = [[0u32; 2]; 3];
        for i in 0..120_000 {
            let kind = i % 3;
            let mut d = match kind {
                0 => random_request(&mut rng),
                1 => random_v3(&mut rng),
                _ => {
                    let mut s = random_scoped(&mut rng);
                    s.extend(random_bytes(&mut rng, 10));
                    s
                }
            };
            let mutated = (i / 3) % 2 == 1;
            if mutated {
                mutate(&mut rng, &mut d);
            }
            let fast = match kind {
                0 => decode(&d, &mut request).is_some(),
                1 => decode_v3(&d, &mut request).is_some(),
                _ => decode_scoped(&d, 8, &mut request).is_some(),
            };
            taken[kind][usize::from(mutated)] += u32::from(fast);
            if let Err(e) = check_fast_decoder(&d) {
                panic!("{d:02x?}: {e}");
            }
        }
        // Many well-formed inputs take the fast path (the others have a
        // request-id beyond 32 bits, a v1 GETBULK, a SET, fields rasn reads
        // as u32 out of the fast path's range, or too much padding); some
        // mutants do too.
        for (kind, [whole, mutants]) in taken.iter().enumerate() {
            assert!(*whole > 3_000 && *mutants > 50, "{kind}: {taken:?}");
        }
    }

    #[test]
    fn what_it_leaves_to_rasn() {
        let mut r = Request::default();
        let get = |id: i64| encode(1, b"public", TAG_GET, id, 0, 0, &[&[1, 3, 6, 1]]);
        assert!(decode(&get(1), &mut r).is_some());
        // Trailing bytes, a request-id beyond i32, a v1 GETBULK, a SET.
        let mut trailing = get(1);
        trailing.push(0);
        assert!(decode(&trailing, &mut r).is_none());
        assert!(decode(&get(1 << 31), &mut r).is_none());
        assert!(decode(&encode(0, b"p", TAG_GET_BULK, 1, 0, 0, &[]), &mut r).is_none());
        assert!(decode(&encode(1, b"p", 0xa3, 1, 0, 0, &[]), &mut r).is_none());
        // A long-form length that could be short.
        let d = get(7);
        let mut long = vec![d[0], 0x81, d[1]];
        long.extend_from_slice(&d[2..]);
        assert!(decode(&long, &mut r).is_none());
        // A padded OID arc (0x80 first), and the same without the padding.
        let binding = |oid: &[u8]| {
            let mut b = Vec::new();
            wrap(&mut b, TAG_OID, oid);
            b.extend_from_slice(&[TAG_NULL, 0]);
            let mut list = Vec::new();
            wrap(&mut list, TAG_SEQUENCE, &b);
            encode_list(1, b"public", TAG_GET, [1, 0, 0], &list)
        };
        assert!(decode(&binding(&[0x2b, 6, 1]), &mut r).is_some());
        let padded = binding(&[0x2b, 0x80, 6, 1]);
        assert!(decode(&padded, &mut r).is_none());
    }
}
