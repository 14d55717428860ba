//! Small helpers that know nothing of SNMP: reproducible pseudo-random
//! numbers ([`xorshift`]) and work spread over the cores ([`lanes`]).
//!
//! Depends on nothing else in the crate; any layer may use it.

pub(crate) mod lanes;
pub mod xorshift;
