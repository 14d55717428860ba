//! The bytes of an SNMPv3 message that rasn's types do not give: where
//! msgAuthenticationParameters sits in a received datagram (so its HMAC is
//! checked on the received bytes, never on a re-encoding), and the encoding
//! of an outgoing message around a PDU already framed in a [`Frame`] —
//! scopedPDU, encryption in place, USM parameters with a zeroed MAC field
//! that is then patched with the HMAC of the finished message.
//!
//! The keys are USM's; this module only says what it needs of them
//! ([`Authenticate`], [`Encrypt`]), so the message format does not depend
//! on the security layer that uses it.

use crate::wire::ber::{self, Frame, TAG_INTEGER, TAG_OCTET_STRING, TAG_SEQUENCE};

/// The User-based Security Model's msgSecurityModel.
pub(crate) const USM: i64 = 3;

/// msgFlags bit (RFC 3412 §6.4): the message is authenticated.
pub const FLAG_AUTH: u8 = 1;
/// msgFlags bit: the scopedPDU is encrypted.
pub const FLAG_PRIV: u8 = 2;
/// msgFlags bit: a failed check may be answered with a Report.
pub const FLAG_REPORTABLE: u8 = 4;

fn skip(msg: &[u8], pos: usize) -> Option<usize> {
    let (_, start, len) = ber::read_header(msg, pos)?;
    Some(start + len)
}

/// (offset, length) of msgAuthenticationParameters' content in a whole
/// SNMPv3 message. `None` when the message is not laid out as one with
/// definite lengths.
pub fn auth_params_range(msg: &[u8]) -> Option<(usize, usize)> {
    let (tag, start, _) = ber::read_header(msg, 0)?;
    if tag != TAG_SEQUENCE {
        return None;
    }
    let pos = skip(msg, start)?; // msgVersion
    let pos = skip(msg, pos)?; // msgGlobalData
    let (tag, sec, _) = ber::read_header(msg, pos)?; // msgSecurityParameters
    if tag != TAG_OCTET_STRING {
        return None;
    }
    let (tag, usm, _) = ber::read_header(msg, sec)?; // UsmSecurityParameters
    if tag != TAG_SEQUENCE {
        return None;
    }
    let mut pos = usm;
    for _ in 0..4 {
        // engine ID, boots, time, user name
        pos = skip(msg, pos)?;
    }
    let (tag, at, len) = ber::read_header(msg, pos)?;
    (tag == TAG_OCTET_STRING).then_some((at, len))
}

/// What sealing needs of an authentication key.
pub trait Authenticate {
    /// Length of msgAuthenticationParameters: the truncated HMAC.
    fn mac_len(&self) -> usize;
    /// Writes the MAC of the whole message `msg` into its field at `at`
    /// (whose bytes are taken as zeros); `false` when the field does not
    /// fit in `msg`.
    fn sign(&self, msg: &mut [u8], at: usize) -> bool;
}

/// What sealing needs of a privacy key.
pub trait Encrypt {
    /// Encrypts `buf[from..]` in place with the sender's `boots`/`time`
    /// and a fresh `salt`; returns msgPrivacyParameters.
    fn encrypt(&self, buf: &mut Vec<u8>, from: usize, boots: u32, time: u32, salt: u64) -> [u8; 8];
}

/// Everything an outgoing message needs besides its PDU.
pub struct Seal<'a, A, P> {
    /// msgID: the request's, in an answer.
    pub msg_id: i32,
    /// Our msgMaxSize.
    pub max_size: i32,
    /// msgFlags; the auth and priv bits must agree with `auth`/`privacy`.
    pub flags: u8,
    /// The authoritative engine (ours for responses, reports and traps;
    /// the receiver's for informs).
    pub engine_id: &'a [u8],
    /// msgAuthoritativeEngineBoots of that engine.
    pub boots: u32,
    /// msgAuthoritativeEngineTime of that engine.
    pub time: u32,
    /// msgUserName.
    pub user_name: &'a [u8],
    /// The authentication key, when the message is authenticated.
    pub auth: Option<&'a A>,
    /// The privacy key and a fresh salt.
    pub privacy: Option<(&'a P, u64)>,
    /// The scopedPDU's contextEngineID.
    pub context_engine_id: &'a [u8],
    /// The scopedPDU's contextName.
    pub context_name: &'a [u8],
}

fn push_octets(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(TAG_OCTET_STRING);
    ber::push_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Turns the PDU TLV that `frame` holds into a whole SNMPv3 message:
/// scopedPDU, encrypted when `privacy` is given, then the headers, then the
/// HMAC when `auth` is given. `scratch` is working space, reused between
/// calls.
pub fn seal<A: Authenticate, P: Encrypt>(
    frame: &mut Frame,
    s: &Seal<'_, A, P>,
    scratch: &mut Vec<u8>,
) {
    frame.prepend_tlv(TAG_OCTET_STRING, s.context_name);
    frame.prepend_tlv(TAG_OCTET_STRING, s.context_engine_id);
    frame.wrap(TAG_SEQUENCE);
    let mut priv_params: [u8; 8] = [0; 8];
    let encrypted = s.privacy.is_some();
    if let Some((key, salt)) = s.privacy {
        let len = frame.len();
        let end = frame.end();
        let buf = frame.body();
        priv_params = key.encrypt(buf, end - len, s.boots, s.time, salt);
        frame.wrap(TAG_OCTET_STRING);
    }
    // UsmSecurityParameters, with the MAC field zeroed.
    let mac_len = s.auth.map_or(0, A::mac_len);
    let usm = scratch;
    usm.clear();
    push_octets(usm, s.engine_id);
    ber::push_i64(usm, TAG_INTEGER, i64::from(s.boots));
    ber::push_i64(usm, TAG_INTEGER, i64::from(s.time));
    push_octets(usm, s.user_name);
    usm.push(TAG_OCTET_STRING);
    ber::push_len(usm, mac_len);
    let mac_at = usm.len();
    usm.resize(usm.len() + mac_len, 0);
    push_octets(usm, if encrypted { &priv_params } else { &[] });
    frame.prepend(usm);
    // The MAC field's distance from the end does not change as headers
    // are prepended.
    let mac_from_end = frame.len() - mac_at;
    frame.prepend_header(TAG_SEQUENCE, usm.len());
    frame.prepend_header(TAG_OCTET_STRING, ber::header_len(usm.len()) + usm.len());
    let global = usm;
    global.clear();
    ber::push_i64(global, TAG_INTEGER, i64::from(s.msg_id));
    ber::push_i64(global, TAG_INTEGER, i64::from(s.max_size));
    global.extend_from_slice(&[TAG_OCTET_STRING, 1, s.flags]);
    ber::push_i64(global, TAG_INTEGER, USM);
    frame.prepend(global);
    frame.prepend_header(TAG_SEQUENCE, global.len());
    frame.prepend(&[TAG_INTEGER, 1, 3]);
    frame.wrap(TAG_SEQUENCE);
    if let Some(key) = s.auth {
        let len = frame.len();
        let end = frame.end();
        let buf = frame.body();
        let msg = &mut buf[end - len..end];
        let at = len - mac_from_end;
        key.sign(msg, at);
    }
}
