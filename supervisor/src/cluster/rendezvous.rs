//! Who owns an agent: rendezvous (highest random weight) hashing over the
//! live nodes that can bind the agent's addresses. Every node computes the
//! same answer from the same membership, with no leader and no assignment
//! to store; a node that joins or leaves moves only the agents it wins or
//! held (the others keep their highest score).

use agentcluster_conf::{AddressRange, Agent};
use serde::{Deserialize, Serialize};

/// A live node as its membership key describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its name (`cluster.node` or `run --node`).
    pub node: String,
    /// The address ranges it can bind, `ADDR/LEN`.
    pub serves: Vec<String>,
    /// The supervisor's pid on its host.
    pub pid: u32,
    /// How many agents its host carries under its own settings (memory,
    /// tasks and open files, for agents of one endpoint each; reported for
    /// people and `status --cluster`: ownership does not depend on it).
    #[serde(default)]
    pub capacity: Option<u64>,
}

impl Member {
    /// Its ranges, those that parse.
    pub fn ranges(&self) -> Vec<AddressRange> {
        self.serves
            .iter()
            .filter_map(|s| AddressRange::parse(s).ok())
            .collect()
    }
}

/// Whether a node that binds `serves` can serve `agent`: every address it
/// listens on lies in one of the ranges (a wildcard address binds
/// anywhere).
pub fn can_serve(serves: &[AddressRange], agent: &Agent) -> bool {
    agent.listen.iter().all(|ep| {
        let ip = ep.ip();
        ip.is_unspecified() || serves.iter().any(|r| r.contains(ip))
    })
}

/// The owner of `agent` among `members`: the one that can serve it with
/// the highest score; `None` when none can.
pub fn owner<'a>(agent: &Agent, members: &'a [Member]) -> Option<&'a str> {
    let ranges: Vec<Vec<AddressRange>> = members.iter().map(Member::ranges).collect();
    owner_among(agent, members, &ranges)
}

/// [`owner`] with each member's ranges parsed once (`ranges[i]` are
/// `members[i]`'s), for a plan over many agents.
pub fn owner_among<'a>(
    agent: &Agent,
    members: &'a [Member],
    ranges: &[Vec<AddressRange>],
) -> Option<&'a str> {
    members
        .iter()
        .zip(ranges)
        .filter(|(_, r)| can_serve(r, agent))
        .max_by_key(|(m, _)| (score(&m.node, &agent.name), m.node.as_str()))
        .map(|(m, _)| m.node.as_str())
}

/// The weight of (node, agent): FNV-1a over both names, then the
/// splitmix64 finalizer to spread it. Stable across builds and hosts.
pub fn score(node: &str, agent: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([0]).chain(agent.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A plain v2c agent named `name` at `listen` (one snapshot, read once
    /// per thread).
    pub(crate) fn agent(name: &str, listen: &str) -> Agent {
        thread_local!(static TEMPLATE: Agent = test_agent());
        let mut a = TEMPLATE.with(Agent::clone);
        a.name = name.to_string();
        a.listen = vec![listen.parse().unwrap()];
        a
    }

    fn test_agent() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("d.snmprec");
        std::fs::write(&snap, "1.3.6.1.2.1.1.5.0|4|x\n").unwrap();
        let yaml = format!(
            "agents:\n  - name: a\n    listen: [\"127.0.0.1:1161\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            snap.display()
        );
        agentcluster_conf::load_str(&yaml, &dir.path().join("f.yaml"))
            .unwrap()
            .fleet
            .agents
            .remove(0)
    }

    fn member(node: &str, serves: &[&str]) -> Member {
        Member {
            node: node.into(),
            serves: serves.iter().map(|s| s.to_string()).collect(),
            pid: 1,
            capacity: None,
        }
    }

    #[test]
    fn balanced_and_minimal_movement() {
        let agents: Vec<Agent> = (0..300)
            .map(|i| agent(&format!("a{i}"), "127.0.0.1:1161"))
            .collect();
        let three = [
            member("n1", &["127.0.0.0/8"]),
            member("n2", &["127.0.0.0/8"]),
            member("n3", &["127.0.0.0/8"]),
        ];
        let before: Vec<&str> = agents.iter().map(|a| owner(a, &three).unwrap()).collect();
        for n in ["n1", "n2", "n3"] {
            let share = before.iter().filter(|o| **o == n).count();
            assert!((60..=140).contains(&share), "{n}: {share} of 300");
        }
        // n2 leaves: only its agents move.
        let two = [three[0].clone(), three[2].clone()];
        for (a, was) in agents.iter().zip(&before) {
            let now = owner(a, &two).unwrap();
            if *was != "n2" {
                assert_eq!(now, *was, "{} moved", a.name);
            }
        }
    }

    #[test]
    fn only_nodes_that_can_bind() {
        let a = agent("x", "10.1.2.3:161");
        let members = [
            member("n1", &["127.0.0.0/8"]),
            member("n2", &["10.1.0.0/16"]),
        ];
        assert_eq!(owner(&a, &members), Some("n2"));
        assert_eq!(owner(&a, &members[..1]), None);
        let any = agent("y", "0.0.0.0:161");
        assert!(owner(&any, &members[..1]).is_some());
    }
}
