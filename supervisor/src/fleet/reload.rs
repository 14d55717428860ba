//! Reload as a pure diff: from the agent processes that run and the fleet
//! wanted now to what must change — which processes stay untouched, which
//! stop, which start — and how each agent name is reported. No I/O; the
//! manager carries the result out.

use std::collections::HashMap;

use agentcluster_conf::{Agent, Cluster};

/// The agents of one agent process and whether it is active (an inactive
/// agent always has a process of its own).
pub type Group = (Vec<Agent>, bool);

/// Groups agents into processes: active ones by `per`, inactive ones alone.
pub fn group(agents: &[Agent], per: usize) -> Vec<Group> {
    let mut out = Vec::new();
    let mut group: Vec<Agent> = Vec::new();
    for agent in agents {
        if !agent.active {
            out.push((vec![agent.clone()], false));
            continue;
        }
        group.push(agent.clone());
        if group.len() == per.max(1) {
            out.push((std::mem::take(&mut group), true));
        }
    }
    if !group.is_empty() {
        out.push((group, true));
    }
    out
}

/// How many processes more than [`group`] would make a [`regroup`] may
/// leave: each reload or move can keep a process that is not full.
pub const REGROUP_SLACK: usize = 4;

/// The processes wanted for `agents` when `running` ones exist (a reload, or
/// a node whose share changed): a running process whose agents are all
/// still wanted, unchanged and as active as before keeps its group, so that
/// adding, removing or moving agents restarts only the processes that lost
/// or changed one. The other agents are packed in file order into new
/// groups, as [`group`] does. Should that leave more than
/// [`REGROUP_SLACK`] processes beyond what [`group`] makes of the whole
/// fleet (processes left part-full by many reloads), every agent is
/// grouped afresh instead.
pub fn regroup<'a>(
    running: impl IntoIterator<Item = (&'a [Agent], bool)>,
    agents: &[Agent],
    per: usize,
) -> Vec<Group> {
    let per = per.max(1);
    let index: HashMap<&str, usize> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| (a.name.as_str(), i))
        .collect();
    let mut taken = vec![false; agents.len()];
    let mut out = Vec::new();
    for (members, active) in running {
        let size_fits = if active {
            members.len() <= per
        } else {
            members.len() == 1
        };
        let unchanged = !members.is_empty()
            && size_fits
            && members.iter().all(|m| {
                index
                    .get(m.name.as_str())
                    .is_some_and(|&i| !taken[i] && agents[i].active == active && agents[i] == *m)
            });
        if unchanged {
            for m in members {
                taken[index[m.name.as_str()]] = true;
            }
            out.push((members.to_vec(), active));
        }
    }
    let rest: Vec<Agent> = agents
        .iter()
        .zip(&taken)
        .filter(|(_, taken)| !**taken)
        .map(|(a, _)| a.clone())
        .collect();
    out.extend(group(&rest, per));
    let active = agents.iter().filter(|a| a.active).count();
    let fewest = active.div_ceil(per) + (agents.len() - active);
    if out.len() > fewest + REGROUP_SLACK {
        return group(agents, per);
    }
    out
}

/// What a reload changes.
#[derive(Debug, Default)]
pub struct Diff {
    /// Per running process, in order: whether it stays as it is (same
    /// agents, same effective settings, same activity).
    pub keep: Vec<bool>,
    /// The processes to start, in configuration order.
    pub start: Vec<Group>,
}

/// The diff from `running` (each process's agents and activity) to the
/// `wanted` groups.
pub fn diff<'a>(
    running: impl IntoIterator<Item = (&'a [Agent], bool)>,
    wanted: Vec<Group>,
) -> Diff {
    let running: Vec<(&[Agent], bool)> = running.into_iter().collect();
    let mut keep = vec![false; running.len()];
    let mut start = Vec::new();
    for (agents, active) in wanted {
        let same = running
            .iter()
            .enumerate()
            .position(|(i, (a, act))| !keep[i] && *a == agents.as_slice() && *act == active);
        match same {
            Some(i) => keep[i] = true,
            None => start.push((agents, active)),
        }
    }
    Diff { keep, start }
}

/// How a reload reports each agent it touched.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    /// Agents that run again with a new configuration.
    pub changed: Vec<String>,
    /// Agents that are new.
    pub added: Vec<String>,
    /// Agents that were stopped and not started again.
    pub removed: Vec<String>,
}

/// Names the agents a reload touched: `before` ran before it, `started`
/// were started by it, `stopped` were stopped by it.
pub fn report(before: &[String], started: &[String], stopped: &[String]) -> Report {
    let (changed, added) = started.iter().cloned().partition(|n| before.contains(n));
    let removed = stopped
        .iter()
        .filter(|n| !started.contains(n))
        .cloned()
        .collect();
    Report {
        changed,
        added,
        removed,
    }
}

/// The `cluster` keys that changed between `old` and `new` and that a
/// reload does not apply (the limits are applied; `max_varbinds` and
/// `memory_max` are part of each agent's settings, which reload compares).
/// `addresses` is among them: the interface stays the one of the start,
/// though the addresses added to it follow the agents a reload adds and
/// removes.
pub fn unapplied_cluster_keys(old: &Cluster, new: &Cluster) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut note = |differs: bool, key: &'static str| {
        if differs {
            keys.push(key);
        }
    };
    note(old.node != new.node, "node");
    note(old.state_dir != new.state_dir, "state_dir");
    note(old.cache_dir != new.cache_dir, "cache_dir");
    note(old.control_socket != new.control_socket, "control_socket");
    note(old.start_tokens != new.start_tokens, "start_tokens");
    note(old.start_timeout != new.start_timeout, "start_timeout");
    note(old.heartbeat != new.heartbeat, "heartbeat");
    note(old.inactive_after != new.inactive_after, "inactive_after");
    note(old.stop_timeout != new.stop_timeout, "stop_timeout");
    note(
        old.agents_per_process != new.agents_per_process,
        "agents_per_process",
    );
    note(old.restart != new.restart, "restart");
    note(old.probe != new.probe, "probe");
    note(old.snmp != new.snmp, "snmp");
    note(old.metrics != new.metrics, "metrics");
    note(old.etcd != new.etcd, "etcd");
    note(old.user != new.user, "user");
    note(old.group != new.group, "group");
    note(old.addresses != new.addresses, "addresses");
    note(old.steering != new.steering, "steering");
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checked fleet of `cluster` keys and `agents` entries; `SNAP` is a
    /// snapshot file that exists.
    fn load(dir: &std::path::Path, cluster: &str, agents: &str) -> agentcluster_conf::Fleet {
        let snap = dir.join("d.snmprec");
        let text = format!(
            "cluster: {{ cache_dir: {d}/c, state_dir: {d}/s {cluster} }}\nagents:\n{agents}",
            d = dir.display()
        )
        .replace("SNAP", &snap.display().to_string());
        agentcluster_conf::load_str(&text, &dir.join("f.yaml"))
            .unwrap_or_else(|p| panic!("{p:?}"))
            .fleet
    }

    /// One directory for every fleet of these tests, so that fleets loaded
    /// one after the other name the same snapshot.
    static DIR: std::sync::LazyLock<tempfile::TempDir> = std::sync::LazyLock::new(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d.snmprec"), "1.3.6.1.2.1.1.5.0|4|x\n").unwrap();
        dir
    });

    fn fleet(agents: &str) -> Vec<Agent> {
        load(DIR.path(), "", agents).agents
    }

    fn agent(name: &str, port: u16) -> String {
        format!(
            "  - {{ name: {name}, listen: [\"127.0.0.1:{port}\"], data: SNAP, snmpv2c: {{ communities: [public] }} }}\n"
        )
    }

    fn running(groups: &[Group]) -> Vec<(&[Agent], bool)> {
        groups.iter().map(|(a, act)| (a.as_slice(), *act)).collect()
    }

    fn names(groups: &[Group]) -> Vec<String> {
        groups
            .iter()
            .flat_map(|(a, _)| a.iter().map(|a| a.name.clone()))
            .collect()
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_agent_whose_new_process_could_not_start_counts_as_removed() {
        let r = report(
            &strings(&["a", "b"]),
            &strings(&["a"]),
            &strings(&["a", "b"]),
        );
        assert_eq!(
            r,
            Report {
                changed: strings(&["a"]),
                added: vec![],
                removed: strings(&["b"]),
            }
        );
    }

    #[test]
    fn an_unchanged_fleet_keeps_every_process() {
        let now = group(&fleet(&(agent("a", 20001) + &agent("b", 20002))), 1);
        let d = diff(running(&now), now.clone());
        assert_eq!(d.keep, [true, true]);
        assert!(d.start.is_empty());
    }

    #[test]
    fn changed_added_and_removed_agents_are_told_apart() {
        let before = group(&fleet(&(agent("a", 20001) + &agent("b", 20002))), 1);
        let after = group(&fleet(&(agent("a", 20009) + &agent("c", 20003))), 1);
        let d = diff(running(&before), after);
        assert_eq!(d.keep, [false, false]);
        assert_eq!(names(&d.start), ["a", "c"]);
        let r = report(
            &strings(&["a", "b"]),
            &names(&d.start),
            &strings(&["a", "b"]),
        );
        assert_eq!(r.changed, ["a"]);
        assert_eq!(r.added, ["c"]);
        assert_eq!(r.removed, ["b"]);
    }

    #[test]
    fn only_the_process_of_a_changed_agent_restarts() {
        let before = group(
            &fleet(&(agent("a", 20001) + &agent("b", 20002) + &agent("c", 20003))),
            1,
        );
        let after = group(
            &fleet(&(agent("a", 20001) + &agent("b", 20012) + &agent("c", 20003))),
            1,
        );
        let d = diff(running(&before), after);
        assert_eq!(d.keep, [true, false, true]);
        assert_eq!(names(&d.start), ["b"]);
    }

    #[test]
    fn regrouping_restarts_the_processes_whose_members_change() {
        let agents = fleet(&(agent("a", 20001) + &agent("b", 20002) + &agent("c", 20003)));
        let before = group(&agents, 2);
        assert_eq!(before.len(), 2, "a+b, c");
        let mut fewer = agents.clone();
        fewer.remove(0);
        let d = diff(running(&before), group(&fewer, 2));
        // b+c is a new process; c alone and a+b are gone.
        assert_eq!(d.keep, [false, false]);
        assert_eq!(names(&d.start), ["b", "c"]);
        let r = report(
            &strings(&["a", "b", "c"]),
            &names(&d.start),
            &strings(&["a", "b", "c"]),
        );
        assert_eq!(r.changed, ["b", "c"]);
        assert_eq!(r.removed, ["a"]);
    }

    /// Shapes of groups: each one's agent names and activity.
    fn shape(groups: &[Group]) -> Vec<(Vec<&str>, bool)> {
        groups
            .iter()
            .map(|(a, act)| (a.iter().map(|a| a.name.as_str()).collect(), *act))
            .collect()
    }

    /// Agents of these names on ports from `port` up, in file order.
    fn many(names: &[&str], port: u16) -> Vec<Agent> {
        let yaml: String = names.iter().zip(port..).map(|(n, p)| agent(n, p)).collect();
        fleet(&yaml)
    }

    #[test]
    fn regroup_keeps_whole_processes_and_packs_the_rest_anew() {
        let before = group(&many(&["a", "b", "c", "d", "e", "f"], 20101), 2);
        assert_eq!(shape(&before).len(), 3, "a+b, c+d, e+f");
        // An agent inserted between a and b (what a node that takes agents
        // over sees), and f removed: a+b and c+d stay, e is packed with x.
        let mut after = many(&["a", "x", "b", "c", "d", "e"], 20101);
        // Ports as before for the agents that stay (x gets one of its own).
        after[0] = before[0].0[0].clone();
        after[2] = before[0].0[1].clone();
        after[3] = before[1].0[0].clone();
        after[4] = before[1].0[1].clone();
        after[5] = before[2].0[0].clone();
        after[1].listen = vec!["127.0.0.1:20199".parse().unwrap()];
        let wanted = regroup(running(&before), &after, 2);
        assert_eq!(
            shape(&wanted),
            [
                (vec!["a", "b"], true),
                (vec!["c", "d"], true),
                (vec!["x", "e"], true)
            ]
        );
        let d = diff(running(&before), wanted);
        assert_eq!(d.keep, [true, true, false]);
        assert_eq!(names(&d.start), ["x", "e"]);
        // What group alone does: every process after x restarts.
        let d = diff(running(&before), group(&after, 2));
        assert_eq!(d.keep, [false, false, false]);
    }

    #[test]
    fn regroup_restarts_a_process_whose_agent_changed_and_keeps_activity_apart() {
        let yaml = agent("a", 20201)
            + &agent("b", 20202)
            + "  - { name: c, active: false, listen: [\"127.0.0.1:20203\"], data: SNAP, snmpv2c: { communities: [public] } }\n";
        let before = group(&fleet(&yaml), 2);
        // b changes its port: a+b is packed anew; c stays inactive alone.
        let yaml2 = agent("a", 20201)
            + &agent("b", 20212)
            + "  - { name: c, active: false, listen: [\"127.0.0.1:20203\"], data: SNAP, snmpv2c: { communities: [public] } }\n";
        let wanted = regroup(running(&before), &fleet(&yaml2), 2);
        let d = diff(running(&before), wanted);
        assert_eq!(shape(&d.start), [(vec!["a", "b"], true)]);
        assert_eq!(
            d.keep.iter().filter(|k| **k).count(),
            1,
            "c's process stays"
        );
        // c made active joins a new process; a+b stays.
        let yaml3 = agent("a", 20201) + &agent("b", 20202) + &agent("c", 20203);
        let wanted = regroup(running(&before), &fleet(&yaml3), 2);
        assert_eq!(shape(&wanted), [(vec!["a", "b"], true), (vec!["c"], true)]);
    }

    #[test]
    fn regroup_packs_everything_afresh_past_the_slack() {
        // Processes of one agent each where two fit: more than the slack
        // beyond the fewest, so the fleet is packed afresh.
        let names: Vec<String> = (0..12).map(|i| format!("p{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let agents = many(&names, 20301);
        let singles = group(&agents, 1);
        let wanted = regroup(running(&singles), &agents, 2);
        assert_eq!(wanted.len(), 6, "{:?}", shape(&wanted));
        // Within the slack, part-full processes stay.
        let few = &singles[..4];
        let wanted = regroup(running(few), &agents, 2);
        assert_eq!(wanted.len(), 4 + 4, "{:?}", shape(&wanted));
        assert!(wanted[..4].iter().all(|(a, _)| a.len() == 1));
    }

    #[test]
    fn inactive_agents_get_a_process_each() {
        let yaml = agent("a", 20001)
            + "  - { name: b, active: false, listen: [\"127.0.0.1:20002\"], data: SNAP, snmpv2c: { communities: [public] } }\n"
            + &agent("c", 20003);
        let groups = group(&fleet(&yaml), 10);
        let shape: Vec<(Vec<&str>, bool)> = groups
            .iter()
            .map(|(a, act)| (a.iter().map(|a| a.name.as_str()).collect(), *act))
            .collect();
        assert_eq!(shape, [(vec!["b"], false), (vec!["a", "c"], true)]);
    }

    #[test]
    fn cluster_keys_a_reload_cannot_apply_are_named() {
        let dir = DIR.path();
        let old = load(dir, ", node: lab-a, start_tokens: 4", &agent("a", 20001)).cluster;
        let same = load(dir, ", node: lab-a, start_tokens: 4", &agent("a", 20001)).cluster;
        let new = load(
            dir,
            ", node: lab-b, start_tokens: 5, max_response_bytes: 1400",
            &agent("a", 20001),
        )
        .cluster;
        assert!(unapplied_cluster_keys(&old, &same).is_empty());
        // max_response_bytes is applied by a reload, so it is not named.
        assert_eq!(unapplied_cluster_keys(&old, &new), ["node", "start_tokens"]);
        // The metrics endpoint stays where it was bound.
        let moved = load(
            dir,
            ", node: lab-a, start_tokens: 4, metrics: { listen: \"127.0.0.1:9464\" }",
            &agent("a", 20001),
        )
        .cluster;
        assert_eq!(unapplied_cluster_keys(&old, &moved), ["metrics"]);
        // The steering program is attached (or not) at the start.
        let unsteered = load(
            dir,
            ", node: lab-a, start_tokens: 4, steering: false",
            &agent("a", 20001),
        )
        .cluster;
        assert!(old.steering && !unsteered.steering);
        assert_eq!(unapplied_cluster_keys(&old, &unsteered), ["steering"]);
    }

    #[test]
    fn a_reload_cannot_change_the_addresses_interface() {
        let dir = DIR.path();
        let a = agent("a", 20001);
        let none = load(dir, "", &a).cluster;
        let lo = load(dir, ", addresses: { interface: lo }", &a).cluster;
        let lo_created = load(dir, ", addresses: { interface: lo, create: true }", &a).cluster;
        let dummy = load(dir, ", addresses: { interface: ac0 }", &a).cluster;
        assert!(unapplied_cluster_keys(&lo, &lo).is_empty());
        assert_eq!(unapplied_cluster_keys(&none, &lo), ["addresses"]);
        assert_eq!(unapplied_cluster_keys(&lo, &none), ["addresses"]);
        assert_eq!(unapplied_cluster_keys(&lo, &lo_created), ["addresses"]);
        assert_eq!(unapplied_cluster_keys(&lo, &dummy), ["addresses"]);
    }
}
