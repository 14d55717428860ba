//! The event sinks: each subscribes to the [`Bus`](crate::events::Bus) and
//! delivers every event its own way — structured journal entries, records
//! in the Hyper-V KVP pool, SNMP traps and informs.

pub mod journal;
pub mod kvp;
pub mod traps;
