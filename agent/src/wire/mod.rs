//! What goes over the wire: BER as the hot path writes it by hand
//! ([`ber`]) and the typed values and OIDs of SNMP ([`value`]). Pure
//! encoding and decoding over byte slices: no I/O, no clock, no keys.
//!
//! Depends on nothing else in the crate: every other layer builds on it.

pub mod ber;
pub mod value;
