//! What each node's agents are doing, as etcd holds it for
//! `status --cluster`: the key `PREFIX/status/NODE`, lease-bound to the
//! node's lease, rewritten by the node when its agents change (at most once
//! a second, [`Publisher`]), and the whole cluster read back in one
//! consistent read ([`read_cluster`]).
//!
//! The value ([`NodeStatus`]) is compact, so that a node of 50,000 agents
//! stays far below etcd's request limit (1.5 MiB): the agents that are not
//! running one by one with their state, pid, restarts and since when; the
//! running ones only by name, in runs (`router-[1-50000]`, [`names`]),
//! with their pids as differences in the order the runs list them, and
//! their restarts only where there were some.

pub mod names;
mod publish;
mod read;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ClusterError;
use crate::events::State;
use names::Written;

pub use publish::{MIN_INTERVAL, Publisher, Roster};
pub use read::{AgentRow, ClusterStatus, NodeRow, RowState, read_cluster};

/// The value's layout version; a reader refuses another.
pub const VERSION: u32 = 1;

/// The most agents one status key may stand for: a bound on what a broken
/// value can make a reader list.
pub const MAX_AGENTS: u64 = 1_000_000;

/// One agent as its node reports it: what the node's roster (`status`,
/// the control API's [`AgentStatus`](crate::protocol::AgentStatus)) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The agent's name.
    pub agent: String,
    /// Its supervision state.
    pub state: State,
    /// The pid of its process, while it has one.
    pub pid: Option<u32>,
    /// Restarts after failures so far.
    pub restarts: u32,
    /// Since when it is in this state (running: since it runs), unix
    /// milliseconds, when known.
    pub since: Option<u64>,
}

impl Entry {
    /// The entry of `status`'s line for an agent, `now` in unix
    /// milliseconds (a running agent runs since `now` - its uptime).
    pub fn of(status: &crate::protocol::AgentStatus, now: u64) -> Entry {
        Entry {
            agent: status.name.clone(),
            state: status.state,
            pid: status.pid,
            restarts: status.restarts,
            since: status
                .uptime_ms
                .filter(|_| status.state == State::Running)
                .map(|up| now.saturating_sub(up)),
        }
    }
}

/// An agent that is not running, in the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Other {
    /// Its state.
    pub state: State,
    /// Its process's pid, while it has one (starting, stopping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Restarts after failures so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
    /// In this state since (unix ms), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The running agents, in the value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Running {
    /// Their names, compact ([`names`]).
    pub names: Vec<String>,
    /// Their pids in the order `names` lists them: the first as it is,
    /// each next one as its difference to the one before (0: no pid).
    pub pids: Vec<i64>,
    /// Restarts of those that had some.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restarts: BTreeMap<String, u32>,
}

/// The value of `PREFIX/status/NODE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeStatus {
    /// The layout version ([`VERSION`]).
    pub v: u32,
    /// The node.
    pub node: String,
    /// Its supervisor's pid.
    pub pid: u32,
    /// When it was written, unix ms.
    pub updated: u64,
    /// How many agents are in each state (states with none left out).
    pub counts: BTreeMap<State, u64>,
    /// The running agents.
    pub running: Running,
    /// Every agent that is not running.
    pub agents: BTreeMap<String, Other>,
}

/// One agent as a status key tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reported {
    /// Its state.
    pub state: State,
    /// Its process's pid.
    pub pid: Option<u32>,
    /// Restarts after failures.
    pub restarts: u32,
    /// In this state since (unix ms), when known (not for running agents).
    pub since: Option<u64>,
}

impl NodeStatus {
    /// The value for `node` (supervisor pid `pid`) with agents `roster`,
    /// written at `updated` (unix ms).
    pub fn new(node: &str, pid: u32, updated: u64, roster: &[Entry]) -> NodeStatus {
        let mut counts: BTreeMap<State, u64> = BTreeMap::new();
        let mut agents = BTreeMap::new();
        let mut running: BTreeMap<&str, &Entry> = BTreeMap::new();
        for e in roster {
            *counts.entry(e.state).or_default() += 1;
            if e.state == State::Running {
                running.insert(&e.agent, e);
            } else {
                agents.insert(
                    e.agent.clone(),
                    Other {
                        state: e.state,
                        pid: e.pid,
                        restarts: e.restarts,
                        since: e.since,
                    },
                );
            }
        }
        let names = names::compact(running.keys().copied());
        let mut pids = Vec::with_capacity(running.len());
        let mut before = 0i64;
        for written in &names {
            // What `compact` wrote parses, and lists only running agents.
            let Ok(w) = Written::parse(written) else {
                continue;
            };
            for name in w.names() {
                let pid = running
                    .get(name.as_str())
                    .and_then(|e| e.pid)
                    .map_or(0, i64::from);
                pids.push(pid - before);
                before = pid;
            }
        }
        let restarts = running
            .values()
            .filter(|e| e.restarts > 0)
            .map(|e| (e.agent.clone(), e.restarts))
            .collect();
        NodeStatus {
            v: VERSION,
            node: node.to_string(),
            pid,
            updated,
            counts,
            running: Running {
                names,
                pids,
                restarts,
            },
            agents,
        }
    }

    /// The value as written to etcd.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings, numbers and maps with string keys: it
        // always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks the value of `key`.
    pub fn decode(key: &str, value: &[u8]) -> Result<NodeStatus, ClusterError> {
        let bad = |why: String| ClusterError::Data {
            key: key.to_string(),
            why,
        };
        let status: NodeStatus =
            serde_json::from_slice(value).map_err(|e| bad(format!("not a node status: {e}")))?;
        if status.v != VERSION {
            return Err(bad(format!(
                "a node status of layout {}, this agentcluster reads {VERSION}",
                status.v
            )));
        }
        let mut listed: u64 = 0;
        for written in &status.running.names {
            let w = Written::parse(written).map_err(|e| bad(format!("running name {}", e.0)))?;
            listed = listed.saturating_add(w.len());
        }
        if listed > MAX_AGENTS {
            return Err(bad(format!(
                "lists {listed} running agents, more than {MAX_AGENTS}"
            )));
        }
        if listed != status.running.pids.len() as u64 {
            return Err(bad(format!(
                "{listed} running agents but {} pids",
                status.running.pids.len()
            )));
        }
        Ok(status)
    }

    /// Every agent it reports, by name.
    pub fn agents(&self) -> BTreeMap<String, Reported> {
        let mut out = BTreeMap::new();
        let mut pid = 0i64;
        let mut pids = self.running.pids.iter();
        for written in &self.running.names {
            let Ok(w) = Written::parse(written) else {
                continue;
            };
            for name in w.names() {
                pid = pid.saturating_add(pids.next().copied().unwrap_or(0));
                let restarts = self.running.restarts.get(&name).copied().unwrap_or(0);
                out.insert(
                    name,
                    Reported {
                        state: State::Running,
                        pid: u32::try_from(pid).ok().filter(|&p| p > 0),
                        restarts,
                        since: None,
                    },
                );
            }
        }
        for (name, o) in &self.agents {
            out.insert(
                name.clone(),
                Reported {
                    state: o.state,
                    pid: o.pid,
                    restarts: o.restarts,
                    since: o.since,
                },
            );
        }
        out
    }
}

/// The value of `node`'s status key for `roster` at `updated` (unix ms):
/// what [`Publisher`] writes.
pub fn encode(node: &str, pid: u32, updated: u64, roster: &[Entry]) -> Vec<u8> {
    NodeStatus::new(node, pid, updated, roster).encode()
}

#[cfg(test)]
mod tests;
