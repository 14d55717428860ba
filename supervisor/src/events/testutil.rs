//! Made-up events for the tests of the bus and its sinks.

use crate::events::{Bus, Event, EventKind, NewEvent, State};

/// A `died` event of agent `core-sw-1`, with every field set.
pub fn died() -> Event {
    Event {
        seq: 42,
        ts: "2026-11-22T12:00:00.123Z".into(),
        node: "lab-a".into(),
        agent: "core-sw-1".into(),
        event: EventKind::Died,
        pid: Some(4242),
        exit_code: None,
        signal: Some("SIGKILL".into()),
        restarts: 3,
        state: State::Backoff,
        reason: "killed by SIGKILL".into(),
    }
}

/// Publishes an event of `kind` (a kind's name) for `agent` on `bus`.
pub fn publish(bus: &Bus, agent: &str, kind: &str, reason: &str) {
    bus.publish(NewEvent {
        agent: agent.into(),
        reason: reason.into(),
        ..NewEvent::new(kind.parse().unwrap(), State::Running)
    });
}
