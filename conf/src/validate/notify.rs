//! `events` (KVP and notification targets) and USM users.

use std::path::PathBuf;

use serde_saphyr::Spanned;

use super::{MAIN, MIN_PASSWORD, Validator, default};
use crate::EventKind;
use crate::endpoint::check_target;
use crate::model::*;
use crate::problem::{FileId, Pos, did_you_mean};
use crate::raw::*;

impl Validator<'_> {
    pub(super) fn events(&mut self, raw: Option<&Spanned<RawEvents>>) -> Events {
        let Some(raw) = raw else {
            return Events::default();
        };
        let f = MAIN;
        let kvp = raw.value.kvp.as_ref().map(|k| {
            let path = match &k.value.path {
                Some(p) if p.value.trim().is_empty() => {
                    self.err(f, Pos::of(p), "`path` is empty");
                    PathBuf::from(default::KVP_PATH)
                }
                Some(p) => self.path(f, &p.value),
                None => PathBuf::from(default::KVP_PATH),
            };
            let max_records = self.uint(
                f,
                k.value.max_records.as_ref(),
                default::KVP_MAX_RECORDS,
                1,
                "max_records",
            );
            Kvp { path, max_records }
        });
        let notify = match &raw.value.notify {
            Some(list) => list
                .value
                .iter()
                .filter_map(|t| self.notify_target(f, t))
                .collect(),
            None => Vec::new(),
        };
        let mib_root = match &raw.value.mib_root {
            Some(r) => match parse_oid(&r.value) {
                Ok(oid) => oid,
                Err(e) => {
                    self.err(f, Pos::of(r), format!("`mib_root`: {e}"));
                    DEFAULT_MIB_ROOT.to_vec()
                }
            },
            None => DEFAULT_MIB_ROOT.to_vec(),
        };
        Events {
            kvp,
            notify,
            mib_root,
        }
    }

    pub(super) fn notify_target(
        &mut self,
        file: FileId,
        t: &Spanned<RawNotify>,
    ) -> Option<NotifyTarget> {
        let r = &t.value;
        let mut ok = true;
        if let Err(e) = check_target(&r.target.value) {
            self.err(file, Pos::of(&r.target), e.to_string());
            ok = false;
        }
        let version = match &r.version {
            None => SnmpVersion::V2c,
            Some(v) => match v.value.to_ascii_lowercase().trim_start_matches('v') {
                "1" => SnmpVersion::V1,
                "2c" | "2" => SnmpVersion::V2c,
                "3" => SnmpVersion::V3,
                _ => {
                    self.err(
                        file,
                        Pos::of(v),
                        format!("unknown SNMP version `{}`: expected 1, 2c or 3", v.value),
                    );
                    ok = false;
                    SnmpVersion::V2c
                }
            },
        };
        let kind = match &r.kind {
            None => NotifyType::Trap,
            Some(k) => match k.value.to_ascii_lowercase().as_str() {
                "trap" => NotifyType::Trap,
                "inform" => NotifyType::Inform,
                _ => {
                    self.err(
                        file,
                        Pos::of(k),
                        format!(
                            "unknown notification type `{}`: expected trap or inform",
                            k.value
                        ),
                    );
                    ok = false;
                    NotifyType::Trap
                }
            },
        };
        if version == SnmpVersion::V1 && kind == NotifyType::Inform {
            let pos = r.kind.as_ref().map_or(Pos::of(t), Pos::of);
            self.err(
                file,
                pos,
                "SNMPv1 has no inform: use `type: trap` or version 2c/3",
            );
            ok = false;
        }
        let events = r.events.as_ref().map(|list| {
            if list.value.is_empty() {
                self.warn(
                    file,
                    Pos::of(list),
                    "`events` is empty: this target receives nothing",
                );
            }
            let mut out = Vec::new();
            for e in &list.value {
                if let Ok(kind) = e.value.parse::<EventKind>() {
                    out.push(kind);
                } else {
                    let names: Vec<&str> = EventKind::names().collect();
                    let hint = did_you_mean(&e.value, &names)
                        .map(|k| format!(" (did you mean `{k}`?)"))
                        .unwrap_or_default();
                    self.err(
                        file,
                        Pos::of(e),
                        format!("unknown event kind `{}`{hint}", e.value),
                    );
                    ok = false;
                }
            }
            out
        });
        let (community, user) = if version == SnmpVersion::V3 {
            if let Some(c) = &r.community {
                self.err(
                    file,
                    Pos::of(c),
                    "`community` is for versions 1 and 2c; version 3 uses `user`",
                );
                ok = false;
            }
            match &r.user {
                Some(name) => (
                    None,
                    Some(self.usm_user(file, name, r.auth.as_ref(), r.privacy.as_ref(), None)),
                ),
                None => {
                    self.err(
                        file,
                        Pos::of(t),
                        "a version 3 target needs `user` (and usually `auth`)",
                    );
                    ok = false;
                    (None, None)
                }
            }
        } else {
            let v3_only = [
                r.user.as_ref().map(|u| ("user", Pos::of(u))),
                r.auth.as_ref().map(|a| ("auth", Pos::of(a))),
                r.privacy.as_ref().map(|p| ("priv", Pos::of(p))),
            ];
            for (key, pos) in v3_only.into_iter().flatten() {
                self.err(file, pos, format!("`{key}` is only used with version 3"));
                ok = false;
            }
            let community = match &r.community {
                Some(c) if c.value.is_empty() => {
                    self.err(file, Pos::of(c), "empty community");
                    ok = false;
                    Secret::new("")
                }
                Some(c) => Secret::new(c.value.clone()),
                None => Secret::new(default::COMMUNITY),
            };
            (Some(community), None)
        };
        let retries = self.uint(
            file,
            r.retries.as_ref(),
            default::NOTIFY_RETRIES,
            0,
            "retries",
        );
        let timeout = self.duration(
            file,
            r.timeout.as_ref(),
            default::NOTIFY_TIMEOUT,
            "timeout",
            false,
        );
        ok.then(|| NotifyTarget {
            target: r.target.value.clone(),
            version,
            community,
            kind,
            events,
            user,
            retries,
            timeout,
        })
    }

    /// A USM user; `write` `None` (notification targets) means read-only.
    pub(super) fn usm_user(
        &mut self,
        file: FileId,
        name: &Spanned<String>,
        raw_auth: Option<&Spanned<RawKey>>,
        raw_priv: Option<&Spanned<RawKey>>,
        write: Option<&Spanned<bool>>,
    ) -> V3User {
        let n = name.value.chars().count();
        if n == 0 || n > 32 {
            self.err(
                file,
                Pos::of(name),
                "an SNMPv3 user name has 1 to 32 characters (RFC 3414)",
            );
        }
        let auth = raw_auth.and_then(|a| {
            let proto = parse_auth(&a.value.protocol.value);
            if proto.is_none() {
                self.err(
                    file,
                    Pos::of(&a.value.protocol),
                    format!(
                        "unknown auth protocol `{}`: expected MD5, SHA, SHA224, SHA256, SHA384 or SHA512",
                        a.value.protocol.value
                    ),
                );
            }
            self.password(file, &a.value.password);
            proto.map(|p| (p, Secret::new(a.value.password.value.clone())))
        });
        let privacy = raw_priv.and_then(|p| {
            let proto = parse_priv(&p.value.protocol.value);
            if proto.is_none() {
                self.err(
                    file,
                    Pos::of(&p.value.protocol),
                    format!(
                        "unknown priv protocol `{}`: expected DES, 3DES, AES128 (or AES), AES192, AES256, AES192C or AES256C",
                        p.value.protocol.value
                    ),
                );
            }
            self.password(file, &p.value.password);
            proto.map(|pr| (pr, Secret::new(p.value.password.value.clone())))
        });
        if let (Some(p), None) = (raw_priv, raw_auth) {
            self.err(
                file,
                Pos::of(p),
                "`priv` without `auth`: SNMPv3 has no privacy without authentication",
            );
        }
        V3User {
            name: name.value.clone(),
            auth,
            privacy,
            write: write.is_some_and(|w| w.value),
        }
    }

    fn password(&mut self, file: FileId, p: &Spanned<String>) {
        if p.value.chars().count() < MIN_PASSWORD {
            self.err(
                file,
                Pos::of(p),
                format!("password is shorter than {MIN_PASSWORD} characters (RFC 3414; net-snmp refuses it)"),
            );
        }
    }
}

/// A dotted OID (`1.3.6.1.4.1.99999`, a leading dot allowed) that can root a
/// MIB: at least two arcs, the first 0, 1 or 2, the second below 40 under 0
/// and 1 (X.690), at most 100 arcs so the objects under it stay within the
/// 128 sub-identifiers SNMP allows.
pub(super) fn parse_oid(s: &str) -> Result<Vec<u32>, String> {
    let text = s.trim();
    let body = text.strip_prefix('.').unwrap_or(text);
    let mut arcs = Vec::new();
    for part in body.split('.') {
        match part.parse::<u32>() {
            Ok(n) if !part.starts_with('+') => arcs.push(n),
            _ => {
                return Err(format!(
                    "`{s}` is not a numeric OID (write e.g. 1.3.6.1.4.1.99999.1)"
                ));
            }
        }
    }
    match arcs.as_slice() {
        [] | [_] => Err(format!("`{s}` needs at least two arcs")),
        [first, ..] if *first > 2 => Err(format!("`{s}`: the first arc must be 0, 1 or 2")),
        [first, second, ..] if *first < 2 && *second >= 40 => Err(format!(
            "`{s}`: under {first} the second arc must be below 40"
        )),
        _ if arcs.len() > 100 => Err(format!("`{s}` has more than 100 arcs")),
        _ => Ok(arcs),
    }
}

fn parse_auth(s: &str) -> Option<AuthProtocol> {
    Some(match s.to_ascii_uppercase().replace('-', "").as_str() {
        "MD5" => AuthProtocol::Md5,
        "SHA" | "SHA1" => AuthProtocol::Sha1,
        "SHA224" => AuthProtocol::Sha224,
        "SHA256" => AuthProtocol::Sha256,
        "SHA384" => AuthProtocol::Sha384,
        "SHA512" => AuthProtocol::Sha512,
        _ => return None,
    })
}

fn parse_priv(s: &str) -> Option<PrivProtocol> {
    Some(match s.to_ascii_uppercase().replace('-', "").as_str() {
        "DES" => PrivProtocol::Des,
        "3DES" | "3DESEDE" => PrivProtocol::TripleDes,
        "AES" | "AES128" => PrivProtocol::Aes128,
        "AES192" => PrivProtocol::Aes192,
        "AES256" => PrivProtocol::Aes256,
        "AES192C" => PrivProtocol::Aes192C,
        "AES256C" => PrivProtocol::Aes256C,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mib_roots() {
        assert_eq!(
            parse_oid("1.3.6.1.4.1.99999"),
            Ok(vec![1, 3, 6, 1, 4, 1, 99999])
        );
        assert_eq!(parse_oid(" .1.3.6 "), Ok(vec![1, 3, 6]));
        for bad in [
            "",
            "1",
            "1..3",
            "1.3.x",
            "3.1",
            "1.40",
            "1.-3",
            "1.+3",
            "1.3.4294967296",
        ] {
            assert!(parse_oid(bad).is_err(), "{bad:?}");
        }
        assert!(parse_oid(&vec!["1"; 101].join(".")).is_err());
    }

    #[test]
    fn protocols() {
        assert_eq!(parse_auth("sha"), Some(AuthProtocol::Sha1));
        assert_eq!(parse_auth("SHA1"), Some(AuthProtocol::Sha1));
        assert_eq!(parse_auth("sha-256"), Some(AuthProtocol::Sha256));
        assert_eq!(parse_auth("SHA3"), None);
        assert_eq!(parse_priv("aes"), Some(PrivProtocol::Aes128));
        assert_eq!(parse_priv("Aes256c"), Some(PrivProtocol::Aes256C));
        assert_eq!(parse_priv("3des"), Some(PrivProtocol::TripleDes));
        assert_eq!(parse_priv("blowfish"), None);
    }

    #[test]
    fn protocol_names_read_back() {
        use AuthProtocol as A;
        use PrivProtocol as P;
        for a in [A::Md5, A::Sha1, A::Sha224, A::Sha256, A::Sha384, A::Sha512] {
            assert_eq!(parse_auth(a.name()), Some(a));
        }
        for p in [
            P::Des,
            P::TripleDes,
            P::Aes128,
            P::Aes192,
            P::Aes256,
            P::Aes192C,
            P::Aes256C,
        ] {
            assert_eq!(parse_priv(p.name()), Some(p));
        }
    }
}
