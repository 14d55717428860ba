//! The SNMP engine of agentcluster: values, snapshots, the compiled store and
//! the command responder. Pure where it can be; the serving loop is the only
//! I/O.

pub mod channel;
pub mod mib;
pub mod mmsg;
pub mod notify;
pub mod probe;
pub mod process;
pub mod ratelimit;
pub mod responder;
pub mod serve;
pub mod snapshot;
pub mod store;
pub mod sys;
pub mod variation;

mod security;
mod util;
mod wire;

pub use security::{engine, usm, v3};
pub use util::xorshift;
pub use wire::{ber, value};
