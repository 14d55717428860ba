//! From the checked config of one agent to what its process needs: the
//! responder configuration and the compiled store of each view.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use agentcluster_agent::responder::{CommunityAccess, Config};
use agentcluster_agent::values::{Identity, ValueSpec, Values};
use agentcluster_conf::{Agent, ClusterSnmp};

use crate::error::Error;
use crate::process::sys::Credentials;

/// Largest response datagram over UDP/IPv4 (65535 − 8 − 20).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// The responder configuration of `agent` and the snapshot file of each of
/// its views, in view order. `node` names this host (for derived SNMPv3
/// engine IDs).
pub fn plan(agent: &Agent, node: &str) -> Result<(Config, Vec<PathBuf>), String> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut communities: Vec<CommunityAccess> = Vec::new();
    let versions = [(&agent.snmpv1, true), (&agent.snmpv2c, false)];
    for (list, is_v1) in versions {
        for c in list.iter().flat_map(|l| &l.entries) {
            let view = match paths.iter().position(|p| *p == c.data) {
                Some(i) => i,
                None => {
                    paths.push(c.data.clone());
                    paths.len() - 1
                }
            };
            let name = c.name.expose().as_bytes();
            match communities
                .iter_mut()
                .find(|a| a.community == name && a.view == view && a.write == c.write)
            {
                Some(a) if is_v1 => a.v1 = true,
                Some(a) => a.v2c = true,
                None => communities.push(CommunityAccess {
                    community: name.to_vec(),
                    v1: is_v1,
                    v2c: !is_v1,
                    view,
                    write: c.write,
                }),
            }
        }
    }
    let v3 = crate::fleet::v3::v3_config(agent, node, &mut |p: &PathBuf| match paths
        .iter()
        .position(|x| x == p)
    {
        Some(i) => i,
        None => {
            paths.push(p.clone());
            paths.len() - 1
        }
    })?;
    if communities.is_empty() && v3.is_none() {
        tracing::warn!(agent = %agent.name, "no community and no SNMPv3 user: nothing to serve yet");
    }
    let config = Config {
        communities,
        max_varbinds: agent.max_varbinds as usize,
        max_message_size: MAX_UDP_PAYLOAD,
        v3,
    };
    Ok((config, paths))
}

/// Every address the fleet listens on: its agents' (active or not, so that
/// an operator's `start` needs nothing more) and `cluster.snmp`'s. These
/// are the addresses `cluster.addresses` makes sure the host has.
pub fn listen_addresses<'a>(
    agents: impl IntoIterator<Item = &'a Agent>,
    snmp: Option<&ClusterSnmp>,
) -> BTreeSet<IpAddr> {
    agents
        .into_iter()
        .flat_map(|a| a.listen.iter())
        .chain(snmp.iter().flat_map(|s| s.listen.iter()))
        .map(|e| e.ip())
        .collect()
}

/// The listen addresses of `fleet` that the host lacks and that
/// `cluster.addresses` would add (what `run` would fail to bind without
/// it), each with the first agent that listens on it (`cluster.snmp` for
/// the supervisor's own).
pub fn missing_addresses(fleet: &agentcluster_conf::Fleet) -> Vec<(IpAddr, String)> {
    let missing = crate::process::addresses::missing(listen_addresses(
        &fleet.agents,
        fleet.cluster.snmp.as_ref(),
    ));
    missing
        .into_iter()
        .map(|ip| {
            let owner = fleet
                .agents
                .iter()
                .find(|a| a.listen.iter().any(|e| e.ip() == ip))
                .map_or_else(|| "cluster.snmp".to_string(), |a| a.name.clone());
            (ip, owner)
        })
        .collect()
}

/// The device's own values of `agent` (`values:`, and what `identity:`
/// derives from its name and listen addresses), as its process serves them
/// over every view.
pub fn values(agent: &Agent) -> Values {
    Values {
        entries: agent
            .values
            .iter()
            .map(|v| ValueSpec {
                oid: v.oid.clone(),
                kind: v.kind.clone(),
                value: v.value.clone(),
            })
            .collect(),
        identity: agent.identity.map(|id| Identity {
            name: agent.name.clone(),
            addresses: agent.listen.iter().map(|e| e.ip()).collect(),
            sys_name: id.sys_name,
            ip_addresses: id.addresses,
            phys_address: id.phys_address,
        }),
    }
}

/// `counters: animate`: the seed of `agent`'s counters, from its name (the
/// same device counts alike after a restart; two devices differently).
pub fn animate(agent: &Agent) -> Option<u64> {
    (agent.counters == agentcluster_conf::CounterMode::Animate)
        .then(|| agentcluster_agent::animate::seed_of(&agent.name))
}

/// The compiled store file of each view, from the fleet's compiled stores.
pub fn store_files(
    agent: &str,
    sources: &[PathBuf],
    compiled: &HashMap<PathBuf, PathBuf>,
) -> Result<Vec<PathBuf>, String> {
    sources
        .iter()
        .map(|p| {
            compiled
                .get(p)
                .cloned()
                .ok_or_else(|| format!("agent {agent}: snapshot {} was not compiled", p.display()))
        })
        .collect()
}
/// The account agent processes run as: `cluster.user`/`group`; as root with
/// none configured, `nobody` (agents never run as root).
pub fn credentials(user: Option<&str>, group: Option<&str>) -> Result<Option<Credentials>, Error> {
    let root = nix::unistd::geteuid().is_root();
    let user = match (user, root) {
        (Some(u), _) => Some(u),
        (None, true) => Some("nobody"),
        (None, false) => None,
    };
    let Some(user) = user else {
        if group.is_some() {
            tracing::warn!(
                "cluster.group without cluster.user is ignored when not running as root"
            );
        }
        return Ok(None);
    };
    let (uid, primary) = agentcluster_conf::resolve_user(user).ok_or_else(|| Error::Agent {
        agent: String::new(),
        cause: format!("cluster.user {user:?}: no such user"),
    })?;
    let gid = match group {
        Some(g) => agentcluster_conf::resolve_group(g).ok_or_else(|| Error::Agent {
            agent: String::new(),
            cause: format!("cluster.group {g:?}: no such group"),
        })?,
        None => primary,
    };
    if !root {
        if uid == nix::unistd::getuid().as_raw() {
            return Ok(None);
        }
        return Err(Error::Agent {
            agent: String::new(),
            cause: format!("cluster.user {user:?} needs the supervisor to run as root"),
        });
    }
    tracing::info!(user, uid, gid, "agent processes drop to this account");
    Ok(Some(Credentials { uid, gid }))
}

/// The limits of `cluster` as agent processes apply them.
pub fn limits(cluster: &agentcluster_conf::Cluster) -> agentcluster_agent::channel::Limits {
    agentcluster_agent::channel::Limits {
        max_response_bytes: cluster.max_response_bytes as usize,
        rate_limit: cluster
            .rate_limit
            .map(|r| agentcluster_agent::ratelimit::RateLimit {
                per_second: r.per_source,
                burst: r.burst,
            }),
    }
}
