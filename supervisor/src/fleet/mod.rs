//! The fleet: what should run, worked out from the configuration (what
//! each agent process is given, whether the host can carry it, which
//! snapshot files to watch), and the manager that keeps the running
//! processes in line with it.
//!
//! Depends on [`crate::process`] (it starts and stops units), on
//! [`crate::events`] (it publishes) and on the control API types it
//! answers; nothing below depends on it.

pub mod capacity;
pub mod manager;
pub mod plan;
pub mod reload;
pub mod scenarios;
pub mod stores;
pub mod v3;
pub mod watch;
