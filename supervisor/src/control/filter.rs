//! Event subscription filters: a pattern `node|component|event|agent` with
//! glob wildcards per field, matched against an [`Event`]'s id, and the
//! control socket's answer to an `events` request (replay + filter).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::control::api::{ErrorKind, Response};
use crate::events::{Bus, Event};

/// The component of an agent's events (their `agent` is non-empty).
pub const AGENT: &str = "agent";
/// The component of the supervisor's own events (their `agent` is empty).
pub const SUPERVISOR: &str = "supervisor";

/// Why a pattern is not a filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// Not four `|`-separated fields.
    #[error(
        "filter `{pattern}` has {found} field{}; expected 4: node|component|event|agent \
         (use `*` for any, e.g. `*|agent|died|*`)",
        if *found == 1 { "" } else { "s" }
    )]
    Fields {
        /// The pattern as given.
        pattern: String,
        /// How many fields it has.
        found: usize,
    },
    /// A field that is not a glob (an unclosed `[`, say).
    #[error("filter `{pattern}`: field `{field}` is not a glob: {why}")]
    Glob {
        /// The pattern as given.
        pattern: String,
        /// The field in error.
        field: String,
        /// What is wrong with it.
        why: String,
    },
    /// A component field that can match neither component.
    #[error("filter `{pattern}`: component `{component}` matches neither `agent` nor `supervisor`")]
    Component {
        /// The pattern as given.
        pattern: String,
        /// Its component field.
        component: String,
    },
}

/// A parsed subscription pattern. Each field is a glob with the rules of
/// agent names in `start`/`stop`/`restart` ([`glob::Pattern`]): `*` matches
/// any run of characters (also none), `?` exactly one, `[...]` one of a set
/// or range (`[!...]` one not in it); everything else matches itself,
/// case-sensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    fields: [glob::Pattern; 4],
}

impl Filter {
    /// Parses `node|component|event|agent`.
    pub fn parse(pattern: &str) -> Result<Filter, FilterError> {
        let parts: Vec<&str> = pattern.split('|').collect();
        let Ok(fields) = <[&str; 4]>::try_from(parts.as_slice()) else {
            return Err(FilterError::Fields {
                pattern: pattern.to_string(),
                found: parts.len(),
            });
        };
        let mut globs: [glob::Pattern; 4] = Default::default();
        for (glob, field) in globs.iter_mut().zip(fields) {
            *glob = glob::Pattern::new(field).map_err(|e| FilterError::Glob {
                pattern: pattern.to_string(),
                field: field.to_string(),
                why: e.msg.to_string(),
            })?;
        }
        let fields = globs;
        // A component nothing can have would silently match no event.
        if !fields[1].matches(AGENT) && !fields[1].matches(SUPERVISOR) {
            return Err(FilterError::Component {
                pattern: pattern.to_string(),
                component: fields[1].as_str().to_string(),
            });
        }
        Ok(Filter { fields })
    }

    /// Does `event`'s id (`node|component|event|agent`) match?
    pub fn matches(&self, event: &Event) -> bool {
        let id = [
            event.node.as_str(),
            component(event),
            event.event.as_str(),
            event.agent.as_str(),
        ];
        self.fields
            .iter()
            .zip(id)
            .all(|(pattern, value)| pattern.matches(value))
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Filter, FilterError> {
        Filter::parse(s)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<&str> = self.fields.iter().map(glob::Pattern::as_str).collect();
        f.write_str(&fields.join("|"))
    }
}

/// `agent` for an agent's event, `supervisor` for the supervisor's own.
pub fn component(event: &Event) -> &'static str {
    if event.agent.is_empty() {
        SUPERVISOR
    } else {
        AGENT
    }
}

/// The event id: `node|component|event|agent`.
#[cfg(test)]
pub fn event_id(event: &Event) -> String {
    format!(
        "{}|{}|{}|{}",
        event.node,
        component(event),
        event.event,
        event.agent
    )
}

/// The answer to `Request::Events`: the events with `seq >= since` still
/// kept by `bus` that match `filter`, oldest first. `gap` says the ring no
/// longer holds some events at or after `since`; without `since` the caller
/// asked for whatever is kept, so there is no gap to report. A bad filter is
/// a `BadRequest`.
pub fn events_response(
    bus: &Bus,
    since: Option<u64>,
    filter: Option<&str>,
    last: Option<u64>,
) -> Response {
    let filter = match filter.map(Filter::parse).transpose() {
        Ok(f) => f,
        Err(e) => {
            return Response::Error {
                kind: ErrorKind::BadRequest,
                message: e.to_string(),
            };
        }
    };
    let (kept, gap) = bus.replay(since.unwrap_or(0));
    let gap = gap && since.is_some();
    // With a gap the replay is the whole ring.
    let oldest = kept.first().map(|e| e.seq).filter(|_| gap);
    let events = newest(&kept, filter.as_ref(), last)
        .into_iter()
        .cloned()
        .collect();
    Response::Events {
        events,
        gap,
        oldest,
    }
}

/// Where a followed stream of the `last` events asked for starts: the seq
/// of the `last`-th newest event at or after `since` that `filter`
/// matches, or `since` when fewer match (`None`, only new events, when
/// none match and no `since` was asked).
pub fn start_of_last(
    bus: &Bus,
    since: Option<u64>,
    filter: Option<&Filter>,
    last: u64,
) -> Option<u64> {
    if last == 0 {
        return None;
    }
    let (kept, _) = bus.replay(since.unwrap_or(0));
    let chosen = newest(&kept, filter, Some(last));
    let first = chosen.first().map(|e| e.seq);
    // As many as asked: from the oldest of them; fewer: from `since`.
    if chosen.len() as u64 == last {
        first
    } else {
        since.or(first)
    }
}

/// The events of `kept` that `filter` matches, oldest first; with `last`,
/// only the newest `last` of them.
fn newest<'a>(
    kept: &'a [Arc<Event>],
    filter: Option<&Filter>,
    last: Option<u64>,
) -> Vec<&'a Event> {
    let matching: Vec<&Event> = kept
        .iter()
        .map(|e| &**e)
        .filter(|e| filter.is_none_or(|f| f.matches(e)))
        .collect();
    let skip = last.map_or(0, |n| {
        matching
            .len()
            .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX))
    });
    matching[skip..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{NewEvent, State};

    /// Glob match of a whole `value` against `pattern`, by the rules of
    /// `start`/`stop`/`restart` names ([`glob::Pattern`]: `*`, `?`, `[...]`,
    /// `[!...]`); a pattern that is not a glob matches nothing.
    fn glob_match(pattern: &str, value: &str) -> bool {
        glob::Pattern::new(pattern).is_ok_and(|p| p.matches(value))
    }

    fn event(node: &str, agent: &str, kind: &str) -> Event {
        Event {
            seq: 1,
            ts: "2026-11-22T12:00:00.123Z".into(),
            node: node.into(),
            agent: agent.into(),
            event: kind.parse().unwrap(),
            pid: None,
            exit_code: None,
            signal: None,
            restarts: 0,
            state: State::Running,
            reason: String::new(),
        }
    }

    fn matches(pattern: &str, e: &Event) -> bool {
        Filter::parse(pattern)
            .unwrap_or_else(|err| panic!("{pattern}: {err}"))
            .matches(e)
    }

    #[test]
    fn globs_match_whole_values() {
        for (p, v) in [
            ("*", ""),
            ("*", "core-sw-1"),
            ("core-*", "core-sw-1"),
            ("core-*", "core-"),
            ("*-1", "core-sw-1"),
            ("c*s*1", "core-sw-1"),
            ("core-sw-?", "core-sw-1"),
            ("??", "äö"),
            ("a*b", "ab"),
            ("*a*", "banana"),
            ("", ""),
            ("died", "died"),
            ("[dr]*", "died"),
            ("[dr]*", "ready"),
            ("core-sw-[0-9]", "core-sw-7"),
            ("core-sw-[!0-4]", "core-sw-7"),
        ] {
            assert!(glob_match(p, v), "{p} should match {v}");
        }
        for (p, v) in [
            ("core-*", "edge-sw-1"),
            ("core", "core-sw-1"),
            ("core-sw-?", "core-sw-10"),
            ("?", ""),
            ("", "x"),
            ("Died", "died"),
            ("*a", "banana-"),
            ("a*b*c", "abxbx"),
            ("[dr]*", "starting"),
            ("core-sw-[0-4]", "core-sw-7"),
        ] {
            assert!(!glob_match(p, v), "{p} should not match {v}");
        }
    }

    #[test]
    fn long_patterns_do_not_backtrack_exponentially() {
        let value = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!glob_match(&pattern, &value));
    }

    #[test]
    fn patterns_need_exactly_four_fields() {
        for bad in ["", "*", "lab-a|agent", "lab-a|agent|died", "a|agent|b|c|d"] {
            let err = Filter::parse(bad).unwrap_err();
            assert!(matches!(err, FilterError::Fields { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("node|component|event|agent"));
        }
        assert!(
            Filter::parse("lab-a")
                .unwrap_err()
                .to_string()
                .starts_with("filter `lab-a` has 1 field; expected 4")
        );
        assert!(
            Filter::parse("a|b")
                .unwrap_err()
                .to_string()
                .starts_with("filter `a|b` has 2 fields; expected 4")
        );
        assert_eq!(
            Filter::parse("lab-a").unwrap_err(),
            FilterError::Fields {
                pattern: "lab-a".into(),
                found: 1
            }
        );
    }

    #[test]
    fn a_field_that_is_no_glob_is_an_error() {
        let err = Filter::parse("*|agent|[dr*|*").unwrap_err();
        assert!(
            matches!(&err, FilterError::Glob { field, .. } if field == "[dr*"),
            "{err}"
        );
        // `**` is a glob's whole-path wildcard, refused as `stop` refuses it.
        assert!(Filter::parse("*|agent|d**d|*").is_err());
    }

    #[test]
    fn an_impossible_component_is_an_error() {
        let err = Filter::parse("*|agents|died|*").unwrap_err();
        assert!(
            matches!(&err, FilterError::Component { component, .. } if component == "agents"),
            "{err}"
        );
        assert!(Filter::parse("*|x*|*|*").is_err());
        for ok in [
            "*|agent|*|*",
            "*|supervisor|*|*",
            "*|*|*|*",
            "*|s*|*|*",
            "*|?????|*|*",
        ] {
            assert!(Filter::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn fields_match_the_event_id() {
        let died = event("lab-a", "core-sw-1", "died");
        assert_eq!(event_id(&died), "lab-a|agent|died|core-sw-1");
        assert!(matches("lab-a|agent|died|core-sw-1", &died));
        assert!(matches("*|*|*|*", &died));
        assert!(matches("lab-a|agent|died|core-*", &died));
        assert!(matches("lab-?|*|d*|*", &died));
        // The same globs as agent names in `stop`/`start`: sets and ranges.
        assert!(matches("*|agent|[dr]*|core-sw-[0-9]", &died));
        assert!(matches("*|[a]gent|[!r]*|*", &died));
        assert!(!matches("*|agent|[rs]*|*", &died));
        assert!(!matches("lab-b|agent|died|*", &died));
        assert!(!matches("lab-a|supervisor|died|*", &died));
        assert!(!matches("lab-a|agent|ready|*", &died));
        assert!(!matches("lab-a|agent|died|edge-*", &died));
    }

    #[test]
    fn supervisor_events_have_component_supervisor_and_no_agent() {
        let started = event("lab-a", "", "supervisor-started");
        assert_eq!(component(&started), "supervisor");
        assert_eq!(event_id(&started), "lab-a|supervisor|supervisor-started|");
        assert!(matches("*|supervisor|*|*", &started));
        assert!(matches("lab-a|supervisor|supervisor-started|", &started));
        assert!(!matches("*|agent|*|*", &started));
        // `?` needs a character; the agent field is empty
        assert!(!matches("*|*|*|?*", &started));
    }

    #[test]
    fn filters_round_trip_through_text() {
        let f: Filter = "lab-a|agent|died|core-*".parse().unwrap();
        assert_eq!(f.to_string(), "lab-a|agent|died|core-*");
    }

    fn publish(bus: &Bus, agent: &str, kind: &str) {
        bus.publish(NewEvent {
            agent: agent.into(),
            ..NewEvent::new(kind.parse().unwrap(), State::Running)
        });
    }

    fn answer(r: Response) -> (Vec<(u64, String)>, bool) {
        match r {
            Response::Events { events, gap, .. } => (
                events.into_iter().map(|e| (e.seq, event_id(&e))).collect(),
                gap,
            ),
            other => panic!("not events: {other:?}"),
        }
    }

    #[test]
    fn events_response_replays_and_filters() {
        let bus = Bus::new("lab-a");
        publish(&bus, "", "supervisor-started");
        publish(&bus, "core-sw-1", "ready");
        publish(&bus, "core-sw-1", "died");
        publish(&bus, "edge-1", "died");

        let (all, gap) = answer(events_response(&bus, None, None, None));
        assert_eq!(
            all.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert!(!gap);
        assert_eq!(all[0].1, "lab-a|supervisor|supervisor-started|");

        let (died, _) = answer(events_response(&bus, None, Some("*|agent|died|*"), None));
        assert_eq!(
            died,
            [
                (3, "lab-a|agent|died|core-sw-1".to_string()),
                (4, "lab-a|agent|died|edge-1".to_string())
            ]
        );

        let (since, gap) = answer(events_response(&bus, Some(3), Some("*|*|*|core-*"), None));
        assert_eq!(since, [(3, "lab-a|agent|died|core-sw-1".to_string())]);
        assert!(!gap);

        // nothing new yet: empty, no gap
        let (none, gap) = answer(events_response(&bus, Some(5), None, None));
        assert!(none.is_empty());
        assert!(!gap);
    }

    /// `last` keeps the newest of what `since` and `filter` chose; a
    /// followed stream of them starts at the oldest of those.
    #[test]
    fn the_last_events_are_the_newest_that_match() {
        let bus = Bus::new("lab-a");
        publish(&bus, "", "supervisor-started");
        for a in ["a", "b", "c", "d"] {
            publish(&bus, a, "ready");
            publish(&bus, a, "died");
        }
        let seqs = |r| answer(r).0.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(seqs(events_response(&bus, None, None, Some(3))), [7, 8, 9]);
        let died = Some("*|agent|died|*");
        assert_eq!(seqs(events_response(&bus, None, died, Some(2))), [7, 9]);
        assert_eq!(
            seqs(events_response(&bus, Some(4), died, Some(10))),
            [5, 7, 9]
        );
        assert!(seqs(events_response(&bus, None, None, Some(0))).is_empty());

        let died = Filter::parse("*|agent|died|*").unwrap();
        assert_eq!(start_of_last(&bus, None, Some(&died), 2), Some(7));
        assert_eq!(start_of_last(&bus, None, None, 1), Some(9));
        // Fewer than asked: from `since`, or the first that matches.
        assert_eq!(start_of_last(&bus, Some(4), Some(&died), 10), Some(4));
        assert_eq!(start_of_last(&bus, None, Some(&died), 10), Some(3));
        // None at all, or 0: only new ones.
        let none = Filter::parse("*|agent|rebooted|*").unwrap();
        assert_eq!(start_of_last(&bus, None, Some(&none), 5), None);
        assert_eq!(start_of_last(&bus, Some(2), None, 0), None);
    }

    #[test]
    fn events_response_rejects_a_bad_filter() {
        let bus = Bus::new("lab-a");
        match events_response(&bus, None, Some("lab-a|agent"), None) {
            Response::Error { kind, message } => {
                assert_eq!(kind, ErrorKind::BadRequest);
                assert!(message.contains("lab-a|agent"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn events_response_reports_a_gap_when_since_is_gone() {
        let bus = Bus::new("lab-a");
        for i in 0..crate::events::bus::RING + 5 {
            publish(&bus, &format!("a{i}"), "ready");
        }
        let (events, gap) = answer(events_response(&bus, Some(2), Some("*|*|*|a1"), None));
        assert!(gap);
        assert!(events.is_empty());
        match events_response(&bus, Some(2), Some("*|*|*|a1"), None) {
            Response::Events { oldest, .. } => assert_eq!(oldest, Some(6)),
            other => panic!("{other:?}"),
        }
        let (events, gap) = answer(events_response(&bus, Some(6), None, None));
        assert!(!gap);
        assert_eq!(events.len(), crate::events::bus::RING);
        assert_eq!(events[0].0, 6);
        // without `since` the caller asked for whatever is kept
        let (events, gap) = answer(events_response(&bus, None, None, None));
        assert!(!gap);
        assert_eq!(events.len(), crate::events::bus::RING);
    }

    #[test]
    fn events_requests_travel_as_json_lines() {
        use crate::control::api::{Request, WireRequest};
        let request = Request::Events {
            since: Some(5),
            filter: Some("lab-a|agent|died|*".into()),
            follow: false,
            last: None,
        };
        let line = serde_json::to_string(&WireRequest::new(request.clone())).unwrap();
        assert_eq!(
            line,
            r#"{"protocol":1,"cmd":"events","since":5,"filter":"lab-a|agent|died|*"}"#
        );
        let back: WireRequest = serde_json::from_str(&line).unwrap();
        assert_eq!(back.request, request);
        let bare: WireRequest = serde_json::from_str(r#"{"cmd":"events"}"#).unwrap();
        assert_eq!(
            bare.request,
            Request::Events {
                since: None,
                filter: None,
                follow: false,
                last: None,
            }
        );
    }

    #[test]
    fn events_survive_a_trip_through_json() {
        let bus = Bus::new("lab-a");
        publish(&bus, "core-sw-1", "died");
        let response = events_response(&bus, None, None, None);
        let line = serde_json::to_string(&response).unwrap();
        assert!(
            line.starts_with(r#"{"result":"events","events":[{"seq":1,"#),
            "{line}"
        );
        let back: Response = serde_json::from_str(&line).unwrap();
        assert_eq!(back, response);
    }
}
