//! Changes to what runs: reloads of the configuration and recompiled
//! snapshots. The slow parts run off the supervisor's loop — reading the
//! configuration and compiling stores on the blocking pool, waiting for the
//! units a reload stops in a task — and come back as [`Work`]; the loop
//! only applies results.
//!
//! One reload runs at a time; requests that arrive meanwhile wait for the
//! next one (the file may have changed again since the current one read
//! it), and snapshot compiles run one batch at a time, in order.

use std::collections::{HashMap, HashSet};
use std::mem;
use std::net::SocketAddr;
use std::path::PathBuf;

use agentcluster_agent::store;
use agentcluster_conf::Fleet;
use tokio::sync::oneshot;

use super::Manager;
use crate::control::api::{ErrorKind, Response};
use crate::events::{EventKind, NewEvent, State};
use crate::fleet::plan::limits;
use crate::fleet::reload::{self, Group, group, unapplied_cluster_keys};
use crate::fleet::stores::compile_stores;
use crate::process::unit;

/// Who asked for a reload, and hears how it went.
#[derive(Debug)]
pub enum Asker {
    /// SIGHUP: the result is logged.
    Signal,
    /// An operator over the control socket.
    Control(oneshot::Sender<Response>),
}

impl Asker {
    fn answer(self, response: Response) {
        match self {
            Asker::Control(reply) => {
                let _ = reply.send(response);
            }
            Asker::Signal => match response {
                Response::Error { message, .. } => tracing::error!("SIGHUP: {message}"),
                Response::Done { message, .. } => tracing::info!("SIGHUP: {message}"),
                _ => {}
            },
        }
    }
}

/// The result of work done off the loop, for [`Manager::on_work`].
#[derive(Debug)]
pub enum Work {
    /// A reload read the configuration and compiled its stores, or could
    /// not (the answer to give).
    Prepared(Box<Result<Prepared, Response>>),
    /// The units a reload stopped are gone.
    Stopped,
    /// Snapshot files were recompiled: each source file that compiled, with
    /// its store.
    Compiled {
        files: Vec<PathBuf>,
        compiled: HashMap<PathBuf, PathBuf>,
    },
}

/// A configuration that was read and checked, with its compiled stores.
#[derive(Debug)]
pub struct Prepared {
    fleet: Fleet,
    compiled: HashMap<PathBuf, PathBuf>,
}

/// The reload in progress, if any, and who waits for the next.
#[derive(Debug, Default)]
pub(super) struct ReloadState {
    current: Option<Current>,
    next: Vec<Asker>,
    /// Snapshot files waiting for the compile in progress to end.
    queued_files: Vec<PathBuf>,
    compiling: bool,
}

#[derive(Debug)]
struct Current {
    askers: Vec<Asker>,
    /// Set once the configuration is read and the units to stop were told.
    stopping: Option<Pending>,
}

/// What a reload does once the units it stopped are gone.
#[derive(Debug)]
struct Pending {
    compiled: HashMap<PathBuf, PathBuf>,
    start: Vec<Group>,
    /// Agent names that ran before the reload.
    before: Vec<String>,
    /// Agent names whose units it stopped.
    stopped: Vec<String>,
    limits_changed: bool,
    unapplied: Vec<&'static str>,
}

/// Reads and checks the configuration at `source` and compiles its
/// stores. Blocking.
fn prepare(source: &std::path::Path) -> Result<Prepared, Response> {
    let fleet = match agentcluster_conf::load(source) {
        Ok(l) => l.fleet,
        Err(problems) => {
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            return Err(Response::Error {
                kind: ErrorKind::Config,
                message: format!("configuration not reloaded:\n{}", text.join("\n")),
            });
        }
    };
    let compiled = compile_stores(&fleet).map_err(|e| Response::Error {
        kind: ErrorKind::Config,
        message: format!("configuration not reloaded: {e}"),
    })?;
    Ok(Prepared { fleet, compiled })
}

impl Manager {
    /// Re-reads the configuration: changed agents restart, new ones start,
    /// removed ones stop, unchanged ones keep running (same pid); changed
    /// snapshots are swapped in without a restart. `asker` hears the
    /// outcome once it is done.
    pub fn reload(&mut self, asker: Asker) {
        if self.reload.current.is_some() {
            self.reload.next.push(asker);
            return;
        }
        self.begin_reload(vec![asker]);
    }

    fn begin_reload(&mut self, askers: Vec<Asker>) {
        let source = self.source.clone();
        let work = self.reports.work.clone();
        self.reload.current = Some(Current {
            askers,
            stopping: None,
        });
        self.tasks.spawn_blocking(move || {
            let _ = work.send(Work::Prepared(Box::new(prepare(&source))));
        });
    }

    /// Recompiles `files` (snapshots that changed on disk) off the loop;
    /// the new stores are swapped into the agents that serve them when the
    /// compile is done.
    pub fn snapshots_changed(&mut self, files: Vec<PathBuf>) {
        self.reload.queued_files.extend(files);
        if self.reload.compiling {
            return;
        }
        let mut files = mem::take(&mut self.reload.queued_files);
        files.sort();
        files.dedup();
        if files.is_empty() {
            return;
        }
        self.reload.compiling = true;
        let cache_dir = self.cluster.cache_dir.clone();
        let work = self.reports.work.clone();
        self.tasks.spawn_blocking(move || {
            let mut compiled = HashMap::new();
            for f in &files {
                match store::compile(f, &cache_dir) {
                    Ok(c) => {
                        compiled.insert(f.clone(), c.store_path);
                    }
                    Err(e) => {
                        // A broken edit keeps the old data served.
                        tracing::error!(snapshot = %f.display(), cause = %e, "snapshot not reloaded");
                    }
                }
            }
            let _ = work.send(Work::Compiled { files, compiled });
        });
    }

    /// Applies the result of work done off the loop.
    pub async fn on_work(&mut self, work: Work) {
        match work {
            Work::Prepared(result) => match *result {
                Ok(prepared) => self.stop_for_reload(prepared),
                Err(response) => {
                    if let Some(current) = self.reload.current.take() {
                        for a in current.askers {
                            a.answer(response.clone());
                        }
                    }
                    self.next_reload();
                }
            },
            Work::Stopped => self.finish_reload().await,
            Work::Compiled { files, compiled } => {
                let n = self.refresh_with(&compiled, &files).await;
                tracing::info!(files = files.len(), processes = n, "snapshots changed");
                self.reload.compiling = false;
                self.snapshots_changed(Vec::new());
            }
        }
    }

    /// The first half of a reload, once the new configuration is read:
    /// applies the limits, and stops every unit that does not stay as it
    /// is. A task waits for them and reports [`Work::Stopped`].
    fn stop_for_reload(&mut self, prepared: Prepared) {
        let Prepared { fleet, compiled } = prepared;
        self.events = fleet.events.clone();
        // The limits apply to running agents at once; other cluster keys
        // only to a new supervisor.
        let new_limits = limits(&fleet.cluster);
        let limits_changed = self.limits.send_if_modified(|l| {
            let changed = *l != new_limits;
            *l = new_limits;
            changed
        });
        let unapplied = unapplied_cluster_keys(&self.cluster, &fleet.cluster);
        if !unapplied.is_empty() {
            tracing::warn!(
                keys = %unapplied.join(", "),
                "changed cluster settings take effect when the supervisor restarts"
            );
        }
        let diff = reload::diff(
            self.units.iter().map(|u| (u.agents.as_slice(), u.active)),
            group(&fleet.agents, self.per_process()),
        );
        let before: Vec<String> = self
            .units
            .iter()
            .flat_map(|u| u.agents.iter().map(|a| a.name.clone()))
            .collect();
        // Stop what goes away or changes, all at once.
        let mut stopped = Vec::new();
        let mut waits = Vec::new();
        let units = mem::take(&mut self.units);
        for (u, keep) in units.into_iter().zip(diff.keep) {
            if keep {
                self.units.push(u);
            } else {
                u.stop.cancel();
                stopped.extend(u.agents.iter().map(|a| a.name.clone()));
                waits.push(u.task);
            }
        }
        let work = self.reports.work.clone();
        self.tasks.spawn(async move {
            for w in waits {
                let _ = w.await;
            }
            let _ = work.send(Work::Stopped);
        });
        if let Some(current) = self.reload.current.as_mut() {
            current.stopping = Some(Pending {
                compiled,
                start: diff.start,
                before,
                stopped,
                limits_changed,
                unapplied,
            });
        }
    }

    /// The second half of a reload, once the units it stopped are gone:
    /// binds and starts the new units, reports every agent it touched,
    /// swaps changed snapshots into the units that stayed, and answers.
    async fn finish_reload(&mut self) {
        let Some(Current {
            askers,
            stopping: Some(p),
        }) = self.reload.current.take()
        else {
            return;
        };
        // Release endpoints nobody uses any more; bind the new ones.
        let used: HashSet<SocketAddr> = self
            .units
            .iter()
            .flat_map(|u| u.agents.iter().flat_map(|a| a.listen.iter().copied()))
            .chain(
                p.start
                    .iter()
                    .filter(|(_, active)| *active)
                    .flat_map(|(g, _)| g.iter().flat_map(|a| a.listen.iter().copied())),
            )
            .collect();
        self.sockets.retain(|e, _| used.contains(e));
        let mut problems = Vec::new();
        let mut started = Vec::new();
        for (agents, active) in p.start {
            if active && let Err(errors) = self.bind_missing(&agents) {
                problems.extend(errors.iter().map(|e| e.to_string()));
                continue;
            }
            let names: Vec<String> = agents.iter().map(|a| a.name.clone()).collect();
            if let Err(e) = self.add_unit(agents, &p.compiled, active) {
                problems.push(e.to_string());
                continue;
            }
            started.extend(names);
        }
        let report = reload::report(&p.before, &started, &p.stopped);
        for (names, why) in [
            (&report.changed, "changed"),
            (&report.added, "added"),
            (&report.removed, "removed"),
        ] {
            for name in names {
                self.shared.bus.publish(NewEvent {
                    agent: name.clone(),
                    reason: format!("reload: agent {why}"),
                    ..NewEvent::new(
                        EventKind::ConfigChanged,
                        if why == "removed" {
                            State::Stopped
                        } else {
                            State::Starting
                        },
                    )
                });
            }
        }
        // Snapshots whose content changed under unchanged agents.
        let changed_files: Vec<PathBuf> = self
            .units
            .iter()
            .flat_map(|u| u.sources.iter().flatten())
            .filter(|src| p.compiled.contains_key(*src))
            .cloned()
            .collect();
        let swapped = self.refresh_with(&p.compiled, &changed_files).await;
        self.update_watch();
        let mut message = format!(
            "reloaded: {} changed, {} added, {} removed, {} swapped to new snapshot data",
            report.changed.len(),
            report.added.len(),
            report.removed.len(),
            swapped
        );
        if p.limits_changed {
            message += "; cluster limits (max_response_bytes, rate_limit) applied to every agent";
        }
        if !p.unapplied.is_empty() {
            message += &format!(
                "; changed cluster settings take effect when the supervisor restarts: {}",
                p.unapplied.join(", ")
            );
        }
        if !problems.is_empty() {
            message += &format!("; not started:\n{}", problems.join("\n"));
        }
        let mut agents = report.changed;
        agents.extend(report.added);
        agents.extend(report.removed);
        let response = Response::Done { agents, message };
        for a in askers {
            a.answer(response.clone());
        }
        self.next_reload();
    }

    /// Starts the reload that requests made during the last one wait for.
    fn next_reload(&mut self) {
        let next = mem::take(&mut self.reload.next);
        if !next.is_empty() {
            self.begin_reload(next);
        }
    }

    /// Swaps compiled stores of `files` into the running agents that serve
    /// them, where they differ from what is served. Returns how many
    /// processes got new stores.
    async fn refresh_with(
        &mut self,
        compiled: &HashMap<PathBuf, PathBuf>,
        files: &[PathBuf],
    ) -> usize {
        let mut touched = 0;
        for u in &mut self.units {
            let mut swaps = Vec::new();
            for (ai, (sources, stores)) in u.sources.iter().zip(u.stores.iter_mut()).enumerate() {
                for (vi, (src, cur)) in sources.iter().zip(stores.iter_mut()).enumerate() {
                    if files.contains(src)
                        && let Some(new) = compiled.get(src)
                        && new != cur
                    {
                        *cur = new.clone();
                        swaps.push(unit::StoreSwap {
                            agent: ai,
                            view: vi,
                            store: new.clone(),
                        });
                    }
                }
            }
            if !swaps.is_empty() {
                touched += 1;
                let _ = u.tx.send(unit::Command::Swap(swaps)).await;
            }
        }
        touched
    }
}
