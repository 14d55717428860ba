//! agentcluster fleet configuration: the YAML of INTERFACE.md parsed into raw
//! serde structs, then validated into the checked [`model`], reporting every
//! problem at once with file:line:column.

pub mod model;

pub use model::*;
