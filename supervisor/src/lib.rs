//! The agentcluster supervisor: compiles the fleet's snapshots, binds every
//! endpoint, starts one agent process per agent (or per group), watches and
//! restarts them, answers operator requests, reports every lifecycle event,
//! and owns shutdown.
//!
//! I/O and signals enter at [`run`]; the decisions live in
//! [`process::machine`].
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
//!   └──> systemd
//! ```
//!
//! - [`events`]: the bus, the event kinds and the notification targets;
//!   depends on nothing else here. Its [`events::sinks`] subscribe to it.
//! - [`process`]: agent processes (binding, spawning, supervision); it
//!   publishes events and knows nothing of the fleet.
//! - [`control`]: the control socket and its API; it streams events and
//!   hands requests to whoever answers them, through a channel.
//! - [`fleet`]: what should run and the manager that makes it so; it uses
//!   `process`, publishes `events` and answers `control` requests.
//! - [`status`]: the supervisor's own SNMP agent, fed status snapshots.
//! - [`run`]: wires everything together; [`systemd`] speaks sd_notify.
//!
//! A helper two layers need moves down; it is never imported sideways.

pub mod control;
pub mod error;
pub mod events;
pub mod fleet;
pub mod process;
pub mod run;
pub mod status;
pub mod systemd;

pub use error::Error;
pub use fleet::manager::{Ready, ReadyAgent};
pub use run::{Triggers, run};
