//! The security of the side that sends a message to another engine and
//! opens its answer — the notification originator (an inform to its
//! receiver) and the command generator (`crate::client`): a user's keys
//! localized to the peer's engine, the opening of the peer's SNMPv3
//! answers, and the name of a Report's counter. Pure: no socket, no clock.

use rasn_snmp::{v2, v3};

use super::usm::{AuthKey, AuthProtocol, PrivKey, PrivProtocol, SecurityLevel, keys};
use super::v3::ReportKind;
use crate::wire::v3 as wire;

/// A user's keys localized to one engine, and the level they allow.
pub(crate) struct PeerKeys {
    pub(crate) level: SecurityLevel,
    pub(crate) auth: Option<AuthKey>,
    pub(crate) privacy: Option<PrivKey>,
}

impl PeerKeys {
    /// No keys: what an engine discovery probe is sent with.
    pub(crate) fn none() -> PeerKeys {
        PeerKeys {
            level: SecurityLevel::NoAuthNoPriv,
            auth: None,
            privacy: None,
        }
    }
}

/// Localizes a user's passwords to `engine_id`.
pub(crate) fn peer_keys(
    auth: Option<(AuthProtocol, &str)>,
    privacy: Option<(PrivProtocol, &str)>,
    engine_id: &[u8],
) -> Result<PeerKeys, String> {
    let auth_key = match auth {
        Some((p, pw)) => Some(
            keys::localized_auth_key(p, pw.as_bytes(), engine_id)
                .and_then(|k| AuthKey::new(p, &k))
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let privacy = match (privacy, auth) {
        (Some((p, pw)), Some((a, _))) => Some(
            keys::localized_priv_key(a, p, pw.as_bytes(), engine_id)
                .and_then(|k| PrivKey::new(p, &k))
                .map_err(|e| e.to_string())?,
        ),
        (Some(_), None) => return Err("privacy without authentication".into()),
        (None, _) => None,
    };
    let level = match (&auth_key, &privacy) {
        (Some(_), Some(_)) => SecurityLevel::AuthPriv,
        (Some(_), None) => SecurityLevel::AuthNoPriv,
        _ => SecurityLevel::NoAuthNoPriv,
    };
    Ok(PeerKeys {
        level,
        auth: auth_key,
        privacy,
    })
}

/// The name of the counter a Report carries (`usmStatsWrongDigests`), or
/// its OID when it is none of USM's and MPD's.
pub(crate) fn report_name(oid: &[u32]) -> String {
    let kinds = [
        (
            ReportKind::UnsupportedSecLevel,
            "usmStatsUnsupportedSecLevels",
        ),
        (ReportKind::NotInTimeWindow, "usmStatsNotInTimeWindows"),
        (ReportKind::UnknownUserName, "usmStatsUnknownUserNames"),
        (ReportKind::UnknownEngineId, "usmStatsUnknownEngineIDs"),
        (ReportKind::WrongDigest, "usmStatsWrongDigests"),
        (ReportKind::DecryptionError, "usmStatsDecryptionErrors"),
        (ReportKind::UnknownContext, "snmpUnknownContexts"),
        (ReportKind::UnknownPduHandler, "snmpUnknownPDUHandlers"),
    ];
    kinds
        .iter()
        .find(|(k, _)| k.oid() == oid)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| {
            let arcs: Vec<String> = oid.iter().map(u32::to_string).collect();
            format!("Report {}", arcs.join("."))
        })
}

/// A received SNMPv3 message, checked and opened.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) msg_id: i32,
    pub(crate) flags: u8,
    pub(crate) engine_id: Vec<u8>,
    pub(crate) boots: u32,
    pub(crate) time: u32,
    pub(crate) pdus: v2::Pdus,
}

/// Opens an SNMPv3 message sent to us. An authenticated one must carry a
/// right HMAC under `auth` and, if encrypted, decrypt under `privacy`;
/// anything else is `None`.
pub(crate) fn open_v3(
    bytes: &[u8],
    auth: Option<&AuthKey>,
    privacy: Option<&PrivKey>,
) -> Option<Opened> {
    let Ok((msg, [])) = rasn::ber::decode_with_remainder::<v3::Message>(bytes) else {
        return None;
    };
    let &[flags] = &msg.global_data.flags[..] else {
        return None;
    };
    let msg_id = i32::try_from(&msg.global_data.message_id).ok()?;
    let Ok((usm, [])) =
        rasn::ber::decode_with_remainder::<v3::USMSecurityParameters>(&msg.security_parameters)
    else {
        return None;
    };
    let boots = u32::try_from(&usm.authoritative_engine_boots).ok()?;
    let time = u32::try_from(&usm.authoritative_engine_time).ok()?;
    if flags & wire::FLAG_AUTH != 0 {
        let key = auth?;
        let (at, len) = wire::auth_params_range(bytes)?;
        if len != key.mac_len() || !key.verify(bytes, at) {
            return None;
        }
    }
    let scoped = match msg.scoped_data {
        v3::ScopedPduData::CleartextPdu(s) if flags & wire::FLAG_PRIV == 0 => s,
        v3::ScopedPduData::EncryptedPdu(data) if flags & wire::FLAG_PRIV != 0 => {
            let key = privacy?;
            let mut buf = data.to_vec();
            key.decrypt(&mut buf, &usm.privacy_parameters, boots, time)
                .ok()?;
            let max_pad = if key.is_cbc() { 8 } else { 0 };
            match rasn::ber::decode_with_remainder::<v3::ScopedPdu>(&buf) {
                Ok((s, rest)) if rest.len() <= max_pad => s,
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(Opened {
        msg_id,
        flags,
        engine_id: usm.authoritative_engine_id.to_vec(),
        boots,
        time,
        pdus: scoped.data,
    })
}

/// The first varbind name of a Report PDU (which counter it carries).
pub(crate) fn report_oid(pdus: &v2::Pdus) -> Option<Vec<u32>> {
    match pdus {
        v2::Pdus::Report(r) => r.0.variable_bindings.first().map(|vb| vb.name.to_vec()),
        _ => None,
    }
}

/// The request-id (and msgID) after `last`: positive, wrapping back to 1
/// before `i32::MAX` (both sides of a peer keep them in 1..2^31-1).
pub(crate) fn next_request_id(last: &mut i32) -> i32 {
    *last = if *last >= i32::MAX - 1 { 1 } else { *last + 1 };
    *last
}
