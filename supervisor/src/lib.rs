//! The agentcluster supervisor: compiles the fleet's snapshots, binds every
//! endpoint, starts one agent process per agent (or per group), watches and
//! restarts them, answers operator requests, reports every lifecycle event,
//! and owns shutdown.
//!
//! I/O enters at [`run`] (signals arrive as its [`Triggers`]); the decisions live in
//! `process::machine`.
//!
//! # Layers
//!
//! The modules depend on each other in one direction only:
//!
//! ```text
//! run ──> fleet ──> process ──> events <── events::sinks
//!   │       │                     ^
//!   │       └──> control::api     │
//!   ├──> control ─────────────────┘
//!   ├──> status ──> control::api, events, process::bind
//!   ├──> metrics ──> fleet::manager, process::unit, events
//!   └──> systemd
//! ```
//!
//! - `events`: the bus, the event kinds and the notification targets;
//!   depends on nothing else here. Its `events::sinks` subscribe to it.
//! - `process`: agent processes (binding, spawning, supervision); it
//!   publishes events and knows nothing of the fleet.
//! - `control`: the control socket and its API; it streams events and
//!   hands requests to whoever answers them, through a channel.
//! - `fleet`: what should run and the manager that makes it so; it uses
//!   `process`, publishes `events` and answers `control` requests.
//! - `status`: the supervisor's own SNMP agent, fed status snapshots.
//! - `metrics`: Prometheus metrics over HTTP, read at each scrape from the
//!   units' status, the bus, the start tokens and the notification sink.
//! - `run`: wires everything together; `systemd` speaks sd_notify.
//!
//! A helper two layers need moves down; it is never imported sideways.

#[cfg(feature = "etcd")]
pub mod cluster;
mod control;
mod error;
mod events;
mod fleet;
mod metrics;
mod process;
mod progress;
mod run;
mod status;
mod systemd;

pub use error::Error;
pub use events::bus::rfc3339_millis;
pub use fleet::capacity::agents_this_host_carries;
pub use fleet::capacity::check as check_capacity;
pub use fleet::manager::{Ready, ReadyAgent};
pub use fleet::plan::missing_addresses;
pub use progress::Progress;
pub use run::{Triggers, run};

/// What a client of the control socket needs: the socket's default path,
/// the request and response types of its JSON-lines protocol, event
/// records and subscription filters.
pub mod protocol {
    pub use crate::control::api::{AgentStatus, ErrorKind, Request, Response, WireRequest};
    pub use crate::control::filter::{Filter, FilterError};
    pub use crate::control::{MAX_LINE, default_control_socket, parse_request_line};
    pub use crate::events::bus::RING;
    pub use crate::events::{Event, EventKind, State};
}

/// The Hyper-V KVP pool format, for reading a pool back
/// (`agentcluster kvp dump`).
pub mod kvp {
    pub use crate::events::sinks::kvp::{
        DEFAULT_POOL, Entry, Pool, RECORD_SIZE, Record, decode, read_pool, reassemble,
    };
}

/// The checksum of the inform spool's lines (the zlib CRC-32), for tools
/// and tests that read the spool.
pub use events::sinks::traps::crc32 as spool_crc32;

/// Whether the journal is this process's log (running under systemd with
/// its socket present), and where its socket is.
pub use events::sinks::journal::available as journal_socket;

/// The socket holder's `main` (the hidden `agentcluster holder` command).
pub use process::holder::holder_main as socket_holder_main;
/// The spawn helper's `main` (the hidden `agentcluster spawner` command).
pub use process::spawner::helper_main as spawn_helper_main;
