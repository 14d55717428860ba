//! `docs/configuration.md` against the schema: every key the loader accepts
//! has its row in the reference (`| `key` | type | default | meaning |`),
//! and every row names a key that exists.
//!
//! The schema is not listed by hand here: it is probed through the loader
//! itself. An unknown key `zzz_probe` at a place that is a mapping is refused
//! with "unknown field `zzz_probe`, expected one of …", which names the keys
//! of that place; each of them is probed in turn as a mapping, a list of
//! mappings and a mapping of named mappings (`communities.<COMMUNITY>`).
//! So a key added to the schema without its entry fails this test.

use std::collections::BTreeSet;

use crate::common::Dir;

const PROBE: &str = "zzz_probe";

/// How a key's value nests, as the docs write it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// `a.b`: a mapping.
    Map,
    /// `a[].b`: a list of mappings.
    List,
    /// `a.<NAME>.b`: a mapping of named mappings.
    Named,
}

/// The flow YAML that puts `inner` at `path`.
fn nest(path: &[(String, Step)], inner: &str) -> String {
    let mut text = inner.to_string();
    for (key, step) in path.iter().rev() {
        text = match step {
            Step::Map => format!("{{{key}: {text}}}"),
            Step::List => format!("{{{key}: [{text}]}}"),
            Step::Named => format!("{{{key}: {{probe-name: {text}}}}}"),
        };
    }
    text
}

/// The keys the loader names when `zzz_probe` is put at `path` (as a
/// mapping key), or `None` when that place is no mapping.
fn keys_at(dir: &Dir, path: &[(String, Step)]) -> Option<Vec<String>> {
    let doc = nest(path, &format!("{{{PROBE}: 1}}"));
    // The whole file is one flow mapping; strip its braces into block form
    // so the top level is the file itself.
    let doc = doc
        .strip_prefix('{')
        .and_then(|d| d.strip_suffix('}'))
        .unwrap_or(&doc)
        .to_string();
    let problems = match dir.load(&doc) {
        Ok(_) => return None,
        Err(ps) => ps,
    };
    let needle = format!("unknown field `{PROBE}`");
    let msg = problems.iter().find(|p| p.message.contains(&needle))?;
    let rest = msg.message.split_once("expected ")?.1;
    let list = rest.strip_prefix("one of ").unwrap_or(rest);
    Some(
        list.split(',')
            .map(|k| k.trim().trim_matches('`').to_string())
            .filter(|k| !k.is_empty())
            .collect(),
    )
}

/// The docs' spelling of a path: `agents[].snmpv3.users[].auth.protocol`.
fn spelled(path: &[(String, Step)]) -> String {
    let mut out = String::new();
    for (i, (key, _)) in path.iter().enumerate() {
        if i > 0 {
            match path[i - 1].1 {
                Step::Map => out.push('.'),
                Step::List => out.push_str("[]."),
                Step::Named => out.push_str(".<NAME>."),
            }
        }
        out.push_str(key);
    }
    out
}

/// Every key of the schema, spelled as the docs spell them.
fn schema_keys() -> BTreeSet<String> {
    let dir = Dir::new();
    let mut found = BTreeSet::new();
    let mut todo: Vec<Vec<(String, Step)>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        assert!(
            path.len() < 8,
            "schema probe too deep at {}",
            spelled(&path)
        );
        let Some(keys) = keys_at(&dir, &path) else {
            panic!("the loader names no keys at {}", spelled(&path));
        };
        for key in keys {
            let mut child = path.clone();
            child.push((key, Step::Map));
            found.insert(spelled(&child));
            for step in [Step::Map, Step::List, Step::Named] {
                let last = child.len() - 1;
                child[last].1 = step;
                if keys_at(&dir, &child).is_some() {
                    todo.push(child.clone());
                    break;
                }
            }
        }
    }
    found
}

/// The key column of every reference row of `docs/configuration.md`, with
/// `<ANY>` segments spelled `<NAME>`.
fn documented_keys() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let text = std::fs::read_to_string(path).expect("docs/configuration.md");
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(k, _)| k))
        .filter(|k| {
            ["cluster", "events", "include", "agents", "scenarios"]
                .iter()
                .any(|top| {
                    k == top
                        || k.starts_with(&format!("{top}."))
                        || k.starts_with(&format!("{top}[]"))
                })
        })
        .map(|k| {
            k.split('.')
                .map(|seg| if seg.starts_with('<') { "<NAME>" } else { seg })
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect()
}

#[test]
fn every_key_of_the_schema_has_its_reference_row() {
    let schema = schema_keys();
    // The probe itself must see the schema (a loader whose messages changed
    // would otherwise make this test pass on nothing).
    for known in [
        "cluster.restart.policy",
        "agents[].snmpv3.users[].auth.protocol",
        "events.notify[].target",
    ] {
        assert!(
            schema.contains(known),
            "the schema probe missed {known}: {schema:#?}"
        );
    }
    let docs = documented_keys();
    let missing: Vec<_> = schema.difference(&docs).collect();
    assert!(
        missing.is_empty(),
        "keys the loader accepts with no row in docs/configuration.md \
         (add `| `key` | type | default | meaning |`; `<NAME>` stands for \
         any placeholder such as `<COMMUNITY>`): {missing:#?}"
    );
}

#[test]
fn every_reference_row_has_type_default_and_meaning() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let text = std::fs::read_to_string(path).expect("docs/configuration.md");
    let mut rows = 0;
    let mut in_reference = false;
    for line in text.lines() {
        if line.starts_with("| key | type | default | meaning |") {
            in_reference = true;
            continue;
        }
        if !line.starts_with('|') {
            in_reference = false;
            continue;
        }
        if !in_reference || line.starts_with("|---") {
            continue;
        }
        rows += 1;
        let cells: Vec<_> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert!(
            cells.len() >= 4 && cells.iter().take(4).all(|c| !c.is_empty()),
            "a reference row needs a key, a type, a default and a meaning: {line}"
        );
    }
    assert!(rows > 50, "only {rows} reference rows found");
}

#[test]
fn every_reference_row_names_a_key_of_the_schema() {
    let schema = schema_keys();
    // `contexts.<CONTEXT>`: a mapping of names to plain values documents
    // its entries under the mapping's own key.
    let stale: Vec<_> = documented_keys()
        .into_iter()
        .filter(|k| !schema.contains(k.strip_suffix(".<NAME>").unwrap_or(k)))
        .collect();
    assert!(
        stale.is_empty(),
        "rows of docs/configuration.md that name no key the loader accepts: {stale:#?}"
    );
}
