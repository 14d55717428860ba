//! From an agent's `snmpv3` section to the responder's SNMPv3 configuration:
//! the engine ID (configured, or derived from node and agent name), the
//! users' keys localized to that engine ID once here — Ku is computed once
//! per password for the whole fleet — and the contexts as view indexes.
//! snmpEngineBoots is set per start by
//! [`set_boots`](crate::process::launch::set_boots), from the counter
//! persisted in the state directory.

use std::path::PathBuf;

use agentcluster_agent::engine;
use agentcluster_agent::usm::{self, KeyMaterial, SecurityLevel, UserConfig, keys};
use agentcluster_agent::v3::{ContextConfig, V3Config};
use agentcluster_conf::Agent;

use crate::events::targets::{auth_protocol, priv_protocol};

/// The engine ID `agent` uses: its `engine_id`, else derived from `node`
/// and its name.
pub fn engine_id(agent: &Agent, node: &str) -> Vec<u8> {
    agent
        .engine_id
        .clone()
        .unwrap_or_else(|| engine::derive_engine_id(node, &agent.name))
}

/// The SNMPv3 configuration of `agent` (`None` without `snmpv3`), with
/// `engine_boots` 0 until [`set_boots`](crate::process::launch::set_boots). `view_of` gives the view index of
/// a snapshot file, adding a view when it is new.
pub fn v3_config(
    agent: &Agent,
    node: &str,
    view_of: &mut dyn FnMut(&PathBuf) -> usize,
) -> Result<Option<V3Config>, String> {
    let Some(v3) = &agent.snmpv3 else {
        return Ok(None);
    };
    let engine_id = engine_id(agent, node);
    let mut users = Vec::with_capacity(v3.users.len());
    for u in &v3.users {
        let fail = |e: usm::KeyError| format!("SNMPv3 user {:?}: {e}", u.name);
        let auth = match &u.auth {
            Some((p, pw)) => {
                let p = auth_protocol(*p);
                let key = keys::localized_auth_key(p, pw.expose().as_bytes(), &engine_id)
                    .map_err(fail)?;
                Some((p, KeyMaterial::Localized(key)))
            }
            None => None,
        };
        let privacy = match (&u.privacy, &auth) {
            (Some((p, pw)), Some((a, _))) => {
                let p = priv_protocol(*p);
                let key = keys::localized_priv_key(*a, p, pw.expose().as_bytes(), &engine_id)
                    .map_err(fail)?;
                Some((p, KeyMaterial::Localized(key)))
            }
            (Some(_), None) => return Err(fail(usm::KeyError::PrivWithoutAuth)),
            (None, _) => None,
        };
        // The YAML has no level of its own: a user must use the highest
        // level its keys allow, so privacy cannot be bypassed by asking
        // for less.
        let min_level = match (&auth, &privacy) {
            (Some(_), Some(_)) => SecurityLevel::AuthPriv,
            (Some(_), None) => SecurityLevel::AuthNoPriv,
            _ => SecurityLevel::NoAuthNoPriv,
        };
        users.push(UserConfig {
            name: u.name.as_bytes().to_vec(),
            auth,
            privacy,
            min_level,
            write: u.write,
        });
    }
    let contexts = v3
        .contexts
        .iter()
        .map(|(name, path)| ContextConfig {
            name: name.as_bytes().to_vec(),
            view: view_of(path),
        })
        .collect();
    Ok(Some(V3Config {
        engine_id,
        engine_boots: 0,
        users,
        contexts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::launch::set_boots;
    use agentcluster_agent::responder::Config;
    use agentcluster_conf::{AuthProtocol, PrivProtocol, Secret, V3, V3User};

    fn agent(engine_id: Option<Vec<u8>>) -> Agent {
        Agent {
            name: "sw-1".into(),
            active: true,
            listen: vec![],
            engine_id,
            data: Some("a.snmprec".into()),
            data_dir: None,
            snmpv1: None,
            snmpv2c: None,
            snmpv3: Some(V3 {
                users: vec![
                    V3User {
                        name: "ops".into(),
                        auth: Some((AuthProtocol::Sha1, Secret::new("maplesyrup"))),
                        privacy: Some((PrivProtocol::Aes256, Secret::new("maplesyrup"))),
                        write: true,
                    },
                    V3User {
                        name: "mon".into(),
                        auth: None,
                        privacy: None,
                        write: false,
                    },
                ],
                contexts: vec![
                    ("".into(), "a.snmprec".into()),
                    ("vlan10".into(), "b.snmprec".into()),
                ],
            }),
            notify: Default::default(),
            max_varbinds: 100,
            memory_max: None,
            values: Vec::new(),
            identity: None,
            counters: Default::default(),
        }
    }

    #[test]
    fn keys_are_localized_to_the_engine_id() {
        let rfc = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut views: Vec<PathBuf> = vec!["a.snmprec".into()];
        let mut view_of = |p: &PathBuf| match views.iter().position(|v| v == p) {
            Some(i) => i,
            None => {
                views.push(p.clone());
                views.len() - 1
            }
        };
        let c = v3_config(&agent(Some(rfc.clone())), "n", &mut view_of)
            .unwrap()
            .unwrap();
        assert_eq!(c.engine_id, rfc);
        let (p, KeyMaterial::Localized(k)) = c.users[0].auth.clone().unwrap() else {
            panic!("localized")
        };
        assert_eq!(p, usm::AuthProtocol::Sha1);
        // RFC 3414 A.3.2
        assert_eq!(
            k,
            [
                0x66, 0x95, 0xfe, 0xbc, 0x92, 0x88, 0xe3, 0x62, 0x82, 0x23, 0x5f, 0xc7, 0x15, 0x1f,
                0x12, 0x84, 0x97, 0xb3, 0x8f, 0x3f
            ]
        );
        let (_, KeyMaterial::Localized(pk)) = c.users[0].privacy.clone().unwrap() else {
            panic!("localized")
        };
        assert_eq!(pk.len(), 32, "extended for AES-256");
        assert_eq!(c.users[0].min_level, SecurityLevel::AuthPriv);
        assert!(c.users[0].write);
        assert_eq!(c.users[1].min_level, SecurityLevel::NoAuthNoPriv);
        assert_eq!(
            c.contexts,
            vec![
                ContextConfig {
                    name: vec![],
                    view: 0
                },
                ContextConfig {
                    name: b"vlan10".to_vec(),
                    view: 1
                }
            ]
        );
        // derived engine IDs
        let d = v3_config(&agent(None), "lab-a", &mut |_| 0)
            .unwrap()
            .unwrap();
        assert_eq!(d.engine_id, engine::derive_engine_id("lab-a", "sw-1"));
    }

    #[test]
    fn boots_are_set_per_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            communities: vec![],
            max_varbinds: 1,
            max_message_size: 1500,
            v3: v3_config(&agent(None), "n", &mut |_| 0).unwrap(),
        };
        set_boots(&mut config, dir.path(), "sw-1").unwrap();
        assert_eq!(config.v3.as_ref().unwrap().engine_boots, 1);
        set_boots(&mut config, dir.path(), "sw-1").unwrap();
        assert_eq!(config.v3.as_ref().unwrap().engine_boots, 2);
        let mut plain = Config { v3: None, ..config };
        set_boots(&mut plain, dir.path(), "other").unwrap();
        assert!(!engine::boots_path(dir.path(), "other").exists());
    }
}
