//! What `/metrics` shows, taken when it is asked for: each agent from its
//! unit's status (through the manager's [`Roster`]), and the supervisor's
//! own counts from the bus, the start tokens and the notification sink.
//! Nothing here is updated on a heartbeat: a scrape reads the values in
//! place, and its work and memory grow with its output only.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, watch};

use crate::events::bus::{Bus, Sink};
use crate::events::{EventKind, State};
use crate::fleet::manager::Roster;
use crate::process::unit::Status;

/// The label set of a family without labels.
const NO_LABELS: [(&str, &str); 0] = [];

/// Where the values come from.
pub struct Sources {
    /// The fleet's units, each with its live status.
    pub roster: watch::Receiver<Roster>,
    /// Events published and lost.
    pub bus: Bus,
    /// The start tokens and how many there are (`cluster.start_tokens`).
    pub tokens: Arc<Semaphore>,
    pub token_count: usize,
    /// Each inform target's label and its informs not yet acknowledged.
    pub informs: Vec<(String, Arc<AtomicU64>)>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("units", &self.roster.borrow().len())
            .finish_non_exhaustive()
    }
}

/// The registry `/metrics` encodes: one collector over `sources`.
pub fn registry(sources: Sources) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(sources));
    registry
}

/// The Prometheus text exposition (version 0.0.4) of `registry`.
pub fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?;
    Ok(out)
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

impl Collector for Sources {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), fmt::Error> {
        let roster = self.roster.borrow().clone();
        agents(&mut e, &roster)?;
        self.supervisor(&mut e, &roster)
    }
}

/// Calls `f` with every agent's name, its index in its unit's status and
/// that status, unit by unit.
fn each_agent(
    roster: &Roster,
    mut f: impl FnMut(&str, usize, &Status) -> Result<(), fmt::Error>,
) -> Result<(), fmt::Error> {
    for m in roster.iter() {
        let status = m.status.borrow();
        for (i, name) in m.names.iter().enumerate() {
            f(name, i, &status)?;
        }
    }
    Ok(())
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    mut each: impl FnMut(&mut MetricEncoder) -> Result<(), fmt::Error>,
) -> Result<(), fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    each(&mut m)
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    mut each: impl FnMut(&mut MetricEncoder) -> Result<(), fmt::Error>,
) -> Result<(), fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    each(&mut m)
}

/// The per-agent families: one series per agent each (the drops: one per
/// reason that has counted a drop).
fn agents(e: &mut DescriptorEncoder, roster: &Roster) -> Result<(), fmt::Error> {
    gauge(
        e,
        "agentcluster_agent_state",
        "The agent's supervision state: one series per agent, labelled with its current state, of value 1",
        |m| {
            each_agent(roster, |name, _, s| {
                ConstGauge::new(1i64)
                    .encode(m.encode_family(&[("agent", name), ("state", s.state.as_str())])?)
            })
        },
    )?;
    counter(
        e,
        "agentcluster_agent_restarts",
        "Restarts of the agent's process after failures",
        |m| {
            each_agent(roster, |name, _, s| {
                ConstCounter::new(u64::from(s.restarts))
                    .encode(m.encode_family(&[("agent", name)])?)
            })
        },
    )?;
    counter(
        e,
        "agentcluster_agent_requests",
        "Requests the agent answered, over all its processes (as of their last heartbeats)",
        |m| {
            each_agent(roster, |name, i, s| {
                let n = s.totals.get(i).map_or(0, |t| t.requests);
                ConstCounter::new(n).encode(m.encode_family(&[("agent", name)])?)
            })
        },
    )?;
    counter(
        e,
        "agentcluster_agent_dropped",
        "Datagrams the agent dropped, by reason, over all its processes (a reason appears once it has counted one)",
        |m| {
            each_agent(roster, |name, i, s| {
                let Some(t) = s.totals.get(i) else {
                    return Ok(());
                };
                for (why, n) in t.drops.iter().filter(|(_, n)| *n > 0) {
                    ConstCounter::new(n)
                        .encode(m.encode_family(&[("agent", name), ("reason", why.name())])?)?;
                }
                Ok(())
            })
        },
    )?;
    gauge(
        e,
        "agentcluster_agent_start_latency_seconds",
        "Time from the spawn of the agent's last process that became ready to its ready",
        |m| {
            each_agent(roster, |name, _, s| match s.start_latency {
                Some(d) => {
                    ConstGauge::new(d.as_secs_f64()).encode(m.encode_family(&[("agent", name)])?)
                }
                None => Ok(()),
            })
        },
    )
}

impl Sources {
    fn supervisor(&self, e: &mut DescriptorEncoder, roster: &Roster) -> Result<(), fmt::Error> {
        let mut by_state = [0u64; State::ALL.len()];
        let mut configured = 0u64;
        for m in roster.iter() {
            let state = m.status.borrow().state;
            let n = m.names.len() as u64;
            configured += n;
            if let Some(i) = State::ALL.iter().position(|s| *s == state) {
                by_state[i] += n;
            }
        }
        gauge(
            e,
            "agentcluster_agents_configured",
            "Agents in the configuration",
            |m| ConstGauge::new(configured).encode(m.encode_family(&NO_LABELS)?),
        )?;
        gauge(e, "agentcluster_agents", "Agents by state", |m| {
            for (state, n) in State::ALL.iter().zip(by_state) {
                ConstGauge::new(n).encode(m.encode_family(&[("state", state.as_str())])?)?;
            }
            Ok(())
        })?;
        let tallies = self.bus.tallies();
        counter(e, "agentcluster_events", "Events published, by kind", |m| {
            for (kind, n) in EventKind::ALL.iter().zip(tallies.published) {
                ConstCounter::new(n).encode(m.encode_family(&[("kind", kind.as_str())])?)?;
            }
            Ok(())
        })?;
        counter(
            e,
            "agentcluster_sink_lost_events",
            "Events a sink lost: fell behind the bus, its queue was full, or it could not write them",
            |m| {
                for (sink, n) in Sink::ALL.iter().zip(tallies.lost) {
                    ConstCounter::new(n).encode(m.encode_family(&[("sink", sink.as_str())])?)?;
                }
                Ok(())
            },
        )?;
        counter(
            e,
            "agentcluster_event_streams_cut",
            "Event streams (agentcluster events) cut because their subscriber fell behind",
            |m| ConstCounter::new(tallies.streams_cut).encode(m.encode_family(&NO_LABELS)?),
        )?;
        gauge(
            e,
            "agentcluster_informs_pending",
            "Informs not yet acknowledged, per inform target",
            |m| {
                for (target, n) in &self.informs {
                    ConstGauge::new(n.load(Ordering::Relaxed))
                        .encode(m.encode_family(&[("target", target.as_str())])?)?;
                }
                Ok(())
            },
        )?;
        let in_use = self
            .token_count
            .saturating_sub(self.tokens.available_permits());
        gauge(
            e,
            "agentcluster_start_tokens_in_use",
            "Start tokens held by processes between spawn and ready",
            |m| ConstGauge::new(in_use as u64).encode(m.encode_family(&NO_LABELS)?),
        )?;
        gauge(
            e,
            "agentcluster_start_tokens",
            "Start tokens in all (cluster.start_tokens)",
            |m| ConstGauge::new(self.token_count as u64).encode(m.encode_family(&NO_LABELS)?),
        )
    }
}

#[cfg(test)]
mod tests;
