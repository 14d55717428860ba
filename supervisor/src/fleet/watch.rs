//! Watches the fleet's snapshot files (through their directories, since
//! editors and `snapshot sort` replace files by rename) and reports, after a
//! short quiet period, that some of them changed.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::{mpsc, watch as channel};
use tokio_util::sync::CancellationToken;

/// Changes closer together than this are reported once.
pub const QUIET: Duration = Duration::from_millis(300);

/// Watches `files`; sends the set of changed files on `tx` after each burst
/// of changes. Ends with `shutdown`, or when the receiver is gone.
pub async fn watch(
    files: Vec<PathBuf>,
    tx: mpsc::Sender<Vec<PathBuf>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    let mut dirs: HashSet<PathBuf> = HashSet::new();
    let names: HashSet<(PathBuf, OsString)> = files
        .iter()
        .filter_map(|f| Some((f.parent()?.to_path_buf(), f.file_name()?.to_owned())))
        .collect();
    let mut watches = Vec::new();
    for (dir, _) in &names {
        if dirs.insert(dir.clone()) {
            let flags = AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_ATTRIB;
            match inotify.add_watch(dir.as_path(), flags) {
                Ok(wd) => watches.push((wd, dir.clone())),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), cause = %e, "cannot watch snapshots")
                }
            }
        }
    }
    let fd = crate::process::sys::async_inotify(inotify)?;
    let mut pending: HashSet<PathBuf> = HashSet::new();
    loop {
        let quiet = async {
            if pending.is_empty() {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(QUIET).await
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = quiet => {
                let changed: Vec<PathBuf> = pending.drain().collect();
                if tx.send(changed).await.is_err() {
                    return Ok(());
                }
            }
            ready = fd.readable() => {
                let mut guard = ready?;
                match guard.get_inner().0.read_events() {
                    Ok(events) => {
                        for e in events {
                            let Some(dir) = watches.iter().find(|(wd, _)| *wd == e.wd).map(|(_, d)| d) else {
                                continue;
                            };
                            if let Some(name) = e.name
                                && names.contains(&(dir.clone(), name.clone()))
                            {
                                pending.insert(dir.join(name));
                            }
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

/// Runs the snapshot watcher, restarting it whenever the set of files
/// changes (after a reload).
pub async fn watch_snapshots(
    mut files: channel::Receiver<Vec<PathBuf>>,
    changed: mpsc::Sender<Vec<PathBuf>>,
    shutdown: CancellationToken,
) {
    loop {
        let list = files.borrow_and_update().clone();
        let round = shutdown.child_token();
        let task = tokio::spawn(watch(list, changed.clone(), round.clone()));
        tokio::select! {
            _ = shutdown.cancelled() => {}
            r = files.changed() => {
                if r.is_err() {
                    round.cancel();
                    let _ = task.await;
                    return;
                }
            }
        }
        round.cancel();
        if let Ok(Err(e)) = task.await {
            tracing::warn!(cause = %e, "snapshot watcher stopped");
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}
