//! Message authentication: HMAC-MD5-96, HMAC-SHA-96 (RFC 3414 §6, §7) and
//! HMAC-SHA-224/256/384/512 truncated to 128/192/256/384 bits (RFC 7860).
//!
//! The HMAC of a message is computed over the message as received or as
//! encoded, with msgAuthenticationParameters taken as zeros: [`AuthKey::mac`]
//! feeds the bytes around that field and zeros in its place, which is the
//! same as zeroing it in place, without copying the datagram. The inner and
//! outer pads are hashed once per key ([`hmac`] keeps those states) and each
//! message clones them.

use std::fmt;

use hmac::{Hmac, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Sha224, Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

use super::{AuthProtocol, KeyError};

/// Zeros standing in for the MAC field (the longest MAC is 48 bytes).
const ZEROS: [u8; 64] = [0; 64];

/// A localized authentication key with its HMAC pads precomputed.
#[derive(Clone)]
pub enum AuthKey {
    /// HMAC-MD5-96.
    Md5(Hmac<Md5>),
    /// HMAC-SHA-96.
    Sha1(Hmac<Sha1>),
    /// HMAC-SHA-224 (RFC 7860).
    Sha224(Hmac<Sha224>),
    /// HMAC-SHA-256 (RFC 7860).
    Sha256(Hmac<Sha256>),
    /// HMAC-SHA-384 (RFC 7860).
    Sha384(Hmac<Sha384>),
    /// HMAC-SHA-512 (RFC 7860).
    Sha512(Hmac<Sha512>),
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey({:?}, ***)", self.protocol())
    }
}

/// A computed MAC, truncated to the protocol's length.
#[derive(Clone, Copy)]
pub(crate) struct Digest {
    bytes: [u8; 64],
    len: usize,
}

impl Digest {
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn hmac_with_hole<M: Mac + Clone>(base: &M, msg: &[u8], at: usize, len: usize) -> Digest {
    let mut m = base.clone();
    m.update(&msg[..at]);
    m.update(&ZEROS[..len]);
    m.update(&msg[at + len..]);
    let full = m.finalize().into_bytes();
    let mut bytes = [0u8; 64];
    bytes[..len].copy_from_slice(&full[..len]);
    Digest { bytes, len }
}

impl AuthKey {
    /// `key` is the localized key: exactly as long as the hash output.
    pub fn new(protocol: AuthProtocol, key: &[u8]) -> Result<AuthKey, KeyError> {
        if key.len() != protocol.digest_len() {
            return Err(KeyError::Length {
                protocol: "authentication",
                want: protocol.digest_len(),
                got: key.len(),
            });
        }
        // Any key length is valid for HMAC, so these cannot fail.
        let bad = |_| KeyError::Length {
            protocol: "authentication",
            want: protocol.digest_len(),
            got: key.len(),
        };
        Ok(match protocol {
            AuthProtocol::Md5 => AuthKey::Md5(Hmac::new_from_slice(key).map_err(bad)?),
            AuthProtocol::Sha1 => AuthKey::Sha1(Hmac::new_from_slice(key).map_err(bad)?),
            AuthProtocol::Sha224 => AuthKey::Sha224(Hmac::new_from_slice(key).map_err(bad)?),
            AuthProtocol::Sha256 => AuthKey::Sha256(Hmac::new_from_slice(key).map_err(bad)?),
            AuthProtocol::Sha384 => AuthKey::Sha384(Hmac::new_from_slice(key).map_err(bad)?),
            AuthProtocol::Sha512 => AuthKey::Sha512(Hmac::new_from_slice(key).map_err(bad)?),
        })
    }

    pub(crate) fn protocol(&self) -> AuthProtocol {
        match self {
            AuthKey::Md5(_) => AuthProtocol::Md5,
            AuthKey::Sha1(_) => AuthProtocol::Sha1,
            AuthKey::Sha224(_) => AuthProtocol::Sha224,
            AuthKey::Sha256(_) => AuthProtocol::Sha256,
            AuthKey::Sha384(_) => AuthProtocol::Sha384,
            AuthKey::Sha512(_) => AuthProtocol::Sha512,
        }
    }

    /// Length of msgAuthenticationParameters under this key.
    pub fn mac_len(&self) -> usize {
        self.protocol().mac_len()
    }

    /// The MAC of `msg` with its `mac_len()` bytes at `at` taken as zeros.
    /// `None` when the field does not fit in `msg`.
    pub(crate) fn mac(&self, msg: &[u8], at: usize) -> Option<Digest> {
        let len = self.mac_len();
        if at.checked_add(len)? > msg.len() {
            return None;
        }
        Some(match self {
            AuthKey::Md5(k) => hmac_with_hole(k, msg, at, len),
            AuthKey::Sha1(k) => hmac_with_hole(k, msg, at, len),
            AuthKey::Sha224(k) => hmac_with_hole(k, msg, at, len),
            AuthKey::Sha256(k) => hmac_with_hole(k, msg, at, len),
            AuthKey::Sha384(k) => hmac_with_hole(k, msg, at, len),
            AuthKey::Sha512(k) => hmac_with_hole(k, msg, at, len),
        })
    }

    /// Whether the MAC found at `at` in the received `msg` is right
    /// (compared in constant time).
    pub fn verify(&self, msg: &[u8], at: usize) -> bool {
        let Some(want) = self.mac(msg, at) else {
            return false;
        };
        let got = &msg[at..at + want.len];
        bool::from(want.as_slice().ct_eq(got))
    }

    /// Computes the MAC of `msg` (whose field at `at` holds zeros or
    /// anything) and writes it there.
    pub(crate) fn sign(&self, msg: &mut [u8], at: usize) -> bool {
        let Some(d) = self.mac(msg, at) else {
            return false;
        };
        msg[at..at + d.len].copy_from_slice(d.as_slice());
        true
    }
}

impl crate::wire::v3::Authenticate for AuthKey {
    #[inline]
    fn mac_len(&self) -> usize {
        AuthKey::mac_len(self)
    }

    #[inline]
    fn sign(&self, msg: &mut [u8], at: usize) -> bool {
        AuthKey::sign(self, msg, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hole_equals_zeroing_in_place() {
        let key = [0x11u8; 20];
        let k = AuthKey::new(AuthProtocol::Sha1, &key).unwrap();
        let mut msg: Vec<u8> = (0..100u8).collect();
        let d = k.mac(&msg, 40).unwrap();
        msg[40..52].fill(0);
        let mut plain = Hmac::<Sha1>::new_from_slice(&key).unwrap();
        plain.update(&msg);
        assert_eq!(d.as_slice(), &plain.finalize().into_bytes()[..12]);
        assert!(k.sign(&mut msg, 40));
        assert!(k.verify(&msg, 40));
        msg[45] ^= 1;
        assert!(!k.verify(&msg, 40));
        assert!(!k.verify(&msg, 95), "field past the end");
        assert!(k.mac(&msg, usize::MAX).is_none());
    }

    #[test]
    fn truncations_follow_rfc_7860() {
        for (p, len) in [
            (AuthProtocol::Md5, 12),
            (AuthProtocol::Sha1, 12),
            (AuthProtocol::Sha224, 16),
            (AuthProtocol::Sha256, 24),
            (AuthProtocol::Sha384, 32),
            (AuthProtocol::Sha512, 48),
        ] {
            let k = AuthKey::new(p, &vec![1; p.digest_len()]).unwrap();
            assert_eq!(k.mac(&[0; 80], 10).unwrap().as_slice().len(), len);
            assert!(AuthKey::new(p, &vec![1; p.digest_len() + 1]).is_err());
        }
    }

    #[test]
    fn rfc_2202_hmac_md5_and_sha1_vectors() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?"
        // (keys of other lengths than the digest are refused by AuthKey, so
        // the raw HMAC is checked, then the truncation).
        let data = b"what do ya want for nothing?";
        let mut m = Hmac::<Md5>::new_from_slice(b"Jefe").unwrap();
        m.update(data);
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        let mut s = Hmac::<Sha1>::new_from_slice(b"Jefe").unwrap();
        s.update(data);
        assert_eq!(
            hex::encode(s.finalize().into_bytes()),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }
}
