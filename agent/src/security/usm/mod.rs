//! The User-based Security Model (RFC 3414, RFC 7860, RFC 3826 and the
//! 3DES/AES-192/256 drafts): protocols, keys, message authentication and
//! privacy. Pure functions over bytes; message processing lives in
//! [`crate::security::v3`].
//!
//! Depends only on `crate::wire::v3`, whose key traits its keys implement.

pub(crate) mod auth;
pub mod keys;
pub(crate) mod privacy;
#[cfg(test)]
mod vectors;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use auth::AuthKey;
pub use privacy::{DecryptError, PrivKey};

/// An authentication protocol: HMAC-MD5-96, HMAC-SHA-96 (RFC 3414) and the
/// HMAC-SHA-2 family of RFC 7860.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AuthProtocol {
    /// HMAC-MD5-96 (usmHMACMD5AuthProtocol).
    Md5,
    /// HMAC-SHA-96 (usmHMACSHAAuthProtocol).
    Sha1,
    /// HMAC-SHA-224 truncated to 128 bits (usmHMAC128SHA224AuthProtocol).
    Sha224,
    /// HMAC-SHA-256 truncated to 192 bits (usmHMAC192SHA256AuthProtocol).
    Sha256,
    /// HMAC-SHA-384 truncated to 256 bits (usmHMAC256SHA384AuthProtocol).
    Sha384,
    /// HMAC-SHA-512 truncated to 384 bits (usmHMAC384SHA512AuthProtocol).
    Sha512,
}

impl AuthProtocol {
    /// Length of the hash output, which is also the key length.
    pub(crate) fn digest_len(self) -> usize {
        match self {
            AuthProtocol::Md5 => 16,
            AuthProtocol::Sha1 => 20,
            AuthProtocol::Sha224 => 28,
            AuthProtocol::Sha256 => 32,
            AuthProtocol::Sha384 => 48,
            AuthProtocol::Sha512 => 64,
        }
    }

    /// Length of msgAuthenticationParameters: the truncated HMAC.
    pub(crate) fn mac_len(self) -> usize {
        match self {
            AuthProtocol::Md5 | AuthProtocol::Sha1 => 12,
            AuthProtocol::Sha224 => 16,
            AuthProtocol::Sha256 => 24,
            AuthProtocol::Sha384 => 32,
            AuthProtocol::Sha512 => 48,
        }
    }
}

/// A privacy protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PrivProtocol {
    /// CBC-DES (RFC 3414 §8).
    Des,
    /// 3DES-EDE in CBC mode (draft-reeder-snmpv3-usm-3desede).
    TripleDes,
    /// AES-128 in CFB mode (RFC 3826).
    Aes128,
    /// AES-192/256 CFB with the Blumenthal key extension (net-snmp's
    /// AES-192/AES-256).
    Aes192,
    /// AES-256 in CFB mode, Blumenthal key extension.
    Aes256,
    /// AES-192/256 CFB with the Reeder key extension (Cisco's, net-snmp's
    /// AES-192-C/AES-256-C).
    Aes192C,
    /// AES-256 in CFB mode, Reeder key extension.
    Aes256C,
}

impl PrivProtocol {
    /// Length of the localized privacy key this protocol uses (DES and 3DES
    /// include their pre-IV).
    pub(crate) fn key_len(self) -> usize {
        match self {
            PrivProtocol::Des | PrivProtocol::Aes128 => 16,
            PrivProtocol::Aes192 | PrivProtocol::Aes192C => 24,
            PrivProtocol::TripleDes | PrivProtocol::Aes256 | PrivProtocol::Aes256C => 32,
        }
    }
}

/// The security level of a message or the least one a user must use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub enum SecurityLevel {
    /// Neither authenticated nor encrypted.
    #[default]
    NoAuthNoPriv,
    /// Authenticated, not encrypted.
    AuthNoPriv,
    /// Authenticated and encrypted.
    AuthPriv,
}

impl SecurityLevel {
    /// The authFlag/privFlag bits of msgFlags.
    pub(crate) fn flags(self) -> u8 {
        match self {
            SecurityLevel::NoAuthNoPriv => 0,
            SecurityLevel::AuthNoPriv => 1,
            SecurityLevel::AuthPriv => 3,
        }
    }
}

/// Why a key could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A password to localize is empty.
    #[error("empty password")]
    EmptyPassword,
    /// A localized key has the wrong length for its protocol.
    #[error("{protocol} key must be {want} bytes, not {got}")]
    Length {
        /// The protocol's name.
        protocol: &'static str,
        /// The length the protocol needs.
        want: usize,
        /// The length given.
        got: usize,
    },
    /// A privacy key without an authentication key (USM forbids it).
    #[error("privacy without authentication")]
    PrivWithoutAuth,
}

/// Key material as configured: a localized key (preferred: derived once by
/// the supervisor) or a password the agent localizes itself. `Debug` never
/// shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyMaterial {
    /// Already localized to the agent's engine ID (and extended, for
    /// privacy keys, to `PrivProtocol::key_len`).
    Localized(Vec<u8>),
    /// A password, localized to the engine ID when the keys are built.
    Password(String),
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::Localized(_) => f.write_str("Localized(***)"),
            KeyMaterial::Password(_) => f.write_str("Password(***)"),
        }
    }
}

/// A configured USM user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConfig {
    /// usmUserName.
    pub name: Vec<u8>,
    /// The authentication protocol and key; `None`: noAuthNoPriv only.
    #[serde(default)]
    pub auth: Option<(AuthProtocol, KeyMaterial)>,
    /// The privacy protocol and key; needs `auth`.
    #[serde(default)]
    pub privacy: Option<(PrivProtocol, KeyMaterial)>,
    /// Requests below this level get authorizationError (VACM's
    /// securityLevel); above what the keys allow, usmStatsUnsupportedSecLevels.
    #[serde(default)]
    pub min_level: SecurityLevel,
    /// Whether SET may change any object (else only `writecache` ones).
    #[serde(default)]
    pub write: bool,
}

/// A user ready to process messages: key schedules precomputed.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub name: Vec<u8>,
    pub auth: Option<AuthKey>,
    pub privacy: Option<PrivKey>,
    pub min_level: SecurityLevel,
    pub write: bool,
}

impl User {
    /// Builds the user's keys for `engine_id` (passwords are localized
    /// here; localized keys are only checked).
    pub(crate) fn new(config: &UserConfig, engine_id: &[u8]) -> Result<User, KeyError> {
        let auth = match &config.auth {
            None => None,
            Some((proto, KeyMaterial::Localized(k))) => Some(AuthKey::new(*proto, k)?),
            Some((proto, KeyMaterial::Password(p))) => Some(AuthKey::new(
                *proto,
                &keys::localized_auth_key(*proto, p.as_bytes(), engine_id)?,
            )?),
        };
        let privacy = match (&config.privacy, &auth) {
            (None, _) => None,
            (Some(_), None) => return Err(KeyError::PrivWithoutAuth),
            (Some((proto, KeyMaterial::Localized(k))), Some(_)) => Some(PrivKey::new(*proto, k)?),
            (Some((proto, KeyMaterial::Password(p))), Some(a)) => Some(PrivKey::new(
                *proto,
                &keys::localized_priv_key(a.protocol(), *proto, p.as_bytes(), engine_id)?,
            )?),
        };
        Ok(User {
            name: config.name.clone(),
            auth,
            privacy,
            min_level: config.min_level,
            write: config.write,
        })
    }

    /// The highest level this user's keys allow.
    pub(crate) fn max_level(&self) -> SecurityLevel {
        match (&self.auth, &self.privacy) {
            (Some(_), Some(_)) => SecurityLevel::AuthPriv,
            (Some(_), None) => SecurityLevel::AuthNoPriv,
            _ => SecurityLevel::NoAuthNoPriv,
        }
    }
}
