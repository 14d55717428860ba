//! Why the supervisor could not start or had to stop.

use agentcluster_agent::store;

use crate::control;
use crate::process::bind;

/// Why the supervisor could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot compile snapshot: {0}")]
    Store(#[from] store::StoreError),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Bind(Vec<bind::BindError>),
    #[error("agent {agent}: {cause}")]
    Agent { agent: String, cause: String },
    #[error("control socket: {0}")]
    Control(#[from] control::ControlError),
    /// The host cannot carry the fleet: each way, with its arithmetic.
    #[error("{}", .0.join("\n"))]
    Capacity(Vec<String>),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
