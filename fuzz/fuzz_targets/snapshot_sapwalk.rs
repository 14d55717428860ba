//! The .sapwalk parser: see `agentcluster_fuzz::snapshot`.
#![no_main]

use agentcluster_agent::snapshot::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agentcluster_fuzz::snapshot::run(data, Format::Sapwalk));
