//! Any datagram through a real responder: see `agentcluster_fuzz::responder`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agentcluster_fuzz::responder::run(data));
