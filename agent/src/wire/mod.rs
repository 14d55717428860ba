//! What goes over the wire: BER as the hot path writes it by hand
//! ([`ber`]), the typed values and OIDs of SNMP ([`value`]), requests as
//! the handlers see them ([`pdu`]), read in place from a datagram
//! ([`fast`]) or through rasn ([`decode`]), and the SNMPv3 message format
//! ([`v3`]). Pure encoding and decoding over byte slices: no I/O, no
//! clock, no keys of its own.
//!
//! Depends on nothing else in the crate: every other layer builds on it.

pub mod ber;
pub(crate) mod decode;
pub(crate) mod fast;
pub(crate) mod pdu;
pub mod v3;
pub mod value;
