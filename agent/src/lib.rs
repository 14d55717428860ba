//! The SNMP engine of agentcluster: values, snapshots, the compiled store and
//! the command responder. Pure where it can be; the serving loop is the only
//! I/O.

pub mod notify;
pub mod responder;
pub mod sys;

mod data;
mod runtime;
mod security;
mod util;
mod wire;

pub use data::{snapshot, store};
pub use responder::ratelimit;
pub use runtime::{channel, probe, process};
pub use security::{engine, usm, v3};
pub use util::xorshift;
pub use wire::{ber, value};
