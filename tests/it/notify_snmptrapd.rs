//! The notification originator against a real `snmptrapd`: SNMPv1 trap,
//! SNMPv2c trap and inform, SNMPv3 trap (the receiver knows our engine ID
//! from `createUser -e`) and SNMPv3 inform (we discover the receiver's
//! engine), with the varbinds as snmptrapd logs them. snmptrapd runs in the
//! foreground on a loopback port, logging to stdout, and is killed when the
//! test ends.

use std::time::{Duration, Instant};

use crate::harness::imports::{
    AuthProtocol, COLD_START, Kind, LocalEngine, Notification, NotifyError, NotifyUser,
    PrivProtocol, Sender, Target, Value, Version, WARM_START,
};
use crate::harness::trapd::Trapd;

/// Our engine ID, as snmptrapd's `createUser -e` is told.
const ENGINE: &str = "80001f880574726170746573";

/// A logged line without its leading source address (`%b|`).
fn body(line: &str) -> &str {
    line.split_once('|').map_or(line, |(_, rest)| rest)
}

fn start_trapd() -> Trapd {
    Trapd::start(&format!(
        "authCommunity log public\n\
         createUser -e 0x{ENGINE} trapuser SHA-256 trap-auth-pass AES trap-priv-pass\n\
         createUser informuser SHA informauth1 AES-256 informpriv1\n\
         createUser authonly MD5 authonly-pass\n\
         authUser log trapuser\n\
         authUser log informuser\n\
         authUser log authonly noauth\n"
    ))
}

fn target(trapd: &Trapd, version: Version, kind: Kind) -> Target {
    Target {
        address: format!("127.0.0.1:{}", trapd.port),
        version,
        kind,
        community: b"public".to_vec(),
        user: None,
        retries: 2,
        timeout: Duration::from_secs(1),
    }
}

fn note(trap: &[u32], tag: &str) -> Notification {
    Notification {
        trap_oid: trap.to_vec(),
        uptime: 4242,
        varbinds: vec![
            (
                vec![1, 3, 6, 1, 2, 1, 1, 5, 0],
                Value::OctetString(tag.as_bytes().to_vec()),
            ),
            (vec![1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 3], Value::Integer(2)),
            (
                vec![1, 3, 6, 1, 4, 1, 8072, 9, 1],
                Value::IpAddress([10, 1, 2, 3]),
            ),
        ],
        agent_addr: [127, 0, 0, 1],
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn sender(rt: &tokio::runtime::Runtime) -> Sender {
    let engine = LocalEngine {
        engine_id: (0..ENGINE.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&ENGINE[i..i + 2], 16).unwrap())
            .collect(),
        boots: 3,
        start: Instant::now(),
    };
    rt.block_on(Sender::bind("127.0.0.1:0".parse().unwrap(), engine))
        .unwrap()
}

/// The varbinds of `note(_, tag)` as snmptrapd logs them.
fn assert_varbinds(line: &str, tag: &str) {
    for want in [
        format!(".1.3.6.1.2.1.1.5.0 = STRING: \"{tag}\""),
        ".1.3.6.1.2.1.2.2.1.8.3 = INTEGER: 2".to_string(),
        ".1.3.6.1.4.1.8072.9.1 = IpAddress: 10.1.2.3".to_string(),
    ] {
        assert!(line.contains(&want), "{want} in {line}");
    }
}

#[test]
fn v1_and_v2c_traps_and_a_v2c_inform() {
    let trapd = start_trapd();
    let rt = runtime();
    let mut s = sender(&rt);
    rt.block_on(s.send(
        &target(&trapd, Version::V1, Kind::Trap),
        &note(COLD_START, "v1-trap"),
    ))
    .unwrap();
    let line = trapd.expect("v1-trap");
    assert!(
        body(&line).starts_with("TRAP, SNMP v1, community public|.1.3.6.1.6.3.1.1.5|0|0|"),
        "{line}"
    );
    assert_varbinds(&line, "v1-trap");

    rt.block_on(s.send(
        &target(&trapd, Version::V2c, Kind::Trap),
        &note(WARM_START, "v2c-trap"),
    ))
    .unwrap();
    let line = trapd.expect("v2c-trap");
    assert!(
        body(&line).starts_with("TRAP2, SNMP v2c, community public|"),
        "{line}"
    );
    assert!(
        line.contains(".1.3.6.1.2.1.1.3.0 = Timeticks: (4242)")
            && line.contains(".1.3.6.1.6.3.1.1.4.1.0 = OID: .1.3.6.1.6.3.1.1.5.2"),
        "{line}"
    );
    assert_varbinds(&line, "v2c-trap");

    // An inform returns only once snmptrapd acknowledged it.
    rt.block_on(s.send(
        &target(&trapd, Version::V2c, Kind::Inform),
        &note(COLD_START, "v2c-inform"),
    ))
    .unwrap();
    let line = trapd.expect("v2c-inform");
    assert!(
        body(&line).starts_with("INFORM, SNMP v2c, community public|"),
        "{line}"
    );
    assert_varbinds(&line, "v2c-inform");
}

#[test]
fn v3_trap_and_inform_with_usm() {
    let trapd = start_trapd();
    let rt = runtime();
    let mut s = sender(&rt);
    // Trap: we are the authoritative engine; snmptrapd localized the keys
    // to our engine ID.
    let mut trap = target(&trapd, Version::V3, Kind::Trap);
    trap.user = Some(NotifyUser {
        name: b"trapuser".to_vec(),
        auth: Some((AuthProtocol::Sha256, "trap-auth-pass".into())),
        privacy: Some((PrivProtocol::Aes128, "trap-priv-pass".into())),
    });
    rt.block_on(s.send(&trap, &note(COLD_START, "v3-trap")))
        .unwrap();
    let line = trapd.expect("v3-trap");
    assert!(
        body(&line).starts_with("TRAP2, SNMP v3, user trapuser"),
        "{line}"
    );
    assert_varbinds(&line, "v3-trap");

    // Inform: snmptrapd is the authoritative engine, discovered first.
    let mut inform = target(&trapd, Version::V3, Kind::Inform);
    inform.user = Some(NotifyUser {
        name: b"informuser".to_vec(),
        auth: Some((AuthProtocol::Sha1, "informauth1".into())),
        privacy: Some((PrivProtocol::Aes256, "informpriv1".into())),
    });
    rt.block_on(s.send(&inform, &note(WARM_START, "v3-inform")))
        .unwrap();
    let line = trapd.expect("v3-inform");
    assert!(
        body(&line).starts_with("INFORM, SNMP v3, user informuser"),
        "{line}"
    );
    assert_varbinds(&line, "v3-inform");
    // A second one reuses what discovery learnt.
    rt.block_on(s.send(&inform, &note(WARM_START, "v3-inform-2")))
        .unwrap();
    trapd.expect("v3-inform-2");

    // authNoPriv works too.
    let mut auth_only = target(&trapd, Version::V3, Kind::Inform);
    auth_only.user = Some(NotifyUser {
        name: b"authonly".to_vec(),
        auth: Some((AuthProtocol::Md5, "authonly-pass".into())),
        privacy: None,
    });
    rt.block_on(s.send(&auth_only, &note(COLD_START, "v3-authonly")))
        .unwrap();
    let line = trapd.expect("v3-authonly");
    assert!(
        body(&line).starts_with("INFORM, SNMP v3, user authonly"),
        "{line}"
    );

    // A wrong password is refused by snmptrapd's USM, and said so.
    let mut wrong = inform.clone();
    if let Some(u) = wrong.user.as_mut() {
        u.auth = Some((AuthProtocol::Sha1, "not-the-password".into()));
    }
    let e = rt
        .block_on(s.send(&wrong, &note(COLD_START, "never")))
        .unwrap_err();
    assert!(
        matches!(&e, NotifyError::Refused { reason, .. } if reason == "usmStatsWrongDigests"),
        "{e}"
    );
}
