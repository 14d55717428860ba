//! Who the agent is and who may talk to it: the SNMP engine's identity
//! ([`engine`]: engine ID, snmpEngineBoots), the User-based Security Model
//! ([`usm`]: keys, authentication, privacy) and SNMPv3 message processing
//! ([`v3`]: the checks of RFC 3412/3414 that turn a datagram into a request,
//! a Report or a counted drop, and the sealing of answers).
//!
//! Depends on [`crate::wire`] (messages, requests) and [`crate::data`]
//! (only for the counters it increments); pure but for the boots file of
//! [`engine`].

pub mod engine;
pub(crate) mod peer;
pub mod usm;
pub mod v3;
