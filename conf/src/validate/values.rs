//! An agent's own values (`values:`) and what it derives from itself
//! (`identity:`). OIDs, type tags and the values of explicitly typed entries
//! are checked here, against the rules of `.snmprec` records; a plain value
//! takes the type the snapshot records for its OID, which only the compiled
//! snapshot knows (the agent process refuses to start, naming the OID, when
//! it does not fit).

use std::collections::HashMap;

use serde_saphyr::Spanned;

use super::Validator;
use super::notify::parse_oid;
use crate::model::{DeviceValue, Identity};
use crate::problem::{FileId, Pos};
use crate::raw::{OrderedMap, RawIdentity, RawValue};

/// The BER tags a `.snmprec` record may carry as a value.
const TAGS: &[u8] = &[2, 4, 5, 6, 64, 65, 66, 67, 68, 70];

/// Objects every agent serves live: a value for them is never seen.
const LIVE: &[&[u32]] = &[
    &[1, 3, 6, 1, 2, 1, 1, 3, 0],
    &[1, 3, 6, 1, 2, 1, 11],
    &[1, 3, 6, 1, 6, 3, 10, 2, 1],
    &[1, 3, 6, 1, 6, 3, 11, 2, 1],
    &[1, 3, 6, 1, 6, 3, 15, 1, 1],
];

impl Validator<'_> {
    /// The entries of `values:`, each checked; bad ones are reported and
    /// left out.
    pub(super) fn values(
        &mut self,
        file: FileId,
        map: &Spanned<OrderedMap<Spanned<String>, Spanned<RawValue>>>,
    ) -> Vec<DeviceValue> {
        let mut out = Vec::new();
        let mut seen: HashMap<Vec<u32>, Pos> = HashMap::new();
        for (key, value) in &map.value.0 {
            let key_pos = Pos::of_or(key, Pos::of(map));
            let oid = match parse_oid(&key.value) {
                Ok(oid) => oid,
                Err(e) => {
                    self.err(file, key_pos, format!("`values`: {e}"));
                    continue;
                }
            };
            if let Some(first) = seen.get(&oid) {
                let first = self.at(file, *first);
                self.err(
                    file,
                    key_pos,
                    format!("`values`: {} is listed twice (first at {first})", key.value),
                );
                continue;
            }
            seen.insert(oid.clone(), key_pos);
            if LIVE.iter().any(|l| oid.starts_with(l)) {
                self.warn(
                    file,
                    key_pos,
                    format!(
                        "`values`: {} is served live by every agent; this value is never seen",
                        key.value
                    ),
                );
            }
            let value_pos = Pos::of_or(value, key_pos);
            let (kind, text) = match &value.value {
                RawValue::Plain(text) => (None, text.clone()),
                RawValue::Typed(t) => {
                    let type_pos = Pos::of_or(&t.kind, value_pos);
                    let tag = match check_type(&t.kind.value) {
                        Ok(tag) => tag,
                        Err(e) => {
                            self.err(file, type_pos, format!("`values` {}: {e}", key.value));
                            continue;
                        }
                    };
                    if let Err(e) = check_value(tag, &t.value.value) {
                        let pos = Pos::of_or(&t.value, value_pos);
                        self.err(file, pos, format!("`values` {}: {e}", key.value));
                        continue;
                    }
                    (Some(t.kind.value.trim().to_string()), t.value.value.clone())
                }
            };
            out.push(DeviceValue {
                oid,
                kind,
                value: text,
            });
        }
        out
    }
}

/// What `identity:` asks for; `None` for `identity: false` or a mapping
/// that turns everything off.
pub(super) fn identity(raw: &Spanned<RawIdentity>) -> Option<Identity> {
    let id = match &raw.value {
        RawIdentity::All(false) => return None,
        RawIdentity::All(true) => Identity {
            sys_name: true,
            addresses: true,
            phys_address: true,
        },
        RawIdentity::Some(p) => {
            let on = |b: &Option<Spanned<bool>>| b.as_ref().is_none_or(|b| b.value);
            Identity {
                sys_name: on(&p.sys_name),
                addresses: on(&p.addresses),
                phys_address: on(&p.phys_address),
            }
        }
    };
    (id.sys_name || id.addresses || id.phys_address).then_some(id)
}

/// How a typed value's text is written: the tag's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Plain,
    Hex,
    Escaped,
}

/// A `.snmprec` type tag: the BER tag and its suffix.
fn check_type(text: &str) -> Result<(u8, Encoding), String> {
    let t = text.trim();
    if t.contains(':') {
        return Err(format!(
            "type `{t}`: variation modules are for snapshot files, not for values"
        ));
    }
    let (number, encoding) = match t.as_bytes().last() {
        Some(b'x') => (&t[..t.len() - 1], Encoding::Hex),
        Some(b'e') => (&t[..t.len() - 1], Encoding::Escaped),
        _ => (t, Encoding::Plain),
    };
    match number.parse::<u8>() {
        Ok(tag) if TAGS.contains(&tag) => Ok((tag, encoding)),
        Ok(128..=130) => Err(format!("type `{t}` is an exception, not a value")),
        _ => Err(format!(
            "unknown type `{t}` (expected a .snmprec tag: 2, 4, 5, 6, 64, 65, 66, 67, 68 or 70, \
             optionally with an x or e suffix)"
        )),
    }
}

/// Whether `text` is a value of type `tag` as a `.snmprec` record writes it.
fn check_value((tag, encoding): (u8, Encoding), text: &str) -> Result<(), String> {
    let t = text.trim();
    match encoding {
        Encoding::Hex => {
            let ok = t.len().is_multiple_of(2) && t.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(format!(
                    "`{text}` is not hex (expected pairs of hex digits)"
                ));
            }
            match tag {
                4 | 68 => Ok(()),
                64 if t.len() == 8 => Ok(()),
                64 => Err(format!("IpAddress needs 4 bytes, got {}", t.len() / 2)),
                _ => Err(format!(
                    "hex values (x suffix) are for types 4, 64 and 68, not {tag}"
                )),
            }
        }
        // Escapes are decoded by the agent, as snmpsim does.
        Encoding::Escaped => Ok(()),
        Encoding::Plain => {
            let fits = match tag {
                2 => t.parse::<i64>().is_ok(),
                4 | 68 => true,
                5 => t.is_empty(),
                6 => parse_oid(t).is_ok(),
                64 => t.parse::<std::net::Ipv4Addr>().is_ok(),
                65..=67 => t.parse::<u32>().is_ok(),
                _ => t.parse::<u64>().is_ok(),
            };
            if fits {
                return Ok(());
            }
            let expected = match tag {
                2 => "a signed integer",
                5 => "no value",
                6 => "a dotted OID",
                64 => "a dotted quad",
                65..=67 => "0..4294967295",
                _ => "0..18446744073709551615",
            };
            Err(format!(
                "`{text}` is not a value of type {tag}: expected {expected}"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_values() {
        assert_eq!(check_type("4x"), Ok((4, Encoding::Hex)));
        assert_eq!(check_type(" 2 "), Ok((2, Encoding::Plain)));
        assert_eq!(check_type("4e"), Ok((4, Encoding::Escaped)));
        assert!(check_type("99").unwrap_err().contains("unknown type"));
        assert!(check_type("129").unwrap_err().contains("exception"));
        assert!(check_type("65:numeric").unwrap_err().contains("variation"));
        assert!(check_value((2, Encoding::Plain), "-5").is_ok());
        assert!(check_value((2, Encoding::Plain), "five").is_err());
        assert!(check_value((65, Encoding::Plain), "4294967296").is_err());
        assert!(check_value((70, Encoding::Plain), "4294967296").is_ok());
        assert!(check_value((64, Encoding::Plain), "10.1.2.3").is_ok());
        assert!(check_value((64, Encoding::Plain), "10.1.2").is_err());
        assert!(check_value((64, Encoding::Hex), "0a010203").is_ok());
        assert!(check_value((4, Encoding::Hex), "0a0").is_err());
        assert!(check_value((4, Encoding::Hex), "zz").is_err());
        assert!(check_value((2, Encoding::Hex), "00").is_err());
        assert!(check_value((6, Encoding::Plain), "1.3.6.1.4.1.9").is_ok());
        assert!(check_value((6, Encoding::Plain), "x.y").is_err());
    }
}
