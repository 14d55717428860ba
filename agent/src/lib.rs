//! The SNMP engine of agentcluster: the wire format, USM and SNMPv3 message
//! processing, device snapshots and the compiled store, the command
//! responder, the notification originator, and the agent process that
//! serves them. Pure where it can be; the agent process is the I/O.
//!
//! # Layers
//!
//! Each folder is one concern. A layer uses only the layers below it, never
//! one above it or beside it; a helper two layers need moves down:
//!
//! ```text
//! runtime     the agent process: control channel, start-up, serving loop, liveness probe
//! responder   the command responder      notify   the notification originator
//!                                          client   the command generator
//! security    engine identity, USM, SNMPv3 message processing
//! data        snapshots, the compiled store, variations, the MIB view and its counters
//! wire        BER, values, requests, the in-place decoder, the SNMPv3 message format
//! util, sys   no SNMP: small helpers, and the crate's only `unsafe`; any layer uses them
//! ```
//!
//! `responder`, `notify` and `client` share a layer and do not use each other;
//! `security` uses `data` only for the counters it increments. Tests may
//! reach further down, never up.
//!
//! # The public surface
//!
//! What the `agentcluster` binary, the supervisor, the bench, the fuzz
//! targets and the integration tests use, as modules named after their
//! concepts (each re-exported from the folder it lives in); everything else
//! is private to the crate:
//!
//! - [`ber`], [`value`] (`wire/`): hand-written BER ([`ber::Frame`]) and
//!   SNMP values;
//! - [`engine`], [`usm`], [`v3`] (`security/`): engine IDs and boots, USM
//!   users and keys, SNMPv3 configuration, and the message format
//!   ([`v3::wire`], from `wire/v3.rs`);
//! - [`snapshot`], [`store`], [`values`] (`data/`): snapshot files, their
//!   compiled stores, and a device's own values over them;
//! - [`responder`] (`responder/`): the command responder, one datagram at a
//!   time, and [`ratelimit`], its per-source limit;
//! - [`notify`] (`notify/`): traps and informs;
//! - [`client`] (`client/`): the command generator `record` walks devices
//!   with;
//! - [`channel`], [`process`], [`probe`] (`runtime/`): the agent process's
//!   control channel, its entry point, and the supervisor's liveness probe;
//! - [`sys`] (`sys.rs`): taking over an inherited descriptor;
//! - [`xorshift`], [`clock`] (`util/`): reproducible pseudo-random numbers,
//!   and the monotonic clock as a number two processes agree on.

pub mod client;
mod data;
pub mod notify;
pub mod responder;
mod runtime;
mod security;
#[allow(unsafe_code)] // The crate's only unsafe, each use with its reason: see the module.
pub mod sys;
mod util;
mod wire;

pub use data::{animate, snapshot, store, values};
pub use responder::ratelimit;
pub use runtime::{channel, faults, probe, process};
pub use security::{engine, usm, v3};
pub use util::{clock, xorshift};
pub use wire::{ber, value};
