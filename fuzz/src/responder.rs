//! Any datagram through a real [`Responder`]: a compiled store of
//! `mibs/linux-host.snmprec` (and `mibs/apc-ups.snmprec` for a second view
//! and context), v1/v2c communities, and SNMPv3 users at every security
//! level — the construction of the agent's own tests.
//!
//! Input: a byte that starts with `0x30` (an SNMP message) or any byte
//! above 3 makes the whole input the datagram. `1`, `2` or `3` make the
//! rest a PDU that the harness seals as a manager would, so the fuzzer
//! reaches the handlers behind the HMAC and the decryption:
//! `mode, user, max_size_hi, max_size_lo, context, PDU…` where mode 1 is
//! authPriv, 2 authNoPriv and 3 noAuthNoPriv.
//!
//! Every datagram goes to two responders, one with the largest UDP payload
//! as its limit and one with the smallest limit SNMP allows (484), so the
//! tooBig and cut-GETBULK paths are reached too.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use agentcluster_agent::ber::{self, Frame};
use agentcluster_agent::responder::{CommunityAccess, Config, Outcome, Responder};
use agentcluster_agent::store::{self, Store};
use agentcluster_agent::usm::keys::{localized_auth_key, localized_priv_key};
use agentcluster_agent::usm::{
    AuthKey, AuthProtocol, KeyMaterial, PrivKey, PrivProtocol, SecurityLevel, UserConfig,
};
use agentcluster_agent::v3::{ContextConfig, V3Config, wire};
use rasn_snmp::{v1, v2, v2c, v3};

/// snmpEngineID of the fuzzed agent.
pub const ENGINE: &[u8] = &[
    0x80, 0x00, 0x1f, 0x88, 0x05, b'f', b'u', b'z', b'z', 0, 0, 0, 1,
];
/// snmpEngineBoots of the fuzzed agent: that of a first start, like the
/// agent that `capture-corpus` records, so its SNMPv3 captures are timely.
pub const BOOTS: u32 = 1;
/// snmpEngineTime at which every datagram arrives.
pub const TIME: u32 = 100;
/// Response size limits: the largest UDP payload, and the least one SNMP
/// allows.
pub const LIMITS: [usize; 2] = [65_507, 484];
/// The largest answer to a message that was not authenticated and carries
/// a Report (discovery and its failures): never an amplifier.
pub const MAX_UNAUTHENTICATED_REPORT: usize = 484;

const AUTH_PASS: &[u8] = b"fuzz-auth-pass";
const PRIV_PASS: &[u8] = b"fuzz-priv-pass";

/// The users: (name, auth, privacy, least level, may write).
#[allow(clippy::type_complexity)]
const USERS: &[(
    &str,
    Option<AuthProtocol>,
    Option<PrivProtocol>,
    SecurityLevel,
    bool,
)] = &[
    ("plain", None, None, SecurityLevel::NoAuthNoPriv, false),
    (
        "md5",
        Some(AuthProtocol::Md5),
        None,
        SecurityLevel::AuthNoPriv,
        false,
    ),
    (
        "sha512",
        Some(AuthProtocol::Sha512),
        None,
        SecurityLevel::AuthNoPriv,
        true,
    ),
    (
        "des",
        Some(AuthProtocol::Md5),
        Some(PrivProtocol::Des),
        SecurityLevel::AuthPriv,
        false,
    ),
    (
        "3des",
        Some(AuthProtocol::Sha1),
        Some(PrivProtocol::TripleDes),
        SecurityLevel::AuthPriv,
        false,
    ),
    (
        "ops",
        Some(AuthProtocol::Sha1),
        Some(PrivProtocol::Aes128),
        SecurityLevel::AuthPriv,
        true,
    ),
    (
        "aes192",
        Some(AuthProtocol::Sha224),
        Some(PrivProtocol::Aes192),
        SecurityLevel::AuthPriv,
        false,
    ),
    (
        "aes256c",
        Some(AuthProtocol::Sha256),
        Some(PrivProtocol::Aes256C),
        SecurityLevel::AuthPriv,
        true,
    ),
    // Keys for every level, but accepted at any: the denied path is the
    // other users' below their least level.
    (
        "lax",
        Some(AuthProtocol::Sha384),
        Some(PrivProtocol::Aes256),
        SecurityLevel::NoAuthNoPriv,
        false,
    ),
];

/// Everything built once per process.
struct Fixture {
    stores: Vec<Arc<Store>>,
    users: Vec<UserConfig>,
    /// (name, auth key, privacy key) of each user, for sealing requests and
    /// opening answers.
    keys: Vec<(Vec<u8>, Option<AuthKey>, Option<PrivKey>)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let stores = vec![
            compiled(
                "linux-host.snmprec",
                include_bytes!("../../mibs/linux-host.snmprec"),
            ),
            compiled(
                "apc-ups.snmprec",
                include_bytes!("../../mibs/apc-ups.snmprec"),
            ),
        ];
        let mut users = Vec::new();
        let mut keys = Vec::new();
        for &(name, auth, privacy, min_level, write) in USERS {
            let a = auth
                .map(|p| localized_auth_key(p, AUTH_PASS, ENGINE).expect("password is not empty"));
            let pr = privacy.map(|p| {
                let ap = auth.unwrap_or(AuthProtocol::Md5);
                localized_priv_key(ap, p, PRIV_PASS, ENGINE).expect("password is not empty")
            });
            keys.push((
                name.as_bytes().to_vec(),
                auth.zip(a.as_ref())
                    .map(|(p, k)| AuthKey::new(p, k).expect("localized key")),
                privacy
                    .zip(pr.as_ref())
                    .map(|(p, k)| PrivKey::new(p, k).expect("localized key")),
            ));
            users.push(UserConfig {
                name: name.as_bytes().to_vec(),
                auth: auth.zip(a).map(|(p, k)| (p, KeyMaterial::Localized(k))),
                privacy: privacy.zip(pr).map(|(p, k)| (p, KeyMaterial::Localized(k))),
                min_level,
                write,
            });
        }
        Fixture {
            stores,
            users,
            keys,
        }
    })
}

/// Compiles a snapshot into a store file, as the supervisor does, and maps
/// it. The files go away at once; the mapping stays.
fn compiled(name: &str, data: &[u8]) -> Arc<Store> {
    let dir = std::env::temp_dir().join(format!("agentcluster-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let source = dir.join(name);
    std::fs::write(&source, data).expect("write snapshot");
    let (store, _) = store::load(&source, &dir.join("cache")).expect("snapshot compiles");
    let _ = std::fs::remove_dir_all(&dir);
    store
}

fn config(fx: &Fixture, max_message_size: usize) -> Config {
    let access = |c: &str, v1, v2c, view, write| CommunityAccess {
        community: c.as_bytes().to_vec(),
        v1,
        v2c,
        view,
        write,
    };
    Config {
        communities: vec![
            access("public", true, true, 0, false),
            access("private", true, true, 0, true),
            access("v1only", true, false, 0, false),
            access("ups", false, true, 1, true),
        ],
        max_varbinds: 1000,
        max_message_size,
        v3: Some(V3Config {
            engine_id: ENGINE.to_vec(),
            engine_boots: BOOTS,
            users: fx.users.clone(),
            contexts: vec![
                ContextConfig {
                    name: vec![],
                    view: 0,
                },
                ContextConfig {
                    name: b"ups".to_vec(),
                    view: 1,
                },
            ],
        }),
    }
}

/// Runs one fuzz input.
pub fn run(data: &[u8]) {
    let fx = fixture();
    let datagram = match data.first() {
        Some(&mode @ 1..=3) => match seal(fx, mode, &data[1..]) {
            Some(d) => d,
            None => return,
        },
        _ => data.to_vec(),
    };
    // The allocation-free decoder of the usual requests reads whatever it
    // accepts exactly as rasn does.
    if let Err(e) = agentcluster_agent::responder::check_fast_decoder(&datagram) {
        panic!("{e}");
    }
    for limit in LIMITS {
        let start = Instant::now();
        let now = start + Duration::from_secs(u64::from(TIME));
        let mut responder = Responder::try_new(config(fx, limit), fx.stores.clone(), start)
            .expect("the fixture's keys are usable");
        let mut frame = Frame::default();
        match responder.handle(&datagram, now, &mut frame) {
            Outcome::Reply => check_answer(fx, &datagram, frame.as_slice(), limit),
            Outcome::Dropped(_) => {
                let c = responder.counters();
                assert_eq!(
                    (c.in_pkts, c.dropped, c.out_pkts),
                    (1, 1, 0),
                    "a drop is counted"
                );
            }
        }
    }
}

/// Seals `rest` (after its header bytes) as the PDU of an SNMPv3 request of
/// one of the users. `None` when the input is too short.
fn seal(fx: &Fixture, mode: u8, rest: &[u8]) -> Option<Vec<u8>> {
    let [user, hi, lo, context, pdu @ ..] = rest else {
        return None;
    };
    // Only the users whose keys allow the level.
    let able: Vec<_> = fx
        .keys
        .iter()
        .filter(|(_, a, p)| match mode {
            1 => a.is_some() && p.is_some(),
            2 => a.is_some(),
            _ => true,
        })
        .collect();
    let (name, auth, privacy) = able.get(usize::from(*user) % able.len().max(1))?;
    let flags = match mode {
        1 => 3,
        2 => 1,
        _ => 0,
    } | wire::FLAG_REPORTABLE;
    let mut frame = Frame::default();
    frame.reset(256);
    frame.body().extend_from_slice(pdu);
    let context: &[u8] = match context % 3 {
        0 => b"",
        1 => b"ups",
        _ => b"nope",
    };
    wire::seal(
        &mut frame,
        &wire::Seal {
            msg_id: 1,
            max_size: i32::from(u16::from_be_bytes([*hi, *lo])),
            flags,
            engine_id: ENGINE,
            boots: BOOTS,
            time: TIME,
            user_name: name,
            auth: auth.as_ref().filter(|_| flags & wire::FLAG_AUTH != 0),
            privacy: privacy
                .as_ref()
                .filter(|_| flags & wire::FLAG_PRIV != 0)
                .map(|k| (k, 42)),
            context_engine_id: ENGINE,
            context_name: context,
        },
        &mut Vec::new(),
    );
    Some(frame.as_slice().to_vec())
}

/// An answer must be a well-formed message of the request's version, within
/// the limits: `limit`, and for SNMPv3 the request's msgMaxSize.
fn check_answer(fx: &Fixture, request: &[u8], answer: &[u8], limit: usize) {
    assert!(
        answer.len() <= limit,
        "answer of {} bytes over the {limit} limit",
        answer.len()
    );
    let version = ber::peek_version(request);
    assert_eq!(
        ber::peek_version(answer),
        version,
        "answer in the request's version"
    );
    match version {
        Some(0) => {
            let msg: v1::Message<v1::Pdus> = whole(answer);
            assert!(
                matches!(msg.data, v1::Pdus::GetResponse(_)),
                "{:?}",
                msg.data
            );
        }
        Some(1) => {
            let msg: v2c::Message<v2::Pdus> = whole(answer);
            assert!(matches!(msg.data, v2::Pdus::Response(_)), "{:?}", msg.data);
        }
        Some(3) => check_v3(fx, request, answer),
        other => panic!("answered a message of version {other:?}"),
    }
}

fn whole<T: rasn::Decode>(bytes: &[u8]) -> T {
    match rasn::ber::decode_with_remainder::<T>(bytes) {
        Ok((msg, [])) => msg,
        Ok((_, rest)) => panic!("{} bytes after the answer", rest.len()),
        Err(e) => panic!("the answer does not decode: {e}"),
    }
}

fn check_v3(fx: &Fixture, request: &[u8], answer: &[u8]) {
    let req: v3::Message = whole(request);
    let req_max = usize::try_from(&req.global_data.max_size).expect("answered a bad msgMaxSize");
    let req_flags = req.global_data.flags.first().copied().unwrap_or(0);
    assert!(
        answer.len() <= req_max,
        "answer over the request's msgMaxSize"
    );
    let msg: v3::Message = whole(answer);
    let flags = *msg.global_data.flags.first().expect("msgFlags");
    assert_eq!(
        flags & wire::FLAG_REPORTABLE,
        0,
        "answers are never reportable"
    );
    let usm: v3::USMSecurityParameters = whole(&msg.security_parameters);
    assert_eq!(&usm.authoritative_engine_id[..], ENGINE);
    let user = fx.keys.iter().find(|(n, _, _)| n[..] == usm.user_name[..]);
    if flags & wire::FLAG_AUTH != 0 {
        let key = user
            .and_then(|u| u.1.as_ref())
            .expect("authenticated for a known user");
        let (at, len) = wire::auth_params_range(answer).expect("MAC field");
        assert_eq!(len, key.mac_len());
        assert!(key.verify(answer, at), "the answer's MAC is right");
    } else {
        assert!(usm.authentication_parameters.is_empty());
    }
    let scoped = match msg.scoped_data {
        v3::ScopedPduData::CleartextPdu(s) => {
            assert_eq!(flags & wire::FLAG_PRIV, 0);
            s
        }
        v3::ScopedPduData::EncryptedPdu(data) => {
            assert_ne!(flags & wire::FLAG_PRIV, 0);
            let key = user
                .and_then(|u| u.2.as_ref())
                .expect("encrypted for a known user");
            let mut buf = data.to_vec();
            let boots = u32::try_from(&usm.authoritative_engine_boots).expect("boots");
            let time = u32::try_from(&usm.authoritative_engine_time).expect("time");
            key.decrypt(&mut buf, &usm.privacy_parameters, boots, time)
                .expect("the answer decrypts");
            let (s, pad) = rasn::ber::decode_with_remainder::<v3::ScopedPdu>(&buf)
                .expect("the decrypted answer decodes");
            assert!(pad.len() < 8, "{} bytes after the scopedPDU", pad.len());
            s
        }
    };
    match scoped.data {
        v2::Pdus::Response(_) => {}
        v2::Pdus::Report(_) => {
            if req_flags & wire::FLAG_AUTH == 0 {
                assert!(
                    answer.len() <= MAX_UNAUTHENTICATED_REPORT,
                    "a Report of {} bytes to an unauthenticated request",
                    answer.len()
                );
            }
        }
        other => panic!("answered with {other:?}"),
    }
}
