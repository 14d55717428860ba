//! The control channel between the supervisor and an agent process: a
//! socketpair inherited as fd 3, carrying frames of one JSON message each,
//! with the descriptors a message names (the compiled stores of a start or
//! a swap) passed alongside ([`frame`]: the framing, and how descriptors
//! are tied to their message). Versioned by [`PROTOCOL`]; a frame that is
//! too long, not JSON, of an unknown kind, or whose descriptors are not the
//! ones its message names is an error, and an error is never taken for
//! `ready`.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::responder;

pub mod frame;

pub use frame::{Frame, Frames, Receiver, send};

/// Version of the channel protocol. 2: frames carry descriptors, and
/// stores are passed as descriptors instead of paths. 3: heartbeats carry
/// the drops by reason. 4: faults (`faults`, `reboot`, and a start's
/// faults and reboot outage). 5: a reboot's beginning as an instant of the
/// host's monotonic clock.
pub const PROTOCOL: u32 = 5;
/// The fd the channel is inherited on.
pub(crate) const CHANNEL_FD: i32 = 3;
/// The first inherited UDP socket; the rest follow in order.
pub(crate) const FIRST_SOCKET_FD: i32 = 4;
/// Largest frame accepted (a start message for hundreds of agents fits).
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// A message of the channel, either way.
pub trait Message: Serialize + DeserializeOwned {
    /// How many descriptors the message names: its frame carries exactly
    /// these, in the order the message names them.
    fn descriptors(&self) -> usize {
        0
    }
}

/// Supervisor → agent process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToAgent {
    /// The start token and everything the process serves.
    Start(Start),
    /// Snapshots changed: serve these stores from now on.
    Swap {
        /// The compiled stores swapped in, each once: the frame's
        /// descriptors, in this order (a path only names a store in
        /// messages; the agent never opens it).
        stores: Vec<PathBuf>,
        /// The views that change, each with its new store.
        swaps: Vec<Swap>,
    },
    /// The cluster's limits changed on reload: apply them to every agent
    /// of the process from now on.
    Limits(Limits),
    /// An agent's faults changed: these are all of them from now on.
    Faults {
        /// Index of the agent in the start message.
        agent: usize,
        /// Every fault of the agent.
        faults: crate::runtime::faults::Faults,
    },
    /// Reboot one agent inside the process (the others serve on):
    /// unanswered for `outage_ms` from `from_ns`, then sysUpTime from 0,
    /// this snmpEngineBoots and a coldStart.
    Reboot {
        /// Index of the agent in the start message.
        agent: usize,
        /// Its new snmpEngineBoots (counted and kept by the supervisor).
        boots: u32,
        /// How long it stays unanswered.
        outage_ms: u64,
        /// When the reboot began, in [`clock::monotonic_ns`]: the
        /// supervisor's instant, so that the device is up again exactly
        /// when the supervisor says so (`fault-cleared`), however late
        /// this message arrives; 0: when it arrives.
        ///
        /// [`clock::monotonic_ns`]: crate::clock::monotonic_ns
        #[serde(default)]
        from_ns: u64,
    },
    /// Exit cleanly.
    Stop,
}

/// The start message: what the process serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Start {
    /// The supervisor's [`PROTOCOL`]; an agent that speaks another fails.
    pub protocol: u32,
    /// Echoed in `ready`/`failed`: proves the answer belongs to this start.
    pub token: String,
    /// How often the process sends its heartbeat.
    pub heartbeat_ms: u64,
    /// The compiled stores the process serves, each once however many
    /// views serve it: the frame's descriptors, in this order. A path only
    /// names a store in messages; the agent never opens it, so its account
    /// needs no access to the cache directory.
    pub stores: Vec<PathBuf>,
    /// The agents the process serves, their sockets in this order.
    pub agents: Vec<AgentSpec>,
    /// Steering sockets ([`crate::sys::steer`]) inherited after the
    /// agents' sockets: the supervisor steers the datagrams of the
    /// process's devices there (one per address family). None: each
    /// device's socket receives its own.
    #[serde(default)]
    pub steering: usize,
}

/// One agent served by the process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSpec {
    /// The agent's name (for logs and heartbeats).
    pub name: String,
    /// How many inherited sockets belong to this agent (taken in order).
    pub sockets: usize,
    /// The store of each view of `config`: an index into the start's
    /// `stores`.
    pub stores: Vec<usize>,
    /// Communities, limits and SNMPv3 of the agent's responder.
    pub config: responder::Config,
    /// Where the device sends its own coldStart/warmStart once ready.
    #[serde(default)]
    pub notify: Vec<crate::notify::Target>,
    /// coldStart (this agent's first start by this supervisor) or
    /// warmStart (a restart).
    #[serde(default)]
    pub cold: bool,
    /// The device's snmpEngineID, for SNMPv3 notifications.
    #[serde(default)]
    pub engine_id: Vec<u8>,
    /// The endpoints of the inherited sockets, in order (the device's
    /// notifications leave from the sockets themselves).
    #[serde(default)]
    pub endpoints: Vec<std::net::SocketAddr>,
    /// The endpoints that have no socket of their own: the supervisor
    /// steers their requests to the process's steering socket, and they
    /// send through a socket of the process bound to another address of
    /// their port and family ([`crate::sys::Socket::face`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unbound: Vec<std::net::SocketAddr>,
    /// Requests per second and burst allowed per source address; `None`:
    /// no limit.
    #[serde(default)]
    pub rate_limit: Option<crate::responder::ratelimit::RateLimit>,
    /// The device's own values over every view (`values:`, `identity:`);
    /// they are encoded against each view's store when the process starts.
    #[serde(default, skip_serializing_if = "crate::data::values::Values::is_empty")]
    pub values: crate::data::values::Values,
    /// `counters: animate`: the device's seed (see
    /// [`crate::data::animate::seed_of`]); `None`: counters as recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub animate: Option<u64>,
    /// The device's faults: they outlive its processes.
    #[serde(
        default,
        skip_serializing_if = "crate::runtime::faults::Faults::is_empty"
    )]
    pub faults: crate::runtime::faults::Faults,
    /// This start is a device reboot (`fault reboot`): unanswered for this
    /// long after the start, then a coldStart; 0: an ordinary start.
    #[serde(default)]
    pub reboot_outage_ms: u64,
    /// When that reboot began, in [`clock::monotonic_ns`] (the
    /// supervisor's instant: the outage ends when the supervisor announces
    /// the device up, however long the restart took); 0: at the start.
    ///
    /// [`clock::monotonic_ns`]: crate::clock::monotonic_ns
    #[serde(default)]
    pub reboot_from_ns: u64,
}

/// Limits set for the whole cluster, changeable without a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest response datagram (`cluster.max_response_bytes`).
    pub max_response_bytes: usize,
    /// Requests per second and burst allowed per source address; `None`:
    /// no limit.
    pub rate_limit: Option<crate::responder::ratelimit::RateLimit>,
}

/// A view of an agent now served from another compiled store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Swap {
    /// Index of the agent in the start message.
    pub agent: usize,
    /// Index of the view in the agent's configuration.
    pub view: usize,
    /// The compiled store to serve it from: an index into the swap's
    /// `stores`.
    pub store: usize,
}

/// Agent process → supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FromAgent {
    /// Every agent is served: the start succeeded.
    Ready {
        /// The start's token.
        token: String,
    },
    /// The start failed; the process exits.
    Failed {
        /// The start's token.
        token: String,
        /// What went wrong.
        reason: String,
    },
    /// Sent every `heartbeat_ms`: proof of life, with the counters.
    Heartbeat {
        /// The agents whose counters changed since the process's last
        /// heartbeat (every agent in its first), in the start message's
        /// order. An agent left out has the counters it last had.
        agents: Vec<AgentStats>,
    },
    /// The result of a `swap`.
    Swapped {
        /// Every swap was applied.
        ok: bool,
        /// Why not, when not (the first swap that failed).
        reason: String,
    },
    /// A `faults` or `reboot` message was applied: the device behaves so
    /// from now on (one per such message, in their order).
    Applied,
}

/// One agent's counters in a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStats {
    /// The agent's name.
    pub name: String,
    /// Requests answered so far.
    pub requests: u64,
    /// Datagrams dropped so far.
    pub dropped: u64,
    /// Those drops by reason.
    pub drops: crate::responder::Drops,
}

impl Message for ToAgent {
    fn descriptors(&self) -> usize {
        match self {
            ToAgent::Start(start) => start.stores.len(),
            ToAgent::Swap { stores, .. } => stores.len(),
            ToAgent::Limits(_)
            | ToAgent::Faults { .. }
            | ToAgent::Reboot { .. }
            | ToAgent::Stop => 0,
        }
    }
}

/// An agent passes no descriptor.
impl Message for FromAgent {}
