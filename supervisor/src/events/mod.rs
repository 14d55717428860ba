//! Lifecycle events and where they go. Every state change is one
//! [`Event`], published once on the [`Bus`]; the sinks in [`sinks`] (the
//! journal, the Hyper-V KVP pool, SNMP notifications) subscribe, and the
//! control socket streams them.
//!
//! Depends on nothing else of the supervisor: process management, the
//! fleet manager and the control plane publish into it; the sinks depend
//! on it, never the reverse.

pub mod bus;
pub(crate) mod coalesce;
pub(crate) mod gate;
pub mod kind;
pub mod mib;
pub mod seq;
pub mod sinks;
pub mod targets;
#[cfg(test)]
pub mod testutil;

pub use bus::{Bus, Event, NewEvent};
pub use kind::{EventKind, State};
