//! Hostile datagrams through the whole responder (v1, v2c, v3), as byte
//! vectors: each is dropped and counted, never panics, and never makes the
//! responder allocate more than a small multiple of the datagram (measured
//! by the test allocator, [`crate::sys::alloc_meter`]). And the
//! amplification guard: no answer is larger than the configured limit, and
//! answers to unauthenticated SNMPv3 messages stay small.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rasn_snmp::{v2, v2c, v3};

use super::*;
use crate::data::snapshot::{self, Format};
use crate::security::usm::keys::{localized_auth_key, localized_priv_key};
use crate::security::usm::{
    AuthKey, AuthProtocol, KeyMaterial, PrivKey, PrivProtocol, SecurityLevel,
};
use crate::security::v3::{ContextConfig, V3Config, wire};
use crate::sys::alloc_meter;

const ENGINE: &[u8] = &[
    0x80, 0x00, 0x1f, 0x88, 0x05, b'h', b'o', b's', b't', 1, 2, 3, 4,
];
const BOOTS: u32 = 3;
const TIME: u32 = 100;
/// Most a hostile datagram may make the responder allocate at once: the
/// datagram decoded (rasn's values and our request), plus the answer.
const ALLOC_PER_BYTE: usize = 48;
const ALLOC_BASE: usize = 256 << 10;

fn store() -> Arc<Store> {
    static STORE: OnceLock<Arc<Store>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let data = include_bytes!("../../../../mibs/linux-host.snmprec");
            let snap = snapshot::parse(data, Format::Snmprec, Path::new("linux-host.snmprec"))
                .expect("the sample snapshot parses");
            Arc::new(Store::from_records(&snap.records).expect("and compiles"))
        })
        .clone()
}

/// A user: its configuration and its keys, localized once for every test.
struct UserKeys {
    config: crate::security::usm::UserConfig,
    auth: Option<AuthKey>,
    privacy: Option<PrivKey>,
}

fn keys() -> &'static [UserKeys] {
    static KEYS: OnceLock<Vec<UserKeys>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let user = |name: &str, auth: Option<AuthProtocol>, privacy: Option<PrivProtocol>| {
            let a = auth.map(|p| (p, localized_auth_key(p, b"auth-pass", ENGINE).unwrap()));
            let pr = privacy.map(|p| {
                let ap = auth.unwrap_or(AuthProtocol::Md5);
                (p, localized_priv_key(ap, p, b"priv-pass", ENGINE).unwrap())
            });
            UserKeys {
                auth: a.as_ref().map(|(p, k)| AuthKey::new(*p, k).unwrap()),
                privacy: pr.as_ref().map(|(p, k)| PrivKey::new(*p, k).unwrap()),
                config: crate::security::usm::UserConfig {
                    name: name.as_bytes().to_vec(),
                    auth: a.map(|(p, k)| (p, KeyMaterial::Localized(k))),
                    privacy: pr.map(|(p, k)| (p, KeyMaterial::Localized(k))),
                    min_level: SecurityLevel::NoAuthNoPriv,
                    write: false,
                },
            }
        };
        vec![
            user("plain", None, None),
            user("md5", Some(AuthProtocol::Md5), None),
            user("des", Some(AuthProtocol::Md5), Some(PrivProtocol::Des)),
            // the longest user name (32 bytes)
            user(
                "aes-user-with-the-longest-name-x",
                Some(AuthProtocol::Sha512),
                Some(PrivProtocol::Aes256C),
            ),
        ]
    })
}

struct Agent {
    responder: Responder,
    start: Instant,
    frame: Frame,
}

impl Agent {
    fn new(max_message_size: usize) -> Agent {
        let users = keys().iter().map(|u| u.config.clone()).collect();
        let config = Config {
            communities: vec![CommunityAccess {
                community: b"public".to_vec(),
                v1: true,
                v2c: true,
                view: 0,
                write: false,
            }],
            max_varbinds: 100_000,
            max_message_size,
            v3: Some(V3Config {
                engine_id: ENGINE.to_vec(),
                engine_boots: BOOTS,
                users,
                contexts: vec![ContextConfig {
                    name: b"".to_vec(),
                    view: 0,
                }],
            }),
        };
        let start = Instant::now();
        Agent {
            responder: Responder::try_new(config, vec![store()], start).unwrap(),
            start,
            frame: Frame::default(),
        }
    }

    /// The answer to `datagram`, if any, checking that handling it stayed
    /// within the allocation bound.
    fn raw(&mut self, datagram: &[u8]) -> Option<Vec<u8>> {
        let now = self.start + Duration::from_secs(u64::from(TIME));
        let (peak, outcome) =
            alloc_meter::peak(|| self.responder.handle(datagram, now, &mut self.frame));
        let bound = ALLOC_BASE + ALLOC_PER_BYTE * datagram.len();
        assert!(
            peak <= bound,
            "{peak} bytes allocated for a datagram of {} (bound {bound})",
            datagram.len()
        );
        match outcome {
            Outcome::Reply => Some(self.frame.as_slice().to_vec()),
            Outcome::Dropped(_) => None,
        }
    }

    fn counters(&self) -> Counters {
        self.responder.counters().clone()
    }

    /// Drops `datagram`, counted as a parse error.
    fn parse_error(&mut self, datagram: &[u8]) {
        let before = self.counters();
        assert_eq!(self.raw(datagram), None, "answered {:02x?}", head(datagram));
        let after = self.counters();
        assert_eq!(after.dropped, before.dropped + 1);
        assert_eq!(after.in_asn_parse_errs, before.in_asn_parse_errs + 1);
    }

    /// Still serving: a good GET gets its answer.
    fn still_serving(&mut self) {
        let answer = self.raw(&v2c_get()).expect("a good request is answered");
        let msg: v2c::Message<v2::Pdus> = rasn::ber::decode(&answer).unwrap();
        assert!(matches!(msg.data, v2::Pdus::Response(_)));
    }
}

fn head(d: &[u8]) -> &[u8] {
    &d[..d.len().min(24)]
}

/// A TLV with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    ber::push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

fn int(v: i64) -> Vec<u8> {
    let mut out = Vec::new();
    ber::push_i64(&mut out, ber::TAG_INTEGER, v);
    out
}

/// A v1/v2c message around a PDU (tag `pdu_tag`) with `varbinds` as the
/// content of its varbind list.
fn message(version: i64, pdu_tag: u8, varbinds: &[u8]) -> Vec<u8> {
    let pdu = [int(0x1234), int(0), int(0), tlv(0x30, varbinds)].concat();
    tlv(
        0x30,
        &[int(version), tlv(0x04, b"public"), tlv(pdu_tag, &pdu)].concat(),
    )
}

fn getbulk(non_repeaters: i64, max_repetitions: i64, varbinds: &[u8]) -> Vec<u8> {
    let pdu = [
        int(7),
        int(non_repeaters),
        int(max_repetitions),
        tlv(0x30, varbinds),
    ]
    .concat();
    tlv(
        0x30,
        &[int(1), tlv(0x04, b"public"), tlv(0xa5, &pdu)].concat(),
    )
}

/// A varbind `oid` = NULL.
fn null_varbind(oid: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    ber::push_varbind(&mut out, oid, &[ber::TAG_NULL, 0]);
    out
}

const SYS_DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 1, 0];

fn v2c_get() -> Vec<u8> {
    message(1, 0xa0, &null_varbind(SYS_DESCR))
}

/// A manager's SNMPv3 request: `pdu` (a PDU TLV) sealed for user `user`
/// (an index into [`keys`]) at `level`.
struct V3Request<'a> {
    user: usize,
    /// Another user name than the user's.
    name: Option<&'a [u8]>,
    flags: u8,
    max_size: i32,
    engine_id: &'a [u8],
    context: &'a [u8],
}

impl V3Request<'_> {
    fn discovery() -> V3Request<'static> {
        V3Request {
            user: 0,
            name: None,
            flags: wire::FLAG_REPORTABLE,
            max_size: 65_507,
            engine_id: b"",
            context: b"",
        }
    }

    fn user(user: usize, flags: u8) -> V3Request<'static> {
        V3Request {
            user,
            name: None,
            flags: flags | wire::FLAG_REPORTABLE,
            max_size: 65_507,
            engine_id: ENGINE,
            context: b"",
        }
    }

    fn seal(&self, pdu: &[u8]) -> Vec<u8> {
        let user = &keys()[self.user];
        let name = self.name.unwrap_or(&user.config.name);
        let mut frame = Frame::default();
        frame.reset(64);
        frame.body().extend_from_slice(pdu);
        let discovery = self.engine_id.is_empty();
        wire::seal(
            &mut frame,
            &wire::Seal {
                msg_id: 99,
                max_size: self.max_size,
                flags: self.flags,
                engine_id: self.engine_id,
                boots: if discovery { 0 } else { BOOTS },
                time: if discovery { 0 } else { TIME },
                user_name: if discovery { b"" } else { name },
                auth: user
                    .auth
                    .as_ref()
                    .filter(|_| self.flags & wire::FLAG_AUTH != 0),
                privacy: user
                    .privacy
                    .as_ref()
                    .filter(|_| self.flags & wire::FLAG_PRIV != 0)
                    .map(|k| (k, 5)),
                context_engine_id: self.engine_id,
                context_name: self.context,
            },
            &mut Vec::new(),
        );
        frame.as_slice().to_vec()
    }
}

fn get_pdu(oid: &[u32]) -> Vec<u8> {
    let pdu = [int(1), int(0), int(0), tlv(0x30, &null_varbind(oid))].concat();
    tlv(0xa0, &pdu)
}

fn bulk_pdu(max_repetitions: i64, oids: &[&[u32]]) -> Vec<u8> {
    let vbs: Vec<u8> = oids.iter().flat_map(|o| null_varbind(o)).collect();
    let pdu = [int(1), int(0), int(max_repetitions), tlv(0x30, &vbs)].concat();
    tlv(0xa5, &pdu)
}

/// Opens an SNMPv3 answer enough to see its PDU (decrypting with the
/// user's key when it is encrypted).
fn v3_pdus(user: usize, answer: &[u8]) -> v2::Pdus {
    let msg: v3::Message = rasn::ber::decode(answer).expect("answer decodes");
    let usm: v3::USMSecurityParameters = rasn::ber::decode(&msg.security_parameters).unwrap();
    match msg.scoped_data {
        v3::ScopedPduData::CleartextPdu(s) => s.data,
        v3::ScopedPduData::EncryptedPdu(data) => {
            let key = keys()[user].privacy.as_ref().unwrap();
            let mut buf = data.to_vec();
            key.decrypt(&mut buf, &usm.privacy_parameters, BOOTS, TIME)
                .unwrap();
            rasn::ber::decode_with_remainder::<v3::ScopedPdu>(&buf)
                .unwrap()
                .0
                .data
        }
    }
}

// ------------------------------------------------------------ oversized

#[test]
fn oversized_datagrams_of_garbage() {
    let mut agent = Agent::new(65_507);
    // xorshift noise, then the same behind a plausible SEQUENCE header
    let mut rng = crate::util::xorshift::Rng::new(0x2545_f491_4f6c_dd1d);
    let noise: Vec<u8> = (0..65_507).map(|_| rng.next_u64() as u8).collect();
    agent.parse_error(&noise);
    let mut framed = vec![0x30, 0x83, 0x00, 0xff, 0xde];
    framed.extend_from_slice(&noise[..65_502]);
    agent.parse_error(&framed);
    let zeros = [&[0x30, 0x83, 0x00, 0xff, 0xde][..], &[0; 65_502]].concat();
    agent.parse_error(&zeros);
    // Well formed but for a 65 000-byte community: refused without an
    // answer, as any unknown community.
    let big = tlv(
        0x30,
        &[int(1), tlv(0x04, &[b'x'; 65_000]), get_pdu(SYS_DESCR)].concat(),
    );
    assert!(big.len() <= 65_507);
    let before = agent.counters();
    assert_eq!(agent.raw(&big), None);
    assert_eq!(
        agent.counters().in_bad_community_names,
        before.in_bad_community_names + 1
    );
    agent.still_serving();
}

// ------------------------------------------------------ 10^6 varbinds

#[test]
fn a_varbind_list_claiming_a_million_entries() {
    let mut agent = Agent::new(65_507);
    // The list's length says 1 000 000 bytes; the datagram has 14.
    let mut msg = message(1, 0xa0, &null_varbind(SYS_DESCR));
    let list = msg.len() - null_varbind(SYS_DESCR).len() - 2;
    assert_eq!(msg[list], 0x30);
    msg.splice(list + 1..list + 2, [0x84, 0x00, 0x0f, 0x42, 0x40]);
    agent.parse_error(&msg);
    // And a GETBULK asking for 2^31 − 1 repetitions of a million names.
    let mut bulk = getbulk(0, i64::from(i32::MAX), &null_varbind(SYS_DESCR));
    let at = bulk.len() - null_varbind(SYS_DESCR).len() - 1;
    bulk.splice(at..at + 1, [0x84, 0x00, 0x0f, 0x42, 0x40]);
    agent.parse_error(&bulk);
    agent.still_serving();
}

#[test]
fn as_many_varbinds_as_a_datagram_holds() {
    // 9 000 varbinds `1.3 = NULL` (7 bytes each) in one 63-KB datagram.
    let vb = null_varbind(&[1, 3]);
    assert_eq!(vb.len(), 7);
    let many: Vec<u8> = vb.repeat(9_000);
    for limit in [484, 65_507] {
        let mut agent = Agent::new(limit);
        for (version, tag) in [(0, 0xa0), (0, 0xa1), (1, 0xa0), (1, 0xa1), (1, 0xa3)] {
            let msg = message(version, tag, &many);
            assert!(msg.len() <= 65_507);
            if let Some(answer) = agent.raw(&msg) {
                assert!(answer.len() <= limit, "{} > {limit}", answer.len());
            }
        }
        // GETBULK: 9 000 repeaters, 2^31 − 1 repetitions, then 9 000
        // non-repeaters: cut by max-varbinds and the message size.
        for (n, m) in [(0, i64::from(i32::MAX)), (i64::from(i32::MAX), 1)] {
            let answer = agent.raw(&getbulk(n, m, &many)).expect("answered");
            assert!(answer.len() <= limit, "{} > {limit}", answer.len());
        }
        agent.still_serving();
    }
}

// ------------------------------------------------------- deep nesting

#[test]
fn deeply_nested_and_indefinite_length_ber() {
    let mut agent = Agent::new(65_507);
    // 30 000 nested indefinite-length SEQUENCEs, with and without their
    // end-of-contents octets.
    let open = [0x30, 0x80].repeat(30_000);
    agent.parse_error(&open);
    agent.parse_error(&[open.clone(), vec![0; 60_000]].concat()[..65_507]);
    // 20 000 nested definite-length SEQUENCEs (built inside out).
    let mut nested = vec![0x05, 0x00];
    for _ in 0..20_000 {
        nested = tlv(0x30, &nested);
        if nested.len() > 65_000 {
            break;
        }
    }
    agent.parse_error(&nested);
    // Deep nesting where a value goes, inside a valid message, and as
    // constructed OCTET STRINGs where the community goes.
    for inner in [[0x30, 0x80], [0x24, 0x80], [0xa0, 0x80]] {
        let deep = inner.repeat(20_000);
        let mut vb = vec![0x30, 0x80, 0x06, 0x08, 0x2b, 6, 1, 2, 1, 1, 1, 0];
        vb.extend_from_slice(&deep);
        agent.parse_error(&message(1, 0xa3, &vb));
        let msg = [&[0x30, 0x80, 0x02, 0x01, 0x01][..], &deep].concat();
        agent.parse_error(&msg);
    }
    // A whole v2c GET in the indefinite form: legal BER that SNMP agents
    // need not take; refused before decoding.
    let good = v2c_get();
    let indefinite = [&[0x30, 0x80][..], &good[2..], &[0, 0]].concat();
    agent.parse_error(&indefinite);
    // SNMPv3: nested where msgSecurityParameters and the scopedPDU go.
    let discovery = V3Request::discovery().seal(&get_pdu(SYS_DESCR));
    let deep = [0x30, 0x80].repeat(20_000);
    let v3 = [
        &[0x30, 0x80, 0x02, 0x01, 0x03][..],
        &[
            0x30, 0x0d, 0x02, 0x01, 0x01, 0x02, 0x02, 0x05, 0xdc, 0x04, 0x01, 0x04, 0x02, 0x01,
        ],
        &[0x03, 0x24, 0x80],
        &deep,
    ]
    .concat();
    agent.parse_error(&v3);
    assert!(agent.raw(&discovery).is_some(), "discovery still works");
    agent.still_serving();
}

// ------------------------------------------------------------ OID arcs

#[test]
fn oid_arcs_beyond_32_bits() {
    let mut agent = Agent::new(65_507);
    let with_oid = |content: &[u8]| {
        let vb = tlv(0x30, &[tlv(0x06, content), vec![0x05, 0x00]].concat());
        message(1, 0xa0, &vb)
    };
    // 2^32, 2^64 and a 100-byte arc; then a first subidentifier past 2^32.
    agent.parse_error(&with_oid(&[0x2b, 0x90, 0x80, 0x80, 0x80, 0x00]));
    agent.parse_error(&with_oid(&[
        0x2b, 0x82, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
    ]));
    let mut huge = vec![0x2b];
    huge.extend(std::iter::repeat_n(0xff, 99));
    huge.push(0x7f);
    agent.parse_error(&with_oid(&huge));
    agent.parse_error(&with_oid(&[0x90, 0x80, 0x80, 0x80, 0x00]));
    // An arc that never ends (continuation bit on the last byte).
    agent.parse_error(&with_oid(&[0x2b, 0x06, 0x81]));
    // The largest arc is fine: the object is not there.
    let answer = agent
        .raw(&with_oid(&[0x2b, 0x8f, 0xff, 0xff, 0xff, 0x7f]))
        .expect("2^32 - 1 is an arc");
    let msg: v2c::Message<v2::Pdus> = rasn::ber::decode(&answer).unwrap();
    let v2::Pdus::Response(r) = msg.data else {
        panic!("{:?}", msg.data)
    };
    assert!(matches!(
        r.0.variable_bindings[0].value,
        v2::VarBindValue::NoSuchObject | v2::VarBindValue::NoSuchInstance
    ));
    agent.still_serving();
}

// --------------------------------------------- lengths and truncation

#[test]
fn negative_and_oversized_lengths() {
    let mut agent = Agent::new(65_507);
    let good = v2c_get();
    // The outer length replaced by each bad one.
    let bad_lengths: [&[u8]; 8] = [
        &[0x84, 0xff, 0xff, 0xff, 0xff],                   // 2^32 − 1 ("−1")
        &[0x84, 0x80, 0x00, 0x00, 0x00],                   // 2^31 ("negative")
        &[0x85, 0x00, 0x00, 0x00, 0x00, 0x29],             // length of length 5
        &[0x88, 0, 0, 0, 0, 0, 0, 0, 0x29],                // 8
        &[0xff],                                           // 127, reserved
        &[0x81, 0x29],                                     // not minimal (rasn refuses)
        &[0x82, 0xff],                                     // cut short
        &[0xfe, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07], // 126
    ];
    for len in bad_lengths {
        let msg = [&[0x30][..], len, &good[2..]].concat();
        agent.parse_error(&msg);
    }
    // Inner lengths: the request-id INTEGER claiming 2^31 and 2^32 − 1 bytes,
    // a 9-byte request-id, the community claiming more than there is.
    let at = good.iter().position(|&b| b == 0xa0).unwrap() + 2;
    assert_eq!(good[at], 0x02);
    for bad in [
        &[0x84, 0x80, 0x00, 0x00, 0x00][..],
        &[0x84, 0xff, 0xff, 0xff, 0xff],
    ] {
        let msg = [&good[..at + 1], bad, &good[at + 2..]].concat();
        agent.parse_error(&msg);
    }
    let long_id = message(1, 0xa0, &null_varbind(SYS_DESCR));
    let long_id = {
        let i = long_id.iter().position(|&b| b == 0xa0).unwrap() + 2;
        let mut m = long_id.clone();
        m.splice(i..i + 4, tlv(0x02, &[0x01; 9]));
        m[1] += 9 - 2;
        m[i - 1] += 9 - 2;
        m
    };
    agent.parse_error(&long_id);
    let mut community = good.clone();
    community[6] = 0x7f;
    agent.parse_error(&community);
    agent.still_serving();
}

#[test]
fn every_truncation_of_every_kind_of_request() {
    let mut agent = Agent::new(65_507);
    let requests = [
        message(0, 0xa0, &null_varbind(SYS_DESCR)),
        message(0, 0xa1, &null_varbind(SYS_DESCR)),
        message(1, 0xa3, &{
            let mut vb = Vec::new();
            ber::push_varbind(
                &mut vb,
                &[1, 3, 6, 1, 2, 1, 1, 5, 0],
                &[0x04, 2, b'h', b'i'],
            );
            vb
        }),
        getbulk(
            1,
            10,
            &[null_varbind(SYS_DESCR), null_varbind(&[1, 3, 6])].concat(),
        ),
        V3Request::discovery().seal(&get_pdu(SYS_DESCR)),
        V3Request::user(0, 0).seal(&get_pdu(SYS_DESCR)),
        V3Request::user(1, 1).seal(&get_pdu(SYS_DESCR)),
        V3Request::user(2, 3).seal(&get_pdu(SYS_DESCR)),
        V3Request::user(3, 3).seal(&bulk_pdu(5, &[&[1, 3, 6]])),
    ];
    for msg in &requests {
        assert!(agent.raw(msg).is_some(), "the whole request is answered");
        for len in 0..msg.len() {
            agent.parse_error(&msg[..len]);
        }
    }
    agent.still_serving();
}

// ------------------------------------------------------- SNMPv3 header

/// An SNMPv3 discovery message with its msgGlobalData replaced.
fn with_global(max_size: &[u8], flags: &[u8]) -> Vec<u8> {
    let global = tlv(
        0x30,
        &[int(1), tlv(0x02, max_size), tlv(0x04, flags), int(3)].concat(),
    );
    let usm = tlv(
        0x30,
        &[
            tlv(0x04, b""),
            int(0),
            int(0),
            tlv(0x04, b""),
            tlv(0x04, b""),
            tlv(0x04, b""),
        ]
        .concat(),
    );
    let scoped = tlv(
        0x30,
        &[tlv(0x04, b""), tlv(0x04, b""), get_pdu(SYS_DESCR)].concat(),
    );
    tlv(0x30, &[int(3), global, tlv(0x04, &usm), scoped].concat())
}

#[test]
fn v3_msg_max_size_out_of_range() {
    let mut agent = Agent::new(65_507);
    assert!(agent.raw(&with_global(&[0x05, 0xdc], &[4])).is_some());
    for bad in [
        &[0x01, 0xe3][..],                                       // 483
        &[0x00],                                                 // 0
        &[0xff],                                                 // −1
        &[0x80, 0x00, 0x00, 0x00],                               // −2^31
        &[0x00, 0x80, 0x00, 0x00, 0x00],                         // 2^31
        &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // 2^71 − 1
        &[0x01; 100],                                            // 800 bits
        &[],                                                     // no content
    ] {
        agent.parse_error(&with_global(bad, &[4]));
    }
    // The least legal one bounds the answer.
    let answer = agent.raw(&with_global(&[0x01, 0xe4], &[4])).unwrap();
    assert!(answer.len() <= 484);
    agent.still_serving();
}

#[test]
fn v3_bogus_msg_flags() {
    let mut agent = Agent::new(65_507);
    let max = [0x05, 0xdc];
    for bad in [&[][..], &[4, 0], &[0, 0, 0, 4]] {
        agent.parse_error(&with_global(&max, bad));
    }
    // privacy without authentication: snmpInvalidMsgs
    for flags in [2u8, 6] {
        let before = agent.counters();
        assert_eq!(agent.raw(&with_global(&max, &[flags])), None);
        let after = agent.counters();
        assert_eq!(after.invalid_msgs, before.invalid_msgs + 1);
        assert_eq!(after.dropped, before.dropped + 1);
    }
    // Reserved bits are ignored: this is a reportable discovery.
    let answer = agent.raw(&with_global(&max, &[0xfc])).expect("a Report");
    assert!(matches!(v3_pdus(0, &answer), v2::Pdus::Report(_)));
    // Authenticated flags on a discovery (no engine ID): unknown engine ID.
    let answer = agent.raw(&with_global(&max, &[0x05])).expect("a Report");
    assert!(matches!(v3_pdus(0, &answer), v2::Pdus::Report(_)));
    agent.still_serving();
}

// ------------------------------------------------- amplification guard

#[test]
fn no_answer_is_larger_than_the_limit() {
    let whole_mib: &[&[u32]] = &[&[1, 3, 6], &[1, 3, 6, 1, 2, 1, 2], &[1, 3, 6, 1, 2, 1, 25]];
    for limit in [484, 485, 512, 1000, 1472, 1500, 4096, 65_507] {
        let mut agent = Agent::new(limit);
        let repeaters: Vec<u8> = whole_mib.iter().flat_map(|o| null_varbind(o)).collect();
        let mut requests = vec![
            getbulk(0, 100_000, &repeaters),
            getbulk(1, 100_000, &repeaters),
            message(0, 0xa1, &repeaters.repeat(60)),
            message(1, 0xa1, &repeaters.repeat(60)),
        ];
        // SNMPv3 at every level; the longest user name and a CBC cipher
        // (padding) among them.
        for (user, flags) in [(0, 0), (1, 1), (2, 3), (3, 3)] {
            for max_size in [484, 1000, 65_507] {
                let r = V3Request {
                    max_size,
                    ..V3Request::user(user, flags)
                };
                requests.push(r.seal(&bulk_pdu(100_000, whole_mib)));
            }
        }
        for msg in &requests {
            let Some(answer) = agent.raw(msg) else {
                // Only SNMPv1 drops what does not fit (RFC 1157 has no
                // empty tooBig); counted as a silent drop.
                assert_eq!(ber::peek_version(msg), Some(0));
                continue;
            };
            assert!(
                answer.len() <= limit,
                "{} bytes over the limit of {limit}",
                answer.len()
            );
            if let Some(3) = ber::peek_version(msg) {
                let m: v3::Message = rasn::ber::decode(msg).unwrap();
                let max = usize::try_from(&m.global_data.max_size).unwrap();
                assert!(answer.len() <= max, "over msgMaxSize {max}");
            }
        }
        // A big limit is used, not wasted: the bulk fills most of it.
        let answer = agent.raw(&requests[0]).unwrap();
        assert!(answer.len() > limit * 3 / 4, "{} of {limit}", answer.len());
    }
}

#[test]
fn answers_to_unauthenticated_v3_are_small() {
    let mut agent = Agent::new(65_507);
    let discovery = V3Request::discovery().seal(&get_pdu(SYS_DESCR));
    let report = agent.raw(&discovery).expect("a Report");
    assert!(matches!(v3_pdus(0, &report), v2::Pdus::Report(_)));
    // Hardly more than what was asked, whatever the agent serves.
    assert!(
        report.len() <= discovery.len() + 64,
        "{} bytes for {}",
        report.len(),
        discovery.len()
    );
    // The worst case: longest user name and context name, a GETBULK that
    // would fill 64 KB if it were answered, from an unknown engine ID, an
    // unknown user, at a level above the user's keys.
    let longest_context = [b'c'; 32];
    let pdu = bulk_pdu(100_000, &[&[1, 3, 6]]);
    let other_engine = b"\x80\x00\x00\x00\x01 not this engine, 32 bytes.";
    assert_eq!(other_engine.len(), 32);
    let nobody = b"nobody-with-the-longest-name-xyz";
    let cases = [
        // unknown engine ID
        V3Request {
            engine_id: other_engine,
            ..V3Request::user(3, 0)
        },
        // unknown user name
        V3Request {
            name: Some(nobody),
            ..V3Request::user(3, 0)
        },
        // authNoPriv for a user without keys: unsupported security level
        V3Request::user(0, 1),
        // authPriv for a user without a privacy key: unsupported level
        V3Request::user(1, 3),
    ];
    for request in cases {
        let request = V3Request {
            context: &longest_context,
            ..request
        };
        let msg = request.seal(&pdu);
        let answer = agent.raw(&msg).expect("a Report");
        assert!(matches!(v3_pdus(0, &answer), v2::Pdus::Report(_)));
        assert!(answer.len() <= 484, "{} bytes", answer.len());
    }
    // A context name longer than SnmpAdminString allows is not echoed: the
    // message is malformed.
    let request = V3Request {
        context: &[b'c'; 33],
        ..V3Request::discovery()
    };
    agent.parse_error(&request.seal(&get_pdu(SYS_DESCR)));
    let request = V3Request {
        context: &[b'c'; 30_000],
        ..V3Request::user(3, 0)
    };
    agent.parse_error(&request.seal(&get_pdu(SYS_DESCR)));
    agent.still_serving();
}
