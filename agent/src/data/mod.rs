//! What an agent answers from: device snapshots in their text formats
//! ([`snapshot`]), compiled once into the memory-mapped store ([`store`]),
//! the computed values of snmpsim's variations ([`variation`]), and the MIB
//! view one agent serves ([`mib`]: a store, the device's own values over it
//! ([`values`]), the values SETs wrote over both, and the objects served
//! live, with the counters behind them).
//!
//! Depends on [`crate::wire`] (BER, values), [`crate::util`] (threads)
//! and [`crate::sys`] (the store's mapping); nothing here knows of
//! requests, security or sockets.

pub mod animate;
pub(crate) mod mib;
pub mod snapshot;
pub mod store;
pub mod values;
pub(crate) mod variation;
