//! Operator requests: status, start, stop and restart of agents chosen by
//! name or glob, and the event replay; reloads go to [`super::changes`].

use std::collections::HashMap;
use std::path::PathBuf;

use tokio::sync::oneshot;

use super::{Asker, Manager};
use crate::control::api::{ErrorKind, Request, Response};
use crate::control::filter;
use crate::events::State;
use crate::process::unit;

/// How long an answer to `fault` waits for the agent processes to apply
/// it: long enough for a busy host, short enough for a process that is
/// stopped (SIGSTOP) and cannot answer.
const FAULT_APPLIED_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

impl Manager {
    /// Answers an operator request on `reply` (a reload answers once it is
    /// done; everything else at once).
    pub async fn handle(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        let (names, verb) = match request {
            Request::Reload => return self.reload(Asker::Control(reply)),
            Request::Status => {
                let _ = reply.send(self.status());
                return;
            }
            Request::Events {
                since,
                filter,
                last,
                ..
            } => {
                let events =
                    filter::events_response(&self.shared.bus, since, filter.as_deref(), last);
                let _ = reply.send(events);
                return;
            }
            Request::Fault {
                names,
                kind,
                arg,
                for_ms,
                at_once,
            } => {
                let duration = for_ms.map(std::time::Duration::from_millis);
                let (response, applied) = self.fault(&names, &kind, arg.as_deref(), duration).await;
                // An operator's fault on a cluster node is kept in etcd
                // (the scenarios' are not: every node knows their times).
                if let (false, Some(to), Response::Done { agents, .. }) =
                    (at_once, &self.hand_faults, &response)
                {
                    let _ = to.send(super::HandFault {
                        agents: agents.clone(),
                        kind,
                        arg,
                        for_ms,
                        at: std::time::SystemTime::now(),
                    });
                }
                if at_once || applied.is_empty() {
                    let _ = reply.send(response);
                    return;
                }
                // Answered once every process has applied it (or is gone,
                // or took too long), off the loop.
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + FAULT_APPLIED_WITHIN;
                    for done in applied {
                        if tokio::time::timeout_at(deadline, done).await.is_err() {
                            tracing::debug!("a fault not confirmed by every process in time");
                            break;
                        }
                    }
                    let _ = reply.send(response);
                });
                return;
            }
            Request::Start { names } => (names, Verb::Start),
            Request::Stop { names } => (names, Verb::Stop),
            Request::Restart { names } => (names, Verb::Restart),
        };
        let response = self.act(&names, verb).await;
        let _ = reply.send(response);
    }

    fn status(&self) -> Response {
        let mut agents = self.status_list();
        // RSS per process, read once for the agents that share it.
        let mut rss: HashMap<u32, Option<u64>> = HashMap::new();
        for a in &mut agents {
            a.rss_bytes = a.pid.and_then(|pid| {
                *rss.entry(pid).or_insert_with(|| {
                    let p = procfs::process::Process::new(pid as i32).ok()?;
                    crate::process::launch::inspect(&p)?.rss
                })
            });
        }
        Response::Status {
            node: self.cluster.node.clone(),
            agents,
        }
    }

    /// Units with an agent matching any of `names` (globs), and the matched
    /// agent names; an error names the patterns that matched nothing.
    fn select(&mut self, names: &[String]) -> Result<(Vec<usize>, Vec<String>), Response> {
        let mut units = Vec::new();
        let mut agents = Vec::new();
        let mut unmatched = Vec::new();
        // Names without glob characters are looked up (a scenario names
        // thousands of agents at once); the index is rebuilt after any
        // change of the units.
        let exact = |n: &String| !n.contains(['*', '?', '[']);
        if self.by_name.is_none() && names.iter().any(exact) {
            let mut index = HashMap::new();
            for (i, u) in self.units.iter().enumerate() {
                for a in &u.agents {
                    index.insert(a.name.clone(), i);
                }
            }
            self.by_name = Some(index);
        }
        let mut unit_set = std::collections::HashSet::new();
        let mut agent_set = std::collections::HashSet::new();
        for name in names {
            if let Some(index) = &self.by_name
                && exact(name)
            {
                match index.get(name) {
                    Some(&i) => {
                        if unit_set.insert(i) {
                            units.push(i);
                        }
                        if agent_set.insert(name.clone()) {
                            agents.push(name.clone());
                        }
                    }
                    None => unmatched.push(name.clone()),
                }
                continue;
            }
            let pattern = glob::Pattern::new(name).map_err(|e| Response::Error {
                kind: ErrorKind::BadRequest,
                message: format!("bad pattern {name:?}: {e}"),
            })?;
            let mut hit = false;
            for (i, u) in self.units.iter().enumerate() {
                for a in &u.agents {
                    if pattern.matches(&a.name) {
                        hit = true;
                        if unit_set.insert(i) {
                            units.push(i);
                        }
                        if agent_set.insert(a.name.clone()) {
                            agents.push(a.name.clone());
                        }
                    }
                }
            }
            if !hit {
                unmatched.push(name.clone());
            }
        }
        if !unmatched.is_empty() || names.is_empty() {
            return Err(Response::Error {
                kind: ErrorKind::UnknownAgent,
                message: if names.is_empty() {
                    "name at least one agent".into()
                } else if self.given.is_some() {
                    // A cluster node: the agent may well be another's.
                    format!(
                        "no agent of node {} matches {}: a node serves only its share of the fleet; `agentcluster status --cluster` shows which node serves which agent",
                        self.cluster.node,
                        unmatched.join(", ")
                    )
                } else {
                    format!("no agent matches {}", unmatched.join(", "))
                },
            });
        }
        Ok((units, agents))
    }

    /// Starts, stops or restarts the agents `names` matches. The answer
    /// lists the agents the request changes; agents it leaves alone (a
    /// `start` of a running agent, a `stop` of a stopped one) are named in
    /// the message with their state, never as started or stopped.
    async fn act(&mut self, names: &[String], verb: Verb) -> Response {
        let (units, matched) = match self.select(names) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let mut problems = Vec::new();
        let mut changed = Vec::new();
        let mut left = Vec::new();
        for i in units {
            let state = self.units[i].status.borrow().state;
            let names = self.units[i]
                .agents
                .iter()
                .map(|a| a.name.clone())
                .filter(|n| matched.contains(n));
            if !verb.changes(state) {
                left.extend(names.map(|n| format!("{n} ({state})")));
                continue;
            }
            changed.extend(names);
            if matches!(verb, Verb::Start | Verb::Restart) && !self.units[i].active {
                // An inactive agent has no sockets yet: bind them, and run
                // it as an active one from now on.
                if let Err(e) = self.activate(i) {
                    problems.push(e);
                    continue;
                }
            }
            let cmd = match verb {
                Verb::Start => unit::Command::Start,
                Verb::Stop => unit::Command::Stop,
                Verb::Restart => unit::Command::Restart,
            };
            if let Some(u) = self.units.get(i) {
                let _ = u.tx.send(cmd).await;
            }
        }
        if !problems.is_empty() {
            return Response::Error {
                kind: ErrorKind::Internal,
                message: problems.join("\n"),
            };
        }
        // In the order the agents were matched.
        let agents: Vec<String> = matched
            .into_iter()
            .filter(|n| changed.contains(n))
            .collect();
        let mut message = if agents.is_empty() {
            format!("nothing to {}", verb.as_str())
        } else {
            let n = agents.len();
            format!(
                "{} requested for {n} agent{}",
                verb.as_str(),
                if n == 1 { "" } else { "s" }
            )
        };
        if !left.is_empty() {
            left.sort();
            message.push_str(&format!("; left alone: {}", left.join(", ")));
        }
        Response::Done { message, agents }
    }

    /// Injects a fault into the agents `names` matches (or clears faults).
    /// A link fault is refused as a whole when a matched agent's snapshot
    /// has no such interface (no ifOperStatus.IFINDEX).
    async fn fault(
        &mut self,
        names: &[String],
        kind: &str,
        arg: Option<&str>,
        duration: Option<std::time::Duration>,
    ) -> (Response, Vec<oneshot::Receiver<()>>) {
        let refused = |kind, message| (Response::Error { kind, message }, Vec::new());
        let fault = match agentcluster_conf::Fault::parse(kind, arg) {
            Ok(f) => f,
            Err(message) => return refused(ErrorKind::BadRequest, message),
        };
        if duration.is_some_and(|d| d.is_zero()) {
            return refused(ErrorKind::BadRequest, "--for must be longer than 0s".into());
        }
        let (units, matched) = match self.select(names) {
            Ok(x) => x,
            Err(e) => return (e, Vec::new()),
        };
        let wanted: std::collections::HashSet<&String> = matched.iter().collect();
        let targets: Vec<(usize, Vec<usize>)> = units
            .into_iter()
            .map(|u| {
                let idx = self.units[u]
                    .agents
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| wanted.contains(&a.name))
                    .map(|(i, _)| i)
                    .collect();
                (u, idx)
            })
            .collect();
        if let agentcluster_conf::Fault::LinkDown(index) | agentcluster_conf::Fault::LinkUp(index) =
            fault
        {
            let lacking = self.lacking_interface(&targets, index);
            if !lacking.is_empty() {
                let n = lacking.len();
                let mut shown: Vec<_> = lacking.into_iter().take(5).collect();
                if n > 5 {
                    shown.push(format!("and {} more", n - 5));
                }
                return refused(
                    ErrorKind::BadRequest,
                    format!(
                        "no interface {index} (no ifOperStatus.{index} in the snapshot) on {}",
                        shown.join(", ")
                    ),
                );
            }
        }
        let applied = self.send_fault(targets, fault, duration).await;
        let n = matched.len();
        let what = match fault {
            agentcluster_conf::Fault::Clear => "faults cleared".to_string(),
            agentcluster_conf::Fault::LinkUp(i) => format!("link {i} up"),
            f => match duration {
                Some(d) => format!("{f} for {}", agentcluster_conf::format_duration(d)),
                None => f.to_string(),
            },
        };
        let done = Response::Done {
            message: format!("{what}: {n} agent{}", if n == 1 { "" } else { "s" }),
            agents: matched,
        };
        (done, applied)
    }

    /// Hands `fault` to each unit for its agents: one receiver per unit,
    /// told once its process has applied it (or has none, or ended).
    pub(super) async fn send_fault(
        &self,
        targets: Vec<(usize, Vec<usize>)>,
        fault: agentcluster_conf::Fault,
        duration: Option<std::time::Duration>,
    ) -> Vec<oneshot::Receiver<()>> {
        let mut applied = Vec::new();
        for (u, agents) in targets {
            if let Some(unit) = self.units.get(u) {
                let (tx, rx) = oneshot::channel();
                let cmd = unit::Command::Fault {
                    agents,
                    fault,
                    duration,
                    applied: Some(tx),
                };
                if unit.tx.send(cmd).await.is_ok() {
                    applied.push(rx);
                }
            }
        }
        applied
    }

    /// The agents among `targets` whose first view's snapshot has no
    /// ifOperStatus.`index` (each compiled store is looked into once per
    /// supervisor).
    fn lacking_interface(&mut self, targets: &[(usize, Vec<usize>)], index: u32) -> Vec<String> {
        let mut oid = agentcluster_agent::faults::IF_OPER_STATUS.to_vec();
        oid.push(index);
        let seen = &mut self.interfaces;
        let mut lacking = Vec::new();
        for (u, agents) in targets {
            let unit = &self.units[*u];
            for &a in agents {
                let Some(store) = unit.stores.get(a).and_then(|s| s.first()) else {
                    continue;
                };
                let has = *seen.entry((store.clone(), index)).or_insert_with(|| {
                    std::fs::File::open(store)
                        .ok()
                        .and_then(|f| agentcluster_agent::store::Store::from_file(&f, store).ok())
                        .is_some_and(|s| s.find(&oid).is_some())
                });
                if !has {
                    lacking.push(unit.agents[a].name.clone());
                }
            }
        }
        lacking
    }

    /// Binds an inactive unit's endpoints and replaces its (idle) task with
    /// an active one.
    fn activate(&mut self, i: usize) -> Result<(), String> {
        let agents = self.units[i].agents.clone();
        self.bind_missing(&agents).map_err(|errors| {
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        let compiled: HashMap<PathBuf, PathBuf> = self.units[i]
            .sources
            .iter()
            .flatten()
            .cloned()
            .zip(self.units[i].stores.iter().flatten().cloned())
            .collect();
        // The idle task of an inactive unit ends at once.
        let old = self.units.remove(i);
        old.stop.cancel();
        let mut agents = agents;
        for a in &mut agents {
            a.active = true;
        }
        self.add_unit(agents, &compiled, false)
            .map_err(|e| e.to_string())?;
        // Keep the unit's place, and mark it active for later reloads.
        if let Some(mut u) = self.units.pop() {
            u.active = true;
            self.units.insert(i, u);
        }
        self.update_roster();
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    /// Whether the request does something to a process in `state` (the
    /// transitions of [`crate::process::machine`]): `start` acts on what
    /// does not run, `stop` on what runs or would run again, `restart` on
    /// everything.
    fn changes(self, state: State) -> bool {
        use State as S;
        match self {
            Verb::Start => matches!(state, S::Inactive | S::Stopped | S::Failed | S::Backoff),
            Verb::Stop => matches!(
                state,
                S::Starting | S::Running | S::Unresponsive | S::Backoff | S::Failed
            ),
            Verb::Restart => true,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }
}
