//! An event as pool records: its key, its value as compact JSON, sliced as
//! cloud-init slices one when it is too long for the host, and the
//! reassembly of slices, ours and cloud-init's.
//!
//! Although a record holds 2047 bytes, the kernel driver (`hv_kvp.c`) hands
//! the host at most `2048/2 - 2` = 1022 UTF-16 units of a value and
//! `512/2 - 2` = 254 of a key; longer ones arrive cut. So, like cloud-init
//! (which slices at its `HV_KVP_AZURE_MAX_VALUE_SIZE` of 1024), we keep every
//! value within [`HOST_VALUE_MAX`] bytes and every key within
//! [`HOST_KEY_MAX`] bytes (a UTF-8 byte count is never below the UTF-16
//! unit count), shortening only the agent part of a key (the value still
//! names the agent in full).
//!
//! # Slices (cloud-init's `_break_down`)
//! A value longer than [`HOST_VALUE_MAX`] becomes several records. Each is
//! the event's JSON without `reason`, followed by `"msg_i":<i>` and
//! `"msg":"<part i of the reason>"`, under the key `<key>|<i>`; the room for
//! the part is `HOST_VALUE_MAX - len(skeleton) - 8`, cloud-init's formula.
//! Unlike cloud-init (which slices the escaped text and may split an escape
//! sequence), we cut between characters, so every slice is valid JSON on its
//! own and its `msg` is a substring of the reason.
//!
//! Reassembly ([`reassemble`]) works for both: take the records `<base>|0`,
//! `<base>|1`, … in the pool's order, concatenate the raw (still escaped)
//! text of their `msg` strings, and put it back where the slices carried
//! `msg_i`/`msg`, under `reason` for our keys and `msg` for cloud-init's.
//! Both writers put that member last, so the result is byte for byte the
//! value that was too long. cloud-init writes an event's slices one after
//! the other; ours may have other records between them, since a batch
//! takes free slots where they are and no record is moved to make room
//! (see `pool`).

use super::record::{KEY_SIZE, Record, VALUE_SIZE, fit};
use crate::events::Event;

/// Longest key the host receives whole (UTF-16 units, kernel `hv_kvp.c`).
pub const HOST_KEY_MAX: usize = KEY_SIZE / 2 - 2;
/// Longest value the host receives whole; longer event values are sliced.
pub const HOST_VALUE_MAX: usize = VALUE_SIZE / 2 - 2;
/// First field of our keys.
pub const PREFIX: &str = "AGENTCLUSTER";

/// cloud-init's spare room in each slice.
const SLICE_SLACK: usize = 8;
/// Room kept in a key for a slice suffix (`|99999`).
const SUFFIX_ROOM: usize = 6;

/// The key of an event's record: `AGENTCLUSTER|<incarnation>|<event>|<agent>|<seq>`,
/// the agent part shortened when the key would not reach the host whole.
pub fn event_key(incarnation: u64, e: &Event) -> String {
    let head = format!("{PREFIX}|{incarnation}|{}|", e.event);
    let tail = format!("|{}", e.seq);
    let room = HOST_KEY_MAX.saturating_sub(head.len() + tail.len() + SUFFIX_ROOM);
    format!("{head}{}{tail}", fit(&e.agent, room))
}

/// Length of `c` inside a JSON string as serde_json writes it.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        '\0'..='\u{1f}' => 6,
        _ => c.len_utf8(),
    }
}

/// The longest prefix of `s` whose escaped form fits in `room` bytes, but at
/// least one character (so slicing always progresses).
fn take_escaped(s: &str, room: usize) -> usize {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        let n = escaped_len(c);
        if used + n > room && i > 0 {
            return i;
        }
        used += n;
    }
    s.len()
}

/// An event as records `(key, value)`: one, or several slices (see the
/// module doc).
pub fn encode_event(
    incarnation: u64,
    e: &Event,
) -> Result<Vec<(String, String)>, serde_json::Error> {
    let key = event_key(incarnation, e);
    let whole = serde_json::to_string(e)?;
    if whole.len() <= HOST_VALUE_MAX {
        return Ok(vec![(key, whole)]);
    }
    let stripped = Event {
        reason: String::new(),
        ..e.clone()
    };
    let mut head = serde_json::to_string(&stripped)?;
    // `"reason":""` can only be the member itself: inside a JSON string a
    // quote is always escaped.
    if let Some(at) = head.find(",\"reason\":\"\"") {
        head.replace_range(at..at + 12, "");
    } else if let Some(at) = head.find("\"reason\":\"\",") {
        head.replace_range(at..at + 12, "");
    }
    head.pop(); // the closing brace
    let mut rest = e.reason.as_str();
    let mut parts = Vec::new();
    for i in 0usize.. {
        let skeleton = head.len() + format!(",\"msg_i\":{i},\"msg\":\"\"}}").len();
        let room = HOST_VALUE_MAX.saturating_sub(skeleton + SLICE_SLACK);
        let (piece, more) = rest.split_at(take_escaped(rest, room));
        let value = format!(
            "{head},\"msg_i\":{i},\"msg\":{}}}",
            serde_json::to_string(piece)?
        );
        parts.push((format!("{key}|{i}"), value));
        rest = more;
        if rest.is_empty() {
            break;
        }
    }
    Ok(parts)
}

/// A record of the pool after [`reassemble`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key (of the first slice, for a sliced value).
    pub key: String,
    /// The whole value.
    pub value: String,
    /// How many records it was made of.
    pub parts: usize,
    /// False for a slice whose siblings are missing (shown as stored).
    pub complete: bool,
}

/// A record that looks like a slice: key `<base>|<i>`, value
/// `<head>,"msg_i":<i>,"msg":"<raw>"}`.
struct Slice<'a> {
    base: &'a str,
    index: u64,
    /// The value before `"msg_i"`, without the comma (`{` when it was first).
    head: &'a str,
    /// The still escaped text of `msg`.
    raw: &'a str,
}

fn slice(r: &Record) -> Option<Slice<'_>> {
    let (base, index) = r.key.rsplit_once('|')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u64 = index.parse().ok()?;
    let v = r.value.as_str();
    // The first `"msg_i":` is the member: earlier string contents cannot
    // hold an unescaped quote.
    let at = v.find("\"msg_i\":")?;
    let head = match &v[..at] {
        "{" => "{",
        h => h.strip_suffix(',')?,
    };
    let after = &v[at + 8..];
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if after[..digits].parse::<u64>().ok()? != index {
        return None;
    }
    let raw = after[digits..]
        .strip_prefix(",\"msg\":\"")?
        .strip_suffix("\"}")?;
    Some(Slice {
        base,
        index,
        head,
        raw,
    })
}

/// Joins sliced values (ours and cloud-init's) back into whole ones; other
/// records pass through. The slices of a value are the records `<base>|0`,
/// `<base>|1`, `<base>|2`, … that come in this order, with or without other
/// records between them (a slice of the same base out of order ends the
/// value); the whole value takes the place of its first slice. A slice that
/// does not continue one is shown as stored, marked incomplete.
pub fn reassemble(records: &[Record]) -> Vec<Entry> {
    /// A value being joined: its first slice, the raw text so far, parts.
    struct Joined<'a> {
        first: Slice<'a>,
        raw: String,
        parts: usize,
    }
    let mut joined: Vec<Joined<'_>> = Vec::new();
    // Per base, the value its next slice would continue.
    let mut open: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    // Per record: the value it starts, or that it continues (`None`).
    let mut role: Vec<Option<Option<usize>>> = vec![None; records.len()];
    for (i, r) in records.iter().enumerate() {
        let Some(s) = slice(r) else {
            continue;
        };
        if s.index == 0 {
            open.insert(s.base, joined.len());
            role[i] = Some(Some(joined.len()));
            joined.push(Joined {
                raw: s.raw.to_string(),
                first: s,
                parts: 1,
            });
        } else if let Some(&j) = open.get(s.base) {
            if joined[j].parts as u64 == s.index {
                joined[j].raw.push_str(s.raw);
                joined[j].parts += 1;
                role[i] = Some(None);
            } else {
                // Out of order: the value ends here, without this slice.
                open.remove(s.base);
            }
        }
    }
    let mut out = Vec::with_capacity(records.len());
    for (r, role) in records.iter().zip(role) {
        match role {
            Some(None) => {}
            Some(Some(j)) => {
                let Joined { first, raw, parts } = &joined[j];
                let member = if first.base.starts_with(&format!("{PREFIX}|")) {
                    "reason"
                } else {
                    "msg"
                };
                let sep = if first.head == "{" { "" } else { "," };
                out.push(Entry {
                    key: first.base.to_string(),
                    value: format!("{}{sep}\"{member}\":\"{raw}\"}}", first.head),
                    parts: *parts,
                    complete: true,
                });
            }
            None => out.push(Entry {
                key: r.key.clone(),
                value: r.value.clone(),
                parts: 1,
                complete: slice(r).is_none(),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::sinks::kvp::record::{decode, push_record};
    use crate::events::sinks::kvp::testutil::{event, long_reason, record};

    #[test]
    fn keys_name_incarnation_event_agent_and_seq() {
        let e = event(42, "core-sw-1", "died", "killed by SIGKILL");
        assert_eq!(
            event_key(1_795_000_000, &e),
            "AGENTCLUSTER|1795000000|died|core-sw-1|42"
        );
        let s = event(1, "", "supervisor-started", "");
        assert_eq!(event_key(7, &s), "AGENTCLUSTER|7|supervisor-started||1");
        // A long agent name is shortened so the key reaches the host whole,
        // with room for a slice suffix; the seq stays.
        let long = event(123_456, &"ü".repeat(100), "config-changed", "");
        let key = event_key(1_795_000_000, &long);
        assert!(key.len() + SUFFIX_ROOM <= HOST_KEY_MAX, "{}", key.len());
        assert!(key.ends_with("|123456"), "{key}");
        assert!(key.contains("|config-changed|üü"), "{key}");
    }

    #[test]
    fn short_events_are_one_record_of_compact_json() {
        let e = event(42, "core-sw-1", "died", "killed by SIGKILL");
        let parts = encode_event(9, &e).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].0, "AGENTCLUSTER|9|died|core-sw-1|42");
        assert_eq!(parts[0].1, serde_json::to_string(&e).unwrap());
        assert!(parts[0].1.starts_with("{\"seq\":42,\"ts\":"));
        let back: Event = serde_json::from_str(&parts[0].1).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn escaped_len_matches_serde_json() {
        for c in (0u32..0x80)
            .filter_map(char::from_u32)
            .chain(['é', '€', '😀', '\u{7f}', '\u{2028}'])
        {
            let s = serde_json::to_string(&c.to_string()).unwrap();
            assert_eq!(escaped_len(c), s.len() - 2, "{c:?}");
        }
    }

    #[test]
    fn a_long_reason_is_sliced_and_reassembles_exactly() {
        let reason = long_reason();
        assert_eq!(reason.len(), 5000);
        let e = event(77, "core-sw-1", "start-failed", &reason);
        let parts = encode_event(1_795_000_000, &e).unwrap();
        assert!(parts.len() >= 5, "{}", parts.len());
        let mut joined = String::new();
        for (i, (k, v)) in parts.iter().enumerate() {
            assert_eq!(
                k,
                &format!("AGENTCLUSTER|1795000000|start-failed|core-sw-1|77|{i}")
            );
            assert!(v.len() <= HOST_VALUE_MAX, "slice {i}: {}", v.len());
            // Each slice is JSON of its own: the event without `reason`,
            // then msg_i and msg, as cloud-init writes them.
            let j: serde_json::Value = serde_json::from_str(v).unwrap();
            assert_eq!(j["msg_i"], i as u64);
            assert_eq!(j["seq"], 77);
            assert_eq!(j["agent"], "core-sw-1");
            assert!(j.get("reason").is_none());
            assert!(v.ends_with(&format!(",\"msg_i\":{i},\"msg\":{}}}", j["msg"])));
            joined.push_str(j["msg"].as_str().unwrap());
        }
        assert_eq!(joined, reason);

        // Through the pool file and back.
        let mut pool = Vec::new();
        push_record(&mut pool, "CLOUD_INIT|1|start|x|u", "{\"msg\":\"other\"}");
        for (k, v) in &parts {
            push_record(&mut pool, k, v);
        }
        let entries = reassemble(&decode(&pool).records);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].value, "{\"msg\":\"other\"}");
        assert_eq!(
            entries[1].key,
            "AGENTCLUSTER|1795000000|start-failed|core-sw-1|77"
        );
        assert_eq!(entries[1].parts, parts.len());
        assert!(entries[1].complete);
        assert_eq!(entries[1].value, serde_json::to_string(&e).unwrap());
    }

    #[test]
    fn metadata_at_the_threshold_still_progresses() {
        // A reason that is nearly all escapes: each `\u0001` is 6 bytes.
        let e = event(1, "a", "died", &"\u{1}".repeat(1000));
        let parts = encode_event(1, &e).unwrap();
        let joined: String = parts
            .iter()
            .map(|(_, v)| {
                let j: serde_json::Value = serde_json::from_str(v).unwrap();
                j["msg"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(joined, e.reason);
        assert!(parts.iter().all(|(_, v)| v.len() <= HOST_VALUE_MAX));
    }

    /// cloud-init's `_break_down`, transcribed: slices of the *escaped*
    /// (ASCII) description, which may split an escape sequence.
    fn cloud_init_slices(key: &str, desc: &str) -> Vec<Record> {
        let escaped = serde_json::to_string(desc).unwrap();
        let mut des: String = escaped[1..escaped.len() - 1]
            .chars()
            .flat_map(|c| {
                if c.is_ascii() {
                    vec![c.to_string()]
                } else {
                    let mut b = [0u16; 2];
                    c.encode_utf16(&mut b)
                        .iter()
                        .map(|u| format!("\\u{u:04x}"))
                        .collect()
                }
            })
            .collect();
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let skeleton = format!(
                "{{\"name\":\"init-network\",\"type\":\"finish\",\"ts\":\"2026-01-01T00:00:00Z\",\"msg_i\":{i},\"msg\":\"\"}}"
            );
            let room = 1024 - skeleton.len() - 8;
            let take = room.min(des.len());
            let value = skeleton.replace("\"msg\":\"\"", &format!("\"msg\":\"{}\"", &des[..take]));
            out.push(record(&format!("{key}|{i}"), &value));
            des.drain(..take);
            i += 1;
            if des.is_empty() {
                break;
            }
        }
        out
    }

    #[test]
    fn cloud_init_slices_reassemble_too() {
        let desc = long_reason();
        let slices = cloud_init_slices("CLOUD_INIT|1795000000|finish|init-network|f00", &desc);
        assert!(slices.len() > 1);
        let entries = reassemble(&slices);
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(
            entries[0].key,
            "CLOUD_INIT|1795000000|finish|init-network|f00"
        );
        let j: serde_json::Value = serde_json::from_str(&entries[0].value).unwrap();
        assert_eq!(j["msg"], desc.as_str());
        assert_eq!(j["name"], "init-network");
        assert!(j.get("msg_i").is_none());
    }

    /// A batch takes free slots where they are: an event's slices come in
    /// order, other records (another writer's, ours) between them.
    #[test]
    fn slices_with_other_records_between_them_reassemble() {
        let e = event(5, "a", "died", &long_reason());
        let parts = encode_event(1, &e).unwrap();
        assert!(parts.len() >= 3);
        let other = record("CLOUD_INIT|1|start|x|u", "{\"msg\":\"other\"}");
        let short = event(6, "b", "ready", "ready");
        let (short_key, short_value) = encode_event(1, &short).unwrap().remove(0);
        let mut records = vec![record(&parts[0].0, &parts[0].1), other.clone()];
        records.push(record(&short_key, &short_value));
        records.extend(parts[1..].iter().map(|(k, v)| record(k, v)));
        let entries = reassemble(&records);
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "AGENTCLUSTER|1|died|a|5",
                "CLOUD_INIT|1|start|x|u",
                "AGENTCLUSTER|1|ready|b|6"
            ]
        );
        assert_eq!(entries[0].parts, parts.len());
        assert!(entries.iter().all(|e| e.complete));
        assert_eq!(entries[0].value, serde_json::to_string(&e).unwrap());
        // Out of order, a slice does not continue the value: 0 alone, the
        // others shown as stored.
        let mut swapped: Vec<Record> = parts.iter().map(|(k, v)| record(k, v)).collect();
        swapped.swap(1, 2);
        let entries = reassemble(&swapped);
        assert_eq!(entries[0].parts, 1);
        assert!(!entries[1].complete);
    }

    #[test]
    fn orphan_slices_pass_through_marked_incomplete() {
        let e = event(5, "a", "died", &long_reason());
        let parts = encode_event(1, &e).unwrap();
        let records: Vec<Record> = parts[1..].iter().map(|(k, v)| record(k, v)).collect();
        let entries = reassemble(&records);
        assert_eq!(entries.len(), records.len());
        assert!(entries.iter().all(|e| !e.complete && e.parts == 1));
        // A gap ends a group: 0 alone, then orphans.
        let mut gap: Vec<Record> = vec![record(&parts[0].0, &parts[0].1)];
        gap.extend(records[1..].iter().cloned());
        let entries = reassemble(&gap);
        assert_eq!(entries[0].parts, 1);
        assert!(entries[0].complete);
        assert!(!entries[1].complete);
    }
}
