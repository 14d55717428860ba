//! The manager's side of SNMPv3 USM for the load generator: engine
//! discovery, RFC 3414 key localization, HMAC-SHA-96 authentication and
//! AES-128-CFB privacy (RFC 3826). Only what the benchmark drives
//! (authPriv SHA/AES128, plus authNoPriv SHA); written here, not borrowed
//! from the agent, so the two sides are independent implementations.

use aes::Aes128;
use aes::cipher::KeyInit;
use cfb_mode::cipher::{AsyncStreamCipher, InnerIvInit};
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};

use crate::ber::{self, Malformed, Reader};

type HmacSha1 = Hmac<Sha1>;

/// Length of the truncated HMAC in msgAuthenticationParameters.
pub const AUTH_LEN: usize = 12;

/// RFC 3414 A.2.2: the SHA-1 digest of the password repeated over 1 MiB.
pub fn password_to_key(password: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    let mut chunk = [0u8; 64];
    let mut i = 0usize;
    for _ in 0..(1_048_576 / 64) {
        for b in chunk.iter_mut() {
            *b = password[i % password.len()];
            i += 1;
        }
        h.update(chunk);
    }
    h.finalize().into()
}

/// RFC 3414 A.2.2: the key localized to one engine ID.
pub fn localize(ku: &[u8; 20], engine_id: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(ku);
    h.update(engine_id);
    h.update(ku);
    h.finalize().into()
}

/// What discovery learned about the agent's engine.
#[derive(Debug, Clone)]
pub struct Engine {
    /// snmpEngineID, the keys are localized to it.
    pub id: Vec<u8>,
    /// snmpEngineBoots, sent back in every request.
    pub boots: i64,
    /// snmpEngineTime at discovery, in seconds; requests add the time
    /// since, to stay inside the agent's 150 s window.
    pub time: i64,
}

/// A user's localized keys and what every message carries.
pub struct Session {
    /// The agent's engine, as discovered.
    pub engine: Engine,
    /// msgUserName.
    pub user: Vec<u8>,
    /// contextName of every request.
    pub context: Vec<u8>,
    mac: HmacSha1,
    cipher: Option<Aes128>,
    /// `msgFlags`: auth (1), priv (2), reportable (4).
    flags: u8,
    salt: u64,
}

/// The security parameters of a received message.
pub struct Received<'a> {
    /// msgID (the generator sends its request-id here).
    pub msg_id: i64,
    /// msgFlags: auth (1), priv (2), reportable (4).
    pub flags: u8,
    /// msgAuthoritativeEngineID.
    pub engine_id: &'a [u8],
    /// msgAuthoritativeEngineBoots.
    pub boots: i64,
    /// msgAuthoritativeEngineTime.
    pub time: i64,
    /// Offset of the 12 authentication bytes in the datagram.
    pub auth_at: Option<usize>,
    /// msgPrivacyParameters: the salt of the AES IV.
    pub priv_params: &'a [u8],
    /// msgData: the encrypted scoped PDU or the plaintext scoped PDU TLV.
    pub data: ber::Tlv<'a>,
}

/// Why a v3 message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V3Error {
    /// Not a readable SNMPv3 message.
    Malformed(Malformed),
    /// The HMAC does not match, or a message that should be authenticated is not.
    Auth,
    /// Unencrypted or undecryptable data where privacy was asked for.
    Privacy,
}

impl From<Malformed> for V3Error {
    fn from(m: Malformed) -> V3Error {
        V3Error::Malformed(m)
    }
}

impl Session {
    /// `priv_password` `None`: authNoPriv.
    pub fn new(
        engine: Engine,
        user: &str,
        auth_password: &str,
        priv_password: Option<&str>,
        context: &str,
    ) -> Result<Session, String> {
        if auth_password.len() < 8 || priv_password.is_some_and(|p| p.len() < 8) {
            return Err("USM passwords must be at least 8 characters (RFC 3414)".into());
        }
        let auth_key = localize(&password_to_key(auth_password.as_bytes()), &engine.id);
        let mac =
            <HmacSha1 as Mac>::new_from_slice(&auth_key).map_err(|e| format!("HMAC key: {e}"))?;
        let cipher = priv_password.map(|p| {
            let k = localize(&password_to_key(p.as_bytes()), &engine.id);
            Aes128::new((&k[..16]).into())
        });
        let flags = if cipher.is_some() { 0x07 } else { 0x05 };
        // Salts only have to differ per message; start somewhere unlikely to
        // repeat across runs.
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Ok(Session {
            engine,
            user: user.as_bytes().to_vec(),
            context: context.as_bytes().to_vec(),
            mac,
            cipher,
            flags,
            salt,
        })
    }

    /// Encodes a request: `pdu` is the whole PDU TLV. `elapsed_secs` is the
    /// time since discovery, added to the engine's time. `scratch` is
    /// reused between calls.
    pub fn encode(
        &mut self,
        msg_id: i64,
        pdu: &[u8],
        elapsed_secs: i64,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) {
        let boots = self.engine.boots;
        let time = self.engine.time + elapsed_secs;
        // Scoped PDU.
        scratch.clear();
        let mut inner = Vec::with_capacity(pdu.len() + self.context.len() + 40);
        ber::push_tlv(&mut inner, ber::OCTET_STRING, &self.engine.id);
        ber::push_tlv(&mut inner, ber::OCTET_STRING, &self.context);
        inner.extend_from_slice(pdu);
        ber::push_tlv(scratch, ber::SEQUENCE, &inner);
        let mut salt = [0u8; 8];
        if let Some(cipher) = &self.cipher {
            self.salt = self.salt.wrapping_add(1);
            salt = self.salt.to_be_bytes();
            let iv = iv(boots, time, &salt);
            cfb_mode::Encryptor::<Aes128>::inner_iv_init(cipher.clone(), (&iv).into())
                .encrypt(scratch);
        }
        // Security parameters, with the authentication field zeroed.
        let mut sp = Vec::with_capacity(64 + self.engine.id.len() + self.user.len());
        ber::push_tlv(&mut sp, ber::OCTET_STRING, &self.engine.id);
        ber::push_int(&mut sp, ber::INTEGER, boots);
        ber::push_int(&mut sp, ber::INTEGER, time);
        ber::push_tlv(&mut sp, ber::OCTET_STRING, &self.user);
        let auth_in_sp = sp.len() + 2;
        ber::push_tlv(&mut sp, ber::OCTET_STRING, &[0u8; AUTH_LEN]);
        if self.cipher.is_some() {
            ber::push_tlv(&mut sp, ber::OCTET_STRING, &salt);
        } else {
            ber::push_tlv(&mut sp, ber::OCTET_STRING, &[]);
        }
        let mut sp_seq = Vec::with_capacity(sp.len() + 4);
        ber::push_tlv(&mut sp_seq, ber::SEQUENCE, &sp);
        let auth_in_sp = auth_in_sp + 1 + ber::len_len(sp.len());

        let mut body = Vec::with_capacity(sp_seq.len() + scratch.len() + 48);
        ber::push_int(&mut body, ber::INTEGER, 3);
        let mut global = Vec::with_capacity(24);
        ber::push_int(&mut global, ber::INTEGER, msg_id);
        ber::push_int(&mut global, ber::INTEGER, 65_507);
        ber::push_tlv(&mut global, ber::OCTET_STRING, &[self.flags]);
        ber::push_int(&mut global, ber::INTEGER, 3);
        ber::push_tlv(&mut body, ber::SEQUENCE, &global);
        body.push(ber::OCTET_STRING);
        ber::push_len(&mut body, sp_seq.len());
        let auth_in_body = body.len() + auth_in_sp;
        body.extend_from_slice(&sp_seq);
        if self.cipher.is_some() {
            ber::push_tlv(&mut body, ber::OCTET_STRING, scratch);
        } else {
            body.extend_from_slice(scratch);
        }
        out.clear();
        out.push(ber::SEQUENCE);
        ber::push_len(out, body.len());
        let auth_at = out.len() + auth_in_body;
        out.extend_from_slice(&body);
        let mut mac = self.mac.clone();
        mac.update(out);
        let tag = mac.finalize().into_bytes();
        out[auth_at..auth_at + AUTH_LEN].copy_from_slice(&tag[..AUTH_LEN]);
    }

    /// Checks a response's HMAC and decrypts its scoped PDU into `plain`.
    /// Returns the received header; the scoped PDU is in `plain`.
    pub fn open<'a>(
        &self,
        datagram: &'a [u8],
        plain: &mut Vec<u8>,
    ) -> Result<Received<'a>, V3Error> {
        let rx = parse_header(datagram)?;
        let auth_at = rx.auth_at.ok_or(V3Error::Auth)?;
        if rx.flags & 1 == 0 {
            return Err(V3Error::Auth);
        }
        plain.clear();
        plain.extend_from_slice(datagram);
        plain[auth_at..auth_at + AUTH_LEN].fill(0);
        let mut mac = self.mac.clone();
        mac.update(plain);
        let tag = mac.finalize().into_bytes();
        if tag[..AUTH_LEN] != datagram[auth_at..auth_at + AUTH_LEN] {
            return Err(V3Error::Auth);
        }
        plain.clear();
        match &self.cipher {
            Some(cipher) => {
                if rx.flags & 2 == 0
                    || rx.data.tag != ber::OCTET_STRING
                    || rx.priv_params.len() != 8
                {
                    return Err(V3Error::Privacy);
                }
                plain.extend_from_slice(rx.data.value);
                let iv = iv(rx.boots, rx.time, rx.priv_params);
                cfb_mode::Decryptor::<Aes128>::inner_iv_init(cipher.clone(), (&iv).into())
                    .decrypt(plain);
            }
            None => plain.extend_from_slice(rx.data.raw),
        }
        Ok(rx)
    }
}

fn iv(boots: i64, time: i64, salt: &[u8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&(boots as u32).to_be_bytes());
    iv[4..8].copy_from_slice(&(time as u32).to_be_bytes());
    iv[8..].copy_from_slice(&salt[..8]);
    iv
}

/// Reads an SNMPv3 message's header and security parameters.
pub fn parse_header(datagram: &[u8]) -> Result<Received<'_>, Malformed> {
    let mut r = Reader::new(datagram);
    let mut msg = r.enter(ber::SEQUENCE, "message is not a SEQUENCE")?;
    if msg.integer("version")? != 3 {
        return Err(Malformed("not an SNMPv3 message"));
    }
    let mut global = msg.enter(ber::SEQUENCE, "msgGlobalData")?;
    let msg_id = global.integer("msgID")?;
    let _max = global.integer("msgMaxSize")?;
    let flags = global.octets("msgFlags")?;
    let flags = *flags.value.first().ok_or(Malformed("msgFlags"))?;
    let _model = global.integer("msgSecurityModel")?;
    let mut spr = msg
        .enter(ber::OCTET_STRING, "msgSecurityParameters")?
        .enter(ber::SEQUENCE, "UsmSecurityParameters")?;
    let engine_id = spr.octets("msgAuthoritativeEngineID")?.value;
    let boots = spr.integer("msgAuthoritativeEngineBoots")?;
    let time = spr.integer("msgAuthoritativeEngineTime")?;
    let _user = spr.octets("msgUserName")?;
    let auth = spr.octets("msgAuthenticationParameters")?;
    let priv_params = spr.octets("msgPrivacyParameters")?.value;
    let data = msg.tlv()?;
    Ok(Received {
        msg_id,
        flags,
        engine_id,
        boots,
        time,
        auth_at: (auth.value.len() == AUTH_LEN).then_some(auth.start),
        priv_params,
        data,
    })
}

/// The discovery request: noAuthNoPriv, reportable, empty user, an empty GET.
pub fn discovery_request(msg_id: i64) -> Vec<u8> {
    let mut pdu_body = Vec::new();
    ber::push_int(&mut pdu_body, ber::INTEGER, msg_id);
    ber::push_int(&mut pdu_body, ber::INTEGER, 0);
    ber::push_int(&mut pdu_body, ber::INTEGER, 0);
    ber::push_tlv(&mut pdu_body, ber::SEQUENCE, &[]);
    let mut scoped = Vec::new();
    ber::push_tlv(&mut scoped, ber::OCTET_STRING, &[]);
    ber::push_tlv(&mut scoped, ber::OCTET_STRING, &[]);
    ber::push_tlv(&mut scoped, ber::GET, &pdu_body);
    let mut sp = Vec::new();
    ber::push_tlv(&mut sp, ber::OCTET_STRING, &[]);
    ber::push_int(&mut sp, ber::INTEGER, 0);
    ber::push_int(&mut sp, ber::INTEGER, 0);
    ber::push_tlv(&mut sp, ber::OCTET_STRING, &[]);
    ber::push_tlv(&mut sp, ber::OCTET_STRING, &[]);
    ber::push_tlv(&mut sp, ber::OCTET_STRING, &[]);
    let mut sp_seq = Vec::new();
    ber::push_tlv(&mut sp_seq, ber::SEQUENCE, &sp);
    let mut global = Vec::new();
    ber::push_int(&mut global, ber::INTEGER, msg_id);
    ber::push_int(&mut global, ber::INTEGER, 65_507);
    ber::push_tlv(&mut global, ber::OCTET_STRING, &[0x04]);
    ber::push_int(&mut global, ber::INTEGER, 3);
    let mut body = Vec::new();
    ber::push_int(&mut body, ber::INTEGER, 3);
    ber::push_tlv(&mut body, ber::SEQUENCE, &global);
    ber::push_tlv(&mut body, ber::OCTET_STRING, &sp_seq);
    ber::push_tlv(&mut body, ber::SEQUENCE, &scoped);
    let mut out = Vec::new();
    ber::push_tlv(&mut out, ber::SEQUENCE, &body);
    out
}

/// The engine a discovery Report names.
pub fn discovery_answer(datagram: &[u8]) -> Result<Engine, Malformed> {
    let rx = parse_header(datagram)?;
    if rx.engine_id.is_empty() {
        return Err(Malformed("the discovery answer names no engine"));
    }
    Ok(Engine {
        id: rx.engine_id.to_vec(),
        boots: rx.boots,
        time: rx.time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 3414 A.3.2: "maplesyrup" localized to engine 00…02 with SHA.
    #[test]
    fn rfc3414_sha_key_localization() {
        let ku = password_to_key(b"maplesyrup");
        assert_eq!(ber::hex(&ku), "9fb5cc0381497b3793528939ff788d5d79145211");
        let kul = localize(&ku, &unhex("000000000000000000000002"));
        assert_eq!(ber::hex(&kul), "6695febc9288e36282235fc7151f128497b38f3f");
    }

    /// A message we encode is accepted by our own `open` with the same
    /// keys (HMAC over the zeroed field, AES-CFB both ways), and a flipped
    /// byte is refused.
    #[test]
    fn encode_then_open_round_trips_and_detects_tampering() {
        let engine = Engine {
            id: unhex("80001f8804616263"),
            boots: 3,
            time: 1000,
        };
        let mut s = Session::new(engine, "ops", "auth-secret", Some("priv-secret"), "").unwrap();
        let mut pdu_body = Vec::new();
        ber::push_int(&mut pdu_body, ber::INTEGER, 77);
        ber::push_int(&mut pdu_body, ber::INTEGER, 0);
        ber::push_int(&mut pdu_body, ber::INTEGER, 0);
        ber::push_tlv(&mut pdu_body, ber::SEQUENCE, &[]);
        let mut pdu = Vec::new();
        ber::push_tlv(&mut pdu, ber::GET, &pdu_body);
        let (mut out, mut scratch, mut plain) = (Vec::new(), Vec::new(), Vec::new());
        s.encode(77, &pdu, 5, &mut out, &mut scratch);
        let rx = s.open(&out, &mut plain).unwrap();
        assert_eq!(rx.msg_id, 77);
        assert_eq!(rx.time, 1005);
        let mut r = Reader::new(&plain);
        let mut scoped = r.enter(ber::SEQUENCE, "scoped").unwrap();
        assert_eq!(scoped.octets("ceid").unwrap().value, s.engine.id.as_slice());
        assert_eq!(scoped.octets("cname").unwrap().value, b"");
        assert_eq!(scoped.tlv().unwrap().raw, pdu.as_slice());
        let last = out.len() - 1;
        out[last] ^= 1;
        assert_eq!(s.open(&out, &mut plain).err(), Some(V3Error::Auth));
    }
}
