//! A device's own values over the shared store: GET, GETNEXT, GETBULK and
//! SET in every version, added, overridden and hidden objects, the
//! identity objects, and the allocation-free path.

use super::*;
use crate::data::values::{Identity, ValueSpec, Values};

const SYS_LOCATION: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 6, 0];
/// Between two table rows of the store (ifDescr.2 and ifDescr.3).
const BETWEEN: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 2, 5];
/// After the store's last record.
const AFTER_LAST: &[u32] = &[1, 3, 6, 1, 4, 1, 99999, 1, 0];

fn value(oid: &[u32], kind: Option<&str>, v: &str) -> ValueSpec {
    ValueSpec {
        oid: oid.to_vec(),
        kind: kind.map(str::to_string),
        value: v.to_string(),
    }
}

fn values() -> Values {
    Values {
        entries: vec![
            value(SYS_NAME, None, "printer-7"),
            value(SYS_LOCATION, None, "rack 7"),
            value(BETWEEN, Some("2"), "42"),
            value(AFTER_LAST, Some("4x"), "cafe"),
            // Counter64 in the store, Counter64 kept: hidden from v1.
            value(IF_HC_IN, None, "12345"),
        ],
        identity: None,
    }
}

fn with_values(v: Values) -> Harness {
    let mut h = Harness::new();
    h.responder.set_values(&v).unwrap();
    h
}

fn walk(h: &mut Harness, community: &str) -> Vec<(Vec<u32>, v2::VarBindValue)> {
    let mut cursor: Vec<u32> = vec![1, 3];
    let mut seen = Vec::new();
    loop {
        let r = h
            .v2(
                community,
                v2::Pdus::GetNextRequest(v2::GetNextRequest(pdu(1, &[&cursor]))),
            )
            .unwrap();
        let vb = &r.variable_bindings[0];
        if vb.value == v2::VarBindValue::EndOfMibView {
            return seen;
        }
        assert!(vb.name.to_vec() > cursor, "strictly increasing");
        cursor = vb.name.to_vec();
        seen.push((cursor.clone(), vb.value.clone()));
    }
}

fn int(v: &v2::VarBindValue) -> i32 {
    match v {
        v2::VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::Integer(i))) => {
            i32::try_from(i.clone()).unwrap()
        }
        other => panic!("not an integer: {other:?}"),
    }
}

#[test]
fn get_answers_the_devices_own_values_and_the_rest_from_the_store() {
    let mut h = with_values(values());
    let r = h
        .v2(
            "public",
            v2::Pdus::GetRequest(v2::GetRequest(pdu(
                1,
                &[
                    SYS_NAME,
                    SYS_LOCATION,
                    BETWEEN,
                    AFTER_LAST,
                    SYS_DESCR,
                    IF_HC_IN,
                ],
            ))),
        )
        .unwrap();
    assert_eq!(r.error_status, 0);
    let vb = &r.variable_bindings;
    assert_eq!(string(&vb[0].value), b"printer-7", "overridden");
    assert_eq!(string(&vb[1].value), b"rack 7", "added, a string");
    assert_eq!(int(&vb[2].value), 42, "added with a type");
    assert_eq!(string(&vb[3].value), [0xca, 0xfe], "added after the last");
    assert_eq!(string(&vb[4].value), b"Test box", "the store's");
    assert_eq!(
        vb[5].value,
        v2::VarBindValue::Value(ObjectSyntax::ApplicationWide(
            rasn_smi::v2::ApplicationSyntax::BigCounter(rasn_smi::v2::Counter64(12345))
        )),
        "the snapshot's type is kept"
    );
}

#[test]
fn a_walk_is_the_sorted_union_of_store_and_own_values() {
    let mut plain = Harness::new();
    let before = walk(&mut plain, "public");
    let mut h = with_values(values());
    let after = walk(&mut h, "public");
    let oids: Vec<_> = after.iter().map(|(o, _)| o.clone()).collect();
    // Two added inside the store's range, one after it, the overridden
    // ones once.
    assert_eq!(after.len(), before.len() + 3);
    for o in [SYS_LOCATION, BETWEEN, AFTER_LAST, SYS_NAME] {
        assert_eq!(
            oids.iter().filter(|x| x.as_slice() == o).count(),
            1,
            "{o:?}"
        );
    }
    assert_eq!(oids.last().map(Vec::as_slice), Some(AFTER_LAST));
    let at = |o: &[u32]| oids.iter().position(|x| x.as_slice() == o).unwrap();
    assert_eq!(at(BETWEEN), at(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 2]) + 1);
    for (o, v) in &after {
        if o.as_slice() == SYS_NAME {
            assert_eq!(string(v), b"printer-7");
        }
    }
    // GETBULK walks the same union.
    let r = h.v2("public", bulk(0, 200, &[&[1, 3]])).unwrap();
    let bulk_oids: Vec<Vec<u32>> = r
        .variable_bindings
        .iter()
        .take_while(|vb| vb.value != v2::VarBindValue::EndOfMibView)
        .map(|vb| vb.name.to_vec())
        .collect();
    assert_eq!(bulk_oids, oids);
}

#[test]
fn v1_sees_own_values_but_not_counter64() {
    let mut h = with_values(values());
    let r = h
        .v1(
            "public",
            v1::Pdus::GetRequest(v1::GetRequest(v1_pdu(1, &[SYS_NAME, BETWEEN]))),
        )
        .unwrap();
    assert_eq!(r.error_status, 0.into());
    let r = h
        .v1(
            "public",
            v1::Pdus::GetRequest(v1::GetRequest(v1_pdu(2, &[IF_HC_IN]))),
        )
        .unwrap();
    assert_eq!(r.error_status, 2.into(), "noSuchName");
    // GETNEXT from just before the Counter64 skips it.
    let r = h
        .v1(
            "public",
            v1::Pdus::GetNextRequest(v1::GetNextRequest(v1_pdu(
                3,
                &[&[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6]],
            ))),
        )
        .unwrap();
    assert_eq!(r.error_status, 0.into());
    assert!(r.variable_bindings[0].name.to_vec() > IF_HC_IN.to_vec());
}

#[test]
fn set_writes_over_an_own_value_where_the_community_may_write() {
    let mut h = with_values(values());
    let r = h
        .v2("public", set_pdu(1, SYS_NAME, str_value("x")))
        .unwrap();
    assert_eq!(r.error_status, 17, "notWritable for a read-only community");
    let r = h
        .v2("private", set_pdu(2, SYS_NAME, str_value("renamed")))
        .unwrap();
    assert_eq!(r.error_status, 0);
    let r = h
        .v2("private", set_pdu(3, BETWEEN, str_value("not an integer")))
        .unwrap();
    assert_eq!(r.error_status, 7, "wrongType: the own value's type holds");
    let r = h
        .v2(
            "public",
            v2::Pdus::GetRequest(v2::GetRequest(pdu(4, &[SYS_NAME]))),
        )
        .unwrap();
    assert_eq!(string(&r.variable_bindings[0].value), b"renamed");
    let walked = walk(&mut h, "public");
    let name: Vec<_> = walked.iter().filter(|(o, _)| o == SYS_NAME).collect();
    assert_eq!(name.len(), 1);
    assert_eq!(string(&name[0].1), b"renamed");
}

#[test]
fn a_value_that_does_not_fit_its_type_is_refused_naming_the_oid() {
    let mut h = Harness::new();
    let bad = Values {
        entries: vec![value(IF_HC_IN, None, "lots")],
        identity: None,
    };
    let e = h.responder.set_values(&bad).unwrap_err();
    assert!(
        e.contains("1.3.6.1.2.1.31.1.1.1.6.1") && e.contains("Counter64"),
        "{e}"
    );
    let bad = Values {
        entries: vec![value(SYS_NAME, Some("99"), "x")],
        identity: None,
    };
    assert!(
        h.responder
            .set_values(&bad)
            .unwrap_err()
            .contains("unknown tag")
    );
    // Nothing changed.
    let r = h
        .v2(
            "public",
            v2::Pdus::GetRequest(v2::GetRequest(pdu(1, &[SYS_NAME]))),
        )
        .unwrap();
    assert_eq!(string(&r.variable_bindings[0].value), b"box-1");
}

#[test]
fn every_view_serves_the_values_over_its_own_store() {
    // Two views (communities) on two stores: each keeps its own records.
    let other = Arc::new(
        Store::from_records(&[
            rec(SYS_DESCR, Value::OctetString(b"Other box".to_vec())),
            rec(SYS_NAME, Value::OctetString(b"other".to_vec())),
        ])
        .unwrap(),
    );
    let main = Arc::new(Store::from_records(&records()).unwrap());
    let access = |c: &str, view| CommunityAccess {
        community: c.as_bytes().to_vec(),
        v1: true,
        v2c: true,
        view,
        write: false,
    };
    let config = Config {
        communities: vec![access("public", 0), access("other", 1)],
        max_varbinds: 1000,
        max_message_size: 65_507,
        v3: None,
    };
    let start = Instant::now();
    let mut h = Harness {
        responder: Responder::new(config, vec![main, other], start),
        start,
        frame: Frame::default(),
    };
    h.responder.set_values(&values()).unwrap();
    for c in ["public", "other"] {
        let r = h
            .v2(
                c,
                v2::Pdus::GetRequest(v2::GetRequest(pdu(1, &[SYS_NAME, SYS_DESCR]))),
            )
            .unwrap();
        assert_eq!(string(&r.variable_bindings[0].value), b"printer-7", "{c}");
    }
    let r = h
        .v2(
            "other",
            v2::Pdus::GetRequest(v2::GetRequest(pdu(1, &[SYS_DESCR]))),
        )
        .unwrap();
    assert_eq!(string(&r.variable_bindings[0].value), b"Other box");
    // A swapped store keeps the values.
    let swapped = Arc::new(
        Store::from_records(&[rec(SYS_NAME, Value::OctetString(b"new".to_vec()))]).unwrap(),
    );
    assert!(h.responder.swap_store(1, swapped));
    let r = h
        .v2(
            "other",
            v2::Pdus::GetRequest(v2::GetRequest(pdu(1, &[SYS_NAME]))),
        )
        .unwrap();
    assert_eq!(string(&r.variable_bindings[0].value), b"printer-7");
}

fn identity_store() -> Arc<Store> {
    let ip = |a: [u8; 4]| a.map(u32::from);
    let mut r = vec![
        rec(SYS_NAME, Value::OctetString(b"recorded".to_vec())),
        rec(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 1], Value::Integer(1)),
        rec(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 2], Value::Integer(2)),
        rec(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 3], Value::Integer(3)),
        // lo: no address.
        rec(
            &[1, 3, 6, 1, 2, 1, 2, 2, 1, 6, 1],
            Value::OctetString(vec![]),
        ),
        rec(
            &[1, 3, 6, 1, 2, 1, 2, 2, 1, 6, 2],
            Value::OctetString(vec![0, 1, 2, 3, 4, 5]),
        ),
        rec(
            &[1, 3, 6, 1, 2, 1, 2, 2, 1, 6, 3],
            Value::OctetString(vec![0, 1, 2, 3, 4, 6]),
        ),
    ];
    let recorded = [192, 168, 1, 10];
    for (col, v) in [
        (1, Value::IpAddress(recorded)),
        (2, Value::Integer(2)),
        (3, Value::IpAddress([255, 255, 0, 0])),
        (4, Value::Integer(1)),
    ] {
        r.push(rec(
            &[[1, 3, 6, 1, 2, 1, 4, 20, 1, col].as_slice(), &ip(recorded)].concat(),
            v,
        ));
    }
    // ipAddressTable: an IPv4 row.
    let idx = [1, 4, 192, 168, 1, 10];
    for (col, v) in [
        (3, Value::Integer(2)),
        (4, Value::Integer(1)),
        (
            5,
            Value::ObjectId(vec![
                1, 3, 6, 1, 2, 1, 4, 32, 1, 5, 2, 1, 4, 192, 168, 0, 0, 16,
            ]),
        ),
        (7, Value::Integer(1)),
    ] {
        r.push(rec(
            &[[1, 3, 6, 1, 2, 1, 4, 34, 1, col].as_slice(), &idx].concat(),
            v,
        ));
    }
    r.push(rec(SYS_DESCR, Value::OctetString(b"d".to_vec())));
    r.sort_by(|a, b| a.oid.cmp(&b.oid));
    Arc::new(Store::from_records(&r).unwrap())
}

fn identity_responder(name: &str, extra: Vec<ValueSpec>) -> Harness {
    let config = Config {
        communities: vec![CommunityAccess {
            community: b"public".to_vec(),
            v1: true,
            v2c: true,
            view: 0,
            write: false,
        }],
        max_varbinds: 1000,
        max_message_size: 65_507,
        v3: None,
    };
    let start = Instant::now();
    let mut h = Harness {
        responder: Responder::new(config, vec![identity_store()], start),
        start,
        frame: Frame::default(),
    };
    h.responder
        .set_values(&Values {
            entries: extra,
            identity: Some(Identity {
                name: name.to_string(),
                addresses: vec!["127.3.0.7".parse().unwrap(), "::1".parse().unwrap()],
                sys_name: true,
                ip_addresses: true,
                phys_address: true,
            }),
        })
        .unwrap();
    h
}

#[test]
fn identity_derives_name_addresses_and_macs_from_the_device() {
    let mut a = identity_responder("printer-1", vec![]);
    let mut b = identity_responder("printer-2", vec![]);
    let walked = walk(&mut a, "public");
    let find = |w: &[(Vec<u32>, v2::VarBindValue)], o: &[u32]| {
        w.iter().find(|(x, _)| x == o).map(|(_, v)| v.clone())
    };
    assert_eq!(string(&find(&walked, SYS_NAME).unwrap()), b"printer-1");
    // The recorded address row is gone; the device's own is there.
    assert!(
        walked.iter().all(|(o, _)| !o.ends_with(&[192, 168, 1, 10])),
        "{walked:?}"
    );
    let ad_addr = [1, 3, 6, 1, 2, 1, 4, 20, 1, 1, 127, 3, 0, 7];
    assert_eq!(
        find(&walked, &ad_addr).unwrap(),
        v2::VarBindValue::Value(ObjectSyntax::ApplicationWide(
            rasn_smi::v2::ApplicationSyntax::Address(rasn_smi::v1::IpAddress(
                [127u8, 3, 0, 7].into()
            ))
        ))
    );
    let if_index = [1, 3, 6, 1, 2, 1, 4, 20, 1, 2, 127, 3, 0, 7];
    assert_eq!(
        int(&find(&walked, &if_index).unwrap()),
        2,
        "the recorded row's interface"
    );
    let mask = [1, 3, 6, 1, 2, 1, 4, 20, 1, 3, 127, 3, 0, 7];
    assert!(find(&walked, &mask).is_some());
    assert!(find(&walked, &[1, 3, 6, 1, 2, 1, 4, 20, 1, 4, 127, 3, 0, 7]).is_some());
    // ipAddressTable: a row per address, v4 and v6, like the recorded one.
    let v4_if = [1, 3, 6, 1, 2, 1, 4, 34, 1, 3, 1, 4, 127, 3, 0, 7];
    assert_eq!(int(&find(&walked, &v4_if).unwrap()), 2);
    let mut v6_if = vec![1, 3, 6, 1, 2, 1, 4, 34, 1, 3, 2, 16];
    v6_if.extend([0; 15]);
    v6_if.push(1);
    assert!(find(&walked, &v6_if).is_some());
    assert!(
        walked
            .iter()
            .all(|(o, _)| !o.ends_with(&[1, 4, 192, 168, 1, 10]))
    );
    // MACs: none for the interface recorded without one, distinct,
    // locally administered, per device, stable.
    let phys = |w: &[(Vec<u32>, v2::VarBindValue)], i: u32| {
        find(w, &[1, 3, 6, 1, 2, 1, 2, 2, 1, 6, i]).map(|v| string(&v))
    };
    assert_eq!(phys(&walked, 1), Some(vec![]));
    let (m2, m3) = (phys(&walked, 2).unwrap(), phys(&walked, 3).unwrap());
    assert_eq!(m2.len(), 6);
    assert_eq!(m2[0], 0x02);
    assert_ne!(m2, m3);
    let other = walk(&mut b, "public");
    assert_ne!(phys(&other, 2).unwrap(), m2);
    assert_eq!(
        phys(
            &walk(&mut identity_responder("printer-1", vec![]), "public"),
            2
        )
        .unwrap(),
        m2
    );
    // A GET of a hidden row is noSuchInstance.
    let r = a
        .v2(
            "public",
            v2::Pdus::GetRequest(v2::GetRequest(pdu(
                1,
                &[&[1, 3, 6, 1, 2, 1, 4, 20, 1, 1, 192, 168, 1, 10]],
            ))),
        )
        .unwrap();
    assert_eq!(
        r.variable_bindings[0].value,
        v2::VarBindValue::NoSuchInstance
    );
}

#[test]
fn explicit_values_win_over_identity() {
    let mut h = identity_responder("printer-1", vec![value(SYS_NAME, None, "chosen")]);
    let r = h
        .v2(
            "public",
            v2::Pdus::GetRequest(v2::GetRequest(pdu(1, &[SYS_NAME]))),
        )
        .unwrap();
    assert_eq!(string(&r.variable_bindings[0].value), b"chosen");
}

#[test]
fn own_values_are_served_without_allocating() {
    use crate::sys::alloc_meter;
    let mut h = with_values(values());
    let table: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
    let v2 = |data: v2::Pdus| {
        rasn::ber::encode(&v2c::Message {
            version: 1.into(),
            community: b"public".to_vec().into(),
            data,
        })
        .unwrap()
    };
    let requests = [
        v2(v2::Pdus::GetRequest(v2::GetRequest(pdu(
            1,
            &[SYS_NAME, SYS_LOCATION, BETWEEN, SYS_DESCR],
        )))),
        v2(v2::Pdus::GetNextRequest(v2::GetNextRequest(pdu(
            3,
            &[SYS_DESCR, table, &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 2]],
        )))),
        v2(bulk(1, 30, &[SYS_DESCR, table, &[1, 3, 6, 1, 4, 1]])),
    ];
    let now = h.start + Duration::from_secs(5);
    for r in &requests {
        assert_eq!(h.responder.handle(r, now, &mut h.frame), Outcome::Reply);
    }
    for r in &requests {
        let (bytes, outcome) = alloc_meter::peak(|| h.responder.handle(r, now, &mut h.frame));
        assert_eq!(outcome, Outcome::Reply);
        assert_eq!(bytes, 0, "allocated for {r:02x?}");
    }
}

/// What a device's own values cost, in memory and in CPU per request.
/// `cargo test --release -p agentcluster-agent own_values_cost -- --ignored --nocapture`
#[test]
#[ignore = "a measurement; run in release"]
fn own_values_cost() {
    let plain = Harness::new();
    let mut h = with_values(values());
    eprintln!(
        "overlay of {} values: {} bytes ({} bytes for an empty one)",
        values().entries.len(),
        h.responder.own_bytes(),
        plain.responder.own_bytes()
    );
    let ident = identity_responder("printer-1", vec![]);
    eprintln!("identity overlay: {} bytes", ident.responder.own_bytes());
    let encode = |data: v2::Pdus| {
        rasn::ber::encode(&v2c::Message {
            version: 1.into(),
            community: b"public".to_vec().into(),
            data,
        })
        .unwrap()
    };
    let get = |o: &[u32]| encode(v2::Pdus::GetRequest(v2::GetRequest(pdu(1, &[o]))));
    let next = |o: &[u32]| encode(v2::Pdus::GetNextRequest(v2::GetNextRequest(pdu(1, &[o]))));
    let now = h.start + Duration::from_secs(5);
    // The fastest of 20 interleaved rounds each: noise from other work on
    // the machine only ever slows a round down.
    let n = 50_000;
    let round = |h: &mut Harness, msg: &[u8]| {
        let t = Instant::now();
        for _ in 0..n {
            assert_eq!(h.responder.handle(msg, now, &mut h.frame), Outcome::Reply);
        }
        t.elapsed().as_nanos() as f64 / f64::from(n)
    };
    let mut plain = Harness::new();
    let pair = |a: (&mut Harness, &[u8]), b: (&mut Harness, &[u8])| {
        let (mut x, mut y) = (f64::MAX, f64::MAX);
        for _ in 0..20 {
            x = x.min(round(a.0, a.1));
            y = y.min(round(b.0, b.1));
        }
        (x, y)
    };
    // The same OID: recorded in the store, and overridden.
    let (g_plain, g_own) = pair((&mut plain, &get(SYS_NAME)), (&mut h, &get(SYS_NAME)));
    let (_, g_near) = pair((&mut plain, &get(SYS_DESCR)), (&mut h, &get(SYS_DESCR)));
    // GETNEXT from sysUpTime.0 answers sysName.0.
    let (n_plain, n_own) = pair((&mut plain, &next(SYS_UPTIME)), (&mut h, &next(SYS_UPTIME)));
    let row: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 12];
    let (f_plain, f_own) = pair((&mut plain, &next(row)), (&mut h, &next(row)));
    eprintln!(
        "GET sysName: plain {g_plain:.0} ns, overridden {g_own:.0} ns ({:.2}x); \
         GET sysDescr beside overrides {g_near:.0} ns ({:.2}x)",
        g_own / g_plain,
        g_near / g_plain
    );
    eprintln!(
        "GETNEXT to sysName: plain {n_plain:.0} ns, overridden {n_own:.0} ns ({:.2}x); \
         GETNEXT in ifTable, away from the overrides: {f_plain:.0} ns, {f_own:.0} ns ({:.2}x)",
        n_own / n_plain,
        f_own / f_plain
    );
}

/// The memory figure: what a device's own values add beyond the
/// shared store stays under 2 KiB for the usual per-device objects of a
/// real host snapshot (identity on one address, and a few values).
#[test]
fn a_device_of_a_host_snapshot_adds_less_than_2_kib() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../mibs/linux-host.snmprec");
    let snap = crate::data::snapshot::load(&path).unwrap();
    let store = Arc::new(Store::from_records(&snap.records).unwrap());
    let config = Config {
        communities: vec![CommunityAccess {
            community: b"public".to_vec(),
            v1: true,
            v2c: true,
            view: 0,
            write: false,
        }],
        max_varbinds: 1000,
        max_message_size: 65_507,
        v3: None,
    };
    let mut r = Responder::new(config, vec![store], Instant::now());
    r.set_values(&Values {
        entries: vec![
            value(SYS_LOCATION, None, "floor 2, desk 3417"),
            value(&[1, 3, 6, 1, 4, 1, 99999, 1, 0], None, "SN0003417"),
            value(&[1, 3, 6, 1, 4, 1, 99999, 2, 0], Some("2"), "3417"),
        ],
        identity: Some(Identity {
            name: "printer-3417".into(),
            addresses: vec!["10.13.166.18".parse().unwrap()],
            sys_name: true,
            ip_addresses: true,
            phys_address: true,
        }),
    })
    .unwrap();
    let bytes = r.own_bytes();
    eprintln!("linux-host, identity and 3 values: {bytes} bytes");
    assert!(bytes < 2048, "{bytes} bytes");
}
