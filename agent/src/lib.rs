//! The SNMP engine of agentcluster: values, snapshots, the compiled store and
//! the command responder. Pure where it can be; the serving loop is the only
//! I/O.

pub mod channel;
pub mod mmsg;
pub mod notify;
pub mod probe;
pub mod process;
pub mod ratelimit;
pub mod responder;
pub mod serve;
pub mod sys;

mod data;
mod security;
mod util;
mod wire;

pub use data::{snapshot, store};
pub use security::{engine, usm, v3};
pub use util::xorshift;
pub use wire::{ber, value};
