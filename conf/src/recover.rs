//! Reading one YAML file into [`RawFile`], reporting as many stage-1 errors as
//! possible.
//!
//! serde stops at the first error of a document. When that happens we look at
//! the document's shape with the YAML parser itself (top-level keys, the items
//! of `agents`), deserialize each of those parts on its own to find its first
//! error, then blank out the broken parts (`~`, which reads as "absent") and
//! deserialize the whole file again, so that the good parts still reach
//! validation with their true positions. One error per broken part, every
//! broken part reported. Documents with anchors/aliases, several documents or
//! a syntax error get the single error serde gives.

use serde::de::DeserializeOwned;
use serde_saphyr::granit_parser::{Event, Parser};

use crate::problem::{Pos, yaml_message};
use crate::raw::{RawAgent, RawFile};

/// What came out of one YAML file.
#[derive(Debug, Default)]
pub(crate) struct ParsedYaml {
    /// `None` only when nothing usable could be read.
    pub file: Option<RawFile>,
    /// Indices of `agents` items dropped because they did not deserialize
    /// (their error is in `errors`; validation must not call them empty).
    pub dropped_agents: Vec<usize>,
    pub errors: Vec<(Pos, String)>,
}

/// serde-saphyr's options for configuration files. Its default budget (250k
/// nodes, 1M events) guards against hostile input and would refuse a fleet
/// of ~20,000 hand-listed agents; a configuration is the operator's own
/// file, so the node and event caps are raised a hundredfold (alias-bomb
/// limits stay as they are).
pub(crate) fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: 25_000_000,
            max_events: 100_000_000,
        },
    }
}

fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, yaml_options())
}

pub(crate) fn parse_yaml(text: &str) -> ParsedYaml {
    let first = match from_str::<RawFile>(text) {
        Ok(file) => {
            return ParsedYaml {
                file: Some(file),
                ..ParsedYaml::default()
            };
        }
        Err(e) => e,
    };
    let whole_error = (location_of(&first, 0), yaml_message(&first));
    let single = ParsedYaml {
        file: None,
        dropped_agents: Vec::new(),
        errors: vec![whole_error.clone()],
    };
    let Some(entries) = shape(text) else {
        return single;
    };

    let inner = events(text).map(|e| map_entries(&e)).unwrap_or_default();
    let lines = Lines::of(text);
    let mut errors = Vec::new();
    let mut patches: Vec<Patch> = Vec::new();
    let mut dropped_agents = Vec::new();
    for entry in &entries {
        match (&entry.key[..], &entry.items) {
            ("agents", Some(items)) => {
                for (idx, item) in items.iter().enumerate() {
                    let found = part_all::<Option<RawAgent>>(text, &lines, item, &inner);
                    if found.errors.is_empty() {
                        continue;
                    }
                    errors.extend(found.errors);
                    if found.fixed {
                        patches.extend(found.patches);
                    } else {
                        patches.push(Patch::new(item, "~"));
                        dropped_agents.push(idx);
                    }
                }
            }
            _ => {
                let whole = Range {
                    start: entry.key_range.start,
                    end: entry.value.end,
                    line: entry.key_range.line,
                    col: entry.key_range.col,
                };
                let found = part_all::<RawFile>(text, &lines, &whole, &inner);
                if found.errors.is_empty() {
                    continue;
                }
                errors.extend(found.errors);
                if found.fixed {
                    patches.extend(found.patches);
                } else {
                    patches.push(match &entry.key[..] {
                        "cluster" | "events" | "include" => Patch::new(&entry.value, "~"),
                        "agents" => Patch::new(&entry.value, "[]"),
                        // An unknown key: drop the whole entry.
                        _ => Patch::new(&whole, ""),
                    });
                }
            }
        }
    }
    if errors.is_empty() {
        // The parts are fine on their own but not together: nothing to add
        // to what serde said.
        return single;
    }
    let patched = apply(text, &patches);
    match from_str::<RawFile>(&patched) {
        Ok(file) => ParsedYaml {
            file: Some(file),
            dropped_agents,
            errors,
        },
        Err(e) => {
            let again = (location_of(&e, 0), yaml_message(&e));
            if !errors.contains(&again) {
                errors.push(again);
            }
            ParsedYaml {
                file: None,
                dropped_agents,
                errors,
            }
        }
    }
}

fn location_of(e: &serde_saphyr::Error, line_shift: usize) -> Pos {
    match e.location() {
        Some(loc) => {
            let p = Pos::from_location(loc);
            if p.is_known() {
                Pos::new(p.line + line_shift, p.column)
            } else {
                p
            }
        }
        None => Pos::UNKNOWN,
    }
}

/// A node's extent: bytes `start..end` of the text; `line` (1-based) and
/// `col` (0-based, in characters) of `start`.
#[derive(Debug, Clone, Copy)]
struct Range {
    start: usize,
    end: usize,
    line: usize,
    col: usize,
}

#[derive(Debug)]
struct Entry {
    key: String,
    key_range: Range,
    value: Range,
    /// The items of the value when it is a sequence.
    items: Option<Vec<Range>>,
}

/// Deserializes `slice`, the text of `range` (perhaps patched), as a `T`,
/// at its true line and column: the part is parsed on its own, indented by
/// its column, and error lines are shifted back.
fn part_of<T: DeserializeOwned>(slice: &str, range: &Range) -> Result<(), (Pos, String)> {
    let sub = format!("{}{}", " ".repeat(range.col), slice);
    match from_str::<T>(&sub) {
        Ok(_) => Ok(()),
        Err(e) => Err((
            location_of(&e, range.line.saturating_sub(1)),
            yaml_message(&e),
        )),
    }
}

/// Every error of one part: what `part_all` found.
struct Found {
    errors: Vec<(Pos, String)>,
    /// Blanked entries and values that make the part deserialize.
    patches: Vec<Patch>,
    /// Whether the patches do make it deserialize.
    fixed: bool,
}

/// Like [`part`], but finds every error of the part: after each one inside
/// an entry of a mapping, the entry is taken out (an unknown key) or its
/// value blanked to `~` (anything else, which then reads as absent), and
/// the part is tried again. `fixed` says whether that made it deserialize;
/// if not, the caller blanks the whole part.
fn part_all<T: DeserializeOwned>(
    text: &str,
    lines: &Lines,
    range: &Range,
    entries: &[MapEntry],
) -> Found {
    // The entries inside the part (they are in text order).
    let first = entries.partition_point(|e| e.key.start < range.start);
    let last = entries.partition_point(|e| e.key.start < range.end);
    let entries = &entries[first..last];
    let mut found = Found {
        errors: Vec::new(),
        patches: Vec::new(),
        fixed: false,
    };
    let Some(slice) = text.get(range.start..range.end) else {
        found.fixed = true;
        return found;
    };
    // Each round patches one more entry; a part has fewer than this many.
    for _ in 0..256 {
        let shifted: Vec<Patch> = found
            .patches
            .iter()
            .map(|p| Patch {
                start: p.start - range.start,
                end: p.end - range.start,
                with: p.with,
            })
            .collect();
        let patched = apply(slice, &shifted);
        let (pos, message) = match part_of::<T>(&patched, range) {
            Ok(()) => {
                found.fixed = true;
                return found;
            }
            Err(e) => e,
        };
        // The same place again: our patch did not help (a required value).
        if found.errors.last().is_some_and(|(p, _)| *p == pos) {
            return found;
        }
        let Some(at) = lines.offset(text, pos) else {
            found.errors.push((pos, message));
            return found;
        };
        found.errors.push((pos, message.clone()));
        let patch = if let Ok(i) = entries.binary_search_by_key(&at, |e| e.key.start) {
            let e = &entries[i];
            // An unknown key (or a bad one): take the entry out, with the
            // comma that separates it from the next in a flow mapping.
            let mut end = e.value.end;
            let rest = &text[end..];
            let skip = rest.len() - rest.trim_start_matches([' ', '\t']).len();
            if rest[skip..].starts_with(',') {
                end += skip + 1;
            }
            Patch {
                start: e.key.start,
                end,
                with: "",
            }
        } else if let Some(e) = entries
            .iter()
            .filter(|e| e.value.start <= at && at < e.value.end.max(e.value.start + 1))
            .min_by_key(|e| e.value.end - e.value.start)
        {
            Patch::new(&e.value, "~")
        } else {
            return found;
        };
        if patch.start < range.start || patch.end > range.end {
            return found;
        }
        found
            .patches
            .retain(|p| !(patch.start <= p.start && p.end <= patch.end));
        found.patches.push(patch);
    }
    found
}

struct Patch {
    start: usize,
    end: usize,
    with: &'static str,
}

impl Patch {
    fn new(r: &Range, with: &'static str) -> Patch {
        Patch {
            start: r.start,
            end: r.end,
            with,
        }
    }
}

/// `text` with each patch's range replaced by its text, padded with blanks
/// so that every line and column elsewhere stays where it was.
fn apply(text: &str, patches: &[Patch]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut sorted: Vec<&Patch> = patches.iter().collect();
    sorted.sort_by_key(|p| p.start);
    for p in sorted {
        let (Some(before), Some(part)) = (text.get(at..p.start), text.get(p.start..p.end)) else {
            continue;
        };
        out.push_str(before);
        out.push_str(p.with);
        let mut skipped = p.with.chars().count();
        for c in part.chars() {
            if c == '\n' || c == '\r' {
                out.push(c);
            } else if skipped > 0 {
                skipped -= 1;
            } else {
                out.push(' ');
            }
        }
        at = p.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

/// The parser's events of `text` with their extents, or `None` for a text
/// that uses anchors or aliases (parts parsed alone would lose them) or
/// does not parse.
fn events(text: &str) -> Option<Vec<(Event<'_>, Range)>> {
    let mut events = Vec::new();
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (ev, span) = next.ok()?;
        match ev {
            // Parts parsed alone would lose their anchors.
            Event::Alias(_) | Event::UnresolvedAlias(_) | Event::Anchor(..) => return None,
            Event::Scalar(_, _, anchor, _)
            | Event::SequenceStart(_, anchor, _)
            | Event::MappingStart(_, anchor, _)
                if anchor != 0 =>
            {
                return None;
            }
            Event::Comment(..) => continue,
            _ => {}
        }
        let start = span.tag_start().unwrap_or(span.start);
        let range = Range {
            start: start.byte_offset()?,
            end: span.end.byte_offset()?,
            line: start.line(),
            col: start.col(),
        };
        events.push((ev, range));
    }
    Some(events)
}

/// One `key: value` of a mapping, anywhere in the document.
#[derive(Debug, Clone, Copy)]
struct MapEntry {
    key: Range,
    value: Range,
}

/// Every mapping entry of the document, at any depth, in text order.
fn map_entries(events: &[(Event<'_>, Range)]) -> Vec<MapEntry> {
    /// The node starting at event `i`: the index after it and its extent;
    /// the entries of the mappings inside it go to `out`.
    fn node(
        events: &[(Event<'_>, Range)],
        i: usize,
        out: &mut Vec<MapEntry>,
    ) -> Option<(usize, Range)> {
        let (ev, start) = events.get(i)?;
        match ev {
            Event::Scalar(..) | Event::Alias(_) => Some((i + 1, *start)),
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                let mapping = matches!(ev, Event::MappingStart(..));
                let mut j = i + 1;
                loop {
                    let (ev, end) = events.get(j)?;
                    if matches!(ev, Event::SequenceEnd | Event::MappingEnd) {
                        return Some((
                            j + 1,
                            Range {
                                end: end.end,
                                ..*start
                            },
                        ));
                    }
                    let (next, key) = node(events, j, out)?;
                    j = next;
                    if mapping {
                        let (next, value) = node(events, j, out)?;
                        out.push(MapEntry { key, value });
                        j = next;
                    }
                }
            }
            _ => None,
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < events.len() {
        match events[i].0 {
            Event::SequenceStart(..) | Event::MappingStart(..) | Event::Scalar(..) => {
                match node(events, i, &mut out) {
                    Some((next, _)) => i = next,
                    None => break,
                }
            }
            _ => i += 1,
        }
    }
    out.sort_by_key(|e| e.key.start);
    out
}

/// Where each line of a text starts.
struct Lines(Vec<usize>);

impl Lines {
    fn of(text: &str) -> Lines {
        Lines(
            std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        )
    }

    /// The byte offset of a 1-based line and column in `text`.
    fn offset(&self, text: &str, pos: Pos) -> Option<usize> {
        if !pos.is_known() || pos.line == 0 {
            return None;
        }
        let start = *self.0.get(pos.line - 1)?;
        let line = text.get(start..)?;
        let col = pos.column.saturating_sub(1);
        Some(start + line.char_indices().nth(col).map_or(line.len(), |(b, _)| b))
    }
}

/// The top-level entries of a one-document file whose root is a mapping with
/// plain keys, or `None` when the file is not of that simple shape.
fn shape(text: &str) -> Option<Vec<Entry>> {
    let events = events(text)?;
    let mut it = events.into_iter().peekable();
    if !matches!(it.next(), Some((Event::StreamStart, _))) {
        return None;
    }
    if !matches!(it.next(), Some((Event::DocumentStart(..), _))) {
        return None;
    }
    if !matches!(it.next(), Some((Event::MappingStart(..), _))) {
        return None;
    }
    let mut entries = Vec::new();
    loop {
        let (key_ev, key_range) = it.next()?;
        let key = match key_ev {
            Event::MappingEnd => break,
            Event::Scalar(k, ..) => k.into_owned(),
            _ => return None,
        };
        let (first, first_range) = it.next()?;
        let (value, items) = match first {
            Event::Scalar(..) => (first_range, None),
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                let is_seq = matches!(first, Event::SequenceStart(..));
                let mut items = Vec::new();
                let mut depth = 1usize;
                let mut item_start: Option<Range> = None;
                let mut end = first_range;
                while depth > 0 {
                    let (ev, r) = it.next()?;
                    let opens = matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..));
                    let closes = matches!(ev, Event::SequenceEnd | Event::MappingEnd);
                    if depth == 1 && is_seq && !closes {
                        item_start = Some(r);
                    }
                    if opens {
                        depth += 1;
                    } else if closes {
                        depth -= 1;
                    }
                    if depth == 1
                        && is_seq
                        && !opens
                        && let Some(s) = item_start.take()
                    {
                        items.push(Range { end: r.end, ..s });
                    }
                    end = r;
                }
                let value = Range {
                    end: end.end,
                    ..first_range
                };
                (value, is_seq.then_some(items))
            }
            _ => return None,
        };
        entries.push(Entry {
            key,
            key_range,
            value,
            items,
        });
    }
    match it.next() {
        Some((Event::DocumentEnd, _)) => {}
        _ => return None,
    }
    match it.next() {
        Some((Event::StreamEnd, _)) => Some(entries),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_file_parses_once() {
        let p = parse_yaml("agents:\n  - name: a\n");
        assert!(p.errors.is_empty());
        assert!(p.file.is_some());
    }

    #[test]
    fn one_error_per_broken_part() {
        let text = "cluster:\n  nod: x\nagents:\n  - name: a\n    bogus: 1\n  - name: b\n  - name: c\n    count: -1\nfoo: 1\n";
        let p = parse_yaml(text);
        let lines: Vec<usize> = p.errors.iter().map(|(pos, _)| pos.line).collect();
        assert_eq!(lines, vec![2, 5, 8, 9], "{:?}", p.errors);
        assert_eq!(p.errors[1].0, Pos::new(5, 5));
        assert!(p.errors[1].1.contains("bogus"), "{:?}", p.errors);
        let file = p.file.expect("patched file parses");
        let agents = file.agents.expect("agents").value;
        assert_eq!(agents.len(), 3);
        // Only the broken entries are taken out: the agents stay, to be
        // validated like the others.
        let names: Vec<&str> = agents
            .iter()
            .map(|a| a.value.as_ref().expect("kept").name.value.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        let b = agents[1].value.as_ref().expect("b");
        assert_eq!(Pos::of(&b.name), Pos::new(6, 11));
        assert!(p.dropped_agents.is_empty());
    }

    #[test]
    fn every_error_of_a_part_is_reported() {
        let text = "cluster:\n  nodee: x\n  start_tokenz: 3\n  heartbeat: 1s\nagents:\n  - name: a\n    foo: 1\n    count: [1]\n    bar: 2\n  - {x: 1, name: b, y: 2}\n";
        let p = parse_yaml(text);
        let at: Vec<(usize, usize)> = p
            .errors
            .iter()
            .map(|(pos, _)| (pos.line, pos.column))
            .collect();
        assert_eq!(
            at,
            [(2, 3), (3, 3), (7, 5), (8, 5), (9, 5), (10, 6), (10, 21)],
            "{:?}",
            p.errors
        );
        let file = p.file.expect("patched file parses");
        assert_eq!(
            file.cluster
                .expect("cluster")
                .value
                .heartbeat
                .map(|h| h.value),
            Some("1s".into())
        );
        let agents = file.agents.expect("agents").value;
        assert_eq!(agents.len(), 2);
        assert!(p.dropped_agents.is_empty());
    }

    #[test]
    fn a_part_that_patching_cannot_fix_is_dropped_with_its_errors() {
        // `name` is required: blanking its bad value leaves it missing.
        let p = parse_yaml("agents:\n  - name: [1]\n    foo: 1\n  - name: b\n");
        assert_eq!(p.dropped_agents, vec![0], "{:?}", p.errors);
        assert!(!p.errors.is_empty());
        let agents = p.file.expect("parses").agents.expect("agents").value;
        assert!(agents[0].value.is_none() && agents[1].value.is_some());
    }

    #[test]
    fn flow_items() {
        let p = parse_yaml("agents: [{name: a, x: 1}, {name: b}]\n");
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].0, Pos::new(1, 20));
        assert!(p.file.is_some());
    }

    #[test]
    fn syntax_error_is_single() {
        let p = parse_yaml("agents:\n  - name: \"a\n");
        assert_eq!(p.errors.len(), 1);
        assert!(p.file.is_none());
    }

    #[test]
    fn patch_keeps_positions() {
        let text = "a: 1\nb:\n  c: 2\n  d: 3\ne: 4\n";
        let r = Range {
            start: 10,
            end: 22,
            line: 3,
            col: 2,
        };
        let out = apply(text, &[Patch::new(&r, "~")]);
        assert_eq!(out, "a: 1\nb:\n  ~   \n      \ne: 4\n");
    }
}
