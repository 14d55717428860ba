//! Notification targets from the config (`events.notify`, an agent's
//! `notify`) to the notification originator's form.

use agentcluster_agent::notify::{Kind, NotifyUser, Target, Version};
use agentcluster_agent::usm;
use agentcluster_conf::{Agent, AgentNotify, Events, NotifyTarget, NotifyType, SnmpVersion};

/// One configured target.
pub fn target(t: &NotifyTarget) -> Target {
    Target {
        address: t.target.clone(),
        version: match t.version {
            SnmpVersion::V1 => Version::V1,
            SnmpVersion::V2c => Version::V2c,
            SnmpVersion::V3 => Version::V3,
        },
        kind: match t.kind {
            NotifyType::Trap => Kind::Trap,
            NotifyType::Inform => Kind::Inform,
        },
        community: t
            .community
            .as_ref()
            .map(|c| c.expose().as_bytes().to_vec())
            .unwrap_or_default(),
        user: t.user.as_ref().map(|u| NotifyUser {
            name: u.name.as_bytes().to_vec(),
            auth: u
                .auth
                .as_ref()
                .map(|(p, pw)| (auth_protocol(*p), pw.expose().to_string())),
            privacy: u
                .privacy
                .as_ref()
                .map(|(p, pw)| (priv_protocol(*p), pw.expose().to_string())),
        }),
        retries: t.retries,
        timeout: t.timeout,
    }
}

/// Where `agent` sends its own coldStart/warmStart: its `notify` list, or
/// (`inherit`) the fleet's `events.notify`.
pub fn agent_targets(agent: &Agent, events: &Events) -> Vec<Target> {
    let list = match &agent.notify {
        AgentNotify::Inherit => &events.notify,
        AgentNotify::Targets(t) => t,
    };
    list.iter().map(target).collect()
}

/// The USM authentication protocol of a configured one.
pub(crate) fn auth_protocol(p: agentcluster_conf::AuthProtocol) -> usm::AuthProtocol {
    match p {
        agentcluster_conf::AuthProtocol::Md5 => usm::AuthProtocol::Md5,
        agentcluster_conf::AuthProtocol::Sha1 => usm::AuthProtocol::Sha1,
        agentcluster_conf::AuthProtocol::Sha224 => usm::AuthProtocol::Sha224,
        agentcluster_conf::AuthProtocol::Sha256 => usm::AuthProtocol::Sha256,
        agentcluster_conf::AuthProtocol::Sha384 => usm::AuthProtocol::Sha384,
        agentcluster_conf::AuthProtocol::Sha512 => usm::AuthProtocol::Sha512,
    }
}

/// The USM privacy protocol of a configured one.
pub(crate) fn priv_protocol(p: agentcluster_conf::PrivProtocol) -> usm::PrivProtocol {
    match p {
        agentcluster_conf::PrivProtocol::Des => usm::PrivProtocol::Des,
        agentcluster_conf::PrivProtocol::TripleDes => usm::PrivProtocol::TripleDes,
        agentcluster_conf::PrivProtocol::Aes128 => usm::PrivProtocol::Aes128,
        agentcluster_conf::PrivProtocol::Aes192 => usm::PrivProtocol::Aes192,
        agentcluster_conf::PrivProtocol::Aes256 => usm::PrivProtocol::Aes256,
        agentcluster_conf::PrivProtocol::Aes192C => usm::PrivProtocol::Aes192C,
        agentcluster_conf::PrivProtocol::Aes256C => usm::PrivProtocol::Aes256C,
    }
}
