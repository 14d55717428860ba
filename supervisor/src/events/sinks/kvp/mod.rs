//! The Hyper-V KVP sink: every lifecycle event written to the guest→host
//! pool file that `hv_kvp_daemon` serves to the host, in the layout
//! cloud-init's `HyperVKvpReportingHandler` uses, so both coexist in one pool.
//!
//! # The pool file
//! A sequence of fixed records, a 512-byte key then a 2048-byte value, each a
//! NUL-padded C string (`struct kvp_record` of `hv_kvp_daemon`). We always
//! keep at least one NUL, so at most 511 and 2047 bytes of UTF-8, cut on a
//! character boundary ([`encode_record`]).
//!
//! # Our records
//! Key `AGENTCLUSTER|<incarnation>|<event>|<agent>|<seq>` ([`event_key`]),
//! value the compact JSON of the [`Event`](crate::events::Event). The
//! incarnation is the boot time in whole seconds, computed as cloud-init
//! does (`now - /proc/uptime`, truncated; see [`Boot`]). The seq is the
//! bus's, which goes on across supervisor runs and starts above the
//! highest one in the pool ([`last_seq_in`]), so keys never repeat. A value
//! too long for the host is sliced as cloud-init slices one
//! ([`encode_event`], [`reassemble`]).
//!
//! # Layout
//! One concern per file, each using only those above it:
//! - `lock`: the OFD `fcntl` lock and the `flock` that readers and writers
//!   of the pool take;
//! - `record`: the record codec, [`decode`] and [`read_pool`], for any pool
//!   file;
//! - `boot`: the boot incarnation ([`Boot`]);
//! - `slices`: an event as keys and values, sliced when too long for the
//!   host, and [`reassemble`];
//! - `pool`: the pool's bytes: which records are ours and how old, where a
//!   batch goes (free slots, the end, our oldest events' slots at the cap:
//!   no record ever moves), the crash-safe slot rewrite and the mending of
//!   what a killed writer left;
//! - `writer`: the [`Writer`], one locked, fsync'ed write per batch;
//! - `sink`: the task ([`run`]) that takes events from the bus to the
//!   writer's thread.
//!
//! It depends on [`crate::events`] (the event and the bus) and on the
//! `events.kvp` configuration; `agentcluster kvp dump` reads pools with
//! [`read_pool`], [`decode`] and [`reassemble`].

mod boot;
mod lock;
mod pool;
mod record;
mod sink;
mod slices;
#[cfg(test)]
mod testutil;
mod writer;

#[cfg(test)]
use boot::Boot;
pub use pool::last_seq_in;
pub use record::{Pool, RECORD_SIZE, Record, decode, read_pool};
pub use sink::run;
pub use slices::{Entry, reassemble};

/// The guest→host pool `hv_kvp_daemon` serves.
pub const DEFAULT_POOL: &str = "/var/lib/hyperv/.kvp_pool_1";
