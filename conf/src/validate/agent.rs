//! Agents: templates expanded, each checked on its own, then what must be
//! unique across the fleet (names, endpoints, engine IDs).

use std::collections::HashMap;
use std::path::PathBuf;

use serde_saphyr::Spanned;

use super::{MAIN, Validator, check_name};
use crate::endpoint::{Bindings, parse_listen};
use crate::loader::Tree;
use crate::model::*;
use crate::problem::{FileId, Instance, Pos};
use crate::raw::*;
use crate::template;

impl Validator<'_> {
    /// The agents of every entry, checked. With `expand` false (the fleet
    /// is refused for its size) a template's syntax is checked but no copy
    /// is made.
    pub(super) fn agents(&mut self, tree: &Tree, cluster: &Cluster, expand: bool) -> Vec<Agent> {
        let mut cross = Cross::default();
        if let Some(snmp) = tree
            .main
            .cluster
            .as_ref()
            .and_then(|c| c.value.snmp.as_ref())
        {
            // The supervisor's own SNMP endpoints take part in clash checks.
            if let Some(list) = &snmp.value.listen {
                for item in &list.value.0 {
                    if let Ok(addr) = parse_listen(&item.value) {
                        let owner = Owner {
                            agent: None,
                            name: "cluster.snmp".into(),
                            file: MAIN,
                            pos: Pos::of_or(item, Pos::of(list)),
                            active: true,
                        };
                        let _ = cross.bindings.bind(addr, owner);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for entry in &tree.agents {
            let file = entry.file;
            let raw = &entry.raw.value;
            let pos = Pos::of(&entry.raw);
            let Some(count) = &raw.count else {
                self.warn_placeholders(file, raw);
                let agent = self.agent(file, raw, pos, cluster);
                self.cross_check(&mut cross, file, raw, &agent, out.len());
                out.push(agent);
                continue;
            };
            let n = count.value.0;
            if n == 0 {
                self.err(file, Pos::of(count), "`count` must be at least 1");
                continue;
            }
            if n > template::MAX_COUNT {
                self.err(
                    file,
                    Pos::of(count),
                    format!("`count` is at most {}", template::MAX_COUNT),
                );
                continue;
            }
            let text = self.files.get(file).map_or("", |f| f.text.as_str());
            let compiled = match template::compile(raw, text) {
                Ok(c) => c,
                Err(syntax) => {
                    for (p, msg) in syntax {
                        self.err(file, p, msg);
                    }
                    continue;
                }
            };
            if !expand {
                continue;
            }
            // Copies are made one at a time: a big `count` never holds all
            // its raw copies at once.
            for i in 0..n {
                let copy = match compiled.instance(raw, i, text) {
                    Ok(c) => c,
                    Err((p, msg)) => {
                        // Reported for the first failing copy only.
                        self.report.instance = None;
                        self.err(file, p, msg);
                        break;
                    }
                };
                self.report.instance = Some(Instance {
                    template: (file, pos),
                    i,
                    count: n,
                });
                let agent = self.agent(file, &copy, pos, cluster);
                self.cross_check(&mut cross, file, &copy, &agent, out.len());
                out.push(agent);
            }
            self.report.instance = None;
        }
        if out.is_empty() && !self.report.has_errors() && !tree.node {
            let pos = tree.main.agents.as_ref().map_or(Pos::UNKNOWN, Pos::of);
            self.warn(MAIN, pos, "the fleet has no agents");
        }
        out
    }

    /// `{i}` in an agent without `count` is kept as written: probably a
    /// forgotten `count`.
    fn warn_placeholders(&mut self, file: FileId, raw: &RawAgent) {
        let mut found = Vec::new();
        raw.clone().each_string(&mut |s: &mut Spanned<String>| {
            if template::has_placeholder(&s.value) {
                found.push(Pos::of(s));
            }
        });
        for pos in found {
            self.warn(
                file,
                pos,
                "`{i}` placeholder in an agent without `count`: kept as written (add `count: N` to make a template)",
            );
        }
    }

    /// Names, endpoints and engine IDs that must be unique across the fleet.
    fn cross_check(
        &mut self,
        cross: &mut Cross,
        file: FileId,
        raw: &RawAgent,
        agent: &Agent,
        index: usize,
    ) {
        let name_pos = Pos::of(&raw.name);
        match cross.names.get(&agent.name) {
            Some(&(f, p)) => {
                let first = self.at(f, p);
                self.err(
                    file,
                    name_pos,
                    format!(
                        "duplicate agent name `{}` (first defined at {first})",
                        agent.name
                    ),
                );
            }
            None => {
                cross.names.insert(agent.name.clone(), (file, name_pos));
            }
        }
        let list_pos = raw
            .listen
            .as_ref()
            .map_or(Pos::of_or(&raw.name, name_pos), Pos::of);
        let entries = raw
            .listen
            .as_ref()
            .map(|l| l.value.0.as_slice())
            .unwrap_or_default();
        for item in entries {
            let Ok(addr) = parse_listen(&item.value) else {
                continue;
            };
            let pos = Pos::of_or(item, list_pos);
            let owner = Owner {
                agent: Some(index),
                name: agent.name.clone(),
                file,
                pos,
                active: agent.active,
            };
            if let Err((other_addr, other)) = cross.bindings.bind(addr, owner) {
                let same_addr = if other_addr == addr {
                    format!("`{addr}`")
                } else {
                    format!("`{addr}` overlaps `{other_addr}`")
                };
                if other.agent == Some(index) {
                    self.err(
                        file,
                        pos,
                        format!("endpoint {same_addr}: listed twice in this agent"),
                    );
                } else {
                    let whose = match other.agent {
                        Some(_) => format!("agent `{}`", other.name),
                        None => "the supervisor's own `cluster.snmp`".to_string(),
                    };
                    let what = format!(
                        "endpoint {same_addr} of {whose} ({})",
                        self.at(other.file, other.pos)
                    );
                    if other.active && agent.active {
                        self.err(file, pos, format!("endpoint clash: {what}"));
                    } else {
                        self.warn(
                            file,
                            pos,
                            format!("endpoint shared with {what}; allowed because one of them is inactive, but they cannot run together"),
                        );
                    }
                }
            }
        }
        if let (Some(id), Some(raw_id)) = (&agent.engine_id, &raw.engine_id) {
            match cross.engine_ids.get(id) {
                Some((other, f, p)) => {
                    let first = self.at(*f, *p);
                    self.warn(
                        file,
                        Pos::of(raw_id),
                        format!("engine ID also used by agent `{other}` ({first}): SNMPv3 managers will take them for one engine"),
                    );
                }
                None => {
                    cross
                        .engine_ids
                        .insert(id.clone(), (agent.name.clone(), file, Pos::of(raw_id)));
                }
            }
        }
    }

    fn agent(&mut self, file: FileId, raw: &RawAgent, pos: Pos, cluster: &Cluster) -> Agent {
        let name = raw.name.value.clone();
        if let Err(e) = check_name(&name) {
            self.err(file, Pos::of(&raw.name), format!("agent name: {e}"));
        }
        let active = raw.active.as_ref().is_none_or(|a| a.value);
        let listen = self
            .listen_list(file, raw.listen.as_ref(), pos, &format!("agent `{name}`"))
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        let engine_id = raw
            .engine_id
            .as_ref()
            .and_then(|e| match parse_engine_id(&e.value) {
                Ok(id) => Some(id),
                Err(msg) => {
                    self.err(file, Pos::of(e), msg);
                    None
                }
            });
        let data = raw.data.as_ref().map(|d| self.snapshot(file, d));
        let dir = raw
            .data_dir
            .as_ref()
            .and_then(|d| self.data_dir(file, raw, d));
        let (snmpv1, snmpv2c, snmpv3) = match &dir {
            Some((_, scan)) => {
                let communities = || Communities {
                    entries: scan
                        .communities()
                        .map(|(name, path)| Community {
                            name: Secret::new(name.clone()),
                            data: path.clone(),
                            write: false,
                        })
                        .collect(),
                };
                let v3 = raw
                    .snmpv3
                    .as_ref()
                    .map(|s| self.v3(file, s, None, Some(scan.contexts())));
                (Some(communities()), Some(communities()), v3)
            }
            None => (
                raw.snmpv1
                    .as_ref()
                    .map(|s| self.communities(file, s, data.as_ref(), "snmpv1")),
                raw.snmpv2c
                    .as_ref()
                    .map(|s| self.communities(file, s, data.as_ref(), "snmpv2c")),
                raw.snmpv3
                    .as_ref()
                    .map(|s| self.v3(file, s, data.as_ref(), None)),
            ),
        };
        let notify = match &raw.notify {
            None => AgentNotify::Inherit,
            Some(n) => match &n.value {
                RawAgentNotify::Word(w) if w == "inherit" => AgentNotify::Inherit,
                RawAgentNotify::Word(w) if w == "none" => AgentNotify::Targets(Vec::new()),
                RawAgentNotify::Word(w) => {
                    self.err(
                        file,
                        Pos::of(n),
                        format!("`notify: {w}`: expected `inherit`, `none` or a list of targets"),
                    );
                    AgentNotify::Inherit
                }
                RawAgentNotify::Targets(list) => AgentNotify::Targets(
                    list.iter()
                        .filter_map(|t| self.notify_target(file, t))
                        .collect(),
                ),
            },
        };
        let max_varbinds = self.uint(
            file,
            raw.max_varbinds.as_ref(),
            cluster.max_varbinds,
            1,
            "max_varbinds",
        );
        let memory_max = self.size(
            file,
            raw.memory_max.as_ref(),
            cluster.memory_max,
            "memory_max",
        );

        let values = raw
            .values
            .as_ref()
            .map(|v| self.values(file, v))
            .unwrap_or_default();
        let identity = raw.identity.as_ref().and_then(super::values::identity);
        let counters = match &raw.counters {
            None => CounterMode::Static,
            Some(c) => match c.value.as_str() {
                "static" => CounterMode::Static,
                "animate" => CounterMode::Animate,
                other => {
                    self.err(
                        file,
                        Pos::of(c),
                        format!("unknown counters mode `{other}`: expected static or animate"),
                    );
                    CounterMode::Static
                }
            },
        };

        let communities = [&raw.snmpv1, &raw.snmpv2c]
            .into_iter()
            .flatten()
            .map(|s| match &s.value.communities.value {
                RawCommunities::List(l) => l.len(),
                RawCommunities::Map(m) => m.len(),
            })
            .sum::<usize>();
        let users = raw
            .snmpv3
            .as_ref()
            .and_then(|v3| v3.value.users.as_ref())
            .map_or(0, |u| u.value.len());
        if communities == 0 && users == 0 && raw.data_dir.is_none() {
            self.err(
                file,
                pos,
                format!("agent `{name}` serves nothing: give it `snmpv1`/`snmpv2c` communities or `snmpv3` users"),
            );
        }
        Agent {
            name,
            active,
            listen,
            engine_id,
            data,
            data_dir: dir.map(|(path, _)| path),
            snmpv1,
            snmpv2c,
            snmpv3,
            notify,
            max_varbinds,
            memory_max,
            values,
            identity,
            counters,
        }
    }

    /// An agent's `data_dir`, read (once per load); `None` when it cannot
    /// be served, with the error reported. It excludes what it replaces:
    /// `data`, the v1/v2c communities and the v3 contexts.
    fn data_dir(
        &mut self,
        file: FileId,
        raw: &RawAgent,
        dir: &Spanned<String>,
    ) -> Option<(PathBuf, std::rc::Rc<crate::data_dir::Scan>)> {
        let pos = Pos::of(dir);
        if dir.value.trim().is_empty() {
            self.err(file, pos, "empty `data_dir`");
            return None;
        }
        let contexts = raw
            .snmpv3
            .as_ref()
            .and_then(|v3| v3.value.contexts.as_ref());
        let clashes = [
            ("data", raw.data.as_ref().map(Pos::of)),
            ("snmpv1", raw.snmpv1.as_ref().map(Pos::of)),
            ("snmpv2c", raw.snmpv2c.as_ref().map(Pos::of)),
            ("snmpv3.contexts", contexts.map(Pos::of)),
        ];
        for (key, at) in clashes {
            if let Some(at) = at {
                self.err(
                    file,
                    if at.is_known() { at } else { pos },
                    format!("`{key}` and `data_dir` exclude each other: `data_dir` gives the agent its snapshots, its v1/v2c communities and its v3 contexts"),
                );
            }
        }
        let path = self.path(file, &dir.value);
        let scanned = self.scan_dir(&path);
        let first = self.dirs_reported.insert(path.clone());
        match scanned {
            Ok(scan) => {
                if first {
                    for w in &scan.warnings {
                        self.warn(file, pos, w.clone());
                    }
                }
                Some((path, scan))
            }
            Err(msg) => {
                if first {
                    self.err(file, pos, msg);
                }
                None
            }
        }
    }

    fn communities(
        &mut self,
        file: FileId,
        section: &Spanned<RawCommunitySection>,
        data: Option<&PathBuf>,
        which: &str,
    ) -> Communities {
        let list = &section.value.communities;
        let list_pos = Pos::of(list);
        let items: Vec<(&Spanned<String>, Option<&RawCommunityOpts>)> = match &list.value {
            RawCommunities::List(names) => names.iter().map(|n| (n, None)).collect(),
            RawCommunities::Map(entries) => entries.iter().map(|(n, o)| (n, o.as_ref())).collect(),
        };
        if items.is_empty() {
            self.warn(
                file,
                list_pos,
                format!("`{which}` lists no community: it serves nobody"),
            );
        }
        let mut entries: Vec<Community> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (name, opts) in items {
            // Community strings are secrets: messages never quote them.
            let pos = Pos::of_or(name, list_pos);
            if name.value.is_empty() {
                self.err(file, pos, "empty community");
                continue;
            }
            if !seen.insert(name.value.clone()) {
                self.err(file, pos, format!("community listed twice in `{which}`"));
                continue;
            }
            let own = opts.and_then(|o| o.data.as_ref());
            let path = match (own, data) {
                (Some(d), _) => self.snapshot(file, d),
                (None, Some(d)) => d.clone(),
                (None, None) => {
                    self.err(
                        file,
                        pos,
                        format!("`{which}` community has no snapshot: set the agent's `data` (or the community's own `data`)"),
                    );
                    continue;
                }
            };
            entries.push(Community {
                name: Secret::new(name.value.clone()),
                data: path,
                write: opts.and_then(|o| o.write.as_ref()).is_some_and(|w| w.value),
            });
        }
        Communities { entries }
    }

    /// The `snmpv3` section; `from_dir`: the contexts a `data_dir` gives
    /// (its own `contexts` were refused).
    fn v3(
        &mut self,
        file: FileId,
        section: &Spanned<RawV3>,
        data: Option<&PathBuf>,
        from_dir: Option<Vec<(String, PathBuf)>>,
    ) -> V3 {
        let pos = Pos::of(section);
        let mut users: Vec<V3User> = Vec::new();
        if let Some(list) = &section.value.users {
            let mut seen = std::collections::HashSet::new();
            for u in &list.value {
                let user = self.usm_user(
                    file,
                    &u.value.name,
                    u.value.auth.as_ref(),
                    u.value.privacy.as_ref(),
                    u.value.write.as_ref(),
                );
                if !seen.insert(user.name.clone()) {
                    self.err(
                        file,
                        Pos::of(&u.value.name),
                        format!("SNMPv3 user `{}` listed twice", user.name),
                    );
                    continue;
                }
                users.push(user);
            }
        }
        let mut contexts: Vec<(String, PathBuf)> = Vec::new();
        if let Some(given) = from_dir {
            contexts = given;
        } else if let Some(map) = &section.value.contexts {
            for (name, path) in &map.value.0 {
                if name.value.chars().count() > 32 {
                    self.err(
                        file,
                        Pos::of(name),
                        "a context name has at most 32 characters (RFC 3411)",
                    );
                }
                let p = self.snapshot(file, path);
                contexts.push((name.value.clone(), p));
            }
        }
        if let Some(d) = data
            && !contexts.iter().any(|(n, _)| n.is_empty())
        {
            contexts.insert(0, (String::new(), d.clone()));
        }
        let raw_users = section.value.users.as_ref().map_or(0, |u| u.value.len());
        if raw_users > 0 && contexts.is_empty() {
            self.err(
                file,
                pos,
                "SNMPv3 users but no snapshot: set the agent's `data` or `snmpv3.contexts`",
            );
        }
        if raw_users == 0 {
            self.warn(file, pos, "`snmpv3` has no users: it serves nobody");
        }
        V3 { users, contexts }
    }
}

/// Who binds an endpoint: an agent (by index) or the supervisor itself.
#[derive(Debug, Clone)]
struct Owner {
    agent: Option<usize>,
    name: String,
    file: FileId,
    pos: Pos,
    active: bool,
}

#[derive(Default)]
struct Cross {
    names: HashMap<String, (FileId, Pos)>,
    bindings: Bindings<Owner>,
    engine_ids: HashMap<Vec<u8>, (String, FileId, Pos)>,
}

/// Hex (optionally `0x`, `:` separators allowed), 5 to 32 bytes, not all
/// zeros or all ones (RFC 3411 SnmpEngineID).
fn parse_engine_id(s: &str) -> Result<Vec<u8>, String> {
    let body = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let digits: String = body.chars().filter(|c| *c != ':').collect();
    if let Some(bad) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "engine ID `{s}` is not hex ({bad:?} is not a hex digit)"
        ));
    }
    if digits.len() % 2 == 1 {
        return Err(format!("engine ID `{s}` has an odd number of hex digits"));
    }
    let bytes = hex::decode(&digits).map_err(|e| format!("engine ID `{s}`: {e}"))?;
    if !(5..=32).contains(&bytes.len()) {
        return Err(format!(
            "engine ID `{s}` is {} bytes: RFC 3411 requires 5 to 32",
            bytes.len()
        ));
    }
    if bytes.iter().all(|b| *b == 0) || bytes.iter().all(|b| *b == 0xff) {
        return Err(format!(
            "engine ID `{s}` may not be all zeros or all ff (RFC 3411)"
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_ids() {
        assert_eq!(parse_engine_id("80001f8804").map(|v| v.len()), Ok(5));
        assert_eq!(
            parse_engine_id("0x80001f8804"),
            parse_engine_id("80001f8804")
        );
        assert_eq!(
            parse_engine_id("80:00:1f:88:04"),
            parse_engine_id("80001f8804")
        );
        assert!(parse_engine_id("80001f88").is_err());
        assert!(parse_engine_id("80001f8804z").is_err());
        assert!(parse_engine_id("80001f880").is_err());
        assert!(parse_engine_id(&"ab".repeat(33)).is_err());
        assert!(parse_engine_id("0000000000").is_err());
        assert!(parse_engine_id("ffffffffff").is_err());
    }
}
