//! snmpsim's `error`, `delay` and `notification` variations as the
//! responder applies them: the response's error-status and index, the
//! hold and the notifications it asks of the serving loop.

use super::*;
use crate::responder::Hold;

const PLAIN: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 1, 0];
const SLOW: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 2, 0];
const SLOWER: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 5];
const GEN_ERR: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 5, 0];
const SET_ERR: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 6, 0];
const GONE: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 7, 0];
const WRONG: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 8, 0];
const TRAP: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 9, 0];
const LAST: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 1, 0];

fn varied(oid: &[u32], value: Value, module: &str, params: &str) -> Record {
    Record {
        variation: Some(Variation {
            name: module.into(),
            params: params.into(),
        }),
        ..rec(oid, value)
    }
}

fn harness() -> Harness {
    let s = |t: &str| Value::OctetString(t.as_bytes().to_vec());
    Harness::serving(
        vec![
            rec(PLAIN, s("plain")),
            varied(SLOW, s("slow"), "delay", "value=slow,wait=300"),
            varied(SLOWER, s(""), "delay", "wait=200"),
            varied(GEN_ERR, s("x"), "error", "op=get,status=genError,value=x"),
            varied(
                SET_ERR,
                Value::Integer(7),
                "error",
                "op=set,status=notWritable,value=7",
            ),
            varied(
                GONE,
                s("z"),
                "error",
                "op=get,status=noSuchInstance,value=z",
            ),
            varied(WRONG, s("z"), "error", "status=wrongValue,value=z"),
            varied(
                TRAP,
                s("t"),
                "notification",
                "op=get,version=2c,host=127.0.0.1,port=1162,value=t,\
                 trapoid=1.3.6.1.4.1.9.0.1,varbinds=1.3.6.1.4.1.9.1.0:i:5",
            ),
            rec(LAST, Value::Integer(5)),
        ],
        100,
        65_507,
    )
}

fn get(h: &mut Harness, oids: &[&[u32]]) -> v2::Pdu {
    h.v2("public", v2::Pdus::GetRequest(v2::GetRequest(pdu(1, oids))))
        .unwrap()
}

#[test]
fn error_answers_its_status_at_the_varbind_that_touched_it() {
    let mut h = harness();
    let r = get(&mut h, &[PLAIN, GEN_ERR]);
    assert_eq!((r.error_status, r.error_index), (5, 2), "genErr at 2");
    // op=set: a read is served the value.
    let r = get(&mut h, &[SET_ERR]);
    assert_eq!(r.error_status, 0);
    // op=any (the default) fails reads too; a GETNEXT landing on the
    // object fails as snmpsim's does.
    let r = get(&mut h, &[WRONG]);
    assert_eq!((r.error_status, r.error_index), (10, 1));
    let r = h
        .v2(
            "public",
            v2::Pdus::GetNextRequest(v2::GetNextRequest(pdu(1, &[PLAIN, SLOWER]))),
        )
        .unwrap();
    assert_eq!((r.error_status, r.error_index), (5, 2));
    let r = h.v2("public", bulk(0, 10, &[PLAIN])).unwrap();
    assert_eq!(
        (r.error_status, r.error_index),
        (5, 1),
        "a bulk walk into genErr"
    );
}

#[test]
fn error_exceptions_in_v2c_and_their_v1_forms() {
    let mut h = harness();
    let r = get(&mut h, &[GONE, PLAIN]);
    assert_eq!(r.error_status, 0);
    assert_eq!(
        r.variable_bindings[0].value,
        v2::VarBindValue::NoSuchInstance
    );
    let r = h
        .v1(
            "public",
            v1::Pdus::GetRequest(v1::GetRequest(v1_pdu(3, &[PLAIN, GONE]))),
        )
        .unwrap();
    assert_eq!(
        (r.error_status, r.error_index),
        (2.into(), 2.into()),
        "noSuchName"
    );
    let r = h
        .v1(
            "public",
            v1::Pdus::GetRequest(v1::GetRequest(v1_pdu(3, &[WRONG]))),
        )
        .unwrap();
    assert_eq!(r.error_status, 3.into(), "wrongValue is badValue in SNMPv1");
}

#[test]
fn error_on_set_comes_before_the_access_check() {
    let mut h = harness();
    for community in ["public", "private"] {
        let r = h
            .v2(
                community,
                set_pdu(
                    9,
                    SET_ERR,
                    ObjectSyntax::Simple(SimpleSyntax::Integer(1.into())),
                ),
            )
            .unwrap();
        assert_eq!((r.error_status, r.error_index), (17, 1), "{community}");
    }
    // op=get does not fail a SET.
    let r = h
        .v2("private", set_pdu(9, GEN_ERR, str_value("y")))
        .unwrap();
    assert_eq!(r.error_status, 0);
}

#[test]
fn delay_asks_for_a_hold_summed_over_the_objects_touched() {
    let mut h = harness();
    let r = get(&mut h, &[PLAIN]);
    assert_eq!(string(&r.variable_bindings[0].value), b"plain");
    assert!(h.responder.take_effects().is_empty());
    let r = get(&mut h, &[SLOW]);
    assert_eq!(string(&r.variable_bindings[0].value), b"slow");
    assert_eq!(
        h.responder.take_effects().hold,
        Some(Hold::For(Duration::from_millis(300)))
    );
    get(&mut h, &[SLOW, PLAIN, SLOWER]);
    assert_eq!(
        h.responder.take_effects().hold,
        Some(Hold::For(Duration::from_millis(500)))
    );
    // A walk through them holds too.
    h.v2(
        "public",
        v2::Pdus::GetNextRequest(v2::GetNextRequest(pdu(1, &[PLAIN]))),
    )
    .unwrap();
    assert_eq!(
        h.responder.take_effects().hold,
        Some(Hold::For(Duration::from_millis(300)))
    );
    // The next request starts afresh.
    get(&mut h, &[PLAIN]);
    assert!(!h.responder.has_effects());
}

#[test]
fn notification_is_asked_for_on_the_op_it_names() {
    let mut h = harness();
    let r = get(&mut h, &[TRAP]);
    assert_eq!(string(&r.variable_bindings[0].value), b"t");
    let effects = h.responder.take_effects();
    assert_eq!(effects.notices.len(), 1);
    let notice = &effects.notices[0];
    assert_eq!(notice.target.address, "127.0.0.1:1162");
    assert_eq!(notice.notification.trap_oid, [1, 3, 6, 1, 4, 1, 9, 0, 1]);
    // The harness answers 5 s after the start: the device's sysUpTime.
    assert_eq!(notice.notification.uptime, 500);
    assert_eq!(
        notice.notification.varbinds,
        [(vec![1, 3, 6, 1, 4, 1, 9, 1, 0], Value::Integer(5))]
    );
    // op=get: a SET sends nothing.
    h.v2("private", set_pdu(9, TRAP, str_value("u"))).unwrap();
    assert!(h.responder.take_effects().notices.is_empty());
}

#[test]
fn bad_variation_params_fail_the_compile_naming_the_line() {
    let text = b"1.3.6.1.2.1.1.1.0|4|a\n1.3.6.1.2.1.1.2.0|4:error|status=exploded\n";
    let e = crate::data::snapshot::parse(
        text,
        crate::data::snapshot::Format::Snmprec,
        std::path::Path::new("bad.snmprec"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains(":2") && e.contains("exploded"), "{e}");
}

/// Two objects of a multiplexed subtree (two snapshots, 4 s each): at the
/// harness's 5 s the second snapshot is served, which has only the first.
#[test]
fn multiplex_serves_the_current_snapshot_and_hides_what_it_lacks() {
    const BOTH: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 10, 1];
    const FIRST_ONLY: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 10, 2];
    let mux = |slots: &str| {
        varied(
            BOTH,
            Value::Counter32(100),
            "multiplex",
            &format!("period=4,wrap=1,fixed=0,keys=0:1,slots={slots}"),
        )
    };
    let mut h = Harness::serving(
        vec![
            rec(PLAIN, Value::OctetString(b"plain".to_vec())),
            mux("410164:410200c8"),
            Record {
                oid: FIRST_ONLY.to_vec(),
                ..mux("41016f:")
            },
            rec(LAST, Value::Integer(5)),
        ],
        100,
        65_507,
    );
    let r = get(&mut h, &[BOTH, FIRST_ONLY]);
    assert_eq!(
        r.variable_bindings[0].value,
        v2::VarBindValue::Value(ObjectSyntax::ApplicationWide(
            rasn_smi::v2::ApplicationSyntax::Counter(rasn_smi::v1::Counter(200))
        )),
        "the second snapshot's value"
    );
    assert_eq!(
        r.variable_bindings[1].value,
        v2::VarBindValue::NoSuchInstance
    );
    let r = h
        .v2(
            "public",
            v2::Pdus::GetNextRequest(v2::GetNextRequest(pdu(1, &[BOTH]))),
        )
        .unwrap();
    assert_eq!(
        r.variable_bindings[0].name,
        oid(LAST),
        "the walk passes it over"
    );
    let r = h
        .v1(
            "public",
            v1::Pdus::GetRequest(v1::GetRequest(v1_pdu(3, &[FIRST_ONLY]))),
        )
        .unwrap();
    assert_eq!(r.error_status, 2.into(), "noSuchName in SNMPv1");
}
