//! Failed SNMPv3 checks: each Report, with its counter, and the drops of
//! messages that may not be reported.

use super::*;

#[test]
fn discovery_reports_the_engine_id_boots_and_time() {
    let mut agent = Agent::new();
    agent.at = 1234;
    let m = Manager::discovery();
    let a = ask(&mut agent, &m, &get(5, &[]));
    assert_eq!(report_oid(&a), ReportKind::UnknownEngineId.oid());
    assert_eq!(a.report().1, 1);
    assert_eq!(a.flags, 0, "noAuthNoPriv");
    assert_eq!(a.usm.authoritative_engine_id.as_ref(), ENGINE);
    assert_eq!(a.usm.authoritative_engine_boots, BOOTS.into());
    assert_eq!(a.usm.authoritative_engine_time, 1234.into());
    assert_eq!(a.context_engine_id, ENGINE);
    let v2::Pdus::Report(r) = &a.pdus else {
        unreachable!()
    };
    assert_eq!(r.0.request_id, 5);
    assert_eq!(agent.counters().usm_unknown_engine_ids, 1);
    // A wrong (not empty) engine ID is the same.
    let mut m = Manager::user("a1p2", Some(AuthProtocol::Sha1), Some(PrivProtocol::Aes128));
    m.engine_id = vec![0x80, 0, 0, 0, 1, 2];
    let a = ask(&mut agent, &m, &get(6, &[SYS_DESCR]));
    assert_eq!(report_oid(&a), ReportKind::UnknownEngineId.oid());
    assert_eq!(a.flags, 0);
    assert_eq!(agent.counters().usm_unknown_engine_ids, 2);
}

#[test]
fn wrong_password_is_a_wrong_digest_report() {
    let mut agent = Agent::new();
    let mut m = Manager::user("a1", Some(AuthProtocol::Sha1), None);
    m.auth = Some(
        AuthKey::new(
            AuthProtocol::Sha1,
            &localized_auth_key(AuthProtocol::Sha1, b"wrong-password", ENGINE).unwrap(),
        )
        .unwrap(),
    );
    let reply = agent.raw(&m.encode(&get(3, &[SYS_DESCR]))).unwrap();
    let a = open(&Manager::discovery(), &reply);
    assert_eq!(a.flags, 0, "reported without authentication");
    assert_eq!(report_oid(&a), ReportKind::WrongDigest.oid());
    assert_eq!(agent.counters().usm_wrong_digests, 1);
    // A MAC of the wrong length is a wrong digest too: SHA-256 keys on a
    // SHA-1 user.
    let mut m = Manager::user("a1", Some(AuthProtocol::Sha256), None);
    m.user = b"a1".to_vec();
    assert!(agent.raw(&m.encode(&get(3, &[SYS_DESCR]))).is_some());
    assert_eq!(agent.counters().usm_wrong_digests, 2);
}

#[test]
fn unknown_user_and_unsupported_level_reports() {
    let mut agent = Agent::new();
    let m = Manager::user("nobody", Some(AuthProtocol::Md5), None);
    let reply = agent.raw(&m.encode(&get(3, &[SYS_DESCR]))).unwrap();
    let a = open(&Manager::discovery(), &reply);
    assert_eq!(report_oid(&a), ReportKind::UnknownUserName.oid());
    assert_eq!(a.usm.user_name.as_ref(), b"nobody");
    assert_eq!(agent.counters().usm_unknown_user_names, 1);
    // authPriv for a user without a privacy key
    let mut m = Manager::user("a0", Some(AuthProtocol::Md5), Some(PrivProtocol::Des));
    m.user = b"a0".to_vec();
    let reply = agent.raw(&m.encode(&get(3, &[SYS_DESCR]))).unwrap();
    let a = open(&Manager::discovery(), &reply);
    assert_eq!(report_oid(&a), ReportKind::UnsupportedSecLevel.oid());
    assert_eq!(agent.counters().usm_unsupported_sec_levels, 1);
    // authNoPriv for a user without keys
    let mut m = Manager::user("a0", Some(AuthProtocol::Md5), None);
    m.user = b"plain".to_vec();
    assert!(agent.raw(&m.encode(&get(3, &[SYS_DESCR]))).is_some());
    assert_eq!(agent.counters().usm_unsupported_sec_levels, 2);
}

#[test]
fn time_window_reports_are_authenticated_and_resynchronize() {
    let mut agent = Agent::new();
    agent.at = 1000;
    let mut m = Manager::user(
        "a3p2",
        Some(AuthProtocol::Sha256),
        Some(PrivProtocol::Aes128),
    );
    for (boots, time) in [
        (BOOTS - 1, 1000),
        (BOOTS + 1, 1000),
        (BOOTS, 1151),
        (BOOTS, 849),
    ] {
        m.boots = boots;
        m.time = time;
        let a = ask(&mut agent, &m, &get(8, &[SYS_DESCR]));
        assert_eq!(a.flags, 1, "authNoPriv");
        assert_eq!(report_oid(&a), ReportKind::NotInTimeWindow.oid());
        assert_eq!(a.usm.authoritative_engine_boots, BOOTS.into());
        assert_eq!(a.usm.authoritative_engine_time, 1000.into());
    }
    assert_eq!(agent.counters().usm_not_in_time_windows, 4);
    // At the edge of the window: answered.
    for time in [850, 1150] {
        m.boots = BOOTS;
        m.time = time;
        let a = ask(&mut agent, &m, &get(8, &[SYS_DESCR]));
        assert_eq!(a.response().error_status, 0);
    }
    // A replay 151 s later is refused.
    let m = Manager::user(
        "a3p2",
        Some(AuthProtocol::Sha256),
        Some(PrivProtocol::Aes128),
    );
    let captured = m.encode(&get(9, &[SYS_DESCR]));
    agent.at = 100;
    assert!(
        open(&m, &agent.raw(&captured).unwrap())
            .response()
            .error_status
            == 0
    );
    agent.at = 251;
    let a = open(&m, &agent.raw(&captured).unwrap());
    assert_eq!(report_oid(&a), ReportKind::NotInTimeWindow.oid());
}

#[test]
fn boots_at_the_maximum_refuse_every_authenticated_request() {
    let mut agent = Agent::with(users(), MAX_BOOTS);
    let mut m = Manager::user("ops", Some(AuthProtocol::Sha1), Some(PrivProtocol::Aes128));
    m.boots = MAX_BOOTS;
    let a = ask(&mut agent, &m, &get(1, &[SYS_DESCR]));
    assert_eq!(report_oid(&a), ReportKind::NotInTimeWindow.oid());
}

#[test]
fn garbled_encrypted_pdus_are_decryption_errors() {
    let mut agent = Agent::new();
    let m = Manager::user("a1p0", Some(AuthProtocol::Sha1), Some(PrivProtocol::Des));
    let good = m.encode(&get(1, &[SYS_DESCR]));
    let (enc_at, enc_len) = {
        // the encrypted PDU is the last TLV of the message
        let (_, start, len) = crate::wire::ber::read_header(&good, 0).unwrap();
        let mut pos = start;
        for _ in 0..3 {
            let (_, s, l) = crate::wire::ber::read_header(&good, pos).unwrap();
            pos = s + l;
        }
        let (_, s, l) = crate::wire::ber::read_header(&good, pos).unwrap();
        assert_eq!(s + l, start + len);
        (s, l)
    };
    let key = m.auth.clone().unwrap();
    let (mac_at, _) = wire::auth_params_range(&good).unwrap();
    // Garbled ciphertext, correctly authenticated (the key holder garbled it).
    let mut garbled = good.clone();
    for b in &mut garbled[enc_at..enc_at + enc_len] {
        *b ^= 0x5a;
    }
    key.sign(&mut garbled, mac_at);
    let a = open(&Manager::discovery(), &agent.raw(&garbled).unwrap());
    assert_eq!(report_oid(&a), ReportKind::DecryptionError.oid());
    assert_eq!(agent.counters().usm_decryption_errors, 1);
    // Garbled and not re-signed: the HMAC catches it first.
    let mut garbled = good.clone();
    garbled[enc_at + 3] ^= 1;
    let a = open(&Manager::discovery(), &agent.raw(&garbled).unwrap());
    assert_eq!(report_oid(&a), ReportKind::WrongDigest.oid());
    // A ciphertext that is not whole DES blocks.
    let mut m2 = m.clone();
    m2.privacy = Some(PrivKey::new(PrivProtocol::Aes128, &[9; 16]).unwrap());
    let mut odd = m2.encode(&get(1, &[SYS_DESCR]));
    let (mac_at, _) = wire::auth_params_range(&odd).unwrap();
    key.sign(&mut odd, mac_at);
    assert!(agent.raw(&odd).is_some());
    assert_eq!(agent.counters().usm_decryption_errors, 2);
    // And the good one still works.
    let a = open(&m, &agent.raw(&good).unwrap());
    assert_eq!(string(&a.response().variable_bindings[0]), b"default");
}

#[test]
fn contexts_select_the_snapshot_and_unknown_ones_are_reported() {
    let mut agent = Agent::new();
    let mut m = Manager::user("ops", Some(AuthProtocol::Sha1), Some(PrivProtocol::Aes128));
    m.context = b"vlan10".to_vec();
    let a = ask(&mut agent, &m, &get(1, &[SYS_DESCR]));
    assert_eq!(string(&a.response().variable_bindings[0]), b"vlan ten");
    assert_eq!(a.context, b"vlan10");
    m.context = b"vlan11".to_vec();
    let a = ask(&mut agent, &m, &get(2, &[SYS_DESCR]));
    assert_eq!(a.flags, 3, "reported at the request's level");
    assert_eq!(report_oid(&a), ReportKind::UnknownContext.oid());
    assert_eq!(agent.counters().unknown_contexts, 1);
    // An empty contextEngineID is ours; another engine's has no handler.
    m.context = vec![];
    m.context_engine_id = vec![];
    assert_eq!(
        ask(&mut agent, &m, &get(3, &[SYS_DESCR]))
            .response()
            .error_status,
        0
    );
    m.context_engine_id = vec![0x80, 0, 0, 0, 9, 9];
    let a = ask(&mut agent, &m, &get(4, &[SYS_DESCR]));
    assert_eq!(report_oid(&a), ReportKind::UnknownPduHandler.oid());
    assert_eq!(agent.counters().unknown_pdu_handlers, 1);
}

#[test]
fn unreportable_failures_are_counted_and_dropped() {
    let mut agent = Agent::new();
    let mut m = Manager::discovery();
    m.flags = 0;
    assert_eq!(agent.raw(&m.encode(&get(1, &[]))), None);
    let mut m = Manager::user("nobody", None, None);
    m.flags = 0;
    assert_eq!(agent.raw(&m.encode(&get(1, &[]))), None);
    let c = agent.counters();
    assert_eq!((c.usm_unknown_engine_ids, c.usm_unknown_user_names), (1, 1));
}

#[test]
fn security_model_and_flag_errors_are_dropped_and_counted() {
    let mut agent = Agent::new();
    let m = Manager::user("plain", None, None);
    let good = m.encode(&get(1, &[SYS_DESCR]));
    // msgSecurityModel is the last byte of msgGlobalData: 02 01 03
    let model_at = good
        .windows(6)
        .position(|w| w == [0x04, 0x01, 0x04, 0x02, 0x01, 0x03])
        .unwrap()
        + 5;
    let mut sm = good.clone();
    sm[model_at] = 2;
    assert_eq!(agent.raw(&sm), None);
    assert_eq!(agent.counters().unknown_security_models, 1);
    // privFlag without authFlag
    let mut invalid = good.clone();
    invalid[model_at - 3] = 0x06;
    assert_eq!(agent.raw(&invalid), None);
    assert_eq!(agent.counters().invalid_msgs, 1);
    assert!(agent.raw(&good).is_some());
}
