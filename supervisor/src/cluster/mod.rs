//! Scale-out through etcd (docs/scale-out.md): the fleet pushed to etcd
//! ([`fleet`]), where each thing lives there ([`keys`]), who owns which
//! agent ([`rendezvous`]), what one node should do about it ([`share`]),
//! the node itself (`node`: lease, membership, owner keys, watches), and
//! what each node's agents are doing ([`status`]: the status keys a node
//! writes and `status --cluster` reads).
//!
//! Layers: `cluster` uses the checked model of the configuration, the
//! states of `events` and the status line of `control`'s API types; its
//! node publishes `events` and hands its share to the fleet manager
//! through a channel (`fleet::manager::Share`), as the control socket
//! hands requests.

pub mod fleet;
pub(crate) mod hand;
pub mod keys;
pub(crate) mod node;
pub mod rendezvous;
pub mod share;
pub mod status;

use std::time::Duration;

use agentcluster_conf::Etcd;
/// The etcd client crate: [`connect`] gives its `Client`.
pub use etcd_client;

/// Why talking to etcd failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// etcd could not be reached, or refused a request.
    #[error("etcd at {endpoints}: {cause}")]
    Etcd {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// What the client said.
        cause: etcd_client::Error,
    },
    /// What etcd holds is not what agentcluster wrote there.
    #[error("etcd key {key}: {why}")]
    Data {
        /// The key.
        key: String,
        /// What is wrong with its value.
        why: String,
    },
    /// A pushed fleet that no longer validates (its snapshot files moved,
    /// say): each problem.
    #[error("the fleet in etcd does not load:\n{}", .0.join("\n"))]
    Fleet(Vec<String>),
}

/// How long one request to etcd may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of `etcd`'s endpoints.
pub async fn connect(etcd: &Etcd) -> Result<etcd_client::Client, ClusterError> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    etcd_client::Client::connect(&etcd.endpoints, Some(options))
        .await
        .map_err(|cause| etcd_error(etcd, cause))
}

/// `cause`, naming `etcd`'s endpoints.
pub(crate) fn etcd_error(etcd: &Etcd, cause: etcd_client::Error) -> ClusterError {
    ClusterError::Etcd {
        endpoints: etcd.endpoints.join(","),
        cause,
    }
}
