//! Every item of the workspace's libraries that the tests use, imported
//! here and nowhere else: when one moves, this file is the one to fix.

pub use agentcluster_agent::animate::{Animate, seed_of};
pub use agentcluster_agent::engine::derive_engine_id;
pub use agentcluster_agent::notify::{
    COLD_START, Kind, LocalEngine, Notification, NotifyError, NotifyUser, Sender, Target, Version,
    WARM_START,
};
pub use agentcluster_agent::usm::{AuthProtocol, PrivProtocol};
pub use agentcluster_agent::value::{Oid, Value};
pub use agentcluster_agent::{probe, snapshot};
pub use agentcluster_bench::client::Client;
pub use agentcluster_bench::procs::{self, Signal};
pub use agentcluster_bench::{ber, load, snmp};
#[cfg(feature = "etcd")]
pub use agentcluster_conf::Etcd as EtcdConf;
pub use agentcluster_conf::{DEFAULT_MIB_ROOT, EventKind, load as load_fleet_file, parse_duration};
#[cfg(feature = "etcd")]
pub use agentcluster_supervisor::cluster::{
    connect as etcd_connect,
    etcd_client::{Client as EtcdClient, WatchStream as EtcdWatchStream},
    keys::Keys as EtcdKeys,
    status::{Entry as StatusEntry, Publisher as StatusPublisher},
};
#[cfg(feature = "etcd")]
pub use agentcluster_supervisor::protocol::State;
pub use agentcluster_supervisor::spool_crc32 as crc32;
