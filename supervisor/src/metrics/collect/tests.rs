use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use agentcluster_agent::responder::{Drop, Drops};
use tokio::sync::{Semaphore, watch};

use super::*;
use crate::events::NewEvent;
use crate::fleet::manager::Member;
use crate::process::unit::Tally;

fn member(names: &[&str], status: Status) -> Member {
    Member {
        names: names.iter().map(|n| n.to_string()).collect(),
        status: watch::channel(status).1,
    }
}

fn drops(of: &[(Drop, u64)]) -> Drops {
    let mut d = Drops::default();
    for &(why, n) in of {
        for _ in 0..n {
            d.add(why);
        }
    }
    d
}

fn sources(roster: Vec<Member>, bus: &Bus, tokens: Arc<Semaphore>) -> Sources {
    Sources {
        roster: watch::channel(Arc::new(roster)).1,
        bus: bus.clone(),
        tokens,
        token_count: 4,
        informs: vec![(
            "192.0.2.1:162 (v2c inform)".into(),
            Arc::new(AtomicU64::new(3)),
        )],
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// Every family: its HELP and TYPE, and each agent's values read from its
/// unit's status at the time of the scrape.
#[test]
fn a_scrape_reads_every_agent_and_the_supervisor() {
    let mut running = Status::new(State::Running, 2);
    running.restarts = 1;
    running.totals = vec![
        Tally {
            requests: 12,
            drops: drops(&[(Drop::BadCommunity, 2), (Drop::Parse, 1)]),
        },
        Tally {
            requests: 5,
            drops: Drops::default(),
        },
    ];
    running.start_latency = Some(Duration::from_millis(250));
    let failed = Status::new(State::Failed, 1);
    let bus = Bus::new("lab-a");
    bus.publish(NewEvent::new(EventKind::Died, State::Backoff));
    bus.publish(NewEvent::new(EventKind::Ready, State::Running));
    bus.publish(NewEvent::new(EventKind::Ready, State::Running));
    bus.count_lost(Sink::Kvp, 7);
    let tokens = Arc::new(Semaphore::new(4));
    let held = tokens.clone().try_acquire_many_owned(3).unwrap();
    let registry = registry(sources(
        vec![member(&["a", "b"], running), member(&["c"], failed)],
        &bus,
        tokens,
    ));
    let text = encode(&registry).unwrap();
    let l = lines(&text);
    for want in [
        "# HELP agentcluster_agent_state The agent's supervision state: one series per agent, labelled with its current state, of value 1",
        "# TYPE agentcluster_agent_state gauge",
        "agentcluster_agent_state{agent=\"a\",state=\"running\"} 1",
        "agentcluster_agent_state{agent=\"b\",state=\"running\"} 1",
        "agentcluster_agent_state{agent=\"c\",state=\"failed\"} 1",
        "# TYPE agentcluster_agent_restarts_total counter",
        "agentcluster_agent_restarts_total{agent=\"a\"} 1",
        "agentcluster_agent_restarts_total{agent=\"c\"} 0",
        "agentcluster_agent_requests_total{agent=\"a\"} 12",
        "agentcluster_agent_requests_total{agent=\"b\"} 5",
        "agentcluster_agent_requests_total{agent=\"c\"} 0",
        "agentcluster_agent_dropped_total{agent=\"a\",reason=\"parse\"} 1",
        "agentcluster_agent_dropped_total{agent=\"a\",reason=\"bad_community\"} 2",
        "agentcluster_agent_start_latency_seconds{agent=\"a\"} 0.25",
        "agentcluster_agents_configured 3",
        "agentcluster_agents{state=\"running\"} 2",
        "agentcluster_agents{state=\"failed\"} 1",
        "agentcluster_agents{state=\"stopped\"} 0",
        "agentcluster_events_total{kind=\"died\"} 1",
        "agentcluster_events_total{kind=\"ready\"} 2",
        "agentcluster_events_total{kind=\"reload-failed\"} 0",
        "agentcluster_sink_lost_events_total{sink=\"kvp\"} 7",
        "agentcluster_sink_lost_events_total{sink=\"notify\"} 0",
        "agentcluster_event_streams_cut_total 0",
        "agentcluster_informs_pending{target=\"192.0.2.1:162 (v2c inform)\"} 3",
        "agentcluster_start_tokens_in_use 3",
        "agentcluster_start_tokens 4",
    ] {
        assert!(l.contains(&want), "{want} missing from\n{text}");
    }
    // Only the reasons that counted a drop; no latency before a ready.
    assert_eq!(
        l.iter()
            .filter(|x| x.starts_with("agentcluster_agent_dropped_total"))
            .count(),
        2,
        "{text}"
    );
    assert!(!text.contains("agentcluster_agent_start_latency_seconds{agent=\"c\"}"));
    // Every family has its HELP and TYPE.
    let families = l.iter().filter(|x| x.starts_with("# TYPE ")).count();
    assert_eq!(
        families,
        l.iter().filter(|x| x.starts_with("# HELP ")).count()
    );
    assert_eq!(families, 13, "{text}");
    // Read when asked: the tokens come back, the next scrape says so.
    drop(held);
    let text = encode(&registry).unwrap();
    assert!(lines(&text).contains(&"agentcluster_start_tokens_in_use 0"));
}

/// The units change with a reload: a scrape reads the roster as it is.
#[test]
fn a_scrape_follows_the_roster() {
    let bus = Bus::new("lab-a");
    let (tx, rx) = watch::channel(Arc::new(vec![member(
        &["old"],
        Status::new(State::Running, 1),
    )]));
    let registry = registry(Sources {
        roster: rx,
        bus,
        tokens: Arc::new(Semaphore::new(1)),
        token_count: 1,
        informs: Vec::new(),
    });
    assert!(encode(&registry).unwrap().contains("agent=\"old\""));
    tx.send_replace(Arc::new(vec![member(
        &["new"],
        Status::new(State::Inactive, 1),
    )]));
    let text = encode(&registry).unwrap();
    assert!(!text.contains("agent=\"old\""), "{text}");
    assert!(text.contains("agentcluster_agent_state{agent=\"new\",state=\"inactive\"} 1"));
}

/// What 100,000 agents cost (docs/metrics.md quotes these figures): the
/// exposition, and the time to encode it. Nothing per agent is kept for
/// the metrics but the names the roster shares and the unit's tallies.
#[test]
fn a_hundred_thousand_agents() {
    const N: usize = 100_000;
    let bus = Bus::new("lab-a");
    let mut status = Status::new(State::Running, 1);
    status.restarts = 2;
    status.totals = vec![Tally {
        requests: 123_456,
        drops: drops(&[(Drop::BadCommunity, 3)]),
    }];
    status.start_latency = Some(Duration::from_millis(42));
    let roster: Vec<Member> = (0..N)
        .map(|i| Member {
            names: vec![format!("device-{i:06}")].into(),
            status: watch::channel(status.clone()).1,
        })
        .collect();
    let registry = registry(sources(roster, &bus, Arc::new(Semaphore::new(4))));
    let started = Instant::now();
    let text = encode(&registry).unwrap();
    let took = started.elapsed();
    let per_agent = text.len() / N;
    eprintln!(
        "{N} agents: {} bytes of exposition ({per_agent} per agent), encoded in {took:?}",
        text.len()
    );
    // Five series per agent with one reason of drops, each under 100 bytes.
    assert_eq!(
        text.lines().filter(|l| l.contains("device-000042")).count(),
        5
    );
    assert!(per_agent < 600, "{per_agent} bytes per agent");
    eprintln!(
        "kept per agent for the metrics: Tally {} bytes (twice in its unit, once in its status), Member {} bytes per process",
        std::mem::size_of::<Tally>(),
        std::mem::size_of::<Member>()
    );
}
