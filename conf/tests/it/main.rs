//! The configuration crate's integration tests, one binary: shipped
//! examples, what valid configurations turn into, and every problem a
//! configuration can have; `common` holds the fixtures.
//!
//! Run one area with `cargo test -p agentcluster-conf --test it problems::`.

mod common;

mod examples;
mod features;
mod problems;
