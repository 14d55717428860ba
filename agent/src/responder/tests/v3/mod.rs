//! SNMPv3 through the whole responder: a test manager builds requests (PDUs
//! encoded by rasn, the message by [`wire::seal`] as a manager would) and
//! opens the answers with rasn's v3 types, checking their HMAC and
//! decrypting them. Every Report kind, every drop and counter, every
//! auth × priv pair, and malformed input that must never panic.

mod reports;
mod requests;

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
