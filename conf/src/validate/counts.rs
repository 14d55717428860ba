//! How big the fleet is, counted from the `agents` entries before any
//! template is expanded: agents, endpoints and snapshot files, in time and
//! memory of the entries, never of their copies.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_saphyr::Spanned;

use super::Validator;
use crate::loader::Tree;
use crate::model::Counts;
use crate::problem::Pos;
use crate::raw::*;
use crate::template::{self, Template};

/// The most agents one fleet may have, template copies counted. A fleet
/// over it is refused before any template is expanded: a few typos such as
/// three `count: 1000000` never cost the gigabytes of their copies.
pub(crate) const MAX_AGENTS: u64 = 1_000_000;

/// The most distinct files a templated snapshot path is counted as; a path
/// whose copies name more (`dev-{i}`) counts one file per copy.
const DISTINCT_FILES: usize = 1024;

impl Validator<'_> {
    /// The fleet's [`Counts`]. An entry whose `count` is refused (0, over
    /// [`template::MAX_COUNT`]) counts nothing: it is not expanded either.
    pub(super) fn counts(&mut self, tree: &Tree) -> Counts {
        let mut counts = Counts::default();
        let mut files: HashSet<PathBuf> = HashSet::new();
        for entry in &tree.agents {
            let raw = &entry.raw.value;
            let n = match &raw.count {
                None => 1,
                Some(c) if (1..=template::MAX_COUNT).contains(&c.value.0) => c.value.0,
                Some(_) => continue,
            };
            counts.agents += n;
            if raw.active.as_ref().is_some_and(|a| !a.value) {
                counts.inactive += n;
            }
            let listen = raw.listen.as_ref().map_or(0, |l| l.value.0.len() as u64);
            counts.endpoints += n * listen;
            counts.max_endpoints = counts.max_endpoints.max(listen);
            let mut named: HashSet<&str> = HashSet::new();
            for s in snapshot_strings(raw) {
                if s.value.trim().is_empty() || !named.insert(&s.value) {
                    continue;
                }
                let per_copy = match Template::parse(&s.value) {
                    Ok(t) if raw.count.is_some() && !t.is_verbatim() => t,
                    _ => {
                        let path = self.path(entry.file, &s.value);
                        if !files.contains(&path) {
                            counts.snapshots += 1;
                            counts.snapshot_bytes += file_len(&path);
                            files.insert(path);
                        }
                        continue;
                    }
                };
                // The copies' files, each taken to be the size of copy 0's.
                let first = per_copy.render(0).unwrap_or_else(|_| s.value.clone());
                let size = file_len(&self.path(entry.file, &first));
                match distinct_renders(&per_copy, n) {
                    Some(names) => {
                        for name in names {
                            if files.insert(self.path(entry.file, &name)) {
                                counts.snapshots += 1;
                                counts.snapshot_bytes += size;
                            }
                        }
                    }
                    None => {
                        counts.snapshots += n;
                        counts.snapshot_bytes += n * size;
                    }
                }
            }
            let mut in_dir = 0;
            if let Some(dir) = raw.data_dir.as_ref().filter(|d| !d.value.trim().is_empty()) {
                let copies = raw.count.is_some() && template::has_placeholder(&dir.value);
                let first = if copies {
                    template::render(&dir.value, 0).unwrap_or_else(|_| dir.value.clone())
                } else {
                    dir.value.clone()
                };
                let path = self.path(entry.file, &first);
                if let Ok(scan) = self.scan_dir(&path) {
                    in_dir = scan.entries.len() as u64;
                    if copies {
                        // Each copy its own directory, taken to be like copy 0's.
                        counts.snapshots += n * in_dir;
                        counts.snapshot_bytes += n * scan.bytes;
                    } else {
                        for (_, file) in &scan.entries {
                            if files.insert(file.clone()) {
                                counts.snapshots += 1;
                                counts.snapshot_bytes += file_len(file);
                            }
                        }
                    }
                }
            }
            counts.max_snapshots = counts.max_snapshots.max(named.len() as u64 + in_dir);
        }
        counts
    }
}

impl Validator<'_> {
    /// The templates of a fleet over [`MAX_AGENTS`], for its message:
    /// `count 1000000 at fleet.yaml:4:12, … and 2 more templates, 3 other
    /// agents`.
    pub(super) fn template_counts(&self, tree: &Tree) -> String {
        const SHOWN: usize = 3;
        let mut templates = Vec::new();
        let mut others = 0u64;
        for entry in &tree.agents {
            match &entry.raw.value.count {
                Some(c) if (1..=template::MAX_COUNT).contains(&c.value.0) => templates.push(
                    format!("count {} at {}", c.value.0, self.at(entry.file, Pos::of(c))),
                ),
                Some(_) => {}
                None => others += 1,
            }
        }
        let mut text = templates
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if templates.len() > SHOWN {
            text.push_str(&format!(" and {} more templates", templates.len() - SHOWN));
        }
        if others > 0 {
            text.push_str(&format!(", {others} other agents"));
        }
        text
    }
}

/// Every snapshot path an entry names: its `data`, its communities' own
/// `data`, its SNMPv3 contexts.
fn snapshot_strings(raw: &RawAgent) -> Vec<&Spanned<String>> {
    let mut out: Vec<&Spanned<String>> = raw.data.iter().collect();
    for section in [&raw.snmpv1, &raw.snmpv2c].into_iter().flatten() {
        if let RawCommunities::Map(entries) = &section.value.communities.value {
            out.extend(
                entries
                    .iter()
                    .filter_map(|(_, opts)| opts.as_ref().and_then(|o| o.data.as_ref())),
            );
        }
    }
    if let Some(contexts) = raw
        .snmpv3
        .as_ref()
        .and_then(|v3| v3.value.contexts.as_ref())
    {
        out.extend(contexts.value.0.iter().map(|(_, data)| data));
    }
    out
}

/// The distinct strings `t` renders for copies 0..n (copies without a
/// value are left to validation), or `None` past [`DISTINCT_FILES`]: a
/// path such as `model-{i%3}.snmprec` names three files whatever the
/// count, and is counted as three.
fn distinct_renders(t: &Template, n: u64) -> Option<HashSet<String>> {
    let mut seen = HashSet::new();
    let mut buf = String::new();
    for i in 0..n {
        buf.clear();
        if t.render_into(i, &mut buf).is_err() || seen.contains(&buf) {
            continue;
        }
        if seen.len() == DISTINCT_FILES {
            return None;
        }
        seen.insert(buf.clone());
    }
    Some(seen)
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
