//! The reader's side: the pushed fleet, the live nodes, the owners and
//! the nodes' status keys read in one transaction (one revision, so an
//! agent that moves is seen on one node, never on both or neither), and
//! one row per agent of the fleet from them.

use std::collections::BTreeMap;

use agentcluster_conf::{Etcd, Fleet};
use etcd_client::{GetOptions, Txn, TxnOp, TxnOpResponse};
use serde::Serialize;

use super::{NodeStatus, Reported};
use crate::cluster::fleet::Pushed;
use crate::cluster::keys::Keys;
use crate::cluster::rendezvous::{Member, Place, place};
use crate::cluster::{ClusterError, connect, etcd_error};
use crate::events::State;

/// The largest answer the read accepts: the owners of a large fleet are
/// more than the client's default (4 MiB).
const MAX_ANSWER: usize = 256 << 20;

/// Everything `status --cluster` shows, as etcd held it at `revision`.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// The revision of the read.
    pub revision: i64,
    /// The pushed fleet; `None` when nothing was pushed.
    pub fleet: Option<Pushed>,
    /// The live nodes, by name.
    pub nodes: BTreeMap<String, Member>,
    /// Each owned agent's node.
    pub owners: BTreeMap<String, String>,
    /// Each node's status key, by node.
    pub statuses: BTreeMap<String, NodeStatus>,
}

/// The state column of an agent of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RowState {
    /// As its owner reports it.
    Agent(State),
    /// No node owns it.
    Unowned,
    /// Its owner has not reported it (no status key yet, or one written
    /// before the node took the agent).
    Unknown,
}

impl RowState {
    /// Its name, as shown and as `--state` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RowState::Agent(s) => s.as_str(),
            RowState::Unowned => "unowned",
            RowState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for RowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RowState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One agent of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRow {
    /// Its name.
    pub agent: String,
    /// Its owner; `None` when unowned.
    pub node: Option<String>,
    /// Its state.
    pub state: RowState,
    /// Its process's pid on its owner's host.
    pub pid: Option<u32>,
    /// Restarts after failures on its owner.
    pub restarts: u32,
    /// The endpoints it answers on (`address:port`), from the fleet.
    pub endpoints: Vec<String>,
    /// Why an unowned agent is: `no node has room` (every node that can
    /// bind it is at its capacity), `no node can bind its addresses`, or
    /// `being taken over by NODE` (its node-to-be has not created its
    /// owner key yet). `None` for an owned agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unowned: Option<String>,
}

/// One live node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    /// Its name.
    pub node: String,
    /// Its supervisor's pid.
    pub pid: u32,
    /// The address ranges it can bind.
    pub serves: Vec<String>,
    /// How many agents of the fleet it owns.
    pub agents: usize,
    /// How many agents its host carries, as its membership key says.
    pub capacity: Option<u64>,
    /// When its status key was written (unix ms); `None`: it has none.
    pub updated: Option<u64>,
}

/// Reads the cluster under `etcd.prefix` in one transaction.
pub async fn read_cluster(etcd: &Etcd) -> Result<ClusterStatus, ClusterError> {
    let client = connect(etcd).await?;
    let keys = Keys::new(&etcd.prefix);
    let prefix = || Some(GetOptions::new().with_prefix());
    let txn = Txn::new().and_then([
        TxnOp::get(keys.fleet(), None),
        TxnOp::get(keys.nodes(), prefix()),
        TxnOp::get(keys.owners(), prefix()),
        TxnOp::get(keys.statuses(), prefix()),
    ]);
    let answer = client
        .kv_client()
        .max_decoding_message_size(MAX_ANSWER)
        .txn(txn)
        .await
        .map_err(|e| etcd_error(etcd, e))?;
    let revision = answer.header().map_or(0, |h| h.revision());
    let mut gets = answer.op_responses().into_iter().map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().to_vec(),
        _ => Vec::new(),
    });
    let mut next = || gets.next().unwrap_or_default();
    let (fleet_kvs, node_kvs, owner_kvs, status_kvs) = (next(), next(), next(), next());
    let text = |kv: &etcd_client::KeyValue| {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        (key, kv.value().to_vec())
    };
    let fleet = match fleet_kvs.first().map(text) {
        Some((key, value)) => Some(Pushed::decode(&key, &value)?),
        None => None,
    };
    let mut nodes = BTreeMap::new();
    for (key, value) in node_kvs.iter().map(text) {
        let member: Member = serde_json::from_slice(&value).map_err(|e| ClusterError::Data {
            key: key.clone(),
            why: format!("not a node's membership: {e}"),
        })?;
        nodes.insert(name_after(&key, &keys.nodes()), member);
    }
    let mut owners = BTreeMap::new();
    for (key, value) in owner_kvs.iter().map(text) {
        let node = String::from_utf8(value).map_err(|_| ClusterError::Data {
            key: key.clone(),
            why: "not a node name (not UTF-8)".into(),
        })?;
        owners.insert(name_after(&key, &keys.owners()), node);
    }
    let mut statuses = BTreeMap::new();
    for (key, value) in status_kvs.iter().map(text) {
        statuses.insert(
            name_after(&key, &keys.statuses()),
            NodeStatus::decode(&key, &value)?,
        );
    }
    Ok(ClusterStatus {
        revision,
        fleet,
        nodes,
        owners,
        statuses,
    })
}

/// The last part of `key`, under `prefix`.
fn name_after(key: &str, prefix: &str) -> String {
    key.strip_prefix(prefix).unwrap_or(key).to_string()
}

impl ClusterStatus {
    /// One row per agent of `fleet` (the pushed fleet, loaded), in the
    /// fleet's order, and one per live node.
    pub fn rows(&self, fleet: &Fleet) -> (Vec<NodeRow>, Vec<AgentRow>) {
        let reported: BTreeMap<&str, BTreeMap<String, Reported>> = self
            .statuses
            .iter()
            .map(|(node, s)| (node.as_str(), s.agents()))
            .collect();
        let mut owned: BTreeMap<&str, usize> = BTreeMap::new();
        // Where the nodes place each agent, for why one is unowned.
        let members: Vec<Member> = self.nodes.values().cloned().collect();
        let places = place(&fleet.agents, &members);
        let agents = fleet
            .agents
            .iter()
            .zip(&places)
            .map(|(a, at)| {
                let node = self.owners.get(&a.name);
                let got = node.and_then(|n| reported.get(n.as_str())?.get(&a.name));
                if let Some(n) = node {
                    *owned.entry(n.as_str()).or_default() += 1;
                }
                let state = match (node, got) {
                    (None, _) => RowState::Unowned,
                    (Some(_), None) => RowState::Unknown,
                    (Some(_), Some(r)) => RowState::Agent(r.state),
                };
                let got = got.filter(|_| node.is_some());
                AgentRow {
                    agent: a.name.clone(),
                    node: node.cloned(),
                    state,
                    pid: got.and_then(|r| r.pid),
                    restarts: got.map_or(0, |r| r.restarts),
                    endpoints: a.listen.iter().map(ToString::to_string).collect(),
                    unowned: node.is_none().then(|| match at {
                        Place::Full => "no node has room".to_string(),
                        Place::NoNode => "no node can bind its addresses".to_string(),
                        Place::Node(n) => format!("being taken over by {n}"),
                    }),
                }
            })
            .collect();
        let nodes = self
            .nodes
            .iter()
            .map(|(name, m)| NodeRow {
                node: name.clone(),
                pid: m.pid,
                serves: m.serves.clone(),
                agents: owned.get(name.as_str()).copied().unwrap_or(0),
                capacity: m.capacity,
                updated: self.statuses.get(name).map(|s| s.updated),
            })
            .collect();
        (nodes, agents)
    }
}
