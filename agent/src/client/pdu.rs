//! Requests as bytes, and the answers to them as values. Pure: no socket,
//! no clock, no keys.

use rasn::types::Integer;
use rasn_snmp::{v1, v2, v2c};

use crate::wire::ber::{self, Frame, TAG_OCTET_STRING, TAG_SEQUENCE};
use crate::wire::decode::{value_from_v1, value_from_v2};
use crate::wire::value::{Oid, Value};

/// The GetRequest-PDU tag.
const TAG_GET: u8 = 0xa0;
/// The GetNextRequest-PDU tag.
const TAG_GET_NEXT: u8 = 0xa1;
/// The GetBulkRequest-PDU tag (SNMPv2).
const TAG_GET_BULK: u8 = 0xa5;

/// Room in front of the varbinds for every header, SNMPv3's included.
const HEADROOM: usize = 320;

/// What a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The named instances.
    Get,
    /// The instance after each name.
    GetNext,
    /// Up to `max_repetitions` instances after each name (SNMPv2 only).
    GetBulk {
        /// How many successors of each name the answer may hold.
        max_repetitions: u32,
    },
}

/// An answer: its request-id, error-status and -index, and its varbinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request-id it answers.
    pub request_id: i32,
    /// error-status (0: noError, 1: tooBig, 2: noSuchName…).
    pub error_status: u32,
    /// error-index.
    pub error_index: u32,
    /// The varbinds, in order.
    pub varbinds: Vec<(Oid, Value)>,
}

/// error-status tooBig.
pub const TOO_BIG: u32 = 1;
/// error-status noSuchName (SNMPv1's end of the MIB view for GETNEXT).
pub const NO_SUCH_NAME: u32 = 2;

/// Leaves the request PDU in `frame`: `oids`, each with a NULL value.
pub(crate) fn request_pdu(frame: &mut Frame, op: Op, request_id: i32, oids: &[Oid]) {
    frame.reset(HEADROOM);
    for oid in oids {
        ber::push_varbind(frame.body(), oid, &[ber::TAG_NULL, 0]);
    }
    frame.wrap(TAG_SEQUENCE);
    let tag = match op {
        Op::Get => {
            frame.prepend_int(0);
            frame.prepend_int(0);
            TAG_GET
        }
        Op::GetNext => {
            frame.prepend_int(0);
            frame.prepend_int(0);
            TAG_GET_NEXT
        }
        Op::GetBulk { max_repetitions } => {
            frame.prepend_int(i64::from(max_repetitions));
            frame.prepend_int(0);
            TAG_GET_BULK
        }
    };
    frame.prepend_int(i64::from(request_id));
    frame.wrap(tag);
}

/// Wraps the PDU in `frame` into a community message; `version` is
/// SNMPv1's 0 or SNMPv2c's 1.
pub(crate) fn community_message(frame: &mut Frame, version: i64, community: &[u8]) {
    frame.prepend_tlv(TAG_OCTET_STRING, community);
    frame.prepend_int(version);
    frame.wrap(TAG_SEQUENCE);
}

fn u32_of(i: &Integer) -> Option<u32> {
    i64::try_from(i.clone())
        .ok()
        .and_then(|v| u32::try_from(v).ok())
}

/// An SNMPv1 GetResponse from `community`; anything else is `None`.
pub(crate) fn open_v1(bytes: &[u8], community: &[u8]) -> Option<Response> {
    let Ok((msg, [])) = rasn::ber::decode_with_remainder::<v1::Message<v1::Pdus>>(bytes) else {
        return None;
    };
    if msg.community[..] != community[..] || msg.version != Integer::from(0) {
        return None;
    }
    let v1::Pdus::GetResponse(r) = msg.data else {
        return None;
    };
    let pdu = r.0;
    let mut varbinds = Vec::with_capacity(pdu.variable_bindings.len());
    for vb in pdu.variable_bindings {
        varbinds.push((vb.name.to_vec(), value_from_v1(vb.value)?));
    }
    Some(Response {
        request_id: i64::try_from(pdu.request_id)
            .ok()
            .and_then(|v| i32::try_from(v).ok())?,
        error_status: u32_of(&pdu.error_status)?,
        error_index: u32_of(&pdu.error_index)?,
        varbinds,
    })
}

/// An SNMPv2c Response from `community`; anything else is `None`.
pub(crate) fn open_v2c(bytes: &[u8], community: &[u8]) -> Option<Response> {
    let Ok((msg, [])) = rasn::ber::decode_with_remainder::<v2c::Message<v2::Pdus>>(bytes) else {
        return None;
    };
    if msg.community[..] != community[..] || msg.version != Integer::from(1) {
        return None;
    }
    response_of(msg.data)
}

/// The Response among SNMPv2 PDUs (of a v2c message or a v3 scopedPDU).
pub(crate) fn response_of(pdus: v2::Pdus) -> Option<Response> {
    let v2::Pdus::Response(r) = pdus else {
        return None;
    };
    let pdu = r.0;
    let mut varbinds = Vec::with_capacity(pdu.variable_bindings.len());
    for vb in pdu.variable_bindings {
        let value = match vb.value {
            v2::VarBindValue::Value(v) => value_from_v2(v)?,
            v2::VarBindValue::Unspecified => Value::Null,
            v2::VarBindValue::NoSuchObject => Value::NoSuchObject,
            v2::VarBindValue::NoSuchInstance => Value::NoSuchInstance,
            v2::VarBindValue::EndOfMibView => Value::EndOfMibView,
        };
        varbinds.push((vb.name.to_vec(), value));
    }
    Some(Response {
        request_id: pdu.request_id,
        error_status: pdu.error_status,
        error_index: pdu.error_index,
        varbinds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    #[test]
    fn a_v2c_getbulk_is_what_net_snmp_sends() {
        // snmpbulkwalk -v2c -c public -Cr10 HOST 1.3.6.1.2.1.1, request-id 7
        let mut f = Frame::default();
        request_pdu(
            &mut f,
            Op::GetBulk {
                max_repetitions: 10,
            },
            7,
            &[vec![1, 3, 6, 1, 2, 1, 1]],
        );
        community_message(&mut f, 1, b"public");
        assert_eq!(
            f.as_slice(),
            hex("30 24 02 01 01 04 06 7075626c6963
                 a5 17 02 01 07 02 01 00 02 01 0a
                    30 0c 30 0a 06 06 2b0601020101 05 00")
        );
    }

    #[test]
    fn a_v1_getnext_decodes_with_rasn() {
        let mut f = Frame::default();
        request_pdu(&mut f, Op::GetNext, 300, &[vec![1, 3, 6, 1]]);
        community_message(&mut f, 0, b"c");
        let m: v1::Message<v1::Pdus> = rasn::ber::decode(f.as_slice()).unwrap();
        let v1::Pdus::GetNextRequest(p) = m.data else {
            panic!("{:?}", m.data)
        };
        assert_eq!(p.0.request_id, Integer::from(300));
        assert_eq!(p.0.variable_bindings[0].name.to_vec(), vec![1, 3, 6, 1]);
    }

    #[test]
    fn answers_open_into_values_and_exceptions() {
        // v2c Response, rid 7: sysUpTime.0 = TimeTicks 42, then endOfMibView.
        let bytes = hex("30 2f 02 01 01 04 06 7075626c6963
             a2 22 02 01 07 02 01 00 02 01 00
                30 17 30 0d 06 08 2b06010201010300 43 01 2a
                      30 06 06 02 2b06 82 00");
        let r = open_v2c(&bytes, b"public").unwrap();
        assert_eq!(r.request_id, 7);
        assert_eq!(
            r.varbinds,
            vec![
                (vec![1, 3, 6, 1, 2, 1, 1, 3, 0], Value::TimeTicks(42)),
                (vec![1, 3, 6], Value::EndOfMibView),
            ]
        );
        assert!(open_v2c(&bytes, b"private").is_none());
        assert!(open_v1(&bytes, b"public").is_none());
        for len in 0..bytes.len() {
            assert!(open_v2c(&bytes[..len], b"public").is_none());
        }
        // The same as SNMPv1 with noSuchName at index 1.
        let v1 = hex("30 28 02 01 00 04 06 7075626c6963
             a2 1b 02 01 07 02 01 02 02 01 01
                30 10 30 0e 06 08 2b06010201010300 41 02 0100");
        let r = open_v1(&v1, b"public").unwrap();
        assert_eq!((r.error_status, r.error_index), (NO_SUCH_NAME, 1));
        assert_eq!(r.varbinds[0].1, Value::Counter32(256));
    }
}
