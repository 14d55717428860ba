//! Agent processes: adding their listen addresses to the host when asked
//! ([`addresses`]), binding their endpoints in the socket holders
//! ([`holder`]), spawning them through the spawn helpers, and supervising each one — a pure state machine
//! ([`machine`]) inside an async shell ([`unit`]) that turns child exits,
//! channel messages, timers and operator commands into its inputs.
//!
//! Depends only on [`crate::events`] (units publish their lifecycle); every
//! `unsafe` of the supervisor lives in [`sys`].

pub mod addresses;
pub mod bind;
pub mod faults;
pub mod holder;
pub mod launch;
pub mod machine;
pub mod spawner;
pub mod spec;
pub mod sys;
#[cfg(test)]
pub mod testutil;
pub mod unit;
