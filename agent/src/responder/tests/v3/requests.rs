//! SNMPv3 requests answered: every protocol pair, security levels, SET,
//! size limits, live tables, configuration errors, malformed input, and
//! the allocation-free path.

use super::*;

#[test]
fn every_auth_and_priv_protocol_answers_a_get() {
    let mut agent = Agent::new();
    for (i, a) in AUTHS.iter().enumerate() {
        let m = Manager::user(&format!("a{i}"), Some(*a), None);
        let ans = ask(&mut agent, &m, &get(i as i32, &[SYS_DESCR]));
        assert_eq!(ans.flags, 1, "{a:?}");
        assert_eq!(string(&ans.response().variable_bindings[0]), b"default");
        for (j, p) in PRIVS.iter().enumerate() {
            let m = Manager::user(&format!("a{i}p{j}"), Some(*a), Some(*p));
            let ans = ask(
                &mut agent,
                &m,
                &get(1000 + j as i32, &[SYS_DESCR, SYS_NAME]),
            );
            assert_eq!(ans.flags, 3, "{a:?} {p:?}");
            let r = ans.response();
            assert_eq!(r.request_id, 1000 + j as i32);
            assert_eq!(r.error_status, 0);
            assert_eq!(string(&r.variable_bindings[0]), b"default", "{a:?} {p:?}");
            assert_eq!(string(&r.variable_bindings[1]), b"box");
            assert_eq!(ans.usm.user_name.as_ref(), m.user.as_slice());
            assert_eq!(ans.usm.privacy_parameters.len(), 8);
        }
    }
    let m = Manager::user("plain", None, None);
    let ans = ask(&mut agent, &m, &get(1, &[SYS_DESCR]));
    assert_eq!(ans.flags, 0);
    assert_eq!(string(&ans.response().variable_bindings[0]), b"default");
    let c = agent.counters();
    assert_eq!(c.usm_wrong_digests + c.usm_decryption_errors, 0);
}

#[test]
fn salts_differ_between_responses() {
    let mut agent = Agent::new();
    let m = Manager::user("ops", Some(AuthProtocol::Sha1), Some(PrivProtocol::Aes128));
    let a = ask(&mut agent, &m, &get(1, &[SYS_DESCR]));
    let b = ask(&mut agent, &m, &get(1, &[SYS_DESCR]));
    assert_ne!(a.usm.privacy_parameters, b.usm.privacy_parameters);
}

#[test]
fn below_the_users_level_is_an_authorization_error() {
    let mut agent = Agent::new();
    // ops must use authPriv
    let mut m = Manager::user("ops", Some(AuthProtocol::Sha1), None);
    m.user = b"ops".to_vec();
    let a = ask(&mut agent, &m, &get(11, &[SYS_DESCR]));
    let r = a.response();
    assert_eq!(r.error_status, 16, "authorizationError");
    assert_eq!(r.error_index, 0);
    assert_eq!(r.variable_bindings.len(), 1);
    assert_eq!(r.variable_bindings[0].value, v2::VarBindValue::Unspecified);
    assert_eq!(a.flags, 1);
}

fn set(id: i32, oid_: &[u32], value: &str) -> v2::Pdus {
    v2::Pdus::SetRequest(v2::SetRequest(v2::Pdu {
        request_id: id,
        error_status: 0,
        error_index: 0,
        variable_bindings: vec![v2::VarBind {
            name: oid(oid_),
            value: v2::VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::String(
                value.as_bytes().to_vec().into(),
            ))),
        }],
    }))
}

#[test]
fn the_write_flag_gates_set() {
    let mut agent = Agent::new();
    let ro = Manager::user("a1p2", Some(AuthProtocol::Sha1), Some(PrivProtocol::Aes128));
    let a = ask(&mut agent, &ro, &set(1, SYS_NAME, "changed"));
    assert_eq!(a.response().error_status, 17, "notWritable");
    let rw = Manager::user("ops", Some(AuthProtocol::Sha1), Some(PrivProtocol::Aes128));
    let a = ask(&mut agent, &rw, &set(2, SYS_NAME, "changed"));
    assert_eq!(a.response().error_status, 0);
    let a = ask(&mut agent, &ro, &get(3, &[SYS_NAME]));
    assert_eq!(string(&a.response().variable_bindings[0]), b"changed");
    assert_eq!(agent.counters().in_bad_community_uses, 0);
}

#[test]
fn msg_max_size_bounds_the_response() {
    let mut agent = Agent::new();
    let mut m = Manager::user("ops", Some(AuthProtocol::Sha1), Some(PrivProtocol::Aes128));
    m.max_size = 484;
    let bulk = v2::Pdus::GetBulkRequest(v2::GetBulkRequest(v2::BulkPdu {
        request_id: 1,
        non_repeaters: 0,
        max_repetitions: 100,
        variable_bindings: vec![v2::VarBind {
            name: oid(&[1, 3, 6, 1, 2, 1, 2]),
            value: v2::VarBindValue::Unspecified,
        }],
    }));
    let reply = agent.raw(&m.encode(&bulk)).unwrap();
    assert!(reply.len() <= 484, "{} bytes", reply.len());
    let a = open(&m, &reply);
    let n = a.response().variable_bindings.len();
    assert!(n > 3, "{n} varbinds");
    m.max_size = 65_507;
    let a = open(&m, &agent.raw(&m.encode(&bulk)).unwrap());
    assert_eq!(a.response().variable_bindings.len(), 100);
    // msgMaxSize below 484 is not a valid message
    m.max_size = 483;
    assert_eq!(agent.raw(&m.encode(&bulk)), None);
}

#[test]
fn the_agent_tables_are_served_live() {
    let mut agent = Agent::new();
    let m = Manager::user("ops", Some(AuthProtocol::Sha1), Some(PrivProtocol::Aes128));
    let a = ask(
        &mut agent,
        &m,
        &get(1, &[ENGINE_BOOTS, &[1, 3, 6, 1, 6, 3, 10, 2, 1, 1, 0]]),
    );
    let vbs = &a.response().variable_bindings;
    assert_eq!(
        vbs[0].value,
        v2::VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::Integer(BOOTS.into())))
    );
    assert_eq!(string(&vbs[1]), ENGINE);
}

#[test]
fn without_a_v3_section_v3_is_a_bad_version() {
    let config = Config {
        communities: vec![],
        max_varbinds: 10,
        max_message_size: 1500,
        v3: None,
    };
    let mut r = Responder::new(config, vec![store("x")], Instant::now());
    let mut frame = Frame::default();
    let msg = Manager::discovery().encode(&get(1, &[]));
    assert_eq!(
        r.handle(&msg, Instant::now(), &mut frame),
        Outcome::Dropped(Drop::BadVersion)
    );
}

#[test]
fn unusable_keys_are_a_config_error_naming_the_user() {
    let mut u = users();
    u[1].auth = Some((AuthProtocol::Sha1, KeyMaterial::Localized(vec![1; 16])));
    let config = Config {
        communities: vec![],
        max_varbinds: 10,
        max_message_size: 1500,
        v3: Some(V3Config {
            engine_id: ENGINE.to_vec(),
            engine_boots: 1,
            users: u,
            contexts: vec![],
        }),
    };
    let e = Responder::try_new(config.clone(), vec![store("x")], Instant::now()).unwrap_err();
    assert!(e.to_string().contains("\"ops\""), "{e}");
    // `new` serves on without SNMPv3 instead.
    let mut r = Responder::new(config.clone(), vec![store("x")], Instant::now());
    let probe = Manager::discovery().encode(&get(1, &[]));
    assert_eq!(
        r.handle(&probe, Instant::now(), &mut Frame::default()),
        Outcome::Dropped(Drop::BadVersion)
    );
    let text = format!("{:?}", config.v3);
    assert!(
        text.contains("Localized(***)") && !text.contains("[1, 1"),
        "{text}"
    );
    // Passwords work too, and are localized by the engine.
    let mut u = user(
        "pw",
        Some(AuthProtocol::Sha256),
        Some(PrivProtocol::Aes256C),
        false,
    );
    u.auth = Some((
        AuthProtocol::Sha256,
        KeyMaterial::Password("authpass1".into()),
    ));
    u.privacy = Some((
        PrivProtocol::Aes256C,
        KeyMaterial::Password("privpass1".into()),
    ));
    let mut agent = Agent::with(vec![u], BOOTS);
    let m = Manager::user(
        "pw",
        Some(AuthProtocol::Sha256),
        Some(PrivProtocol::Aes256C),
    );
    let a = ask(&mut agent, &m, &get(1, &[SYS_DESCR]));
    assert_eq!(string(&a.response().variable_bindings[0]), b"default");
}

#[test]
fn malformed_datagrams_never_panic_and_are_counted() {
    let mut agent = Agent::new();
    let m = Manager::user(
        "a3p6",
        Some(AuthProtocol::Sha256),
        Some(PrivProtocol::Aes256C),
    );
    let good = m.encode(&get(1, &[SYS_DESCR, SYS_NAME]));
    let plain = Manager::user("plain", None, None).encode(&get(1, &[SYS_DESCR]));
    let before = agent.counters();
    let mut dropped = 0;
    for msg in [&good, &plain] {
        // every truncation
        for len in 0..msg.len() {
            assert_eq!(agent.raw(&msg[..len]), None, "truncated to {len}");
            dropped += 1;
        }
        // trailing bytes
        let mut t = msg.clone();
        t.push(0);
        assert_eq!(agent.raw(&t), None);
        dropped += 1;
        // every single-byte corruption: some still parse and get a Report
        // (wrong digest, unknown user…), none panics
        for i in 0..msg.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut c = msg.clone();
                c[i] ^= x;
                let _ = agent.raw(&c);
            }
        }
    }
    let after = agent.counters();
    assert!(after.in_asn_parse_errs - before.in_asn_parse_errs >= dropped);
    // Still serving.
    let a = open(&m, &agent.raw(&good).unwrap());
    assert_eq!(string(&a.response().variable_bindings[0]), b"default");
}

#[test]
fn a_v3_request_annotated_byte_by_byte() {
    // noAuthNoPriv GET sysDescr.0 for user "plain", as net-snmp sends it.
    #[rustfmt::skip]
    let msg: Vec<u8> = [
        &[0x30, 0x5b][..],                         // SNMPv3Message
        &[0x02, 0x01, 0x03],                       //   msgVersion 3
        &[0x30, 0x11],                             //   msgGlobalData
        &[0x02, 0x04, 0x1a, 0x2b, 0x3c, 0x4d],     //     msgID
        &[0x02, 0x03, 0x00, 0xff, 0xe3],           //     msgMaxSize 65507
        &[0x04, 0x01, 0x04],                       //     msgFlags reportable
        &[0x02, 0x01, 0x03],                       //     msgSecurityModel USM
        &[0x04, 0x22, 0x30, 0x20],                 //   msgSecurityParameters
        &[0x04, 0x0d], ENGINE,                     //     engine ID
        &[0x02, 0x01, 0x07],                       //     boots
        &[0x02, 0x01, 0x00],                       //     time
        &[0x04, 0x05], b"plain",                   //     user name
        &[0x04, 0x00],                             //     auth params
        &[0x04, 0x00],                             //     priv params
        &[0x30, 0x1f],                             //   ScopedPDU
        &[0x04, 0x00],                             //     contextEngineID
        &[0x04, 0x00],                             //     contextName
        &[0xa0, 0x19],                             //     GetRequest
        &[0x02, 0x01, 0x2a],                       //       request-id 42
        &[0x02, 0x01, 0x00, 0x02, 0x01, 0x00],     //       error status, index
        &[0x30, 0x0e, 0x30, 0x0c],                 //       varbinds
        &[0x06, 0x08, 0x2b, 6, 1, 2, 1, 1, 1, 0],  //         sysDescr.0
        &[0x05, 0x00],                             //         NULL
    ].concat();
    let mut agent = Agent::new();
    let reply = agent.raw(&msg).expect("answered");
    let a = open(&Manager::discovery(), &reply);
    assert_eq!(a.msg_id, 0x1a2b3c4d);
    assert_eq!(a.response().request_id, 42);
    assert_eq!(string(&a.response().variable_bindings[0]), b"default");
}

/// Throughput of GET sysDescr.0 through the whole responder: v2c against
/// SNMPv3 authPriv SHA/AES-128 (the benchmark requires v3 ≥ 0.5 × v2c).
/// `cargo test --release -p agentcluster-agent v3_vs_v2c -- --ignored --nocapture`
#[test]
#[ignore = "a measurement; run in release"]
fn v3_vs_v2c_get_throughput() {
    let mut agent = Agent::new();
    let m = Manager::user("ops", Some(AuthProtocol::Sha1), Some(PrivProtocol::Aes128));
    let v3 = m.encode(&get(1, &[SYS_DESCR]));
    let v2 = rasn::ber::encode(&rasn_snmp::v2c::Message {
        version: 1.into(),
        community: b"public".to_vec().into(),
        data: get(1, &[SYS_DESCR]),
    })
    .unwrap();
    let n = 200_000;
    let mut rate = |msg: &[u8]| {
        let t = Instant::now();
        for _ in 0..n {
            assert!(agent.raw(msg).is_some());
        }
        f64::from(n) / t.elapsed().as_secs_f64()
    };
    let (r2, r3) = (rate(&v2), rate(&v3));
    eprintln!(
        "v2c {r2:.0}/s, v3 authPriv SHA/AES {r3:.0}/s, ratio {:.2}",
        r3 / r2
    );
}

#[test]
fn a_v3_get_at_every_level_allocates_nothing() {
    use crate::sys::alloc_meter;
    let mut agent = Agent::new();
    let mut managers = vec![Manager::user("plain", None, None)];
    for (i, a) in AUTHS.iter().enumerate() {
        managers.push(Manager::user(&format!("a{i}"), Some(*a), None));
        for (j, p) in PRIVS.iter().enumerate() {
            managers.push(Manager::user(&format!("a{i}p{j}"), Some(*a), Some(*p)));
        }
    }
    let mut vlan = managers[managers.len() - 1].clone();
    vlan.context = b"vlan10".to_vec();
    managers.push(vlan);
    let now = agent.start + Duration::from_secs(agent.at);
    for m in &managers {
        let d = m.encode(&get(7, &[SYS_DESCR, SYS_NAME]));
        // The first answer grows the reused buffers to fit.
        assert_eq!(
            agent.responder.handle(&d, now, &mut agent.frame),
            Outcome::Reply
        );
        let (bytes, outcome) =
            alloc_meter::peak(|| agent.responder.handle(&d, now, &mut agent.frame));
        assert_eq!(outcome, Outcome::Reply);
        assert_eq!(bytes, 0, "user {:?}", String::from_utf8_lossy(&m.user));
    }
}

#[test]
fn own_values_answer_in_every_context() {
    let mut agent = Agent::new();
    agent
        .responder
        .set_values(&crate::data::values::Values {
            entries: vec![crate::data::values::ValueSpec {
                oid: SYS_NAME.to_vec(),
                kind: None,
                value: "printer-3".into(),
            }],
            identity: None,
        })
        .unwrap();
    let mut m = Manager::user("ops", Some(AuthProtocol::Sha1), Some(PrivProtocol::Aes128));
    for context in [&b""[..], b"vlan10"] {
        m.context = context.to_vec();
        let ans = ask(&mut agent, &m, &get(1, &[SYS_NAME, SYS_DESCR]));
        let r = ans.response();
        assert_eq!(string(&r.variable_bindings[0]), b"printer-3");
        let descr = if context.is_empty() {
            &b"default"[..]
        } else {
            b"vlan ten"
        };
        assert_eq!(string(&r.variable_bindings[1]), descr);
    }
}
