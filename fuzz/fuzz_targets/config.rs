//! The YAML fleet loader: see `agentcluster_fuzz::config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agentcluster_fuzz::config::run(data));
