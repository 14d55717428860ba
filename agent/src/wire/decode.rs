//! Requests decoded with rasn: every v1/v2c message and SNMPv2 PDU the
//! in-place decoder ([`super::fast`]) leaves to it, and the check that
//! both read alike wherever the in-place decoder answers.

use rasn::types::Integer;
use rasn_smi::{v1 as smi1, v2 as smi2};
use rasn_snmp::{v1, v2, v2c};

use super::fast;
use super::pdu::{Drop, Kind, Names, Request, Version};
use crate::wire::ber;
use crate::wire::value::Value;

fn decode_all<T: rasn::Decode>(datagram: &[u8]) -> Result<T, Drop> {
    match rasn::ber::decode_with_remainder::<T>(datagram) {
        Ok((msg, [])) => Ok(msg),
        _ => Err(Drop::Parse),
    }
}

fn int_i32(i: &Integer) -> Option<i32> {
    i64::try_from(i.clone())
        .ok()
        .and_then(|v| i32::try_from(v).ok())
}

pub(crate) fn decode_v1(datagram: &[u8]) -> Result<(Request, Vec<u8>), Drop> {
    let msg: v1::Message<v1::Pdus> = decode_all(datagram)?;
    let (kind, pdu) = match msg.data {
        v1::Pdus::GetRequest(p) => (Kind::Get, p.0),
        v1::Pdus::GetNextRequest(p) => (Kind::GetNext, p.0),
        v1::Pdus::SetRequest(p) => (Kind::Set, p.0),
        v1::Pdus::GetResponse(_) | v1::Pdus::Trap(_) => return Err(Drop::NotARequest),
    };
    let request_id = int_i32(&pdu.request_id).ok_or(Drop::Parse)?;
    let mut names = Names::default();
    let mut values = Vec::with_capacity(pdu.variable_bindings.len());
    for vb in pdu.variable_bindings {
        names.push(&vb.name);
        values.push(value_from_v1(vb.value).ok_or(Drop::Parse)?);
    }
    let request = Request {
        version: Version::V1,
        kind,
        request_id,
        names,
        values,
    };
    Ok((request, msg.community.to_vec()))
}

pub(crate) fn decode_v2c(datagram: &[u8]) -> Result<(Request, Vec<u8>), Drop> {
    let msg: v2c::Message<v2::Pdus> = decode_all(datagram)?;
    let request = request_from_pdus(msg.data, Version::V2c)?;
    Ok((request, msg.community.to_vec()))
}

/// A request from SNMPv2 PDUs (those of v2c and of a v3 scopedPDU).
pub(crate) fn request_from_pdus(pdus: v2::Pdus, version: Version) -> Result<Request, Drop> {
    let (kind, request_id, bindings) = match pdus {
        v2::Pdus::GetRequest(p) => (Kind::Get, p.0.request_id, p.0.variable_bindings),
        v2::Pdus::GetNextRequest(p) => (Kind::GetNext, p.0.request_id, p.0.variable_bindings),
        v2::Pdus::SetRequest(p) => (Kind::Set, p.0.request_id, p.0.variable_bindings),
        v2::Pdus::GetBulkRequest(p) => (
            Kind::GetBulk {
                non_repeaters: p.0.non_repeaters,
                max_repetitions: p.0.max_repetitions,
            },
            p.0.request_id,
            p.0.variable_bindings,
        ),
        v2::Pdus::Response(_)
        | v2::Pdus::InformRequest(_)
        | v2::Pdus::Trap(_)
        | v2::Pdus::Report(_) => return Err(Drop::NotARequest),
    };
    let mut names = Names::default();
    let mut values = Vec::with_capacity(bindings.len());
    for vb in bindings {
        names.push(&vb.name);
        values.push(match vb.value {
            v2::VarBindValue::Value(v) => value_from_v2(v).ok_or(Drop::Parse)?,
            v2::VarBindValue::Unspecified => Value::Null,
            v2::VarBindValue::NoSuchObject => Value::NoSuchObject,
            v2::VarBindValue::NoSuchInstance => Value::NoSuchInstance,
            v2::VarBindValue::EndOfMibView => Value::EndOfMibView,
        });
    }
    Ok(Request {
        version,
        kind,
        request_id,
        names,
        values,
    })
}

fn value_from_v1(v: smi1::ObjectSyntax) -> Option<Value> {
    use smi1::{ApplicationSyntax as A, NetworkAddress, ObjectSyntax as O, SimpleSyntax as S};
    Some(match v {
        O::Simple(S::Number(i)) => Value::Integer(i64::try_from(i).ok()?),
        O::Simple(S::String(s)) => Value::OctetString(s.to_vec()),
        O::Simple(S::Object(o)) => Value::ObjectId(o.to_vec()),
        O::Simple(S::Empty) => Value::Null,
        O::ApplicationWide(A::Address(NetworkAddress::Internet(a))) => Value::IpAddress(*a.0),
        O::ApplicationWide(A::Counter(c)) => Value::Counter32(c.0),
        O::ApplicationWide(A::Gauge(g)) => Value::Gauge32(g.0),
        O::ApplicationWide(A::Ticks(t)) => Value::TimeTicks(t.0),
        O::ApplicationWide(A::Arbitrary(o)) => Value::Opaque(o.as_ref().to_vec()),
    })
}

fn value_from_v2(v: smi2::ObjectSyntax) -> Option<Value> {
    use smi2::{ApplicationSyntax as A, ObjectSyntax as O, SimpleSyntax as S};
    Some(match v {
        O::Simple(S::Integer(i)) => Value::Integer(i64::try_from(i).ok()?),
        O::Simple(S::String(s)) => Value::OctetString(s.to_vec()),
        O::Simple(S::ObjectId(o)) => Value::ObjectId(o.to_vec()),
        O::ApplicationWide(A::Address(a)) => Value::IpAddress(*a.0),
        O::ApplicationWide(A::Counter(c)) => Value::Counter32(c.0),
        O::ApplicationWide(A::Ticks(t)) => Value::TimeTicks(t.0),
        O::ApplicationWide(A::Arbitrary(o)) => Value::Opaque(o.as_ref().to_vec()),
        O::ApplicationWide(A::BigCounter(c)) => Value::Counter64(c.0),
        O::ApplicationWide(A::Unsigned(g)) => Value::Gauge32(g.0),
    })
}

/// For the fuzzer and the tests: whether the in-place decoders ([`fast`])
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
            let Some(community) = fast::decode(datagram, &mut request) else {
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
            let Some(m) = fast::decode_v3(datagram, &mut request) else {
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
                (rasn_snmp::v3::ScopedPduData::EncryptedPdu(e), fast::V3Data::Encrypted(f)) => {
                    &e[..] == *f
                }
                (rasn_snmp::v3::ScopedPduData::CleartextPdu(s), fast::V3Data::Clear(f)) => {
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
    let Some(f) = fast::decode_scoped(plaintext, max_pad, &mut request) else {
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
