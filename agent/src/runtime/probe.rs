//! The supervisor's end-to-end liveness probe: a GET of sysUpTime.0 with an
//! agent's own community, and the check of its answer.

use rasn_snmp::{v1, v2, v2c};

use crate::wire::ber::{self, Frame};

const SYS_UPTIME_0: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];

/// A GetRequest for sysUpTime.0 (`v1`: SNMPv1, else v2c).
pub fn request(community: &[u8], v1: bool, request_id: i32) -> Vec<u8> {
    let mut f = Frame::default();
    f.reset(64 + community.len());
    ber::push_varbind(f.body(), SYS_UPTIME_0, &[ber::TAG_NULL, 0]);
    f.wrap(ber::TAG_SEQUENCE);
    f.prepend_int(0);
    f.prepend_int(0);
    f.prepend_int(i64::from(request_id));
    f.wrap(0xa0);
    f.prepend_tlv(ber::TAG_OCTET_STRING, community);
    f.prepend_int(if v1 { 0 } else { 1 });
    f.wrap(ber::TAG_SEQUENCE);
    f.as_slice().to_vec()
}

/// Whether `datagram` is a successful response to the probe `request_id`.
pub fn answers(datagram: &[u8], request_id: i32) -> bool {
    match ber::peek_version(datagram) {
        Some(0) => match rasn::ber::decode::<v1::Message<v1::Pdus>>(datagram) {
            Ok(m) => matches!(m.data, v1::Pdus::GetResponse(r)
                if i64::try_from(r.0.request_id.clone()).ok() == Some(i64::from(request_id))
                    && r.0.error_status == 0.into()),
            Err(_) => false,
        },
        Some(1) => match rasn::ber::decode::<v2c::Message<v2::Pdus>>(datagram) {
            Ok(m) => matches!(m.data, v2::Pdus::Response(r)
                if r.0.request_id == request_id && r.0.error_status == 0),
            Err(_) => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_a_valid_get_and_its_answer_is_recognised() {
        let req = request(b"public", false, 77);
        let m: v2c::Message<v2::Pdus> = rasn::ber::decode(&req).unwrap();
        assert_eq!(m.community.as_ref(), b"public");
        let v2::Pdus::GetRequest(g) = m.data else {
            panic!("not a get")
        };
        assert_eq!(g.0.request_id, 77);
        assert_eq!(&*g.0.variable_bindings[0].name, SYS_UPTIME_0);
        // a response with the same id answers it, another id does not
        let resp = v2c::Message {
            version: 1.into(),
            community: b"public".to_vec().into(),
            data: v2::Pdus::Response(v2::Response(g.0.clone())),
        };
        let bytes = rasn::ber::encode(&resp).unwrap();
        assert!(answers(&bytes, 77));
        assert!(!answers(&bytes, 78));
        assert!(!answers(&req, 77), "a request is not an answer");
        let v1req = request(b"x", true, 5);
        assert_eq!(ber::peek_version(&v1req), Some(0));
    }
}
