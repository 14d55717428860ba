//! Legacy agentcluster (the Python original) `*.agent` files: one JSON object
//! per agent, turned into the same raw agent a YAML entry gives, so it is
//! validated the same way.
//!
//! The format, as the original reads it:
//!
//! ```json
//! {
//!   "__comment__": ["any key starting with __ is ignored, and may repeat"],
//!   "name": "Mixed device",
//!   "engineID": "mixed",
//!   "active": "True",
//!   "listen": { "udp": ["127.0.0.1:33400", "127.0.0.1:33401"], "udp6": "[::1]:33401" },
//!   "snmpv1":  { "users": [{ "name": "public" }], "mib": { "public": "LinuxHost.snmpwalk" } },
//!   "snmpv2c": { "users": [{ "name": "public" }, { "name": "v2c" }],
//!                "mib": { "public": "Solaris.snmpwalk", "v2c": "WindowsXp.snmpwalk" } },
//!   "snmpv3":  { "users": [{ "name": "usr-snmp", "authAlgo": "sha", "authPass": "…",
//!                           "privAlgo": "aes", "privPass": "…" }],
//!                "mib": { "": "Solaris.snmpwalk", "Linksys": "Linksys.snmpwalk" } }
//! }
//! ```
//!
//! - `engineID` is the engine ID's *text* (pysnmp takes the string's bytes),
//!   unless it starts with `0x`, then it is hex.
//! - `active` is `"True"`/`"False"` (any case) or a JSON boolean.
//! - `listen.udp` entries without a port get 161, as in the original;
//!   `udp6` accepts `[addr]:port`, `[addr]` and `addr`. `unix` is refused.
//! - v1/v2c `users[].name` are communities; `mib` maps each community to its
//!   snapshot (a single string serves every community). v3 `mib` maps context
//!   names to snapshots. Snapshot paths are relative to the `.agent` file.
//! - Key spelling is lenient: case, `_` and `-` are ignored, and the v3 user
//!   keys also accept `authProtocol`/`authKey`/`authPassword` (and `priv…`).
//!   `authAlgo`/`privAlgo` `none` means no authentication/privacy.
//! - `variation` is ignored with a warning (variation modules don't exist
//!   here).
//!
//! JSON syntax errors carry serde_json's line and column. The object is then
//! read again through serde-saphyr (JSON is YAML) to get a position for every
//! value.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, Location, Spanned};

use crate::problem::{FileId, Pos, Report, did_you_mean};
use crate::raw::{
    OneOrMany, OrderedMap, RawAgent, RawCommunities, RawCommunityOpts, RawCommunitySection, RawKey,
    RawUser, RawV3, spanned_at,
};

/// A JSON value with the position of every node.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Node, D2::Error> {
                Node::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Num(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Num(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Num(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(item) = seq.next_element()? {
                    v.push(item);
                }
                Ok(Node::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = map.next_key()? {
                    v.push((k, map.next_value()?));
                }
                Ok(Node::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads one legacy agent file. Problems go to `report`; `None` when no
/// agent could be made of it.
pub(crate) fn parse(text: &str, file: FileId, report: &mut Report) -> Option<Spanned<RawAgent>> {
    if let Err(e) = serde_json::from_str::<de::IgnoredAny>(text) {
        let msg = e.to_string();
        let msg = msg.rfind(" at line ").map_or(msg.as_str(), |i| &msg[..i]);
        report.error(
            file,
            Pos::new(e.line(), e.column()),
            format!("invalid JSON: {msg}"),
        );
        return None;
    }
    let mut options = crate::recover::yaml_options();
    // `__comment__` repeats in the original's own examples.
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    let root: Spanned<Node> = match serde_saphyr::from_str_with_options(text, options) {
        Ok(n) => n,
        Err(e) => {
            let pos = e.location().map_or(Pos::UNKNOWN, Pos::from_location);
            report.error(file, pos, crate::problem::yaml_message(&e));
            return None;
        }
    };
    Conv { file, report }.agent(root)
}

/// Lower case without `_` and `-`: `engineID`, `engine_id`, `engine-id` are
/// all `engineid`.
fn norm(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

struct Conv<'r> {
    file: FileId,
    report: &'r mut Report,
}

impl Conv<'_> {
    fn error(&mut self, loc: Location, msg: impl Into<String>) {
        self.report.error(self.file, Pos::from_location(loc), msg);
    }

    fn unknown(&mut self, key: &Spanned<String>, known: &[&str], what: &str) {
        let hint = did_you_mean(&key.value, known)
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        self.error(
            key.referenced,
            format!("unknown key `{}` in {what}{hint}", key.value),
        );
    }

    fn map<'n>(
        &mut self,
        node: &'n Spanned<Node>,
        what: &str,
    ) -> Option<&'n [(Spanned<String>, Spanned<Node>)]> {
        match &node.value {
            Node::Map(entries) => Some(entries),
            _ => {
                self.error(node.referenced, format!("{what} must be a JSON object"));
                None
            }
        }
    }

    fn string(&mut self, node: &Spanned<Node>, what: &str) -> Option<Spanned<String>> {
        match &node.value {
            Node::Str(s) | Node::Num(s) => Some(spanned_at(s.clone(), node.referenced)),
            _ => {
                self.error(node.referenced, format!("{what} must be a string"));
                None
            }
        }
    }

    /// A string, or a list of strings.
    fn strings(&mut self, node: &Spanned<Node>, what: &str) -> Vec<Spanned<String>> {
        match &node.value {
            Node::Seq(items) => items.iter().filter_map(|i| self.string(i, what)).collect(),
            _ => self.string(node, what).into_iter().collect(),
        }
    }

    fn agent(&mut self, root: Spanned<Node>) -> Option<Spanned<RawAgent>> {
        let loc = root.referenced;
        let entries = self.map(&root, "a legacy agent file")?;
        let mut agent = RawAgent {
            name: spanned_at(String::new(), loc),
            count: None,
            active: None,
            listen: None,
            engine_id: None,
            data: None,
            data_dir: None,
            snmpv1: None,
            snmpv2c: None,
            snmpv3: None,
            notify: None,
            max_varbinds: None,
            memory_max: None,
            values: None,
            identity: None,
            counters: None,
        };
        let mut has_name = false;
        const KNOWN: &[&str] = &[
            "name", "active", "engineID", "listen", "snmpv1", "snmpv2c", "snmpv3",
        ];
        for (key, value) in entries {
            if key.value.starts_with("__") {
                continue;
            }
            match norm(&key.value).as_str() {
                "name" => {
                    if let Some(n) = self.string(value, "`name`") {
                        agent.name = n;
                        has_name = true;
                    }
                }
                "active" => agent.active = self.active(value),
                "engineid" => agent.engine_id = self.engine_id(value),
                "listen" => agent.listen = self.listen(value),
                "snmpv1" => agent.snmpv1 = self.communities(value),
                "snmpv2c" | "snmpv2" => agent.snmpv2c = self.communities(value),
                "snmpv3" => agent.snmpv3 = self.v3(value),
                "variation" | "variations" => self.report.warning(
                    self.file,
                    Pos::of(key),
                    "`variation` is not supported and is ignored",
                ),
                _ => self.unknown(key, KNOWN, "a legacy agent file"),
            }
        }
        if !has_name {
            self.error(loc, "legacy agent file has no `name`");
            return None;
        }
        Some(spanned_at(agent, loc))
    }

    fn active(&mut self, node: &Spanned<Node>) -> Option<Spanned<bool>> {
        let v = match &node.value {
            Node::Bool(b) => Some(*b),
            Node::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Some(true),
                "false" | "no" | "off" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        };
        match v {
            Some(b) => Some(spanned_at(b, node.referenced)),
            None => {
                self.error(
                    node.referenced,
                    "`active` must be true or false (or \"True\"/\"False\")",
                );
                None
            }
        }
    }

    /// The original takes the engine ID's text as its bytes; `0x…` is hex.
    fn engine_id(&mut self, node: &Spanned<Node>) -> Option<Spanned<String>> {
        let s = self.string(node, "`engineID`")?;
        let hex = if s.value.starts_with("0x") || s.value.starts_with("0X") {
            s.value.clone()
        } else {
            hex::encode(s.value.as_bytes())
        };
        Some(spanned_at(hex, s.referenced))
    }

    fn listen(&mut self, node: &Spanned<Node>) -> Option<Spanned<OneOrMany<Spanned<String>>>> {
        let mut out = Vec::new();
        match &node.value {
            Node::Map(entries) => {
                for (proto, value) in entries {
                    if proto.value.starts_with("__") {
                        continue;
                    }
                    match norm(&proto.value).as_str() {
                        "udp" | "udp4" | "ipv4" => {
                            for s in self.strings(value, "a `udp` endpoint") {
                                out.push(spanned_at(udp4(&s.value), s.referenced));
                            }
                        }
                        "udp6" | "ipv6" => {
                            for s in self.strings(value, "a `udp6` endpoint") {
                                out.push(spanned_at(udp6(&s.value), s.referenced));
                            }
                        }
                        "unix" => self.error(
                            proto.referenced,
                            "`unix` sockets are not supported: use `udp` or `udp6`",
                        ),
                        _ => self.unknown(proto, &["udp", "udp6"], "`listen`"),
                    }
                }
            }
            // Lenient: a bare endpoint or list of them.
            _ => {
                for s in self.strings(node, "an endpoint") {
                    let v = if s.value.starts_with('[') {
                        udp6(&s.value)
                    } else {
                        udp4(&s.value)
                    };
                    out.push(spanned_at(v, s.referenced));
                }
            }
        }
        Some(spanned_at(OneOrMany(out), node.referenced))
    }

    fn communities(&mut self, node: &Spanned<Node>) -> Option<Spanned<RawCommunitySection>> {
        let entries = self.map(node, "an SNMP v1/v2c section")?;
        let mut names: Vec<Spanned<String>> = Vec::new();
        let mut mib: Option<&Spanned<Node>> = None;
        for (key, value) in entries {
            if key.value.starts_with("__") {
                continue;
            }
            match norm(&key.value).as_str() {
                "users" | "communities" => names = self.community_names(value),
                "mib" | "mibs" | "data" | "snapshot" => mib = Some(value),
                _ => self.unknown(key, &["users", "mib"], "an SNMP v1/v2c section"),
            }
        }
        let mut list: Vec<(Spanned<String>, Option<RawCommunityOpts>)> =
            names.into_iter().map(|n| (n, None)).collect();
        if let Some(mib) = mib {
            match &mib.value {
                Node::Map(per_community) => {
                    for (community, path) in per_community {
                        let Some(path) = self.string(path, "a snapshot path") else {
                            continue;
                        };
                        match list.iter_mut().find(|(n, _)| n.value == community.value) {
                            Some((_, opts)) => {
                                *opts = Some(RawCommunityOpts {
                                    data: Some(path),
                                    write: None,
                                });
                            }
                            None => self.error(
                                community.referenced,
                                "snapshot for a community that `users` does not list",
                            ),
                        }
                    }
                }
                _ => {
                    if let Some(path) = self.string(mib, "`mib`") {
                        for (_, opts) in &mut list {
                            *opts = Some(RawCommunityOpts {
                                data: Some(path.clone()),
                                write: None,
                            });
                        }
                    }
                }
            }
        }
        Some(spanned_at(
            RawCommunitySection {
                communities: spanned_at(RawCommunities::Map(list), node.referenced),
            },
            node.referenced,
        ))
    }

    /// `[{ "name": "public" }, …]` (or plain strings).
    fn community_names(&mut self, node: &Spanned<Node>) -> Vec<Spanned<String>> {
        let Node::Seq(items) = &node.value else {
            self.error(node.referenced, "`users` must be a list");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            match &item.value {
                Node::Map(entries) => {
                    let mut name = None;
                    for (key, value) in entries {
                        match norm(&key.value).as_str() {
                            _ if key.value.starts_with("__") => {}
                            "name" | "community" => name = self.string(value, "a community name"),
                            _ => self.unknown(key, &["name"], "a community"),
                        }
                    }
                    match name {
                        Some(n) => out.push(n),
                        None => self.error(item.referenced, "community without `name`"),
                    }
                }
                _ => out.extend(self.string(item, "a community")),
            }
        }
        out
    }

    fn v3(&mut self, node: &Spanned<Node>) -> Option<Spanned<RawV3>> {
        let entries = self.map(node, "the `snmpv3` section")?;
        let mut v3 = RawV3::default();
        for (key, value) in entries {
            if key.value.starts_with("__") {
                continue;
            }
            match norm(&key.value).as_str() {
                "users" => {
                    let Node::Seq(items) = &value.value else {
                        self.error(value.referenced, "`users` must be a list");
                        continue;
                    };
                    let users = items.iter().filter_map(|u| self.user(u)).collect();
                    v3.users = Some(spanned_at(users, value.referenced));
                }
                "mib" | "mibs" | "contexts" | "data" | "snapshot" => {
                    let contexts = match &value.value {
                        Node::Map(per_context) => per_context
                            .iter()
                            .filter_map(|(ctx, path)| {
                                self.string(path, "a snapshot path")
                                    .map(|p| (ctx.clone(), p))
                            })
                            .collect(),
                        _ => self
                            .string(value, "`mib`")
                            .map(|p| (spanned_at(String::new(), value.referenced), p))
                            .into_iter()
                            .collect(),
                    };
                    v3.contexts = Some(spanned_at(OrderedMap(contexts), value.referenced));
                }
                _ => self.unknown(key, &["users", "mib"], "the `snmpv3` section"),
            }
        }
        Some(spanned_at(v3, node.referenced))
    }

    fn user(&mut self, node: &Spanned<Node>) -> Option<Spanned<RawUser>> {
        let entries = self.map(node, "an SNMPv3 user")?;
        let mut name = None;
        let (mut auth_algo, mut auth_pass, mut priv_algo, mut priv_pass) = (None, None, None, None);
        let mut write = None;
        const KNOWN: &[&str] = &["name", "authAlgo", "authPass", "privAlgo", "privPass"];
        for (key, value) in entries {
            if key.value.starts_with("__") {
                continue;
            }
            match norm(&key.value).as_str() {
                "name" | "user" | "username" => name = self.string(value, "a user name"),
                "authalgo" | "authprotocol" | "authproto" | "auth" => {
                    auth_algo = self.string(value, "`authAlgo`");
                }
                "authpass" | "authkey" | "authpassword" | "authpassphrase" => {
                    auth_pass = self.string(value, "`authPass`");
                }
                "privalgo" | "privprotocol" | "privproto" | "priv" => {
                    priv_algo = self.string(value, "`privAlgo`");
                }
                "privpass" | "privkey" | "privpassword" | "privpassphrase" => {
                    priv_pass = self.string(value, "`privPass`");
                }
                "write" => {
                    write = match &value.value {
                        Node::Bool(b) => Some(spanned_at(*b, value.referenced)),
                        _ => self.active(value),
                    };
                }
                _ => self.unknown(key, KNOWN, "an SNMPv3 user"),
            }
        }
        let Some(name) = name else {
            self.error(node.referenced, "SNMPv3 user without `name`");
            return None;
        };
        let auth = self.key(auth_algo, auth_pass, "auth");
        let privacy = self.key(priv_algo, priv_pass, "priv");
        Some(spanned_at(
            RawUser {
                name,
                auth,
                privacy,
                write,
            },
            node.referenced,
        ))
    }

    /// An algorithm and its password; `none` (or no algorithm) is no key.
    fn key(
        &mut self,
        algo: Option<Spanned<String>>,
        pass: Option<Spanned<String>>,
        which: &str,
    ) -> Option<Spanned<RawKey>> {
        let algo = algo.filter(|a| !a.value.eq_ignore_ascii_case("none"))?;
        let Some(password) = pass else {
            self.error(
                algo.referenced,
                format!("`{which}Algo` without `{which}Pass`"),
            );
            return None;
        };
        let loc = algo.referenced;
        Some(spanned_at(
            RawKey {
                protocol: algo,
                password,
            },
            loc,
        ))
    }
}

/// `host:port`, or `host` alone (port 161, as the original does).
fn udp4(s: &str) -> String {
    let s = s.trim();
    if s.contains(':') {
        s.to_string()
    } else {
        format!("{s}:161")
    }
}

/// `[addr]:port`, `[addr]` or a bare `addr` (port 161).
fn udp6(s: &str) -> String {
    let s = s.trim();
    if s.starts_with('[') {
        if s.ends_with(']') {
            format!("{s}:161")
        } else {
            s.to_string()
        }
    } else {
        format!("[{s}]:161")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_default_port() {
        assert_eq!(udp4("127.0.0.1"), "127.0.0.1:161");
        assert_eq!(udp4("127.0.0.1:1161"), "127.0.0.1:1161");
        assert_eq!(udp6("[::1]:1161"), "[::1]:1161");
        assert_eq!(udp6("[::1]"), "[::1]:161");
        assert_eq!(udp6("::1"), "[::1]:161");
    }

    #[test]
    fn key_spelling() {
        assert_eq!(norm("engineID"), "engineid");
        assert_eq!(norm("auth_Protocol"), "authprotocol");
    }
}
