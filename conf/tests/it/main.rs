//! The configuration crate's integration tests, one binary: shipped
//! examples, what valid configurations turn into, and every problem a
//! configuration can have; `common` holds the fixtures.
//!
//! Run one area with `cargo test -p agentcluster-conf --test it problems::`.

// Test code may panic: a failed setup or check is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod examples;
mod features;
mod problems;
mod reference;
