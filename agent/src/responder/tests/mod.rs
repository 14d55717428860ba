//! Responder tests: requests are built with rasn (an encoder independent of
//! ours) and responses decoded with rasn, so both directions are checked
//! against a second implementation of BER.

mod hostile;
pub(crate) mod v3;
mod values;
mod variations;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rasn::types::ObjectIdentifier;
use rasn_smi::v2::{ObjectSyntax, SimpleSyntax};
use rasn_snmp::{v1, v2, v2c};

use super::*;
use crate::data::snapshot::{Record, Variation};

const SYS_DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 1, 0];
const SYS_UPTIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
const SYS_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 5, 0];
const IF_HC_IN: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 1];
const UPS_NAME: &[u32] = &[1, 3, 6, 1, 4, 1, 318, 1, 1, 1, 1, 2, 3, 0];
const UPS_LOAD: &[u32] = &[1, 3, 6, 1, 4, 1, 318, 1, 1, 1, 4, 2, 3, 0];

fn rec(oid: &[u32], value: Value) -> Record {
    Record {
        oid: oid.to_vec(),
        value,
        variation: None,
        line: 1,
    }
}

fn records() -> Vec<Record> {
    let mut r = vec![
        rec(SYS_DESCR, Value::OctetString(b"Test box".to_vec())),
        rec(SYS_UPTIME, Value::TimeTicks(999_999)),
        rec(SYS_NAME, Value::OctetString(b"box-1".to_vec())),
        rec(IF_HC_IN, Value::Counter64(1 << 40)),
        Record {
            variation: Some(Variation {
                name: "writecache".into(),
                params: "value=ups".into(),
            }),
            ..rec(UPS_NAME, Value::OctetString(b"ups".to_vec()))
        },
        Record {
            variation: Some(Variation {
                name: "numeric".into(),
                params: "initial=10,rate=2".into(),
            }),
            ..rec(UPS_LOAD, Value::Gauge32(10))
        },
    ];
    // a table with 20 rows, for walks and bulks
    for i in 1..=20u32 {
        r.push(rec(
            &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, i],
            Value::OctetString(format!("eth{i}").into_bytes()),
        ));
    }
    r.sort_by(|a, b| a.oid.cmp(&b.oid));
    r
}

struct Harness {
    responder: Responder,
    start: Instant,
    frame: Frame,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_limits(1000, 65_507)
    }

    fn with_limits(max_varbinds: usize, max_message_size: usize) -> Harness {
        Harness::serving(records(), max_varbinds, max_message_size)
    }

    fn serving(records: Vec<Record>, max_varbinds: usize, max_message_size: usize) -> Harness {
        let store = Arc::new(Store::from_records(&records).unwrap());
        let access = |c: &str, write| CommunityAccess {
            community: c.as_bytes().to_vec(),
            v1: true,
            v2c: true,
            view: 0,
            write,
        };
        let config = Config {
            communities: vec![access("public", false), access("private", true)],
            max_varbinds,
            max_message_size,
            v3: None,
        };
        let start = Instant::now();
        Harness {
            responder: Responder::new(config, vec![store], start),
            start,
            frame: Frame::default(),
        }
    }

    fn raw(&mut self, datagram: &[u8]) -> Option<Vec<u8>> {
        let now = self.start + Duration::from_secs(5);
        match self.responder.handle(datagram, now, &mut self.frame) {
            Outcome::Reply => Some(self.frame.as_slice().to_vec()),
            Outcome::Dropped(_) => None,
        }
    }

    fn v2(&mut self, community: &str, pdus: v2::Pdus) -> Option<v2::Pdu> {
        let msg = v2c::Message {
            version: 1.into(),
            community: community.as_bytes().to_vec().into(),
            data: pdus,
        };
        let bytes = rasn::ber::encode(&msg).unwrap();
        let reply = self.raw(&bytes)?;
        let (resp, rest): (v2c::Message<v2::Pdus>, _) =
            rasn::ber::decode_with_remainder(&reply).expect("response decodes");
        assert!(rest.is_empty());
        assert_eq!(resp.version, 1.into());
        assert_eq!(resp.community.as_ref(), community.as_bytes());
        match resp.data {
            v2::Pdus::Response(r) => Some(r.0),
            other => panic!("not a response: {other:?}"),
        }
    }

    fn v1(&mut self, community: &str, pdus: v1::Pdus) -> Option<v1::Pdu> {
        let msg = v1::Message {
            version: 0.into(),
            community: community.as_bytes().to_vec().into(),
            data: pdus,
        };
        let bytes = rasn::ber::encode(&msg).unwrap();
        let reply = self.raw(&bytes)?;
        let resp: v1::Message<v1::Pdus> = rasn::ber::decode(&reply).expect("response decodes");
        assert_eq!(resp.version, 0.into());
        match resp.data {
            v1::Pdus::GetResponse(r) => Some(r.0),
            other => panic!("not a response: {other:?}"),
        }
    }
}

fn oid(a: &[u32]) -> ObjectIdentifier {
    ObjectIdentifier::new(a.to_vec()).unwrap()
}

fn vbs(oids: &[&[u32]]) -> Vec<v2::VarBind> {
    oids.iter()
        .map(|o| v2::VarBind {
            name: oid(o),
            value: v2::VarBindValue::Unspecified,
        })
        .collect()
}

fn pdu(id: i32, oids: &[&[u32]]) -> v2::Pdu {
    v2::Pdu {
        request_id: id,
        error_status: 0,
        error_index: 0,
        variable_bindings: vbs(oids),
    }
}

fn bulk(nr: u32, mr: u32, oids: &[&[u32]]) -> v2::Pdus {
    v2::Pdus::GetBulkRequest(v2::GetBulkRequest(v2::BulkPdu {
        request_id: 7,
        non_repeaters: nr,
        max_repetitions: mr,
        variable_bindings: vbs(oids),
    }))
}

fn string(v: &v2::VarBindValue) -> Vec<u8> {
    match v {
        v2::VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::String(s))) => s.to_vec(),
        other => panic!("not a string: {other:?}"),
    }
}

fn v1_pdu(id: i64, oids: &[&[u32]]) -> v1::Pdu {
    v1::Pdu {
        request_id: id.into(),
        error_status: 0.into(),
        error_index: 0.into(),
        variable_bindings: oids
            .iter()
            .map(|o| v1::VarBind {
                name: oid(o),
                value: rasn_smi::v1::ObjectSyntax::Simple(rasn_smi::v1::SimpleSyntax::Empty),
            })
            .collect(),
    }
}

#[test]
fn v2c_get_answers_values_and_exceptions() {
    let mut h = Harness::new();
    let r = h
        .v2(
            "public",
            v2::Pdus::GetRequest(v2::GetRequest(pdu(
                42,
                &[
                    SYS_DESCR,
                    &[1, 3, 6, 1, 2, 1, 1, 1],
                    &[1, 3, 6, 1, 2, 1, 1, 5, 1],
                    IF_HC_IN,
                ],
            ))),
        )
        .unwrap();
    assert_eq!(r.request_id, 42);
    assert_eq!(r.error_status, 0);
    assert_eq!(r.variable_bindings.len(), 4);
    assert_eq!(string(&r.variable_bindings[0].value), b"Test box");
    assert_eq!(r.variable_bindings[1].value, v2::VarBindValue::NoSuchObject);
    assert_eq!(
        r.variable_bindings[2].value,
        v2::VarBindValue::NoSuchInstance
    );
    assert!(matches!(
        r.variable_bindings[3].value,
        v2::VarBindValue::Value(ObjectSyntax::ApplicationWide(
            rasn_smi::v2::ApplicationSyntax::BigCounter(_)
        ))
    ));
}

#[test]
fn sysuptime_ticks_from_the_agent_start() {
    let mut h = Harness::new();
    let r = h
        .v2(
            "public",
            v2::Pdus::GetRequest(v2::GetRequest(pdu(1, &[SYS_UPTIME]))),
        )
        .unwrap();
    // The harness answers 5 s after start: 500 ticks, not the recorded 999999.
    assert_eq!(
        r.variable_bindings[0].value,
        v2::VarBindValue::Value(ObjectSyntax::ApplicationWide(
            rasn_smi::v2::ApplicationSyntax::Ticks(rasn_smi::v1::TimeTicks(500))
        ))
    );
}

#[test]
fn numeric_variation_moves_with_time() {
    let mut h = Harness::new();
    let r = h
        .v2(
            "public",
            v2::Pdus::GetRequest(v2::GetRequest(pdu(1, &[UPS_LOAD]))),
        )
        .unwrap();
    // initial 10 + rate 2 × 5 s
    assert_eq!(
        r.variable_bindings[0].value,
        v2::VarBindValue::Value(ObjectSyntax::ApplicationWide(
            rasn_smi::v2::ApplicationSyntax::Unsigned(rasn_smi::v1::Gauge(20))
        ))
    );
}

#[test]
fn v2c_getnext_walks_in_order_and_ends_with_end_of_mib_view() {
    let mut h = Harness::new();
    let mut cursor: Vec<u32> = vec![1, 3];
    let mut seen = Vec::new();
    for _ in 0..200 {
        let r = h
            .v2(
                "public",
                v2::Pdus::GetNextRequest(v2::GetNextRequest(pdu(1, &[&cursor]))),
            )
            .unwrap();
        let vb = &r.variable_bindings[0];
        if vb.value == v2::VarBindValue::EndOfMibView {
            assert_eq!(&*vb.name, cursor.as_slice());
            break;
        }
        assert!(vb.name.to_vec() > cursor, "strictly increasing");
        cursor = vb.name.to_vec();
        seen.push(cursor.clone());
    }
    let live = 9; // snmp group counters served by the agent itself
    assert_eq!(seen.len(), records().len() + live);
}

#[test]
fn getbulk_edge_cases() {
    let mut h = Harness::new();
    let table: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
    // max-repetitions 0: only the non-repeaters
    let r = h.v2("public", bulk(1, 0, &[SYS_DESCR, table])).unwrap();
    assert_eq!(r.variable_bindings.len(), 1);
    assert_eq!(&*r.variable_bindings[0].name, SYS_UPTIME);
    // non-repeaters larger than the list: every varbind is a non-repeater
    let r = h.v2("public", bulk(10, 5, &[SYS_DESCR, table])).unwrap();
    assert_eq!(r.variable_bindings.len(), 2);
    // repeaters interleave: N + M×R
    let r = h
        .v2("public", bulk(1, 3, &[SYS_DESCR, table, table]))
        .unwrap();
    assert_eq!(r.variable_bindings.len(), 1 + 3 * 2);
    assert_eq!(string(&r.variable_bindings[1].value), b"eth1");
    assert_eq!(string(&r.variable_bindings[2].value), b"eth1");
    assert_eq!(string(&r.variable_bindings[3].value), b"eth2");
    // past the end: endOfMibView, and the response stops early
    let r = h
        .v2("public", bulk(0, 50, &[&[1, 3, 6, 1, 4, 1, 318]]))
        .unwrap();
    let names: Vec<_> = r
        .variable_bindings
        .iter()
        .map(|v| v.name.to_vec())
        .collect();
    assert_eq!(names[0], UPS_NAME);
    assert_eq!(names[1], UPS_LOAD);
    assert_eq!(r.variable_bindings[2].value, v2::VarBindValue::EndOfMibView);
    assert_eq!(r.variable_bindings.len(), 3);
    // huge max-repetitions: cut at max_varbinds, no runaway
    let mut h = Harness::with_limits(10, 65_507);
    let r = h.v2("public", bulk(0, u32::MAX, &[&[1, 3]])).unwrap();
    assert_eq!(r.variable_bindings.len(), 10);
}

#[test]
fn getbulk_is_cut_to_the_message_size() {
    let mut h = Harness::with_limits(1000, 300);
    let msg = v2c::Message {
        version: 1.into(),
        community: b"public".to_vec().into(),
        data: bulk(0, 100, &[&[1, 3]]),
    };
    let bytes = rasn::ber::encode(&msg).unwrap();
    let reply = h.raw(&bytes).unwrap();
    assert!(reply.len() <= 300, "{} bytes", reply.len());
    let resp: v2c::Message<v2::Pdus> = rasn::ber::decode(&reply).unwrap();
    let v2::Pdus::Response(r) = resp.data else {
        panic!()
    };
    assert_eq!(r.0.error_status, 0);
    assert!(r.0.variable_bindings.len() >= 5);
}

#[test]
fn get_larger_than_the_message_size_is_too_big() {
    let mut h = Harness::with_limits(1000, 200);
    let many: Vec<&[u32]> = std::iter::repeat_n(SYS_DESCR, 20).collect();
    let r = h
        .v2(
            "public",
            v2::Pdus::GetRequest(v2::GetRequest(pdu(3, &many))),
        )
        .unwrap();
    assert_eq!(r.error_status, ErrorStatus::TooBig as u32);
    assert_eq!(r.error_index, 0);
    assert!(r.variable_bindings.is_empty());
}

#[test]
fn v1_maps_exceptions_and_counter64_to_no_such_name() {
    let mut h = Harness::new();
    let r = h
        .v1(
            "public",
            v1::Pdus::GetRequest(v1::GetRequest(v1_pdu(5, &[SYS_DESCR, IF_HC_IN]))),
        )
        .unwrap();
    assert_eq!(r.error_status, 2.into());
    assert_eq!(r.error_index, 2.into());
    // the request's varbinds come back unchanged
    assert_eq!(r.variable_bindings.len(), 2);
    assert_eq!(&*r.variable_bindings[1].name, IF_HC_IN);
    // GETNEXT skips the Counter64 object in v1
    let r = h
        .v1(
            "public",
            v1::Pdus::GetNextRequest(v1::GetNextRequest(v1_pdu(6, &[&[1, 3, 6, 1, 2, 1, 31]]))),
        )
        .unwrap();
    assert_eq!(r.error_status, 0.into());
    assert_eq!(&*r.variable_bindings[0].name, UPS_NAME);
    // end of the MIB is noSuchName in v1
    let r = h
        .v1(
            "public",
            v1::Pdus::GetNextRequest(v1::GetNextRequest(v1_pdu(7, &[&[2, 1]]))),
        )
        .unwrap();
    assert_eq!(r.error_status, 2.into());
    assert_eq!(r.error_index, 1.into());
}

fn set_pdu(id: i32, oid_: &[u32], value: ObjectSyntax) -> v2::Pdus {
    v2::Pdus::SetRequest(v2::SetRequest(v2::Pdu {
        request_id: id,
        error_status: 0,
        error_index: 0,
        variable_bindings: vec![v2::VarBind {
            name: oid(oid_),
            value: v2::VarBindValue::Value(value),
        }],
    }))
}

fn str_value(s: &str) -> ObjectSyntax {
    ObjectSyntax::Simple(SimpleSyntax::String(s.as_bytes().to_vec().into()))
}

#[test]
fn set_rules_and_v1_mapping() {
    let mut h = Harness::new();
    // read-only community, plain object: notWritable
    let r = h
        .v2("public", set_pdu(1, SYS_NAME, str_value("x")))
        .unwrap();
    assert_eq!(r.error_status, ErrorStatus::NotWritable as u32);
    assert_eq!(r.error_index, 1);
    assert_eq!(string(&r.variable_bindings[0].value), b"x");
    // writecache object: writable by anyone, and it sticks
    let r = h
        .v2("public", set_pdu(2, UPS_NAME, str_value("renamed")))
        .unwrap();
    assert_eq!(r.error_status, 0);
    let r = h
        .v2(
            "public",
            v2::Pdus::GetRequest(v2::GetRequest(pdu(3, &[UPS_NAME]))),
        )
        .unwrap();
    assert_eq!(string(&r.variable_bindings[0].value), b"renamed");
    // write community: any existing object, but the type must match
    let r = h
        .v2("private", set_pdu(4, SYS_NAME, str_value("new-name")))
        .unwrap();
    assert_eq!(r.error_status, 0);
    let r = h
        .v2(
            "private",
            set_pdu(
                5,
                SYS_NAME,
                ObjectSyntax::Simple(SimpleSyntax::Integer(5.into())),
            ),
        )
        .unwrap();
    assert_eq!(r.error_status, ErrorStatus::WrongType as u32);
    // no creation of new objects
    let r = h
        .v2(
            "private",
            set_pdu(6, &[1, 3, 6, 1, 4, 1, 99, 0], str_value("x")),
        )
        .unwrap();
    assert_eq!(r.error_status, ErrorStatus::NoCreation as u32);
    // v1: notWritable becomes noSuchName (RFC 2576 §4.3)
    let v1_set = v1::Pdus::SetRequest(v1::SetRequest(v1::Pdu {
        request_id: 8.into(),
        error_status: 0.into(),
        error_index: 0.into(),
        variable_bindings: vec![v1::VarBind {
            name: oid(SYS_DESCR),
            value: rasn_smi::v1::ObjectSyntax::Simple(rasn_smi::v1::SimpleSyntax::String(
                b"x".to_vec().into(),
            )),
        }],
    }));
    let r = h.v1("public", v1_set).unwrap();
    assert_eq!(r.error_status, 2.into());
    assert_eq!(h.responder.counters().in_bad_community_uses, 2);
}

#[test]
fn bad_input_is_dropped_and_counted() {
    let mut h = Harness::new();
    let good = rasn::ber::encode(&v2c::Message {
        version: 1.into(),
        community: b"public".to_vec().into(),
        data: v2::Pdus::GetRequest(v2::GetRequest(pdu(9, &[SYS_DESCR]))),
    })
    .unwrap();
    let mut trailing = good.clone();
    trailing.push(0);
    let mut wrong_len = good.clone();
    wrong_len[1] += 3;
    let mut unknown_pdu = good.clone();
    unknown_pdu[13] = 0xa9;
    let bad_community = rasn::ber::encode(&v2c::Message {
        version: 1.into(),
        community: b"nope".to_vec().into(),
        data: v2::Pdus::GetRequest(v2::GetRequest(pdu(9, &[SYS_DESCR]))),
    })
    .unwrap();
    let mut bad_version = good.clone();
    bad_version[4] = 2;
    for bad in [
        &good[..good.len() - 3],
        &good[..1],
        &[][..],
        &trailing,
        &wrong_len,
        &unknown_pdu,
        &bad_community,
        &bad_version,
        &[0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00][..],
    ] {
        assert_eq!(h.raw(bad), None, "{bad:02x?}");
    }
    let c = h.responder.counters().clone();
    assert_eq!(c.in_bad_community_names, 1);
    assert_eq!(c.in_bad_versions, 1);
    assert_eq!(c.in_asn_parse_errs, 7);
    // and the next good request is answered
    assert!(h.raw(&good).is_some());
    // a response to a response is never sent
    let response = rasn::ber::encode(&v2c::Message {
        version: 1.into(),
        community: b"public".to_vec().into(),
        data: v2::Pdus::Response(v2::Response(pdu(9, &[SYS_DESCR]))),
    })
    .unwrap();
    assert_eq!(h.raw(&response), None);
}

/// Every drop is counted under its reason, and the reasons add up to
/// `dropped` (the supervisor's metrics show them by reason).
#[test]
fn drops_are_counted_by_reason() {
    let mut h = Harness::new();
    let get = |community: &[u8]| {
        rasn::ber::encode(&v2c::Message {
            version: 1.into(),
            community: community.to_vec().into(),
            data: v2::Pdus::GetRequest(v2::GetRequest(pdu(9, &[SYS_DESCR]))),
        })
        .unwrap()
    };
    let good = get(b"public");
    let mut bad_version = good.clone();
    bad_version[4] = 2;
    let response = rasn::ber::encode(&v2c::Message {
        version: 1.into(),
        community: b"public".to_vec().into(),
        data: v2::Pdus::Response(v2::Response(pdu(9, &[SYS_DESCR]))),
    })
    .unwrap();
    for bad in [
        &get(b"nope"),
        &get(b"other"),
        &bad_version,
        &response,
        &good[..3],
    ] {
        assert_eq!(h.raw(bad), None, "{bad:02x?}");
    }
    assert!(h.raw(&good).is_some());
    h.responder.set_rate_limit(Some(RateLimit {
        per_second: 1,
        burst: 1,
    }));
    let ip = "192.0.2.1".parse().unwrap();
    let now = h.start;
    assert_eq!((0..4).filter(|_| h.responder.admit(ip, now)).count(), 1);
    let c = h.responder.counters().clone();
    let by_reason: Vec<(&str, u64)> = c
        .drops
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(d, n)| (d.name(), n))
        .collect();
    assert_eq!(
        by_reason,
        [
            ("parse", 1),
            ("bad_version", 1),
            ("bad_community", 2),
            ("not_a_request", 1),
            ("rate_limited", 3),
        ]
    );
    assert_eq!(c.drops.iter().map(|(_, n)| n).sum::<u64>(), c.dropped);
    assert_eq!(c.drops.get(Drop::RateLimited), c.rate_limited);
}

#[test]
fn v1_and_v2c_get_getnext_and_getbulk_allocate_nothing() {
    use crate::sys::alloc_meter;
    let mut h = Harness::new();
    let table: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
    let v2 = |data: v2::Pdus| {
        rasn::ber::encode(&v2c::Message {
            version: 1.into(),
            community: b"public".to_vec().into(),
            data,
        })
        .unwrap()
    };
    let v1 = |data: v1::Pdus| {
        rasn::ber::encode(&v1::Message {
            version: 0.into(),
            community: b"public".to_vec().into(),
            data,
        })
        .unwrap()
    };
    let requests = [
        v2(v2::Pdus::GetRequest(v2::GetRequest(pdu(
            1,
            &[SYS_DESCR, SYS_NAME, IF_HC_IN],
        )))),
        v2(v2::Pdus::GetRequest(v2::GetRequest(pdu(
            2,
            &[&[1, 3, 6, 1, 9]],
        )))),
        v2(v2::Pdus::GetNextRequest(v2::GetNextRequest(pdu(
            3,
            &[SYS_UPTIME, table],
        )))),
        v2(bulk(1, 10, &[SYS_DESCR, table, table])),
        v2(bulk(0, 50, &[&[1, 3, 6, 1, 4, 1, 318]])),
        v1(v1::Pdus::GetRequest(v1::GetRequest(v1_pdu(
            4,
            &[SYS_DESCR, UPS_LOAD],
        )))),
        v1(v1::Pdus::GetNextRequest(v1::GetNextRequest(v1_pdu(
            5,
            &[table],
        )))),
        // An error response (noSuchName in v1) echoes the request's varbinds.
        v1(v1::Pdus::GetRequest(v1::GetRequest(v1_pdu(6, &[IF_HC_IN])))),
    ];
    let now = h.start + Duration::from_secs(5);
    // The first round grows the reused buffers to fit.
    for r in &requests {
        assert_eq!(h.responder.handle(r, now, &mut h.frame), Outcome::Reply);
    }
    for r in &requests {
        let (bytes, outcome) = alloc_meter::peak(|| h.responder.handle(r, now, &mut h.frame));
        assert_eq!(outcome, Outcome::Reply);
        assert_eq!(bytes, 0, "allocated for {r:02x?}");
    }
}
