//! The fleet in etcd: one key, `PREFIX/fleet/config`, holding the YAML as
//! pushed and the path it was pushed from (relative snapshot and include
//! paths resolve against its directory on every node). One key makes a
//! push one atomic write that a node sees as one change, and keeps what
//! only the whole file can check (unique names, endpoint clashes,
//! templates) checked once, by `etcd push`, as `check` does.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use agentcluster_conf::{Etcd, Fleet};
use serde::{Deserialize, Serialize};

use super::keys::Keys;
use super::{ClusterError, connect, etcd_error};

/// The value of the fleet key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pushed {
    /// The file the fleet was pushed from (absolute).
    pub source: PathBuf,
    /// Its text, as written.
    pub yaml: String,
    /// When it was pushed, in milliseconds since the Unix epoch: the time
    /// zero of its scenarios on every node. Absent in a value written
    /// before nodes ran scenarios; a node then counts from when it read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_at_ms: Option<u64>,
}

impl Pushed {
    /// Parses the value of the fleet key.
    pub fn decode(key: &str, value: &[u8]) -> Result<Pushed, ClusterError> {
        serde_json::from_slice(value).map_err(|e| ClusterError::Data {
            key: key.to_string(),
            why: format!("not a pushed fleet: {e}"),
        })
    }

    /// When it was pushed (`None`: not said).
    pub fn pushed_at(&self) -> Option<SystemTime> {
        self.pushed_at_ms
            .map(|ms| UNIX_EPOCH + std::time::Duration::from_millis(ms))
    }

    /// Validates the fleet as `run` would (blocking: it reads snapshot
    /// directories and includes).
    pub fn load(&self) -> Result<Fleet, ClusterError> {
        agentcluster_conf::load_str(&self.yaml, &self.source)
            .map(|l| l.fleet)
            .map_err(|problems| {
                ClusterError::Fleet(problems.iter().map(|p| p.to_string()).collect())
            })
    }
}

/// Writes the fleet (`yaml`, read from `source`) to etcd in one write;
/// returns the revision it got. The caller has validated it.
pub async fn push(etcd: &Etcd, source: &Path, yaml: &str) -> Result<i64, ClusterError> {
    let mut client = connect(etcd).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let value = serde_json::to_vec(&Pushed {
        source: source.to_path_buf(),
        yaml: yaml.to_string(),
        pushed_at_ms: Some(u64::try_from(now.as_millis()).unwrap_or(u64::MAX)),
    })
    .map_err(|e| ClusterError::Data {
        key: Keys::new(&etcd.prefix).fleet(),
        why: e.to_string(),
    })?;
    let put = client
        .put(Keys::new(&etcd.prefix).fleet(), value, None)
        .await
        .map_err(|e| etcd_error(etcd, e))?;
    Ok(put.header().map_or(0, |h| h.revision()))
}

/// The fleet in etcd and the revision it was written at; `None` when
/// nothing was pushed.
pub async fn get(etcd: &Etcd) -> Result<Option<(Pushed, i64)>, ClusterError> {
    let mut client = connect(etcd).await?;
    let key = Keys::new(&etcd.prefix).fleet();
    let got = client
        .get(key.clone(), None)
        .await
        .map_err(|e| etcd_error(etcd, e))?;
    match got.kvs().first() {
        None => Ok(None),
        Some(kv) => Ok(Some((Pushed::decode(&key, kv.value())?, kv.mod_revision()))),
    }
}

/// What masked secrets read as.
pub const MASK: &str = "********";

/// `yaml` with the value of every `password:` key replaced by
/// [`MASK`], block or flow style, quoted or not; everything else as
/// written. SNMPv3 passwords are the secrets of a fleet; communities are
/// shown (in a lab they name data, and every manager is told them).
pub fn mask(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    let mut rest = yaml;
    while let Some(at) = find_key(rest, "password") {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        // `password`, spaces, `:`, spaces.
        let after_key = &tail["password".len()..];
        let trimmed = after_key.trim_start_matches([' ', '\t', '"', '\'']);
        let Some(value_part) = trimmed.strip_prefix(':') else {
            out.push_str("password");
            rest = after_key;
            continue;
        };
        let consumed_key = tail.len() - value_part.len();
        out.push_str(&tail[..consumed_key]);
        let spaces = value_part.len() - value_part.trim_start_matches([' ', '\t']).len();
        out.push_str(&value_part[..spaces]);
        let value = &value_part[spaces..];
        let len = scalar_len(value);
        if len > 0 {
            out.push_str(MASK);
        }
        rest = &value[len..];
    }
    out.push_str(rest);
    out
}

/// Where `key` appears as a mapping key (not inside a longer word).
fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(key) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        let after = text[at + key.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-');
        if !word(before) && !word(after) {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

/// The length of the scalar `text` starts with: a quoted string, or a
/// plain one up to the end of the line, a comment, or (flow style) `,`/`}`.
fn scalar_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(&q @ (b'"' | b'\'')) => {
            let mut i = 1;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' if q == b'"' => i += 2,
                    // `''` is a quote inside a single-quoted string.
                    b'\'' if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
                    c if c == q => return i + 1,
                    _ => i += 1,
                }
            }
            text.len()
        }
        Some(_) => {
            let end = text
                .find(['\n', ',', '}', ']'])
                .unwrap_or(text.len())
                .min(text.find(" #").unwrap_or(text.len()));
            text[..end].trim_end().len()
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pushed_fleet_says_when_and_an_older_value_still_reads() {
        let key = "/f/fleet/config";
        let old = br#"{"source":"/etc/fleet.yaml","yaml":"agents: []\n"}"#;
        let pushed = Pushed::decode(key, old).unwrap();
        assert_eq!(pushed.pushed_at(), None);
        let new =
            br#"{"source":"/etc/fleet.yaml","yaml":"agents: []\n","pushed_at_ms":1796515200123}"#;
        let pushed = Pushed::decode(key, new).unwrap();
        assert_eq!(
            pushed.pushed_at(),
            Some(UNIX_EPOCH + std::time::Duration::from_millis(1_796_515_200_123))
        );
        // And it is written back as it was read.
        let again = serde_json::to_vec(&pushed).unwrap();
        assert_eq!(Pushed::decode(key, &again).unwrap(), pushed);
    }

    #[test]
    fn masks_passwords_in_every_style() {
        let yaml = "users:\n  - name: u\n    auth: { protocol: SHA, password: \"s3cr,et\" }\n    priv:\n      protocol: AES\n      password: plain-secret # note\n    x_password_hint: keep\n";
        let m = mask(yaml);
        assert!(!m.contains("s3cr"), "{m}");
        assert!(!m.contains("plain-secret"), "{m}");
        assert!(
            m.contains("auth: { protocol: SHA, password: ******** }"),
            "{m}"
        );
        assert!(m.contains("      password: ******** # note\n"), "{m}");
        assert!(m.contains("x_password_hint: keep"), "{m}");
        assert_eq!(mask("name: a\n"), "name: a\n");
        assert_eq!(mask("password: 'it''s'\n"), "password: ********\n");
        assert_eq!(mask("password: \"a\\\"b\"\n"), "password: ********\n");
    }
}
