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
            Request::Events { since, filter, .. } => {
                let events = filter::events_response(&self.shared.bus, since, filter.as_deref());
                let _ = reply.send(events);
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
                    p.status().ok()?.vmrss.map(|kb| kb * 1024)
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
    fn select(&self, names: &[String]) -> Result<(Vec<usize>, Vec<String>), Response> {
        let mut units = Vec::new();
        let mut agents = Vec::new();
        let mut unmatched = Vec::new();
        for name in names {
            let pattern = glob::Pattern::new(name).map_err(|e| Response::Error {
                kind: ErrorKind::BadRequest,
                message: format!("bad pattern {name:?}: {e}"),
            })?;
            let mut hit = false;
            for (i, u) in self.units.iter().enumerate() {
                for a in &u.agents {
                    if pattern.matches(&a.name) {
                        hit = true;
                        if !units.contains(&i) {
                            units.push(i);
                        }
                        if !agents.contains(&a.name) {
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
