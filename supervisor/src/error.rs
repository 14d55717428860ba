//! Why the supervisor could not start or had to stop.

use agentcluster_agent::store;

use crate::control;
use crate::process::{addresses, bind};

/// Why the supervisor could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A snapshot could not be compiled into a store.
    #[error("cannot compile snapshot: {0}")]
    Store(#[from] store::StoreError),
    /// Endpoints that could not be bound, each with its agent.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Bind(Vec<bind::BindError>),
    /// The metrics endpoint (`cluster.metrics`) could not be bound.
    #[error("cluster.metrics: cannot listen on tcp {listen}: {cause}")]
    Metrics {
        /// The endpoint.
        listen: std::net::SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// Listen addresses missing on the host could not be added
    /// (`cluster.addresses`).
    #[error("{0}")]
    Addresses(#[from] addresses::AddressError),
    /// An agent that cannot be run as configured (or a supervision task
    /// that died: a bug).
    #[error("agent {agent}: {cause}")]
    Agent {
        /// The agent, or empty for a cluster setting.
        agent: String,
        /// What is wrong.
        cause: String,
    },
    /// The control socket could not be created.
    #[error("control socket: {0}")]
    Control(#[from] control::ControlError),
    /// The host cannot carry the fleet: each way, with its arithmetic.
    #[error("{}", .0.join("\n"))]
    Capacity(Vec<String>),
    /// Anything else the system refused.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
