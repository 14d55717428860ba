//! What one node should serve, as a pure function of what etcd holds: the
//! pushed fleet, the live members and the owner keys. No I/O; the node
//! (`cluster::node`) carries the result out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use agentcluster_conf::Agent;

use super::rendezvous::{Member, Place, place};

/// The holder of an owner key: the node named in it and the lease it is
/// bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The node that created the key.
    pub node: String,
    /// Its lease (the key goes when the lease does).
    pub lease: i64,
}

/// What a node does next.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Agents it holds the key of and should no longer serve: stop them,
    /// then delete their keys.
    pub release: Vec<String>,
    /// Agents it should serve whose owner key is absent: create the keys
    /// (create-if-absent), then start them.
    pub acquire: Vec<String>,
    /// Agents it should serve whose key another lease still holds (a node
    /// that left and whose lease has not expired, or one that has not
    /// released yet): they wait until that key goes.
    pub waiting: Vec<String>,
    /// Agents it may serve now: it wants them and holds their keys.
    pub serve: BTreeSet<String>,
    /// How many agents of the fleet no node has room for (every node that
    /// can bind their addresses is at its capacity): nobody serves them.
    pub full: usize,
}

/// The plan of node `me` holding lease `lease`: the agents rendezvous
/// hashing gives it among `members` (within each node's capacity),
/// against the `owners` keys.
pub fn plan(
    me: &str,
    lease: i64,
    agents: &[Agent],
    members: &BTreeMap<String, Member>,
    owners: &HashMap<String, Holder>,
) -> Plan {
    let live: Vec<Member> = members.values().cloned().collect();
    let places = place(agents, &live);
    let mut p = Plan {
        full: places.iter().filter(|x| **x == Place::Full).count(),
        ..Plan::default()
    };
    let mut wanted = BTreeSet::new();
    for (a, at) in agents.iter().zip(&places) {
        if *at != Place::Node(me) {
            continue;
        }
        wanted.insert(a.name.as_str());
        match owners.get(&a.name) {
            None => p.acquire.push(a.name.clone()),
            Some(h) if h.lease == lease => {
                p.serve.insert(a.name.clone());
            }
            Some(_) => p.waiting.push(a.name.clone()),
        }
    }
    let mut release: Vec<String> = owners
        .iter()
        .filter(|(name, h)| h.lease == lease && !wanted.contains(name.as_str()))
        .map(|(name, _)| name.clone())
        .collect();
    release.sort();
    p.release = release;
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::rendezvous::tests::agent;

    fn agents(n: usize) -> Vec<Agent> {
        (0..n)
            .map(|i| agent(&format!("a{i}"), &format!("127.0.0.1:{}", 20_000 + i)))
            .collect()
    }

    fn members(names: &[&str]) -> BTreeMap<String, Member> {
        names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    Member {
                        node: n.to_string(),
                        serves: vec!["127.0.0.0/8".into()],
                        pid: 1,
                        capacity: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn acquire_serve_wait_and_release() {
        let agents = agents(60);
        let three = members(&["n1", "n2", "n3"]);
        let p = plan("n1", 7, &agents, &three, &HashMap::new());
        assert!(p.serve.is_empty() && p.release.is_empty() && p.waiting.is_empty());
        assert!(!p.acquire.is_empty() && p.acquire.len() < 60);
        // Its keys created: it serves them.
        let mut owners: HashMap<String, Holder> = p
            .acquire
            .iter()
            .map(|a| {
                (
                    a.clone(),
                    Holder {
                        node: "n1".into(),
                        lease: 7,
                    },
                )
            })
            .collect();
        let held = plan("n1", 7, &agents, &three, &owners);
        assert!(held.acquire.is_empty());
        assert_eq!(held.serve.len(), p.acquire.len());
        // n2 leaves, but its keys live until its lease expires: what n1
        // wins of them waits.
        let n2s = plan("n2", 9, &agents, &three, &HashMap::new()).acquire;
        for a in &n2s {
            owners.insert(
                a.clone(),
                Holder {
                    node: "n2".into(),
                    lease: 9,
                },
            );
        }
        let two = members(&["n1", "n3"]);
        let after = plan("n1", 7, &agents, &two, &owners);
        assert!(!after.waiting.is_empty());
        assert!(after.waiting.iter().all(|a| n2s.contains(a)));
        // n4 joins: n1 releases only what n4 wins.
        let four = members(&["n1", "n2", "n3", "n4"]);
        let joined = plan("n1", 7, &agents, &four, &owners);
        let n4s = plan("n4", 11, &agents, &four, &HashMap::new()).acquire;
        assert!(!joined.release.is_empty());
        assert!(joined.release.iter().all(|a| n4s.contains(a)));
        // A key of an older lease of its own is not its to serve.
        let mut old = HashMap::new();
        old.insert(
            p.acquire[0].clone(),
            Holder {
                node: "n1".into(),
                lease: 3,
            },
        );
        let restarted = plan("n1", 7, &agents, &three, &old);
        assert_eq!(restarted.waiting, [p.acquire[0].clone()]);
        assert!(restarted.release.is_empty());
    }

    /// Every node works out the same bounded shares: each takes its
    /// capacity, and both count what neither has room for.
    #[test]
    fn nodes_take_no_more_than_their_capacity_and_count_the_rest() {
        let agents = agents(60);
        let mut two = members(&["n1", "n2"]);
        for m in two.values_mut() {
            m.capacity = Some(20);
        }
        let p1 = plan("n1", 7, &agents, &two, &HashMap::new());
        let p2 = plan("n2", 9, &agents, &two, &HashMap::new());
        assert_eq!((p1.acquire.len(), p2.acquire.len()), (20, 20));
        assert_eq!((p1.full, p2.full), (20, 20));
        assert!(p1.acquire.iter().all(|a| !p2.acquire.contains(a)));
        let roomy = members(&["n1", "n2"]);
        assert_eq!(plan("n1", 7, &agents, &roomy, &HashMap::new()).full, 0);
    }
}
