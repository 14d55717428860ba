//! Where the control socket lives, and its file: the default path, the
//! checks on its directory, the probe that tells a live supervisor from a
//! stale socket, the bind, and the removal of the file when we are done.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const SOCKET_NAME: &str = "control.sock";

/// Where the control socket lives when the configuration does not say:
/// `$XDG_RUNTIME_DIR/agentcluster/control.sock`, else
/// `/run/agentcluster/control.sock` as root, else
/// `/tmp/agentcluster-$UID/control.sock`. The supervisor binds it and the
/// CLI looks for it by the same rule.
pub fn default_control_socket() -> PathBuf {
    default_for(
        std::env::var_os("XDG_RUNTIME_DIR"),
        nix::unistd::geteuid().as_raw(),
    )
}

fn default_for(xdg_runtime_dir: Option<OsString>, euid: u32) -> PathBuf {
    // The XDG spec says a relative (or empty) value must be ignored.
    if let Some(dir) = xdg_runtime_dir
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
    {
        return dir.join("agentcluster").join(SOCKET_NAME);
    }
    if euid == 0 {
        return Path::new("/run/agentcluster").join(SOCKET_NAME);
    }
    PathBuf::from(format!("/tmp/agentcluster-{euid}")).join(SOCKET_NAME)
}

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error(
        "another supervisor is running on {} (stop it, or give this one another cluster.control_socket)",
        .path.display()
    )]
    AlreadyRunning { path: PathBuf },
    #[error("refusing to use {} for the control socket: {reason}", .path.display())]
    Unsafe { path: PathBuf, reason: String },
    #[error("cannot {action} {}: {cause}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ControlError {
    let path = path.to_path_buf();
    move |cause| ControlError::Io {
        action,
        path,
        cause,
    }
}

/// A bound control socket, not yet serving. Dropping it removes the socket
/// file.
#[derive(Debug)]
pub struct ControlListener {
    pub(super) listener: std::os::unix::net::UnixListener,
    pub(super) file: SocketFile,
}

/// The socket file we created; removed on drop, unless it has since been
/// replaced by someone else's.
#[derive(Debug)]
pub(super) struct SocketFile {
    pub(super) path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && meta.dev() == self.dev
            && meta.ino() == self.ino
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), cause = %e, "cannot remove the control socket");
        }
    }
}

/// Creates the control socket at `path`: makes its directory (mode 0700) if
/// missing, refuses if a live supervisor already answers there, replaces a
/// stale socket file, and leaves the new socket with mode 0600. Needs no
/// runtime, so the supervisor can fail before it starts anything.
pub fn bind(path: &Path) -> Result<ControlListener, ControlError> {
    prepare_dir(path)?;
    match probe(path)? {
        Probe::Absent => {}
        Probe::Live => {
            return Err(ControlError::AlreadyRunning {
                path: path.to_path_buf(),
            });
        }
        Probe::Stale => {
            tracing::info!(path = %path.display(), "removing a stale control socket");
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove the stale socket", path)(e)),
            }
        }
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            // Someone bound it between our probe and our bind.
            ControlError::AlreadyRunning {
                path: path.to_path_buf(),
            }
        } else {
            io_error("create the control socket", path)(e)
        }
    })?;
    let meta = std::fs::symlink_metadata(path).map_err(io_error("inspect", path))?;
    let file = SocketFile {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    // The mode after bind depends on the umask; set it explicitly.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_error("set the mode of", path))?;
    listener
        .set_nonblocking(true)
        .map_err(io_error("configure", path))?;
    Ok(ControlListener { listener, file })
}

/// Makes sure the socket's directory exists and that nobody but us (or
/// root) can swap the socket under our feet.
fn prepare_dir(path: &Path) -> Result<(), ControlError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(ControlError::Unsafe {
                    path: path.to_path_buf(),
                    reason: format!("{} is not a directory", dir.display()),
                });
            }
            if let Some(reason) =
                dir_problem(meta.uid(), meta.mode(), nix::unistd::geteuid().as_raw())
            {
                return Err(ControlError::Unsafe {
                    path: path.to_path_buf(),
                    reason: format!("its directory {} {reason}", dir.display()),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_error("create the directory", dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_error("set the mode of", dir))
        }
        Err(e) => Err(io_error("inspect", dir)(e)),
    }
}

/// Why a directory with this owner and mode is not safe for our socket, if
/// it is not. Root may use any directory.
fn dir_problem(owner: u32, mode: u32, euid: u32) -> Option<String> {
    if euid != 0 && owner != euid && owner != 0 {
        return Some(format!(
            "belongs to uid {owner}, not to us (uid {euid}); it could replace the socket"
        ));
    }
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Some("is writable by everyone (and not sticky)".into());
    }
    None
}

enum Probe {
    Absent,
    Live,
    Stale,
}

/// Is something listening on `path`? A non-blocking connect answers at once,
/// even when a live supervisor's backlog is full.
fn probe(path: &Path) -> Result<Probe, ControlError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Probe::Absent),
        Err(e) => return Err(io_error("inspect", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ControlError::Unsafe {
            path: path.to_path_buf(),
            reason: "it exists and is not a socket (remove it, or choose another control_socket)"
                .into(),
        });
    }
    let addr = socket2::SockAddr::unix(path).map_err(io_error("connect to", path))?;
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
        .map_err(io_error("probe", path))?;
    socket
        .set_nonblocking(true)
        .map_err(io_error("probe", path))?;
    match socket.connect(&addr) {
        Ok(()) => Ok(Probe::Live),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Probe::Live),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(Probe::Stale),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Probe::Absent),
        Err(e) => Err(io_error("connect to", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::Response;
    use crate::control::testutil::{Client, start};

    #[test]
    fn default_socket_follows_xdg_then_root_then_tmp() {
        assert_eq!(
            default_for(Some("/run/user/1000".into()), 1000),
            Path::new("/run/user/1000/agentcluster/control.sock")
        );
        assert_eq!(
            default_for(Some("/run/user/0".into()), 0),
            Path::new("/run/user/0/agentcluster/control.sock")
        );
        assert_eq!(
            default_for(None, 0),
            Path::new("/run/agentcluster/control.sock")
        );
        assert_eq!(
            default_for(None, 1000),
            Path::new("/tmp/agentcluster-1000/control.sock")
        );
        // relative or empty XDG_RUNTIME_DIR is ignored
        assert_eq!(
            default_for(Some("run".into()), 1000),
            Path::new("/tmp/agentcluster-1000/control.sock")
        );
        assert_eq!(
            default_for(Some("".into()), 0),
            Path::new("/run/agentcluster/control.sock")
        );
    }

    #[test]
    fn unsafe_directories_are_refused() {
        assert_eq!(dir_problem(1000, 0o40700, 1000), None);
        assert_eq!(dir_problem(0, 0o40755, 1000), None);
        assert_eq!(dir_problem(0, 0o41777, 1000), None); // /tmp
        assert!(dir_problem(1001, 0o40700, 1000).is_some());
        assert!(dir_problem(1000, 0o40777, 1000).is_some());
        assert_eq!(dir_problem(1001, 0o40755, 0), None);
    }

    #[tokio::test]
    async fn socket_is_private_and_removed_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("run").join("agentcluster");
        let path = sub.join("control.sock");
        let server = start(&path);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&dir.path().join("run")), 0o700);
        // an open connection does not hold up shutdown
        let _idle = Client::connect(&path).await;
        server.stop().await;
        assert!(!path.exists(), "socket removed");
        assert!(sub.is_dir());
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "the dead listener left its file");
        let server = start(&path);
        let mut c = Client::connect(&path).await;
        assert!(matches!(
            c.ask(r#"{"cmd":"status"}"#).await,
            Response::Status { .. }
        ));
        server.stop().await;
    }

    #[tokio::test]
    async fn a_second_supervisor_on_a_live_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let server = start(&path);
        let err = bind(&path).unwrap_err();
        assert!(
            matches!(err, ControlError::AlreadyRunning { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "another supervisor is running on {}",
                path.display()
            )),
            "{text}"
        );
        // the first one is untouched
        let mut c = Client::connect(&path).await;
        assert!(matches!(
            c.ask(r#"{"cmd":"status"}"#).await,
            Response::Status { .. }
        ));
        server.stop().await;
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_socket_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        std::fs::write(&path, "precious").unwrap();
        let err = bind(&path).unwrap_err();
        assert!(matches!(err, ControlError::Unsafe { .. }), "{err:?}");
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[tokio::test]
    async fn a_dropped_listener_removes_only_its_own_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = bind(&path).unwrap();
        drop(listener);
        assert!(!path.exists());
        // replaced by another file meanwhile: not ours to remove
        let listener = bind(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "someone else's").unwrap();
        drop(listener);
        assert!(path.exists());
    }
}
