//! The typed SNMP values a snapshot holds, and their BER encoding.

use std::fmt;

/// An object identifier as its arcs. Kept as plain `u32` arcs because that is
/// what sorts correctly (BER bytes do not) and what the store searches.
pub type Oid = Vec<u32>;

/// One SNMP value, as SMIv2 (RFC 2578) and RFC 3416 define them.
///
/// `Integer` is wider than Integer32 so that a snapshot holding an
/// out-of-range number is served as recorded instead of refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// INTEGER, Integer32 (and any recorded value beyond it).
    Integer(i64),
    /// OCTET STRING.
    OctetString(Vec<u8>),
    /// NULL (the value of a request's varbinds).
    Null,
    /// OBJECT IDENTIFIER.
    ObjectId(Oid),
    /// IpAddress: an IPv4 address.
    IpAddress([u8; 4]),
    /// Counter32.
    Counter32(u32),
    /// Gauge32 (Unsigned32).
    Gauge32(u32),
    /// TimeTicks: hundredths of a second.
    TimeTicks(u32),
    /// Opaque: the BER of another value, as bytes.
    Opaque(Vec<u8>),
    /// Counter64 (not in SNMPv1).
    Counter64(u64),
    /// The noSuchObject exception.
    NoSuchObject,
    /// The noSuchInstance exception.
    NoSuchInstance,
    /// The endOfMibView exception.
    EndOfMibView,
}

impl Value {
    /// The snmprec tag number (snmpsim's convention: the BER tag as decimal).
    pub(crate) fn snmprec_tag(&self) -> u8 {
        match self {
            Value::Integer(_) => 2,
            Value::OctetString(_) => 4,
            Value::Null => 5,
            Value::ObjectId(_) => 6,
            Value::IpAddress(_) => 64,
            Value::Counter32(_) => 65,
            Value::Gauge32(_) => 66,
            Value::TimeTicks(_) => 67,
            Value::Opaque(_) => 68,
            Value::Counter64(_) => 70,
            Value::NoSuchObject => 128,
            Value::NoSuchInstance => 129,
            Value::EndOfMibView => 130,
        }
    }
}

/// Formats an OID in dotted form without a leading dot: `1.3.6.1.2.1.1.1.0`.
pub struct DisplayOid<'a>(pub &'a [u32]);

impl fmt::Display for DisplayOid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arc) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{arc}")?;
        }
        Ok(())
    }
}
