//! Signals enter here, and only here: SIGTERM and SIGINT become the
//! supervisor's shutdown token, SIGHUP a reload request. What a second
//! stop signal does is decided in this one place.

use std::time::Duration;

use agentcluster_supervisor::{Progress, Triggers};
use anyhow::Context as _;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Exit status of a supervisor ended by a second stop signal.
const EXIT_FORCED: i32 = 2;

/// A stop signal this soon after the first is the same request, not a
/// second one: coreutils' `timeout`, for one, signals both the child and
/// its process group, and a terminal's Ctrl-C can reach us twice.
const GRACE: Duration = Duration::from_secs(1);

/// Installs the handlers and returns what they trigger. Must be called
/// inside the runtime.
pub fn install() -> anyhow::Result<Triggers> {
    let term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let shutdown = CancellationToken::new();
    // One pending reload is enough: more SIGHUPs before it starts would
    // read the same file.
    let (reload_tx, reload) = mpsc::channel(1);
    tokio::spawn(watch(term, int, hup, shutdown.clone(), reload_tx));
    Ok(Triggers {
        shutdown,
        reload,
        progress: watch::Sender::new(Progress::default()),
    })
}

/// SIGTERM or SIGINT starts the shutdown; another one more than [`GRACE`]
/// later ends the process at once (agents die with it: PR_SET_PDEATHSIG).
/// SIGHUP asks for a reload.
async fn watch(
    mut term: Signal,
    mut int: Signal,
    mut hup: Signal,
    shutdown: CancellationToken,
    reload: mpsc::Sender<()>,
) {
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let _ = reload.try_send(());
            }
        }
    }
    tracing::info!("shutting down (a second signal exits at once)");
    shutdown.cancel();
    let first = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if first.elapsed() > GRACE {
            break;
        }
        tracing::info!("stop signal again within {GRACE:?} of the first: the same request");
    }
    tracing::warn!("second signal: exiting now");
    std::process::exit(EXIT_FORCED);
}
