//! Small helpers that know nothing of SNMP: reproducible pseudo-random
//! numbers ([`xorshift`]), work spread over the cores ([`lanes`]) and the
//! host's monotonic clock as a number ([`clock`]).
//!
//! Depends on nothing else in the crate; any layer may use it.

pub mod clock;
pub(crate) mod lanes;
pub mod xorshift;
