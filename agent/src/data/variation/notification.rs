//! snmpsim's `notification`: a request touching the object (a SET for
//! `op=set`, the default; a read for `op=get`; any for `op=any`) makes the
//! device send a trap or inform to `host:port`, from the device's own
//! endpoint. The responder only says what to send; the serving loop sends
//! it with the agent's notification sender.

use std::time::Duration;

use super::{Op, items, number};
use crate::notify::{Kind, NotifyUser, Target, Version};
use crate::security::usm::{AuthProtocol, PrivProtocol};
use crate::wire::value::{Oid, Value};

/// A parsed `notification` record.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    /// Which requests send it.
    pub op: Op,
    /// Where to, how (address `host:port`, version, trap or inform,
    /// community or user).
    pub target: Target,
    /// snmpTrapOID.0 (`trapoid`; snmpsim's default: coldStart).
    pub trap_oid: Oid,
    /// sysUpTime.0 to send (`uptime`); `None`: the device's own.
    pub uptime: Option<u32>,
    /// SNMPv1: the Trap-PDU's agent-addr (`agentaddress`); `None`: the
    /// endpoint's.
    pub agent_address: Option<[u8; 4]>,
    /// The varbinds after snmpTrapOID.0 (`varbinds`, and for SNMPv1
    /// snmpTrapEnterprise.0 from `enterprise`).
    pub varbinds: Vec<(Oid, Value)>,
}

impl Notify {
    /// The record's parameters, with snmpsim's defaults: `op=set`,
    /// `version` (`1`, `2c` — the default — or `3`), `community=public`,
    /// `proto=udp` (or `udp6`), `host` (required), `port=162`,
    /// `ntftype=trap` (or `inform`), `trapoid=1.3.6.1.6.3.1.1.5.1`,
    /// `uptime`, `agentaddress` and `enterprise` (SNMPv1), `varbinds`
    /// (`OID:TYPE:VALUE` triples joined by `:`, TYPE one of `s h i o a u g
    /// t b I`), for SNMPv3 `user`, `authkey`, `authproto` (`md5`, `sha`,
    /// `none`), `privkey`, `privproto` (`des`, `aes`, `none`). `bindaddr` is
    /// accepted and not used: the device's own endpoint is the source.
    pub fn parse(params: &str) -> Result<Notify, String> {
        let kv = items(params);
        let get = |key: &str| kv.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let op = get("op").map_or(Ok(Op::Set), Op::parse)?;
        let version = match get("version").map(str::trim).unwrap_or("2c") {
            "1" => Version::V1,
            "2c" => Version::V2c,
            "3" => Version::V3,
            other => return Err(format!("version {other:?} is not 1, 2c or 3")),
        };
        let host = get("host")
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or("host= is required (where the notification goes)")?;
        let port = get("port").unwrap_or("162").trim();
        let port: u16 = port
            .parse()
            .map_err(|_| format!("port={port:?} is not a port number"))?;
        let v6 = match get("proto").map(str::trim).unwrap_or("udp") {
            "udp" => false,
            "udp6" => true,
            other => return Err(format!("proto {other:?} is not udp or udp6")),
        };
        let address = if v6 || host.contains(':') {
            format!("[{}]:{port}", host.trim_matches(['[', ']']))
        } else {
            format!("{host}:{port}")
        };
        let kind = match get("ntftype").map(str::trim).unwrap_or("trap") {
            "trap" => Kind::Trap,
            "inform" => Kind::Inform,
            other => return Err(format!("ntftype {other:?} is not trap or inform")),
        };
        if kind == Kind::Inform && version == Version::V1 {
            return Err("SNMPv1 has no inform".into());
        }
        let user = match version {
            Version::V3 => Some(user(&get)?),
            _ => None,
        };
        let trap_oid = oid("trapoid", get("trapoid").unwrap_or("1.3.6.1.6.3.1.1.5.1"))?;
        let uptime = get("uptime")
            .map(|v| number("uptime", v).map(|n| n.clamp(0.0, f64::from(u32::MAX)) as u32))
            .transpose()?;
        let agent_address = get("agentaddress")
            .map(|a| {
                a.trim()
                    .parse::<std::net::Ipv4Addr>()
                    .map(|ip| ip.octets())
                    .map_err(|_| format!("agentaddress={a:?} is not an IPv4 address"))
            })
            .transpose()?;
        let mut varbinds = Vec::new();
        if let Some(e) = get("enterprise")
            && version == Version::V1
        {
            varbinds.push((
                crate::notify::SNMP_TRAP_ENTERPRISE.to_vec(),
                Value::ObjectId(oid("enterprise", e)?),
            ));
        }
        if let Some(list) = get("varbinds") {
            varbinds.extend(parse_varbinds(list)?);
        }
        Ok(Notify {
            op,
            target: Target {
                address,
                version,
                kind,
                community: get("community").unwrap_or("public").as_bytes().to_vec(),
                user,
                // pysnmp's defaults for a UDP target.
                retries: 5,
                timeout: Duration::from_secs(1),
            },
            trap_oid,
            uptime,
            agent_address,
            varbinds,
        })
    }
}

fn user<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<NotifyUser, String> {
    let name = get("user").ok_or("version=3 needs user=")?;
    let auth = match (get("authkey"), get("authproto").unwrap_or("md5").trim()) {
        (None, _) | (_, "none") => None,
        (Some(key), "md5") => Some((AuthProtocol::Md5, key.to_string())),
        (Some(key), "sha") => Some((AuthProtocol::Sha1, key.to_string())),
        (_, other) => return Err(format!("authproto {other:?} is not md5, sha or none")),
    };
    let privacy = match (get("privkey"), get("privproto").unwrap_or("des").trim()) {
        (None, _) | (_, "none") => None,
        (Some(_), _) if auth.is_none() => return Err("privkey= needs authkey=".into()),
        (Some(key), "des") => Some((PrivProtocol::Des, key.to_string())),
        (Some(key), "aes") => Some((PrivProtocol::Aes128, key.to_string())),
        (_, other) => return Err(format!("privproto {other:?} is not des, aes or none")),
    };
    Ok(NotifyUser {
        name: name.as_bytes().to_vec(),
        auth,
        privacy,
    })
}

fn oid(key: &str, text: &str) -> Result<Oid, String> {
    let arcs: Option<Oid> = text
        .trim()
        .trim_start_matches('.')
        .split('.')
        .map(|a| a.parse::<u32>().ok())
        .collect();
    arcs.filter(|a| a.len() >= 2)
        .ok_or_else(|| format!("{key}={text:?} is not an OID"))
}

/// `OID:TYPE:VALUE` triples joined by `:` (snmpsim's `varbinds`).
fn parse_varbinds(list: &str) -> Result<Vec<(Oid, Value)>, String> {
    let parts: Vec<&str> = crate::data::snapshot::mltsplit(list, ':');
    if !parts.len().is_multiple_of(3) {
        return Err(format!("varbinds={list:?} is not OID:TYPE:VALUE triples"));
    }
    parts
        .chunks(3)
        .map(|c| {
            let (o, t, v) = (c[0], c[1], c[2]);
            let bad = || format!("varbind value {v:?} is not of type {t}");
            let int = || v.trim().parse::<i64>().map_err(|_| bad());
            let u32v = || v.trim().parse::<u32>().map_err(|_| bad());
            let value = match t.trim() {
                "s" | "b" => Value::OctetString(v.as_bytes().to_vec()),
                "h" => Value::OctetString(hex(v).ok_or_else(bad)?),
                "i" => Value::Integer(i32::try_from(int()?).map_err(|_| bad())?.into()),
                "o" => Value::ObjectId(oid("varbinds", v)?),
                "a" => Value::IpAddress(
                    v.trim()
                        .parse::<std::net::Ipv4Addr>()
                        .map_err(|_| bad())?
                        .octets(),
                ),
                "u" | "g" => Value::Gauge32(u32v()?),
                "t" => Value::TimeTicks(u32v()?),
                "I" => Value::Counter64(v.trim().parse().map_err(|_| bad())?),
                other => {
                    return Err(format!(
                        "varbind type {other:?} is not one of s h i o a u g t b I"
                    ));
                }
            };
            Ok((oid("varbinds", o)?, value))
        })
        .collect()
}

fn hex(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    if !t.len().is_multiple_of(2) {
        return None;
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snmpsim_defaults() {
        let n = Notify::parse("host=127.0.0.1,value=x").unwrap();
        assert_eq!(n.op, Op::Set);
        assert_eq!(n.target.address, "127.0.0.1:162");
        assert_eq!(n.target.version, Version::V2c);
        assert_eq!(n.target.kind, Kind::Trap);
        assert_eq!(n.target.community, b"public");
        assert_eq!(n.trap_oid, [1, 3, 6, 1, 6, 3, 1, 1, 5, 1]);
        assert!(n.varbinds.is_empty() && n.uptime.is_none());
    }

    #[test]
    fn every_param() {
        let n = Notify::parse(
            "op=get,version=1,community=traps,host=127.0.0.9,port=1162,\
             trapoid=1.3.6.1.4.1.20408.4.1.1.2,uptime=12345,agentaddress=10.1.2.3,\
             enterprise=1.3.6.1.4.1.20408,varbinds=1.3.6.1.2.1.1.1.0:s:hello:1.3.6.1.2.1.1.3.0:t:7:1.3.6.1.4.1.1.0:h:0aff",
        )
        .unwrap();
        assert_eq!(n.op, Op::Get);
        assert_eq!(n.target.address, "127.0.0.9:1162");
        assert_eq!(n.target.version, Version::V1);
        assert_eq!(n.target.community, b"traps");
        assert_eq!(n.uptime, Some(12345));
        assert_eq!(n.agent_address, Some([10, 1, 2, 3]));
        assert_eq!(
            n.varbinds,
            vec![
                (
                    crate::notify::SNMP_TRAP_ENTERPRISE.to_vec(),
                    Value::ObjectId(vec![1, 3, 6, 1, 4, 1, 20408])
                ),
                (
                    vec![1, 3, 6, 1, 2, 1, 1, 1, 0],
                    Value::OctetString(b"hello".to_vec())
                ),
                (vec![1, 3, 6, 1, 2, 1, 1, 3, 0], Value::TimeTicks(7)),
                (
                    vec![1, 3, 6, 1, 4, 1, 1, 0],
                    Value::OctetString(vec![10, 255])
                ),
            ]
        );
        let v6 = Notify::parse("host=::1,proto=udp6,ntftype=inform").unwrap();
        assert_eq!(v6.target.address, "[::1]:162");
        assert_eq!(v6.target.kind, Kind::Inform);
        let v3 = Notify::parse(
            "host=h,version=3,user=u,authkey=authpass1,authproto=sha,privkey=privpass1,privproto=aes",
        )
        .unwrap();
        let user = v3.target.user.unwrap();
        assert_eq!(user.auth.map(|a| a.0), Some(AuthProtocol::Sha1));
        assert_eq!(user.privacy.map(|p| p.0), Some(PrivProtocol::Aes128));
    }

    #[test]
    fn bad_params_are_named() {
        for (params, word) in [
            ("version=2c", "host"),
            ("host=h,version=4", "version"),
            ("host=h,port=x", "port"),
            ("host=h,proto=tcp", "proto"),
            ("host=h,ntftype=page", "ntftype"),
            ("host=h,version=1,ntftype=inform", "inform"),
            ("host=h,trapoid=x.y", "trapoid"),
            ("host=h,varbinds=1.3.6:s", "triples"),
            ("host=h,varbinds=1.3.6:i:x", "type i"),
            ("host=h,varbinds=1.3.6:q:x", "type"),
            ("host=h,version=3", "user"),
        ] {
            let e = Notify::parse(params).unwrap_err();
            assert!(e.contains(word), "{params}: {e}");
        }
    }
}
