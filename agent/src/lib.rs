//! The SNMP engine of agentcluster: values, snapshots, the compiled store and
//! the command responder. Pure where it can be; the serving loop is the only
//! I/O.

pub mod snapshot;
pub mod value;
