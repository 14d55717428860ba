//! Small helpers that know nothing of SNMP: reproducible pseudo-random
//! numbers ([`xorshift`]).
//!
//! Depends on nothing else in the crate; any layer may use it.

pub mod xorshift;
