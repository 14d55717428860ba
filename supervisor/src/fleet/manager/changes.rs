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
use std::path::{Path, PathBuf};

use agentcluster_agent::store;
use agentcluster_conf::Fleet;
use tokio::sync::oneshot;

use super::Manager;
use crate::control::api::{ErrorKind, Response};
use crate::events::{EventKind, NewEvent, State};
use crate::fleet::capacity::{self, Demand};
use crate::fleet::plan::{limits, listen_addresses};
use crate::fleet::reload::{self, Group, unapplied_cluster_keys};
use crate::fleet::stores::{self, compile_stores};
use crate::process::{addresses, unit};

/// Who asked for a reload, and hears how it went.
#[derive(Debug)]
pub enum Asker {
    /// SIGHUP: the result is logged.
    Signal,
    /// An operator over the control socket.
    Control(oneshot::Sender<Response>),
}

impl Asker {
    /// How the asker is named in the log.
    fn name(&self) -> &'static str {
        match self {
            Asker::Signal => "SIGHUP",
            Asker::Control(_) => "agentcluster reload",
        }
    }

    /// Tells the asker how the reload went. A refused reload is logged
    /// (and published) once, by [`Manager::on_work`], whoever asked.
    fn answer(self, response: Response) {
        match self {
            Asker::Control(reply) => {
                let _ = reply.send(response);
            }
            Asker::Signal => {
                if let Response::Done { message, .. } = response {
                    tracing::info!("SIGHUP: {message}");
                }
            }
        }
    }
}

/// What a cluster node asks of the manager (see [`Manager::share`]).
/// Without the `etcd` feature no node exists to ask.
#[derive(Debug)]
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
pub enum Share {
    /// Serve exactly `fleet`'s agents (the node's own `cluster` and
    /// `events`), the agents it holds the owner keys of under lease epoch
    /// `epoch`.
    Serve {
        /// The node's lease epoch (one per lease it was granted).
        epoch: u64,
        /// What to serve.
        fleet: Box<Fleet>,
        /// When the fleet was pushed (wall clock): the time zero of its
        /// scenarios, the same on every node.
        zero: std::time::SystemTime,
        /// Per agent, what an operator did to it by hand under this push
        /// (etcd keeps it): the faults it replaced or cleared are not
        /// given back to an agent that moves in.
        hand: crate::fleet::scenarios::ByHand,
        /// Told once the agents run (or could not start).
        reply: oneshot::Sender<Response>,
    },
    /// Stop every agent: lease epoch `epoch` is ending.
    Fence {
        /// The lease epoch that ends.
        epoch: u64,
        /// Told once every agent is stopped.
        reply: oneshot::Sender<Response>,
    },
}

/// The result of work done off the loop, for [`Manager::on_work`].
#[derive(Debug)]
pub enum Work {
    /// A reload read the configuration and compiled its stores, or could
    /// not (its problems, one a line).
    Prepared(Box<Result<Prepared, Vec<String>>>),
    /// The units a reload stopped are gone.
    Stopped,
    /// Snapshot files were recompiled: each source file that compiled and
    /// may be swapped in, with its store; each one refused, with why.
    Compiled {
        files: Vec<PathBuf>,
        compiled: HashMap<PathBuf, PathBuf>,
        refused: Vec<(PathBuf, String)>,
    },
}

/// The compiled stores each snapshot source is served from now (one, but
/// for a moment during a reload).
type Served = HashMap<PathBuf, Vec<PathBuf>>;

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
    /// The agents it changes, adds and removes (published already).
    report: reload::Report,
    limits_changed: bool,
    unapplied: Vec<&'static str>,
    /// The new fleet's scenarios, planned once its units have started.
    scenarios: super::Scenarios,
}

/// Reads and checks the configuration at `source` and compiles its
/// stores; a snapshot served now (`served`) whose new store is refused
/// (see [`stores::check_swap`]) refuses the whole reload. Blocking.
/// A fleet the host cannot carry, once the running one (of demand
/// `running`, under `cluster`) is replaced, is refused with the
/// arithmetic, as `run` refuses it.
fn prepare(
    source: &Path,
    served: &Served,
    cluster: &agentcluster_conf::Cluster,
    running: &Demand,
) -> Result<Prepared, Vec<String>> {
    let fits = &mut |fleet: &Fleet| capacity::check_reload(fleet, cluster, running);
    let fleet = match agentcluster_conf::load_within(source, fits) {
        Ok(l) => l.fleet,
        Err(problems) => return Err(problems.iter().map(|p| p.to_string()).collect()),
    };
    prepare_fleet(fleet, served)
}

/// [`prepare`] for a fleet that is checked already (a cluster node's
/// share). Blocking.
fn prepare_fleet(fleet: Fleet, served: &Served) -> Result<Prepared, Vec<String>> {
    let compiled = compile_stores(&fleet)
        .map_err(|e| e.to_string().lines().map(String::from).collect::<Vec<_>>())?;
    let mut refused: Vec<String> = compiled
        .iter()
        .filter_map(|(src, store)| {
            let records = stores::records_in(store);
            let check = match records {
                Some(n) => stores::check_swap(
                    src,
                    store,
                    n,
                    served.get(src).map_or(&[][..], Vec::as_slice),
                    fleet.cluster.snapshot_max_loss,
                ),
                None => Err(format!(
                    "snapshot {} not reloaded: its compiled store {} cannot be read",
                    src.display(),
                    store.display()
                )),
            };
            check.err()
        })
        .collect();
    if !refused.is_empty() {
        refused.sort();
        return Err(refused);
    }
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
        let served = self.served();
        // A cluster node serves the share it was given last, never its
        // own file's (empty) agents.
        let given = self.given.clone();
        let (cluster, running) = (self.cluster.clone(), self.running.clone());
        self.reload.current = Some(Current {
            askers,
            stopping: None,
        });
        self.tasks.spawn_blocking(move || {
            let prepared = match given {
                Some(fleet) => prepare_fleet(fleet, &served),
                None => prepare(&source, &served, &cluster, &running),
            };
            let _ = work.send(Work::Prepared(Box::new(prepared)));
        });
    }

    /// A cluster node's request (docs/scale-out.md): serve exactly the
    /// agents of a fleet, through the reload's diff (unchanged agents keep
    /// their process), or stop serving everything. A fence is final for
    /// its epoch: a share of that epoch or an older one that arrives after
    /// it is refused, so agents stopped because a lease is ending are
    /// never started again under that lease.
    pub fn share(&mut self, share: Share) {
        match share {
            Share::Serve {
                epoch,
                fleet,
                zero,
                hand,
                reply,
            } => {
                if self.fenced.is_some_and(|f| epoch <= f) {
                    let _ = reply.send(Response::Error {
                        kind: ErrorKind::Config,
                        message: format!("share of lease epoch {epoch} refused: fenced"),
                    });
                    return;
                }
                self.given = Some(*fleet);
                self.given_push = Some((zero, hand));
                self.reload(Asker::Control(reply));
            }
            Share::Fence { epoch, reply } => {
                self.fenced = Some(self.fenced.map_or(epoch, |f| f.max(epoch)));
                match self.given.as_mut() {
                    Some(fleet) => {
                        fleet.agents.clear();
                        self.reload(Asker::Control(reply));
                    }
                    None => {
                        let _ = reply.send(Response::Done {
                            agents: Vec::new(),
                            message: "nothing served".into(),
                        });
                    }
                }
            }
        }
    }

    /// The stores each snapshot source is served from now.
    fn served(&self) -> Served {
        let mut served = Served::new();
        for u in &self.units {
            for (sources, stores) in u.sources.iter().zip(&u.stores) {
                for (src, store) in sources.iter().zip(stores) {
                    let list = served.entry(src.clone()).or_default();
                    if !list.contains(store) {
                        list.push(store.clone());
                    }
                }
            }
        }
        served
    }

    /// The cache directory's upkeep ([`stores::tend_cache`]), off the loop:
    /// the stores served now are marked as used, and those unused for
    /// longer than `cluster.cache_max_age` are removed. Skipped while a
    /// reload or a recompile runs, so that no store it has just found in
    /// the cache goes from under it.
    pub fn tend_cache(&mut self) {
        if self.reload.compiling || self.reload.current.is_some() {
            return;
        }
        let served: Vec<PathBuf> = self.served().into_values().flatten().collect();
        let (dir, max_age) = (self.cluster.cache_dir.clone(), self.cluster.cache_max_age);
        let missing = self.shared.missing_stores.clone();
        self.tasks.spawn_blocking(move || {
            let gone = stores::tend_cache(&dir, &served, max_age);
            if !gone.is_empty() {
                let _ = missing.send(gone);
            }
        });
    }

    /// Stores served now are gone from the cache directory (found by the
    /// upkeep, or by a start that could not open one): their snapshots are
    /// compiled again, as if they had changed on disk. The same content
    /// gives the same store, so nothing is swapped; a source that changed
    /// meanwhile is swapped in, or refused, like any change.
    pub fn stores_missing(&mut self, stores: Vec<PathBuf>) {
        let sources: Vec<PathBuf> = self
            .served()
            .into_iter()
            .filter(|(_, served)| served.iter().any(|s| stores.contains(s)))
            .map(|(source, _)| source)
            .collect();
        for s in &stores {
            tracing::warn!(store = %s.display(), "a store served now is gone from the cache directory: compiling it again");
        }
        self.snapshots_changed(sources);
    }

    /// Recompiles `files` (snapshots that changed on disk) off the loop;
    /// the new stores are swapped into the agents that serve them when the
    /// compile is done, unless they are refused: a snapshot that does not
    /// parse, has no records, or lost more than `cluster.snapshot_max_loss`
    /// of the records served now.
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
        let max_loss = self.snapshot_max_loss;
        let served = self.served();
        let work = self.reports.work.clone();
        self.tasks.spawn_blocking(move || {
            let mut compiled = HashMap::new();
            let mut refused = Vec::new();
            for f in &files {
                let checked = store::compile(f, &cache_dir)
                    .map_err(|e| {
                        format!(
                            "snapshot {} not reloaded: {}",
                            f.display(),
                            stores::brief(&e)
                        )
                    })
                    .and_then(|c| {
                        let on = served.get(f).map_or(&[][..], Vec::as_slice);
                        stores::check_swap(f, &c.store_path, c.records, on, max_loss)
                            .map(|()| c.store_path)
                    });
                match checked {
                    Ok(store) => {
                        compiled.insert(f.clone(), store);
                    }
                    // The old data stays served.
                    Err(why) => refused.push((f.clone(), why)),
                }
            }
            let _ = work.send(Work::Compiled {
                files,
                compiled,
                refused,
            });
        });
    }

    /// Applies the result of work done off the loop.
    pub async fn on_work(&mut self, work: Work) {
        match work {
            Work::Prepared(result) => match *result {
                Ok(prepared) => self.stop_for_reload(prepared),
                Err(problems) => {
                    let askers = self
                        .reload
                        .current
                        .take()
                        .map(|c| c.askers)
                        .unwrap_or_default();
                    self.reload_refused(&askers, &problems);
                    let response = Response::Error {
                        kind: ErrorKind::Config,
                        message: format!("configuration not reloaded:\n{}", problems.join("\n")),
                    };
                    for a in askers {
                        a.answer(response.clone());
                    }
                    self.next_reload();
                }
            },
            Work::Stopped => self.finish_reload().await,
            Work::Compiled {
                files,
                compiled,
                refused,
            } => {
                for (file, why) in &refused {
                    self.snapshot_refused(file, why);
                }
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
        self.running = Demand::under(&fleet, &self.cluster);
        self.events = fleet.events.clone();
        let scenarios = super::scenarios_of(&fleet);
        self.snapshot_max_loss = fleet.cluster.snapshot_max_loss;
        self.cluster.cache_max_age = fleet.cluster.cache_max_age;
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
        // A grown fleet's burst stays whole in the event ring too.
        self.shared.bus.keep_for(fleet.agents.len());
        // Processes whose agents all stay as they are keep running, even
        // when agents are added or removed around them.
        let running = || self.units.iter().map(|u| (u.agents.as_slice(), u.active));
        let diff = reload::diff(
            running(),
            reload::regroup(running(), &fleet.agents, self.per_process()),
        );
        let before: Vec<String> = self
            .units
            .iter()
            .flat_map(|u| u.agents.iter().map(|a| a.name.clone()))
            .collect();
        let (kept, going): (Vec<_>, Vec<_>) = mem::take(&mut self.units)
            .into_iter()
            .zip(diff.keep)
            .partition(|(_, keep)| *keep);
        self.units = kept.into_iter().map(|(u, _)| u).collect();
        self.update_roster();
        let going: Vec<_> = going.into_iter().map(|(u, _)| u).collect();
        // Each agent the reload touches is told first: its `stopped` (if
        // it has a process) and its new start follow.
        let stopped: Vec<String> = going
            .iter()
            .flat_map(|u| u.agents.iter().map(|a| a.name.clone()))
            .collect();
        let starting: Vec<String> = diff
            .start
            .iter()
            .flat_map(|(g, _)| g.iter().map(|a| a.name.clone()))
            .collect();
        let starts: HashMap<&str, bool> = diff
            .start
            .iter()
            .flat_map(|(g, active)| g.iter().map(move |a| (a.name.as_str(), *active)))
            .collect();
        let report = reload::report(&before, &starting, &stopped);
        let now: HashMap<&str, State> = going
            .iter()
            .flat_map(|u| {
                let state = u.status.borrow().state;
                u.agents.iter().map(move |a| (a.name.as_str(), state))
            })
            .collect();
        for (names, why) in [
            (&report.changed, "changed"),
            (&report.added, "added"),
            (&report.removed, "removed"),
        ] {
            for name in names {
                let state = match (now.get(name.as_str()), starts.get(name.as_str())) {
                    // A unit being stopped (it publishes `stopped`).
                    (Some(s), _) if !matches!(s, State::Inactive | State::Stopped) => {
                        State::Stopping
                    }
                    (_, Some(true)) => State::Starting,
                    (_, Some(false)) => State::Inactive,
                    (_, None) => State::Stopped,
                };
                self.shared.bus.publish(NewEvent {
                    agent: name.clone(),
                    reason: format!("reload: agent {why}"),
                    ..NewEvent::new(EventKind::ConfigChanged, state)
                });
            }
        }
        // Stop what goes away or changes, all at once.
        let mut waits = Vec::new();
        for u in going {
            u.stop.cancel();
            waits.push(u.task);
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
                report,
                limits_changed,
                unapplied,
                scenarios,
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
        self.sockets.retain(|e| used.contains(e));
        let mut problems = Vec::new();
        // The listen addresses follow the agents (`cluster.addresses`): the
        // new ones are added before their binds, and those added for
        // agents that are gone are removed.
        let wanted = listen_addresses(
            self.units
                .iter()
                .flat_map(|u| &u.agents)
                .chain(p.start.iter().flat_map(|(g, _)| g)),
            self.cluster.snmp.as_ref(),
        );
        let added = match self.addresses.ensure(wanted.iter().copied()).await {
            Ok(added) => added,
            Err(e) => {
                problems.push(e.to_string());
                Vec::new()
            }
        };
        let removed = self.addresses.keep_only(&wanted).await;
        for (agents, active) in p.start {
            if active && let Err(errors) = self.bind_missing(&agents) {
                problems.extend(errors.iter().map(|e| e.to_string()));
                continue;
            }
            if let Err(e) = self.add_unit(agents, &p.compiled, active) {
                problems.push(e.to_string());
            }
        }
        let report = p.report;
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
        self.update_roster();
        self.replan(p.scenarios);
        let mut message = format!(
            "reloaded: {} changed, {} added, {} removed, {} swapped to new snapshot data",
            report.changed.len(),
            report.added.len(),
            report.removed.len(),
            swapped
        );
        if let Some(interface) = self.addresses.interface().await {
            for (ips, done) in [(&added, "added to"), (&removed, "removed from")] {
                if !ips.is_empty() {
                    message += &format!(
                        "; {} {done} {interface}: {}",
                        agentcluster_conf::plural_es(ips.len(), "listen address"),
                        addresses::list(ips)
                    );
                }
            }
        }
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

    /// A configuration reload that changed nothing: logged, and published
    /// as a supervisor event.
    fn reload_refused(&self, askers: &[Asker], problems: &[String]) {
        let by: Vec<&str> = askers.iter().map(Asker::name).collect();
        tracing::error!(
            config = %self.source.display(),
            asked_by = %by.join(", "),
            "configuration not reloaded: {}",
            problems.join("; ")
        );
        self.shared.bus.publish(NewEvent {
            pid: Some(std::process::id()),
            reason: format!(
                "configuration {} not reloaded: {}",
                self.source.display(),
                problems.join("; ")
            ),
            ..NewEvent::new(EventKind::ReloadFailed, State::Running)
        });
    }

    /// A recompiled snapshot that is not swapped in: logged, and published
    /// for each agent that serves it (and keeps its old data).
    fn snapshot_refused(&self, file: &Path, why: &str) {
        tracing::error!(snapshot = %file.display(), "{why}; the old data stays served");
        for u in &self.units {
            let (pid, restarts, state) = {
                let s = u.status.borrow();
                (s.pid, s.restarts, s.state)
            };
            for (agent, sources) in u.agents.iter().zip(&u.sources) {
                if !sources.iter().any(|s| s == file) {
                    continue;
                }
                self.shared.bus.publish(NewEvent {
                    agent: agent.name.clone(),
                    pid,
                    restarts,
                    reason: format!("{why}; the old data stays served"),
                    ..NewEvent::new(EventKind::ReloadFailed, state)
                });
            }
        }
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
