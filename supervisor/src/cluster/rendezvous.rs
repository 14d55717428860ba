//! Who owns an agent: rendezvous (highest random weight) hashing over the
//! live nodes that can bind the agent's addresses, bounded by each node's
//! capacity. Every node computes the same answer from the same membership
//! and fleet, with no leader and no assignment to store; while no node is
//! full, a node that joins or leaves moves only the agents it wins or held
//! (the others keep their highest score).

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
    /// tasks and open files, for agents of one endpoint each): it is given
    /// no more ([`place`]). `None` (a node that does not say): no bound.
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

/// Where an agent goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    /// To this node.
    Node(&'a str),
    /// Nowhere: no live node can bind its addresses.
    NoNode,
    /// Nowhere: the nodes that can bind its addresses are all full.
    Full,
}

/// The owner of `agent` among `members` alone (no other agent takes room):
/// the one that can serve it with the highest score; `None` when none can.
pub fn owner<'a>(agent: &Agent, members: &'a [Member]) -> Option<&'a str> {
    match place(std::slice::from_ref(agent), members)[0] {
        Place::Node(n) => Some(n),
        Place::NoNode | Place::Full => None,
    }
}

/// Where each of `agents` goes among `members`, in the fleet's order: to
/// the node with the highest score among those that can bind its
/// addresses and still have room under their `capacity`, so that no node
/// is given more agents than its host carries. An agent whose best node
/// is full goes to its next best (and so on); one that no node has room
/// for stays unplaced until one has. While no node is full this is plain
/// rendezvous hashing, and each node works it out alike from the same
/// fleet and membership.
pub fn place<'a>(agents: &[Agent], members: &'a [Member]) -> Vec<Place<'a>> {
    let ranges: Vec<Vec<AddressRange>> = members.iter().map(Member::ranges).collect();
    let mut room: Vec<Option<u64>> = members.iter().map(|m| m.capacity).collect();
    let mut ranked: Vec<(u64, &str, usize)> = Vec::with_capacity(members.len());
    agents
        .iter()
        .map(|agent| {
            ranked.clear();
            ranked.extend(
                members
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| can_serve(&ranges[*i], agent))
                    .map(|(i, m)| (score(&m.node, &agent.name), m.node.as_str(), i)),
            );
            if ranked.is_empty() {
                return Place::NoNode;
            }
            // Highest score first (then the greater name, as ever).
            ranked.sort_unstable_by(|a, b| b.cmp(a));
            let Some(&(_, node, i)) = ranked.iter().find(|(_, _, i)| room[*i] != Some(0)) else {
                return Place::Full;
            };
            if let Some(r) = room[i].as_mut() {
                *r -= 1;
            }
            Place::Node(node)
        })
        .collect()
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

    fn with_capacity(node: &str, capacity: u64) -> Member {
        Member {
            capacity: Some(capacity),
            ..member(node, &["127.0.0.0/8"])
        }
    }

    fn nodes<'a>(places: &[Place<'a>]) -> Vec<Option<&'a str>> {
        places
            .iter()
            .map(|p| match p {
                Place::Node(n) => Some(*n),
                _ => None,
            })
            .collect()
    }

    /// Capacities that are not reached change nothing; a full node's
    /// surplus goes to each agent's next best node; what no node has room
    /// for is `Full`, and only that.
    #[test]
    fn a_node_is_given_no_more_than_its_capacity() {
        let agents: Vec<Agent> = (0..300)
            .map(|i| agent(&format!("a{i}"), "127.0.0.1:1161"))
            .collect();
        let unbounded = [
            member("n1", &["127.0.0.0/8"]),
            member("n2", &["127.0.0.0/8"]),
            member("n3", &["127.0.0.0/8"]),
        ];
        let free = nodes(&place(&agents, &unbounded));
        for (a, o) in agents.iter().zip(&free) {
            assert_eq!(*o, owner(a, &unbounded), "{}", a.name);
        }
        let roomy = ["n1", "n2", "n3"].map(|n| with_capacity(n, 300));
        assert_eq!(nodes(&place(&agents, &roomy)), free, "room to spare");

        // n1 carries 50: the first 50 of its own stay, the rest go to their
        // second best; the others keep what they had.
        let tight = [
            with_capacity("n1", 50),
            with_capacity("n2", 300),
            with_capacity("n3", 300),
        ];
        let placed = nodes(&place(&agents, &tight));
        assert_eq!(placed.iter().filter(|o| **o == Some("n1")).count(), 50);
        let mut n1_kept = 0;
        for (i, (was, now)) in free.iter().zip(&placed).enumerate() {
            if *was == Some("n1") && n1_kept < 50 {
                assert_eq!(now, was, "a{i}: the first 50 of n1's stay");
                n1_kept += 1;
            } else if *was == Some("n1") {
                let second = owner(&agents[i], &unbounded[1..]);
                assert_eq!(*now, second, "a{i}: to its second best");
            } else {
                assert_eq!(now, was, "a{i}: not n1's, not moved");
            }
        }

        // 120 places for 300 agents: 120 placed, 180 Full; none over.
        let small = ["n1", "n2", "n3"].map(|n| with_capacity(n, 40));
        let places = place(&agents, &small);
        for n in ["n1", "n2", "n3"] {
            let got = places.iter().filter(|p| **p == Place::Node(n)).count();
            assert_eq!(got, 40, "{n}");
        }
        assert_eq!(places.iter().filter(|p| **p == Place::Full).count(), 180);
        // A node that carries none gets none; one that says nothing, all.
        let zero_and_any = [with_capacity("n1", 0), member("n2", &["127.0.0.0/8"])];
        assert!(
            place(&agents, &zero_and_any)
                .iter()
                .all(|p| *p == Place::Node("n2"))
        );
        // An agent no node can bind is NoNode, and takes no room.
        let far = agent("far", "10.9.9.9:161");
        let mixed = [far, agents[0].clone()];
        assert_eq!(
            place(&mixed, &[with_capacity("n1", 1)]),
            [Place::NoNode, Place::Node("n1")]
        );
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
