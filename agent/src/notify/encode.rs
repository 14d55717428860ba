//! Notification messages, built back to front in a [`Frame`] like the
//! responder's answers, and the opening of what comes back (an inform's
//! Response, a receiver's Report). Pure: no socket, no clock.

use rasn_snmp::{v2, v2c};

use super::{Notification, SNMP_TRAP_OID, SYS_UPTIME, v1_trap_fields};
use crate::wire::ber::{self, Frame, TAG_INTEGER, TAG_OCTET_STRING, TAG_SEQUENCE};
use crate::wire::value::Value;

/// The SNMPv1 Trap-PDU tag (RFC 1157).
pub(crate) const TAG_V1_TRAP: u8 = 0xa4;
/// The GetRequest-PDU tag (of an engine discovery probe).
pub(crate) const TAG_GET: u8 = 0xa0;
/// The InformRequest-PDU tag (RFC 3416).
pub const TAG_INFORM: u8 = 0xa6;
/// The SNMPv2-Trap-PDU tag (RFC 3416).
pub const TAG_V2_TRAP: u8 = 0xa7;

/// Room in front of the varbinds for every header.
const HEADROOM: usize = 320;

fn push_varbinds(frame: &mut Frame, vbs: &[(&[u32], &Value)]) {
    let mut value = Vec::with_capacity(32);
    for (oid, v) in vbs {
        value.clear();
        ber::push_value(&mut value, v);
        ber::push_varbind(frame.body(), oid, &value);
    }
    frame.wrap(TAG_SEQUENCE);
}

/// Leaves an SNMPv2 notification PDU (`tag`: Trap or Inform) in `frame`:
/// sysUpTime.0, snmpTrapOID.0, then the notification's varbinds.
pub(crate) fn v2_pdu(frame: &mut Frame, tag: u8, request_id: i32, n: &Notification) {
    frame.reset(HEADROOM);
    let uptime = Value::TimeTicks(n.uptime);
    let trap = Value::ObjectId(n.trap_oid.clone());
    let mut vbs: Vec<(&[u32], &Value)> = vec![(SYS_UPTIME, &uptime), (SNMP_TRAP_OID, &trap)];
    vbs.extend(n.varbinds.iter().map(|(o, v)| (o.as_slice(), v)));
    push_varbinds(frame, &vbs);
    frame.prepend_int(0);
    frame.prepend_int(0);
    frame.prepend_int(i64::from(request_id));
    frame.wrap(tag);
}

/// An SNMPv2c Trap or Inform.
pub fn v2c(frame: &mut Frame, community: &[u8], tag: u8, request_id: i32, n: &Notification) {
    v2_pdu(frame, tag, request_id, n);
    frame.prepend_tlv(TAG_OCTET_STRING, community);
    frame.prepend_int(1);
    frame.wrap(TAG_SEQUENCE);
}

/// An SNMPv1 Trap (RFC 1157 §4.1.6), its fields derived per RFC 3584.
pub(crate) fn v1(frame: &mut Frame, community: &[u8], n: &Notification) {
    frame.reset(HEADROOM);
    let vbs: Vec<(&[u32], &Value)> = n
        .varbinds
        .iter()
        .filter(|(_, v)| !matches!(v, Value::Counter64(_)))
        .map(|(o, v)| (o.as_slice(), v))
        .collect();
    push_varbinds(frame, &vbs);
    let (enterprise, generic, specific) = v1_trap_fields(n);
    let mut head = Vec::with_capacity(48);
    ber::push_oid(&mut head, &enterprise);
    head.extend_from_slice(&[ber::TAG_IP_ADDRESS, 4]);
    head.extend_from_slice(&n.agent_addr);
    ber::push_i64(&mut head, TAG_INTEGER, generic);
    ber::push_i64(&mut head, TAG_INTEGER, specific);
    ber::push_u64(&mut head, ber::TAG_TIMETICKS, u64::from(n.uptime));
    frame.prepend(&head);
    frame.wrap(TAG_V1_TRAP);
    frame.prepend_tlv(TAG_OCTET_STRING, community);
    frame.prepend_int(0);
    frame.wrap(TAG_SEQUENCE);
}

/// The request-id and error-status of an SNMPv2c Response from
/// `community`.
pub(crate) fn open_v2c_response(bytes: &[u8], community: &[u8]) -> Option<(i32, u32)> {
    let Ok((msg, [])) = rasn::ber::decode_with_remainder::<v2c::Message<v2::Pdus>>(bytes) else {
        return None;
    };
    if msg.community[..] != community[..] {
        return None;
    }
    match msg.data {
        v2::Pdus::Response(r) => Some((r.0.request_id, r.0.error_status)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{COLD_START, SNMP_TRAPS};
    use crate::security::peer::open_v3;
    use crate::wire::v3 as wire;
    use rasn_smi::v2::{ApplicationSyntax, ObjectSyntax, SimpleSyntax};
    use rasn_snmp::v1 as r1;

    fn note() -> Notification {
        Notification {
            trap_oid: COLD_START.to_vec(),
            uptime: 4242,
            varbinds: vec![
                (
                    vec![1, 3, 6, 1, 2, 1, 1, 5, 0],
                    Value::OctetString(b"dev-1".to_vec()),
                ),
                (
                    vec![1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 1],
                    Value::Counter64(7),
                ),
            ],
            agent_addr: [10, 0, 0, 7],
        }
    }

    #[test]
    fn v2c_trap_and_inform_decode_with_rasn() {
        let mut f = Frame::default();
        for tag in [TAG_V2_TRAP, TAG_INFORM] {
            v2c(&mut f, b"public", tag, 77, &note());
            let (msg, rest) =
                rasn::ber::decode_with_remainder::<v2c::Message<v2::Pdus>>(f.as_slice()).unwrap();
            assert!(rest.is_empty());
            assert_eq!(msg.community.as_ref(), b"public");
            let pdu = match msg.data {
                v2::Pdus::Trap(t) if tag == TAG_V2_TRAP => t.0,
                v2::Pdus::InformRequest(i) if tag == TAG_INFORM => i.0,
                other => panic!("{other:?}"),
            };
            assert_eq!(pdu.request_id, 77);
            let vbs = pdu.variable_bindings;
            assert_eq!(vbs.len(), 4);
            assert_eq!(vbs[0].name.to_vec(), SYS_UPTIME);
            assert_eq!(
                vbs[0].value,
                v2::VarBindValue::Value(ObjectSyntax::ApplicationWide(ApplicationSyntax::Ticks(
                    rasn_smi::v1::TimeTicks(4242)
                )))
            );
            assert_eq!(vbs[1].name.to_vec(), SNMP_TRAP_OID);
            assert_eq!(
                vbs[1].value,
                v2::VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::ObjectId(
                    rasn::types::ObjectIdentifier::new(COLD_START.to_vec()).unwrap()
                )))
            );
            assert_eq!(vbs[2].name.to_vec(), [1, 3, 6, 1, 2, 1, 1, 5, 0]);
        }
    }

    #[test]
    fn v1_trap_decodes_with_rasn_and_drops_counter64() {
        let mut f = Frame::default();
        v1(&mut f, b"public", &note());
        let (msg, rest) =
            rasn::ber::decode_with_remainder::<r1::Message<r1::Pdus>>(f.as_slice()).unwrap();
        assert!(rest.is_empty());
        let r1::Pdus::Trap(t) = msg.data else {
            panic!("not a trap")
        };
        assert_eq!(t.enterprise.to_vec(), SNMP_TRAPS);
        let rasn_smi::v1::NetworkAddress::Internet(addr) = &t.agent_addr;
        assert_eq!(*addr.0, [10, 0, 0, 7]);
        assert_eq!(t.generic_trap, 0.into());
        assert_eq!(t.specific_trap, 0.into());
        assert_eq!(t.time_stamp.0, 4242);
        assert_eq!(t.variable_bindings.len(), 1, "Counter64 has no v1 form");
    }

    #[test]
    fn v3_messages_open_only_with_the_right_keys() {
        use crate::security::usm::keys::{localized_auth_key, localized_priv_key};
        use crate::security::usm::{AuthKey, AuthProtocol, PrivKey, PrivProtocol};
        let engine = [0x80, 0, 0x1f, 0x88, 5, 9, 9, 9];
        let auth = AuthKey::new(
            AuthProtocol::Sha256,
            &localized_auth_key(AuthProtocol::Sha256, b"authpass1", &engine).unwrap(),
        )
        .unwrap();
        let privacy = PrivKey::new(
            PrivProtocol::Des,
            &localized_priv_key(
                AuthProtocol::Sha256,
                PrivProtocol::Des,
                b"privpass",
                &engine,
            )
            .unwrap(),
        )
        .unwrap();
        let mut f = Frame::default();
        v2_pdu(&mut f, TAG_V2_TRAP, 5, &note());
        wire::seal(
            &mut f,
            &wire::Seal {
                msg_id: 9,
                max_size: 65507,
                flags: 3,
                engine_id: &engine,
                boots: 3,
                time: 44,
                user_name: b"ops",
                auth: Some(&auth),
                privacy: Some((&privacy, 1)),
                context_engine_id: &engine,
                context_name: b"",
            },
            &mut Vec::new(),
        );
        let bytes = f.as_slice().to_vec();
        let o = open_v3(&bytes, Some(&auth), Some(&privacy)).unwrap();
        assert_eq!((o.msg_id, o.flags, o.boots, o.time), (9, 3, 3, 44));
        assert!(matches!(o.pdus, v2::Pdus::Trap(_)));
        assert!(open_v3(&bytes, None, Some(&privacy)).is_none());
        assert!(open_v3(&bytes, Some(&auth), None).is_none());
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(open_v3(&bad, Some(&auth), Some(&privacy)).is_none());
        for len in 0..bytes.len() {
            assert!(open_v3(&bytes[..len], Some(&auth), Some(&privacy)).is_none());
        }
    }
}
