//! Control channel frames and control socket lines: see
//! `agentcluster_fuzz::channel`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agentcluster_fuzz::channel::run(data));
