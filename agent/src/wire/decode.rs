//! Requests decoded with rasn: every v1/v2c message and SNMPv2 PDU the
//! in-place decoder ([`super::fast`]) leaves to it, and the reference that
//! decoder is checked against.

use rasn::types::Integer;
use rasn_smi::{v1 as smi1, v2 as smi2};
use rasn_snmp::{v1, v2, v2c};

use super::pdu::{Drop, Kind, Names, Request, Version};
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

pub(crate) fn value_from_v1(v: smi1::ObjectSyntax) -> Option<Value> {
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

pub(crate) fn value_from_v2(v: smi2::ObjectSyntax) -> Option<Value> {
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
