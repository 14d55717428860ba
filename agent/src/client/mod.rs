//! The command generator: what `agentcluster record` walks a live device
//! with. [`pdu`] builds requests and opens answers (pure, byte-tested);
//! [`session::Client`] puts them on the wire — SNMPv1/v2c communities, or
//! SNMPv3 USM with engine discovery, time synchronization and every
//! protocol the agent speaks — with a timeout per attempt and retries;
//! [`walk::Walk`] decides what to ask next and checks that the answers
//! increase; [`rates`] turns two walks into `numeric` records; [`target`]
//! reads a net-snmp transport address.
//!
//! Beside `notify` on the layer above `security`: depends on
//! `crate::security` (keys localized to the peer, opening its SNMPv3
//! answers), `crate::data` (snapshot records) and `crate::wire` (BER,
//! values, the SNMPv3 message format); uses neither the responder nor the
//! notification originator.

pub mod pdu;
pub mod rates;
pub mod session;
pub mod target;
pub mod walk;

pub use pdu::{Op, Response};
pub use session::{Client, ClientError, Credentials, Security};
pub use target::Transport;
pub use walk::{Walk, WalkError};
