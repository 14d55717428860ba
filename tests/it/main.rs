//! The integration tests, one binary: each module is one area of the
//! product, run end to end with the real `agentcluster` binary and real
//! clients on loopback; `harness` holds what they share.
//!
//! Run one area with `cargo test --test it supervisor::`.

// Test code may panic: a failed setup or check is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod addresses;
mod cache;
mod chaos;
mod cli;
mod cli_ctl;
mod cli_status;
mod cli_surface;
mod counters;
mod crash;
mod device_values;
mod devices_notify;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod etcd_status;
mod events_burst;
mod events_cli;
mod events_snmp;
mod faults;
mod first_minute;
mod import;
mod kvp;
mod metrics;
mod mib;
mod notify_snmptrapd;
mod quickstart;
mod record;
mod secrets;
mod shutdown;
mod snmp_v1v2c;
mod snmp_v3;
mod supervisor;
mod systemd_units;
mod templates;
mod troubleshooting;
mod variations;
