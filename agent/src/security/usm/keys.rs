//! USM keys: password → Ku (RFC 3414 §A.2, RFC 7860 §4.1), computed once per
//! (password, hash) with a process-wide cache, and localized per engine ID
//! (Kul = H(Ku ‖ engineID ‖ Ku)). Privacy keys that need more bits than the
//! hash gives are extended either per Blumenthal (draft-blumenthal-aes-usm-04
//! §3.1.2.1, what net-snmp calls AES-192/AES-256) or per Reeder
//! (draft-reeder-snmpv3-usm-3desede-00 §2.1, used by 3DES and the Cisco
//! `AES192C`/`AES256C` variants).
//!
//! Ku hashes one MiB of repeated password: about a millisecond. The cache
//! makes a user shared by 1000 agents cost one Ku and 1000 localizations
//! (one short hash each), except with the Reeder extension, whose second
//! half is itself a password-to-key run on the localized key and therefore
//! differs per engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::{AuthProtocol, KeyError, PrivProtocol};

/// The length of the repeated-password stream hashed into Ku.
const KU_STREAM: usize = 1 << 20;

/// H(parts…) with the protocol's hash.
pub(crate) fn hash(proto: AuthProtocol, parts: &[&[u8]]) -> Vec<u8> {
    fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut d = D::new();
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    }
    match proto {
        AuthProtocol::Md5 => run::<Md5>(parts),
        AuthProtocol::Sha1 => run::<Sha1>(parts),
        AuthProtocol::Sha224 => run::<Sha224>(parts),
        AuthProtocol::Sha256 => run::<Sha256>(parts),
        AuthProtocol::Sha384 => run::<Sha384>(parts),
        AuthProtocol::Sha512 => run::<Sha512>(parts),
    }
}

/// Ku: the hash of the password repeated over 1 MiB, uncached. An empty
/// password has no key.
pub(crate) fn password_to_ku(proto: AuthProtocol, password: &[u8]) -> Result<Vec<u8>, KeyError> {
    if password.is_empty() {
        return Err(KeyError::EmptyPassword);
    }
    fn run<D: Digest>(password: &[u8]) -> Vec<u8> {
        // Whole repetitions of the password, about 4 KiB: fed back to back
        // they continue the stream exactly.
        let reps = 4096usize.div_ceil(password.len());
        let chunk = password.repeat(reps);
        let mut d = D::new();
        let mut left = KU_STREAM;
        while left >= chunk.len() {
            d.update(&chunk);
            left -= chunk.len();
        }
        d.update(&chunk[..left]);
        d.finalize().to_vec()
    }
    Ok(match proto {
        AuthProtocol::Md5 => run::<Md5>(password),
        AuthProtocol::Sha1 => run::<Sha1>(password),
        AuthProtocol::Sha224 => run::<Sha224>(password),
        AuthProtocol::Sha256 => run::<Sha256>(password),
        AuthProtocol::Sha384 => run::<Sha384>(password),
        AuthProtocol::Sha512 => run::<Sha512>(password),
    })
}

type KuCache = Mutex<HashMap<(AuthProtocol, [u8; 32]), Arc<[u8]>>>;

/// Ku, computed once per (password, hash) in this process. The cache is
/// keyed by a SHA-256 of the password, so the password itself is not kept.
pub(crate) fn ku(proto: AuthProtocol, password: &[u8]) -> Result<Arc<[u8]>, KeyError> {
    static CACHE: OnceLock<KuCache> = OnceLock::new();
    let id: [u8; 32] = Sha256::digest(password).into();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(k) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&(proto, id))
    {
        return Ok(k.clone());
    }
    // Computed outside the lock: two threads may race to compute the same
    // key, which costs a millisecond, never a wrong answer.
    let k: Arc<[u8]> = password_to_ku(proto, password)?.into();
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((proto, id), k.clone());
    Ok(k)
}

/// Kul = H(Ku ‖ engineID ‖ Ku) (RFC 3414 §2.6).
pub(crate) fn localize(proto: AuthProtocol, ku: &[u8], engine_id: &[u8]) -> Vec<u8> {
    hash(proto, &[ku, engine_id, ku])
}

/// Blumenthal: Kul ‖ H(Kul) ‖ H(Kul ‖ H(Kul)) … cut to `len`.
pub(crate) fn extend_blumenthal(proto: AuthProtocol, mut kul: Vec<u8>, len: usize) -> Vec<u8> {
    while kul.len() < len {
        let more = hash(proto, &[&kul]);
        kul.extend_from_slice(&more);
    }
    kul.truncate(len);
    kul
}

/// Reeder: Kul ‖ localize(Ku(Kul)) … (the key so far used as a password),
/// cut to `len`.
pub(crate) fn extend_reeder(
    proto: AuthProtocol,
    mut kul: Vec<u8>,
    engine_id: &[u8],
    len: usize,
) -> Result<Vec<u8>, KeyError> {
    while kul.len() < len {
        let ku = password_to_ku(proto, &kul)?;
        let more = localize(proto, &ku, engine_id);
        kul.extend_from_slice(&more);
    }
    kul.truncate(len);
    Ok(kul)
}

/// The localized authentication key of `password` for `engine_id`.
pub fn localized_auth_key(
    proto: AuthProtocol,
    password: &[u8],
    engine_id: &[u8],
) -> Result<Vec<u8>, KeyError> {
    Ok(localize(proto, &ku(proto, password)?, engine_id))
}

/// The localized privacy key of `password` for `engine_id`, hashed with the
/// user's authentication protocol and extended to exactly
/// `PrivProtocol::key_len` bytes.
pub fn localized_priv_key(
    auth: AuthProtocol,
    privacy: PrivProtocol,
    password: &[u8],
    engine_id: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let kul = localize(auth, &ku(auth, password)?, engine_id);
    let len = privacy.key_len();
    match privacy {
        PrivProtocol::Des | PrivProtocol::Aes128 => {
            // Every hash is at least 16 bytes long.
            let mut k = kul;
            k.truncate(len);
            Ok(k)
        }
        PrivProtocol::Aes192 | PrivProtocol::Aes256 => Ok(extend_blumenthal(auth, kul, len)),
        PrivProtocol::TripleDes | PrivProtocol::Aes192C | PrivProtocol::Aes256C => {
            extend_reeder(auth, kul, engine_id, len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    /// RFC 3414 §A.3: password "maplesyrup", engine ID 00…02.
    const ENGINE: &str = "000000000000000000000002";

    #[test]
    fn rfc3414_a3_1_md5() {
        let ku = password_to_ku(AuthProtocol::Md5, b"maplesyrup").unwrap();
        assert_eq!(ku, h("9f af 32 83 88 4e 92 83 4e bc 98 47 d8 ed d9 63"));
        let kul = localize(AuthProtocol::Md5, &ku, &h(ENGINE));
        assert_eq!(kul, h("52 6f 5e ed 9f cc e2 6f 89 64 c2 93 07 87 d8 2b"));
    }

    #[test]
    fn rfc3414_a3_2_sha() {
        let ku = password_to_ku(AuthProtocol::Sha1, b"maplesyrup").unwrap();
        assert_eq!(
            ku,
            h("9f b5 cc 03 81 49 7b 37 93 52 89 39 ff 78 8d 5d 79 14 52 11")
        );
        let kul = localize(AuthProtocol::Sha1, &ku, &h(ENGINE));
        assert_eq!(
            kul,
            h("66 95 fe bc 92 88 e3 62 82 23 5f c7 15 1f 12 84 97 b3 8f 3f")
        );
    }

    /// RFC 7860 gives no key vectors; these ("maplesyrup", the RFC 3414
    /// engine ID) agree with pysnmp (`testdata/usm_vectors.txt`) and the
    /// SHA-2 users interoperate with net-snmp 5.9 (tests/it/snmp_v3.rs).
    #[test]
    fn sha2_localized_keys() {
        let e = h(ENGINE);
        let cases = [
            (
                AuthProtocol::Sha224,
                "0bd8827c6e29f8065e08e09237f177e410f69b90e1782be682075674",
            ),
            (
                AuthProtocol::Sha256,
                "8982e0e549e866db361a6b625d84cccc11162d453ee8ce3a6445c2d6776f0f8b",
            ),
            (
                AuthProtocol::Sha384,
                "3b298f16164a11184279d5432bf169e2d2a48307de02b3d3f7e2b4f36eb6f0455a53689a3937eea07319a633d2ccba78",
            ),
            (
                AuthProtocol::Sha512,
                "22a5a36cedfcc085807a128d7bc6c2382167ad6c0dbc5fdff856740f3d84c099ad1ea87a8db096714d9788bd544047c9021e4229ce27e4c0a69250adfcffbb0b",
            ),
        ];
        for (proto, want) in cases {
            let k = localized_auth_key(proto, b"maplesyrup", &e).unwrap();
            assert_eq!(hex::encode(&k), want, "{proto:?}");
            assert_eq!(k.len(), proto.digest_len());
        }
    }

    #[test]
    fn ku_is_cached_and_empty_passwords_have_no_key() {
        let a = ku(AuthProtocol::Sha1, b"cached-password").unwrap();
        let b = ku(AuthProtocol::Sha1, b"cached-password").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(
            password_to_ku(AuthProtocol::Md5, b""),
            Err(KeyError::EmptyPassword)
        );
    }

    #[test]
    fn long_and_odd_length_passwords_stream_correctly() {
        // Reference: the naive byte-by-byte stream.
        for pw in [&b"x"[..], b"abc", &[7u8; 5000][..]] {
            let stream: Vec<u8> = pw.iter().copied().cycle().take(KU_STREAM).collect();
            assert_eq!(
                password_to_ku(AuthProtocol::Md5, pw).unwrap(),
                hash(AuthProtocol::Md5, &[&stream])
            );
        }
    }
}
