//! The harnesses behind the fuzz targets: each takes the fuzzer's bytes and
//! panics only when one of agentcluster's promises about bad input breaks
//! (see docs/design.md, "What bad input gets"): no panic, no unbounded
//! allocation, and for the responder, every answer a well-formed SNMP
//! message within the size limits.

pub mod channel;
pub mod config;
pub mod responder;
pub mod snapshot;
