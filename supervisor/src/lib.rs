//! The agentcluster supervisor: compiles the fleet's snapshots, binds every
//! endpoint, runs the agents, owns shutdown.
//!
//! This first form runs every agent inside the supervisor process; agent
//! processes, start tokens and watchdogs build on the same pieces.

pub mod bind;
pub mod fleet;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use agentcluster_agent::serve;
use agentcluster_agent::store::{self, Store};
use agentcluster_conf::Fleet;
use tokio_util::sync::CancellationToken;

/// Why the supervisor could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot compile snapshot: {0}")]
    Store(#[from] store::StoreError),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Bind(Vec<bind::BindError>),
    #[error("agent {agent}: {cause}")]
    Agent { agent: String, cause: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What `run` tells its caller once every agent is serving.
#[derive(Debug, Clone)]
pub struct Ready {
    pub agents: Vec<ReadyAgent>,
}

#[derive(Debug, Clone)]
pub struct ReadyAgent {
    pub name: String,
    pub endpoints: Vec<std::net::SocketAddr>,
}

/// Compiles every distinct snapshot of the active agents once, and maps them.
pub fn compile_stores(fleet: &Fleet) -> Result<HashMap<PathBuf, Arc<Store>>, Error> {
    let mut stores = HashMap::new();
    for agent in fleet.agents.iter().filter(|a| a.active) {
        for path in agent.snapshots() {
            if stores.contains_key(path) {
                continue;
            }
            let (store, compiled) = store::load(path, &fleet.cluster.cache_dir)?;
            for w in &compiled.warnings {
                tracing::warn!("{w}");
            }
            tracing::debug!(
                snapshot = %path.display(),
                records = compiled.records,
                built = compiled.built,
                "store ready"
            );
            stores.insert(path.clone(), store);
        }
    }
    Ok(stores)
}

/// Runs the fleet until `shutdown` is cancelled. `on_ready` is called once,
/// when every active agent is bound and serving.
pub async fn run(
    fleet: Fleet,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(&Ready),
) -> Result<(), Error> {
    let stores = compile_stores(&fleet)?;
    let active: Vec<_> = fleet.agents.iter().filter(|a| a.active).collect();
    let bound = bind::bind_all(&active).map_err(Error::Bind)?;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut ready = Ready { agents: Vec::new() };
    for (agent, sockets) in active.iter().zip(bound) {
        let responder = fleet::responder(agent, &stores, start).map_err(|cause| Error::Agent {
            agent: agent.name.clone(),
            cause,
        })?;
        ready.agents.push(ReadyAgent {
            name: agent.name.clone(),
            endpoints: agent.listen.clone(),
        });
        let name = agent.name.clone();
        let token = shutdown.clone();
        let shared = Arc::new(Mutex::new(responder));
        tasks.spawn(async move {
            let r = serve::serve(sockets, shared, token).await;
            (name, r)
        });
    }
    for a in fleet.agents.iter().filter(|a| !a.active) {
        tracing::info!(agent = %a.name, "inactive");
    }
    on_ready(&ready);
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((_, Ok(()))) => {}
            Ok((agent, Err(e))) => {
                tracing::error!(%agent, cause = %e, "agent stopped");
                shutdown.cancel();
                result = Err(Error::Agent {
                    agent,
                    cause: e.to_string(),
                });
            }
            Err(e) => {
                shutdown.cancel();
                result = Err(Error::Io(std::io::Error::other(e)));
            }
        }
    }
    result
}
