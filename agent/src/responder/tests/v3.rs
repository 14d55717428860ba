//! SNMPv3 through the whole responder: a test manager builds requests (PDUs
//! encoded by rasn, the message by [`wire::seal`] as a manager would) and
//! opens the answers with rasn's v3 types, checking their HMAC and
//! decrypting them. Every Report kind, every drop and counter, every
//! auth × priv pair, and malformed input that must never panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rasn::types::ObjectIdentifier;
use rasn_smi::v2::{ObjectSyntax, SimpleSyntax};
use rasn_snmp::{v2, v3};

use crate::data::mib::Counters;
use crate::data::snapshot::Record;
use crate::data::store::Store;
use crate::responder::{CommunityAccess, Config, Drop, Outcome, Responder};
use crate::security::engine::MAX_BOOTS;
use crate::security::usm::SecurityLevel;
use crate::security::usm::keys::{localized_auth_key, localized_priv_key};
use crate::security::usm::{AuthKey, AuthProtocol, KeyMaterial, PrivKey, PrivProtocol};
use crate::security::v3::{ContextConfig, ReportKind, V3Config};
use crate::wire::ber::Frame;
use crate::wire::v3 as wire;
use crate::wire::value::Value;

const ENGINE: &[u8] = &[0x80, 0x00, 0x1f, 0x88, 0x05, 1, 2, 3, 4, 5, 6, 7, 8];
const BOOTS: u32 = 7;
pub(crate) const SYS_DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 1, 0];
const SYS_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 5, 0];
const ENGINE_BOOTS: &[u32] = &[1, 3, 6, 1, 6, 3, 10, 2, 1, 2, 0];

const AUTHS: [AuthProtocol; 6] = [
    AuthProtocol::Md5,
    AuthProtocol::Sha1,
    AuthProtocol::Sha224,
    AuthProtocol::Sha256,
    AuthProtocol::Sha384,
    AuthProtocol::Sha512,
];
const PRIVS: [PrivProtocol; 7] = [
    PrivProtocol::Des,
    PrivProtocol::TripleDes,
    PrivProtocol::Aes128,
    PrivProtocol::Aes192,
    PrivProtocol::Aes256,
    PrivProtocol::Aes192C,
    PrivProtocol::Aes256C,
];

fn store(descr: &str) -> Arc<Store> {
    let rec = |oid: &[u32], v: &str| Record {
        oid: oid.to_vec(),
        value: Value::OctetString(v.as_bytes().to_vec()),
        variation: None,
        line: 1,
    };
    let mut records = vec![rec(SYS_DESCR, descr), rec(SYS_NAME, "box")];
    for i in 1..=200u32 {
        records.push(rec(
            &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, i],
            "a fairly long interface name",
        ));
    }
    Arc::new(Store::from_records(&records).unwrap())
}

fn user(
    name: &str,
    auth: Option<AuthProtocol>,
    privacy: Option<PrivProtocol>,
    write: bool,
) -> crate::security::usm::UserConfig {
    let a = auth.map(|p| {
        (
            p,
            KeyMaterial::Localized(localized_auth_key(p, b"authpass1", ENGINE).unwrap()),
        )
    });
    let pr = privacy.map(|p| {
        let ap = auth.unwrap_or(AuthProtocol::Md5);
        (
            p,
            KeyMaterial::Localized(localized_priv_key(ap, p, b"privpass1", ENGINE).unwrap()),
        )
    });
    let min_level = match (auth, privacy) {
        (Some(_), Some(_)) => SecurityLevel::AuthPriv,
        (Some(_), None) => SecurityLevel::AuthNoPriv,
        _ => SecurityLevel::NoAuthNoPriv,
    };
    crate::security::usm::UserConfig {
        name: name.as_bytes().to_vec(),
        auth: a,
        privacy: pr,
        min_level,
        write,
    }
}

/// The users of the default agent: one per auth × priv pair named
/// `a<i>p<j>`, one per auth only `a<i>`, `plain`, and `ops` (SHA/AES, write).
fn users() -> Vec<crate::security::usm::UserConfig> {
    let mut u = vec![
        user("plain", None, None, false),
        user(
            "ops",
            Some(AuthProtocol::Sha1),
            Some(PrivProtocol::Aes128),
            true,
        ),
    ];
    for (i, a) in AUTHS.iter().enumerate() {
        u.push(user(&format!("a{i}"), Some(*a), None, false));
        for (j, p) in PRIVS.iter().enumerate() {
            u.push(user(&format!("a{i}p{j}"), Some(*a), Some(*p), false));
        }
    }
    u
}

/// An SNMPv3 agent (a responder with every user) and the time its
/// datagrams arrive.
pub(crate) struct Agent {
    pub(crate) responder: Responder,
    start: Instant,
    /// Seconds since start at which the next datagram arrives.
    at: u64,
    frame: Frame,
}

impl Agent {
    pub(crate) fn new() -> Agent {
        Agent::with(users(), BOOTS)
    }

    fn with(users: Vec<crate::security::usm::UserConfig>, boots: u32) -> Agent {
        let config = Config {
            communities: vec![CommunityAccess {
                community: b"public".to_vec(),
                v1: false,
                v2c: true,
                view: 0,
                write: false,
            }],
            max_varbinds: 1000,
            max_message_size: 65_507,
            v3: Some(V3Config {
                engine_id: ENGINE.to_vec(),
                engine_boots: boots,
                users,
                contexts: vec![
                    ContextConfig {
                        name: vec![],
                        view: 0,
                    },
                    ContextConfig {
                        name: b"vlan10".to_vec(),
                        view: 1,
                    },
                ],
            }),
        };
        let start = Instant::now();
        Agent {
            responder: Responder::try_new(config, vec![store("default"), store("vlan ten")], start)
                .unwrap(),
            start,
            at: 100,
            frame: Frame::default(),
        }
    }

    fn raw(&mut self, datagram: &[u8]) -> Option<Vec<u8>> {
        let now = self.start + Duration::from_secs(self.at);
        match self.responder.handle(datagram, now, &mut self.frame) {
            Outcome::Reply => Some(self.frame.as_slice().to_vec()),
            Outcome::Dropped(_) => None,
        }
    }

    fn counters(&self) -> Counters {
        self.responder.counters().clone()
    }
}

/// A manager: what it believes about the agent, and its credentials.
#[derive(Clone)]
pub(crate) struct Manager {
    engine_id: Vec<u8>,
    boots: u32,
    time: u32,
    user: Vec<u8>,
    auth: Option<AuthKey>,
    privacy: Option<PrivKey>,
    context: Vec<u8>,
    context_engine_id: Vec<u8>,
    flags: u8,
    msg_id: i32,
    max_size: i32,
    salt: u64,
}

impl Manager {
    fn discovery() -> Manager {
        Manager {
            engine_id: vec![],
            boots: 0,
            time: 0,
            user: vec![],
            auth: None,
            privacy: None,
            context: vec![],
            context_engine_id: vec![],
            flags: wire::FLAG_REPORTABLE,
            msg_id: 4242,
            max_size: 65_507,
            salt: 99,
        }
    }

    /// A synchronized manager for user `name` with the given protocols.
    pub(crate) fn user(
        name: &str,
        auth: Option<AuthProtocol>,
        privacy: Option<PrivProtocol>,
    ) -> Manager {
        let a = auth.map(|p| {
            AuthKey::new(p, &localized_auth_key(p, b"authpass1", ENGINE).unwrap()).unwrap()
        });
        let pr = privacy.map(|p| {
            let ap = auth.unwrap_or(AuthProtocol::Md5);
            PrivKey::new(p, &localized_priv_key(ap, p, b"privpass1", ENGINE).unwrap()).unwrap()
        });
        let level = match (auth, privacy) {
            (Some(_), Some(_)) => 3,
            (Some(_), None) => 1,
            _ => 0,
        };
        Manager {
            engine_id: ENGINE.to_vec(),
            boots: BOOTS,
            time: 100,
            user: name.as_bytes().to_vec(),
            auth: a,
            privacy: pr,
            context: vec![],
            context_engine_id: ENGINE.to_vec(),
            flags: wire::FLAG_REPORTABLE | level,
            msg_id: 77,
            max_size: 65_507,
            salt: 1,
        }
    }

    pub(crate) fn encode(&self, pdus: &v2::Pdus) -> Vec<u8> {
        let mut frame = Frame::default();
        frame.reset(256);
        frame
            .body()
            .extend_from_slice(&rasn::ber::encode(pdus).unwrap());
        wire::seal(
            &mut frame,
            &wire::Seal {
                msg_id: self.msg_id,
                max_size: self.max_size,
                flags: self.flags,
                engine_id: &self.engine_id,
                boots: self.boots,
                time: self.time,
                user_name: &self.user,
                auth: self.auth.as_ref().filter(|_| self.flags & 1 != 0),
                privacy: self
                    .privacy
                    .as_ref()
                    .filter(|_| self.flags & 2 != 0)
                    .map(|k| (k, self.salt)),
                context_engine_id: &self.context_engine_id,
                context_name: &self.context,
            },
            &mut Vec::new(),
        );
        frame.as_slice().to_vec()
    }
}

/// An answer, opened.
#[derive(Debug)]
struct Answer {
    flags: u8,
    msg_id: i32,
    usm: v3::USMSecurityParameters,
    context_engine_id: Vec<u8>,
    context: Vec<u8>,
    pdus: v2::Pdus,
}

impl Answer {
    fn report(&self) -> (Vec<u32>, u32) {
        let v2::Pdus::Report(r) = &self.pdus else {
            panic!("not a report: {self:?}");
        };
        assert_eq!(r.0.variable_bindings.len(), 1);
        let vb = &r.0.variable_bindings[0];
        let v2::VarBindValue::Value(ObjectSyntax::ApplicationWide(
            rasn_smi::v2::ApplicationSyntax::Counter(c),
        )) = &vb.value
        else {
            panic!("not a counter: {vb:?}");
        };
        (vb.name.to_vec(), c.0)
    }

    fn response(&self) -> &v2::Pdu {
        let v2::Pdus::Response(r) = &self.pdus else {
            panic!("not a response: {self:?}");
        };
        &r.0
    }
}

/// Opens an answer with the manager's keys (whichever its flags ask for).
fn open(m: &Manager, bytes: &[u8]) -> Answer {
    let (msg, rest) = rasn::ber::decode_with_remainder::<v3::Message>(bytes).unwrap();
    assert!(rest.is_empty());
    assert_eq!(msg.version, 3.into());
    let flags = msg.global_data.flags[0];
    assert_eq!(
        flags & wire::FLAG_REPORTABLE,
        0,
        "answers are never reportable"
    );
    let usm: v3::USMSecurityParameters = rasn::ber::decode(&msg.security_parameters).unwrap();
    if flags & 1 != 0 {
        let key = m.auth.as_ref().expect("manager has the auth key");
        let (at, len) = wire::auth_params_range(bytes).unwrap();
        assert_eq!(len, key.mac_len());
        assert!(key.verify(bytes, at), "answer is authenticated");
    } else {
        assert!(usm.authentication_parameters.is_empty());
    }
    let scoped = match msg.scoped_data {
        v3::ScopedPduData::CleartextPdu(s) => {
            assert_eq!(flags & 2, 0);
            s
        }
        v3::ScopedPduData::EncryptedPdu(data) => {
            assert_eq!(flags & 2, 2);
            let key = m.privacy.as_ref().expect("manager has the priv key");
            let mut buf = data.to_vec();
            let boots = u32::try_from(&usm.authoritative_engine_boots).unwrap();
            let time = u32::try_from(&usm.authoritative_engine_time).unwrap();
            key.decrypt(&mut buf, &usm.privacy_parameters, boots, time)
                .unwrap();
            let (s, _pad) = rasn::ber::decode_with_remainder::<v3::ScopedPdu>(&buf).unwrap();
            s
        }
    };
    Answer {
        flags,
        msg_id: i32::try_from(&msg.global_data.message_id).unwrap(),
        usm,
        context_engine_id: scoped.engine_id.to_vec(),
        context: scoped.name.to_vec(),
        pdus: scoped.data,
    }
}

fn oid(a: &[u32]) -> ObjectIdentifier {
    ObjectIdentifier::new(a.to_vec()).unwrap()
}

pub(crate) fn get(id: i32, oids: &[&[u32]]) -> v2::Pdus {
    v2::Pdus::GetRequest(v2::GetRequest(v2::Pdu {
        request_id: id,
        error_status: 0,
        error_index: 0,
        variable_bindings: oids
            .iter()
            .map(|o| v2::VarBind {
                name: oid(o),
                value: v2::VarBindValue::Unspecified,
            })
            .collect(),
    }))
}

fn string(vb: &v2::VarBind) -> Vec<u8> {
    match &vb.value {
        v2::VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::String(s))) => s.to_vec(),
        other => panic!("not a string: {other:?}"),
    }
}

fn ask(agent: &mut Agent, m: &Manager, pdus: &v2::Pdus) -> Answer {
    let reply = agent.raw(&m.encode(pdus)).expect("an answer");
    let a = open(m, &reply);
    assert_eq!(a.msg_id, m.msg_id);
    a
}

fn report_oid(a: &Answer) -> Vec<u32> {
    let v2::Pdus::Report(r) = &a.pdus else {
        panic!("not a report: {a:?}");
    };
    r.0.variable_bindings[0].name.to_vec()
}

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
