//! From the checked config of one agent to the responder that serves it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use agentcluster_agent::responder::{CommunityAccess, Config, Responder};
use agentcluster_agent::store::Store;
use agentcluster_conf::Agent;

/// Largest response datagram over UDP/IPv4 (65535 − 8 − 20).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Builds the responder of `agent` from the fleet's compiled stores.
pub fn responder(
    agent: &Agent,
    stores: &HashMap<PathBuf, Arc<Store>>,
    start: Instant,
) -> Result<Responder, String> {
    let mut paths: Vec<&PathBuf> = Vec::new();
    let mut communities: Vec<CommunityAccess> = Vec::new();
    let versions = [(&agent.snmpv1, true), (&agent.snmpv2c, false)];
    for (list, is_v1) in versions {
        for c in list.iter().flat_map(|l| &l.entries) {
            let view = match paths.iter().position(|p| **p == c.data) {
                Some(i) => i,
                None => {
                    paths.push(&c.data);
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
    let views = paths
        .iter()
        .map(|p| {
            stores
                .get(*p)
                .cloned()
                .ok_or_else(|| format!("snapshot {} was not compiled", p.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if communities.is_empty() {
        tracing::warn!(agent = %agent.name, "no SNMPv1/v2c community: nothing to serve yet");
    }
    let config = Config {
        communities,
        max_varbinds: agent.max_varbinds as usize,
        max_message_size: MAX_UDP_PAYLOAD,
    };
    Ok(Responder::new(config, views, start))
}
