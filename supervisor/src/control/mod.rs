//! The control socket: the Unix stream socket on which `agentcluster status`,
//! `restart`, `reload`, … reach the running supervisor. One JSON request per
//! line in, one JSON response per line out, in the serde form of
//! [`crate::control::api`]; only our own user (or root) may talk to it.
//!
//! # Layout
//! - [`api`]: the requests and answers as they travel, and the
//!   [`Handle`](api::Handle) through which the supervisor answers them;
//! - [`filter`]: event subscription patterns, and the answer to `events`;
//! - `socket`: where the socket lives, the checks on its directory, [`bind`]
//!   (replacing a stale socket, refusing a live one) and the removal of the
//!   socket file;
//! - `server`: [`serve`]: the accept loop, the peer checks, one task per
//!   connection, request lines in and answers out;
//! - `stream`: `events --follow`: the replay, then live events, with pings,
//!   and a final `overflow` record for a subscriber that falls behind.
//!
//! The files point one way: `server` uses `socket`, `stream`, `filter` and
//! `api`; `stream` uses `filter`; `filter` uses `api`. The fleet is never
//! called: requests reach it through the [`api::Handle`]'s channel, and
//! event streams read the [`Bus`](crate::events::Bus) directly.

pub mod api;
pub mod filter;
mod server;
mod socket;
mod stream;
#[cfg(test)]
mod testutil;

pub use server::{MAX_CONNECTIONS, MAX_LINE, parse_request_line, serve};
pub use socket::{ControlError, ControlListener, bind, default_control_socket};
