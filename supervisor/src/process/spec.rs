//! What an agent process is: the agents it serves with their sockets,
//! stores and configuration ([`UnitSpec`]), and the cluster settings every
//! process is supervised and started with ([`Settings`]). The launcher
//! reads them to create a process; the unit, to supervise it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentcluster_agent::channel;
use agentcluster_agent::responder;
use agentcluster_conf::Restart;
use tokio::sync::watch;

use crate::process::holder::Held;
use crate::process::sys::Credentials;

/// One agent as a process serves it.
#[derive(Debug, Clone)]
pub struct AgentPlan {
    pub name: String,
    pub endpoints: Vec<SocketAddr>,
    /// Bound once, kept by the socket holders across restarts, so requests
    /// wait in the kernel buffer while the agent restarts.
    pub sockets: Vec<Arc<Held>>,
    /// The endpoints that have no socket in `sockets`: their requests are
    /// steered to the process's steering socket, and they send through
    /// another endpoint's socket of their port and family.
    pub unbound: Box<[SocketAddr]>,
    /// Compiled store files, one per view. The launcher opens them and
    /// hands the process their descriptors: agents never open a path.
    pub stores: Vec<PathBuf>,
    pub config: responder::Config,
    /// Where the device sends its own coldStart/warmStart.
    pub notify: Vec<agentcluster_agent::notify::Target>,
    /// The device's snmpEngineID (for SNMPv3 notifications).
    pub engine_id: Vec<u8>,
    /// The device's own values over its snapshots (shared between the
    /// plans of one reload: they can be many).
    pub values: Arc<agentcluster_agent::values::Values>,
    /// `counters: animate`: the device's seed; `None`: counters as
    /// recorded.
    pub animate: Option<u64>,
    /// The device's faults (kept by its unit), sent with every start.
    pub faults: agentcluster_agent::faults::Faults,
    /// The next start is a device reboot with this outage (`fault reboot`
    /// of an agent with a process of its own).
    pub reboot_outage: Option<Duration>,
    /// When that reboot began ([`agentcluster_agent::clock::monotonic_ns`]):
    /// the outage ends when its fault does, however long the restart took.
    pub reboot_from_ns: u64,
}

/// A view of an agent of a process, to be served from another compiled
/// store (its snapshot was recompiled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSwap {
    /// Index of the agent in the process.
    pub agent: usize,
    /// Index of the view in the agent's configuration.
    pub view: usize,
    /// The compiled store file.
    pub store: PathBuf,
}

/// One agent process: one agent, or several with `agents_per_process`.
#[derive(Debug, Clone)]
pub struct UnitSpec {
    pub name: String,
    pub agents: Vec<AgentPlan>,
    pub active: bool,
    /// Resident memory above this is a fault (the smallest limit of the
    /// process's agents).
    pub memory_max: Option<u64>,
    /// The process's steering sockets (`cluster.steering`), kept by the
    /// socket holders like its agents' sockets: each receives what is sent
    /// to the agents' endpoints of its address family, while the process
    /// runs and while it restarts.
    pub steering: Vec<crate::process::bind::Steered>,
}

/// Cluster settings every unit uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub heartbeat: Duration,
    pub inactive_after: Duration,
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
    pub restart: Restart,
    pub creds: Option<Credentials>,
    /// `cluster.max_response_bytes` and `cluster.rate_limit`: the manager
    /// changes them on reload; running processes are told, later ones
    /// start with them.
    pub limits: watch::Receiver<channel::Limits>,
    /// The optional end-to-end SNMP probe.
    pub probe: Option<agentcluster_conf::Probe>,
    /// Where each agent's snmpEngineBoots is kept.
    pub state_dir: std::path::PathBuf,
    /// The steering map agent processes put their devices' datagrams in
    /// ([`agentcluster_agent::sys::steer`]), passed to each; `None`: none.
    pub steer: Option<agentcluster_agent::sys::steer::Map>,
}
