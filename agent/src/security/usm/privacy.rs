//! Privacy: CBC-DES (RFC 3414 §8), 3DES-EDE in CBC mode
//! (draft-reeder-snmpv3-usm-3desede §5), and AES-128/192/256 in CFB-128 mode
//! (RFC 3826; 192/256 per draft-blumenthal-aes-usm — the key extension is
//! the only difference between the plain and the `C` variants and happens in
//! [`super::keys`]).
//!
//! msgPrivacyParameters is always an 8-byte salt. DES/3DES: snmpEngineBoots ‖
//! a local 32-bit counter, IV = pre-IV XOR salt. AES: a local 64-bit counter,
//! IV = snmpEngineBoots ‖ snmpEngineTime ‖ salt. Key schedules are built once
//! per user; each message clones them.

use std::fmt;

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use aes::{Aes128, Aes192, Aes256};
use des::{Des, TdesEde3};

use super::{KeyError, PrivProtocol};

/// A localized privacy key, ready to use.
#[derive(Clone)]
pub enum PrivKey {
    /// CBC-DES.
    Des {
        /// The key schedule.
        cipher: Des,
        /// The pre-IV: the localized key's second half.
        pre_iv: [u8; 8],
    },
    /// 3DES-EDE in CBC mode.
    TripleDes {
        /// The key schedule.
        cipher: TdesEde3,
        /// The pre-IV: the localized key's last 8 bytes.
        pre_iv: [u8; 8],
    },
    /// AES-128 in CFB mode, and the protocol it was made for.
    Aes128(Aes128, PrivProtocol),
    /// AES-192 in CFB mode, and the protocol (Blumenthal or Reeder).
    Aes192(Aes192, PrivProtocol),
    /// AES-256 in CFB mode, and the protocol (Blumenthal or Reeder).
    Aes256(Aes256, PrivProtocol),
}

impl fmt::Debug for PrivKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivKey({:?}, ***)", self.protocol())
    }
}

/// The encrypted data cannot be decrypted: wrong msgPrivacyParameters
/// length, or not a whole number of cipher blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecryptError;

fn pre_iv(key: &[u8], at: usize) -> [u8; 8] {
    let mut iv = [0u8; 8];
    iv.copy_from_slice(&key[at..at + 8]);
    iv
}

fn xor_iv(pre_iv: &[u8; 8], salt: &[u8]) -> [u8; 8] {
    let mut iv = *pre_iv;
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

/// DES/3DES: pads `buf[from..]` with zeros to whole blocks and returns
/// (msgPrivacyParameters, IV).
fn cbc_params(
    pre_iv: &[u8; 8],
    boots: u32,
    salt: u64,
    buf: &mut Vec<u8>,
    from: usize,
) -> ([u8; 8], [u8; 8]) {
    let mut params = [0u8; 8];
    params[..4].copy_from_slice(&boots.to_be_bytes());
    params[4..].copy_from_slice(&(salt as u32).to_be_bytes());
    let pad = (8 - (buf.len() - from) % 8) % 8;
    buf.resize(buf.len() + pad, 0);
    (params, xor_iv(pre_iv, &params))
}

fn aes_iv(boots: u32, time: u32, salt: &[u8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&boots.to_be_bytes());
    iv[4..8].copy_from_slice(&time.to_be_bytes());
    iv[8..].copy_from_slice(salt);
    iv
}

fn cbc_encrypt<C>(cipher: &C, iv: &[u8; 8], data: &mut [u8])
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockEncrypt + Clone,
    C: aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U8>,
{
    let len = data.len();
    let enc = cbc::Encryptor::<C>::inner_iv_init(cipher.clone(), iv.into());
    // The caller padded `data` to whole blocks, so this cannot fail.
    let _ = enc.encrypt_padded_mut::<NoPadding>(data, len);
}

fn cbc_decrypt<C>(cipher: &C, iv: &[u8; 8], data: &mut [u8]) -> Result<(), DecryptError>
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockDecrypt + Clone,
    C: aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U8>,
{
    if !data.len().is_multiple_of(8) {
        return Err(DecryptError);
    }
    let dec = cbc::Decryptor::<C>::inner_iv_init(cipher.clone(), iv.into());
    dec.decrypt_padded_mut::<NoPadding>(data)
        .map(|_| ())
        .map_err(|_| DecryptError)
}

fn cfb_encrypt<C>(cipher: &C, iv: &[u8; 16], data: &mut [u8])
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockEncrypt + Clone,
    C: aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
{
    cfb_mode::BufEncryptor::<C>::inner_iv_init(cipher.clone(), iv.into()).encrypt(data);
}

fn cfb_decrypt<C>(cipher: &C, iv: &[u8; 16], data: &mut [u8])
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockEncrypt + Clone,
    C: aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
{
    cfb_mode::BufDecryptor::<C>::inner_iv_init(cipher.clone(), iv.into()).decrypt(data);
}

impl PrivKey {
    /// `key` is the localized (and extended) key of exactly
    /// `PrivProtocol::key_len` bytes.
    pub fn new(protocol: PrivProtocol, key: &[u8]) -> Result<PrivKey, KeyError> {
        let want = protocol.key_len();
        let bad = || KeyError::Length {
            protocol: "privacy",
            want,
            got: key.len(),
        };
        if key.len() != want {
            return Err(bad());
        }
        Ok(match protocol {
            PrivProtocol::Des => PrivKey::Des {
                cipher: Des::new_from_slice(&key[..8]).map_err(|_| bad())?,
                pre_iv: pre_iv(key, 8),
            },
            PrivProtocol::TripleDes => PrivKey::TripleDes {
                cipher: TdesEde3::new_from_slice(&key[..24]).map_err(|_| bad())?,
                pre_iv: pre_iv(key, 24),
            },
            PrivProtocol::Aes128 => {
                PrivKey::Aes128(Aes128::new_from_slice(key).map_err(|_| bad())?, protocol)
            }
            PrivProtocol::Aes192 | PrivProtocol::Aes192C => {
                PrivKey::Aes192(Aes192::new_from_slice(key).map_err(|_| bad())?, protocol)
            }
            PrivProtocol::Aes256 | PrivProtocol::Aes256C => {
                PrivKey::Aes256(Aes256::new_from_slice(key).map_err(|_| bad())?, protocol)
            }
        })
    }

    pub(crate) fn protocol(&self) -> PrivProtocol {
        match self {
            PrivKey::Des { .. } => PrivProtocol::Des,
            PrivKey::TripleDes { .. } => PrivProtocol::TripleDes,
            PrivKey::Aes128(_, p) | PrivKey::Aes192(_, p) | PrivKey::Aes256(_, p) => *p,
        }
    }

    /// Whether this is a block (CBC) cipher: the plaintext is padded, so a
    /// decrypted scopedPDU may be followed by up to 7 bytes of padding.
    pub(crate) fn is_cbc(&self) -> bool {
        matches!(self, PrivKey::Des { .. } | PrivKey::TripleDes { .. })
    }

    /// Encrypts `buf[from..]` in place (CBC ciphers first pad `buf` with
    /// zeros to whole blocks) with the sender's `boots`/`time` and a fresh
    /// `salt`, and returns msgPrivacyParameters.
    pub(crate) fn encrypt(
        &self,
        buf: &mut Vec<u8>,
        from: usize,
        boots: u32,
        time: u32,
        salt: u64,
    ) -> [u8; 8] {
        let from = from.min(buf.len());
        match self {
            PrivKey::Des { cipher, pre_iv } => {
                let (params, iv) = cbc_params(pre_iv, boots, salt, buf, from);
                cbc_encrypt(cipher, &iv, &mut buf[from..]);
                params
            }
            PrivKey::TripleDes { cipher, pre_iv } => {
                let (params, iv) = cbc_params(pre_iv, boots, salt, buf, from);
                cbc_encrypt(cipher, &iv, &mut buf[from..]);
                params
            }
            PrivKey::Aes128(c, _) => {
                let params = salt.to_be_bytes();
                cfb_encrypt(c, &aes_iv(boots, time, &params), &mut buf[from..]);
                params
            }
            PrivKey::Aes192(c, _) => {
                let params = salt.to_be_bytes();
                cfb_encrypt(c, &aes_iv(boots, time, &params), &mut buf[from..]);
                params
            }
            PrivKey::Aes256(c, _) => {
                let params = salt.to_be_bytes();
                cfb_encrypt(c, &aes_iv(boots, time, &params), &mut buf[from..]);
                params
            }
        }
    }

    /// Decrypts `data` in place with the message's msgPrivacyParameters and
    /// msgAuthoritativeEngineBoots/Time.
    pub fn decrypt(
        &self,
        data: &mut [u8],
        params: &[u8],
        boots: u32,
        time: u32,
    ) -> Result<(), DecryptError> {
        if params.len() != 8 {
            return Err(DecryptError);
        }
        match self {
            PrivKey::Des { cipher, pre_iv } => cbc_decrypt(cipher, &xor_iv(pre_iv, params), data),
            PrivKey::TripleDes { cipher, pre_iv } => {
                cbc_decrypt(cipher, &xor_iv(pre_iv, params), data)
            }
            PrivKey::Aes128(c, _) => {
                cfb_decrypt(c, &aes_iv(boots, time, params), data);
                Ok(())
            }
            PrivKey::Aes192(c, _) => {
                cfb_decrypt(c, &aes_iv(boots, time, params), data);
                Ok(())
            }
            PrivKey::Aes256(c, _) => {
                cfb_decrypt(c, &aes_iv(boots, time, params), data);
                Ok(())
            }
        }
    }
}

impl crate::wire::v3::Encrypt for PrivKey {
    #[inline]
    fn encrypt(&self, buf: &mut Vec<u8>, from: usize, boots: u32, time: u32, salt: u64) -> [u8; 8] {
        PrivKey::encrypt(self, buf, from, boots, time, salt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(protocol: PrivProtocol) {
        let key: Vec<u8> = (0..protocol.key_len() as u8).collect();
        let k = PrivKey::new(protocol, &key).unwrap();
        for len in [0usize, 1, 7, 8, 9, 16, 17, 100] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            let mut buf = vec![0xee; 3];
            buf.extend_from_slice(&plain);
            let params = k.encrypt(&mut buf, 3, 7, 1234, 0x0102_0304_0506_0708);
            if k.is_cbc() {
                assert_eq!((buf.len() - 3) % 8, 0);
                assert_eq!(&params[..4], &7u32.to_be_bytes());
            } else {
                assert_eq!(buf.len() - 3, len);
                assert_eq!(params, 0x0102_0304_0506_0708u64.to_be_bytes());
            }
            if len >= 8 {
                assert_ne!(&buf[3..3 + len], &plain[..], "{protocol:?} encrypts");
            }
            k.decrypt(&mut buf[3..], &params, 7, 1234).unwrap();
            assert_eq!(&buf[3..3 + len], &plain[..], "{protocol:?} len {len}");
        }
    }

    #[test]
    fn every_protocol_round_trips() {
        for p in [
            PrivProtocol::Des,
            PrivProtocol::TripleDes,
            PrivProtocol::Aes128,
            PrivProtocol::Aes192,
            PrivProtocol::Aes256,
            PrivProtocol::Aes192C,
            PrivProtocol::Aes256C,
        ] {
            round_trip(p);
        }
    }

    #[test]
    fn bad_input_is_a_decryption_error_not_a_panic() {
        let des = PrivKey::new(PrivProtocol::Des, &[1; 16]).unwrap();
        assert_eq!(des.decrypt(&mut [0; 12], &[0; 8], 0, 0), Err(DecryptError));
        assert_eq!(des.decrypt(&mut [0; 16], &[0; 7], 0, 0), Err(DecryptError));
        let aes = PrivKey::new(PrivProtocol::Aes128, &[1; 16]).unwrap();
        assert_eq!(aes.decrypt(&mut [0; 5], &[], 0, 0), Err(DecryptError));
        assert!(aes.decrypt(&mut [], &[0; 8], 0, 0).is_ok());
        assert!(PrivKey::new(PrivProtocol::Aes256, &[1; 24]).is_err());
    }
}
