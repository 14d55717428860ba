//! Where things live in etcd, under `cluster.etcd.prefix`:
//!
//! ```text
//! PREFIX/fleet/config     the pushed fleet: {"source", "yaml"} (one key)
//! PREFIX/nodes/NODE       a live node: its serves and pid (lease-bound)
//! PREFIX/owners/AGENT     the node serving AGENT: its name (lease-bound,
//!                         created only if absent, in a transaction)
//! PREFIX/boots/AGENT      the top of AGENT's reserved snmpEngineBoots
//! PREFIX/status/NODE      what NODE's agents are doing: a compact JSON
//!                         (`status::NodeStatus`), rewritten by the node
//!                         at most once a second (lease-bound)
//! PREFIX/faults/AGENT     AGENT's faults injected by hand, to replay
//!                         where it moves (`hand::HandFaults`; no lease)
//! ```

/// The keys of one fleet's prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys under `prefix` (a trailing `/` is ignored).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// The prefix itself, without a trailing `/`: the fleet's identity in
    /// derived engine IDs.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// One agent's reserved snmpEngineBoots.
    pub fn boots(&self, agent: &str) -> String {
        format!("{}/boots/{agent}", self.prefix)
    }

    /// Everything of the fleet: what a node lists and watches.
    pub fn all(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// The pushed fleet.
    pub fn fleet(&self) -> String {
        format!("{}/fleet/config", self.prefix)
    }

    /// Prefix of the membership keys.
    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    /// One node's membership key.
    pub fn node(&self, node: &str) -> String {
        format!("{}{node}", self.nodes())
    }

    /// Prefix of the owner keys.
    pub fn owners(&self) -> String {
        format!("{}/owners/", self.prefix)
    }

    /// One agent's owner key.
    pub fn owner(&self, agent: &str) -> String {
        format!("{}{agent}", self.owners())
    }

    /// Prefix of the keys of faults injected by hand.
    pub fn faults(&self) -> String {
        format!("{}/faults/", self.prefix)
    }

    /// One agent's faults injected by hand.
    pub fn fault(&self, agent: &str) -> String {
        format!("{}{agent}", self.faults())
    }

    /// Prefix of the status keys.
    pub fn statuses(&self) -> String {
        format!("{}/status/", self.prefix)
    }

    /// One node's status key.
    pub fn status(&self, node: &str) -> String {
        format!("{}{node}", self.statuses())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("/lab/");
        assert_eq!(k.fleet(), "/lab/fleet/config");
        assert_eq!(k.node("n1"), "/lab/nodes/n1");
        assert_eq!(k.owner("a-1"), "/lab/owners/a-1");
        assert_eq!(k.boots("a-1"), "/lab/boots/a-1");
        assert_eq!(k.prefix(), "/lab");
        assert!(k.owner("a").starts_with(&k.owners()));
        assert!(k.owners().starts_with(&k.all()));
        assert_eq!(k.status("n1"), "/lab/status/n1");
        assert!(k.statuses().starts_with(&k.all()));
    }
}
