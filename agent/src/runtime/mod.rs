//! The agent process (`agentcluster agent`): its control channel with the
//! supervisor ([`channel`]), start-up and the loop that answers the
//! supervisor ([`process`]), the serving of inherited UDP sockets
//! ([`serve`]) by one loop per process ([`poller`], which leaves a CPU it
//! trades with its sender: [`placement`]), with batched datagram
//! I/O ([`mmsg`]) and the answers of a round sent together ([`outbox`]),
//! and the supervisor's liveness probe of an agent ([`probe`]).
//!
//! The top layer: depends on every other ([`crate::responder`],
//! [`crate::notify`], [`crate::data`], [`crate::wire`], [`crate::sys`]);
//! nothing depends on it.

pub mod channel;
pub mod faults;
pub(crate) mod mmsg;
pub(crate) mod outbox;
pub(crate) mod placement;
pub(crate) mod poller;
pub mod probe;
pub mod process;
pub(crate) mod serve;
