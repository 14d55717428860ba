//! systemd service notifications (`sd_notify`): readiness, status line,
//! watchdog pings and stopping. Every function is a no-op when
//! `NOTIFY_SOCKET` is not set, so running outside systemd is never an error;
//! a notification that cannot be delivered is logged, never fatal.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends `states` to the service manager, if there is one. The environment
/// is left alone (unsetting it is not thread-safe); agent processes cannot
/// notify in our name anyway with `NotifyAccess=main`.
fn send(states: &[NotifyState<'_>], what: &str) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(cause = %e, "cannot notify systemd ({what})");
    }
}

/// `READY=1` with a `STATUS=` line: the initial fleet has been started.
pub fn ready(status: &str) {
    send(
        &[NotifyState::Ready, NotifyState::Status(one_line(status))],
        "ready",
    );
}

/// `STATUS=`: the line `systemctl status` shows, e.g. `"998/1000 agents
/// running, 2 failed"`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(one_line(status))], "status");
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping], "stopping");
}

/// How often to call [`watchdog_ping`]: half of `WATCHDOG_USEC` when
/// systemd enabled the watchdog for this very process (`WATCHDOG_PID` is our
/// pid), `None` otherwise.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec) / 2)
    } else {
        None
    }
}

/// `WATCHDOG=1`: the main loop is healthy. Call it from that loop only, so a
/// stuck supervisor stops pinging and systemd restarts it.
pub fn watchdog_ping() {
    if let Err(e) = sd_notify::notify(false, &[NotifyState::Watchdog]) {
        // Every few seconds: keep it out of the default log level.
        tracing::debug!(cause = %e, "cannot send the systemd watchdog ping");
    }
}

/// A status line must not carry a newline: it would start a new
/// `KEY=value` assignment in the datagram.
fn one_line(s: &str) -> &str {
    s.split(['\n', '\r']).next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::process::Command;

    /// Set in the child test process started by [`notifications_reach_the_socket`].
    const CHILD: &str = "AGENTCLUSTER_NOTIFY_TEST_CHILD";

    #[test]
    fn status_lines_stay_on_one_line() {
        assert_eq!(one_line("3/3 agents running"), "3/3 agents running");
        assert_eq!(one_line("a\nWATCHDOG=1"), "a");
        assert_eq!(one_line("a\r\nb"), "a");
        assert_eq!(one_line(""), "");
    }

    /// Runs one of the `child_*` tests below in a fresh copy of this test
    /// binary, with `env` set: the environment of this process is never
    /// changed, so no test can race on it. `WATCHDOG_PID=$$` is the child's
    /// own pid (the shell execs it).
    fn run_child(test: &str, env: &[(&str, &str)], watchdog_pid_is_child: bool) -> String {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = if watchdog_pid_is_child {
            let mut c = Command::new("/bin/sh");
            c.arg("-c")
                .arg(r#"WATCHDOG_PID=$$ exec "$0" "$@""#)
                .arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env(CHILD, "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{test}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 passed"), "{test} did not run: {stdout}");
        stdout
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn notifications_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let p = path.to_str().unwrap();

        run_child(
            "systemd::tests::child_ready",
            &[("NOTIFY_SOCKET", p)],
            false,
        );
        let msg = recv(&sock);
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines, ["READY=1", "STATUS=3/3 agents running"], "{msg:?}");
        assert_eq!(recv(&sock), "STATUS=2/3 agents running, 1 failed\n");
        assert_eq!(recv(&sock), "WATCHDOG=1\n");
        assert_eq!(recv(&sock), "STOPPING=1\n");

        // The watchdog: half of WATCHDOG_USEC, for our pid only.
        run_child(
            "systemd::tests::child_watchdog",
            &[("NOTIFY_SOCKET", p), ("WATCHDOG_USEC", "30000000")],
            true,
        );
        run_child(
            "systemd::tests::child_no_watchdog",
            &[
                ("NOTIFY_SOCKET", p),
                ("WATCHDOG_USEC", "30000000"),
                ("WATCHDOG_PID", "1"),
            ],
            false,
        );
        run_child(
            "systemd::tests::child_no_watchdog",
            &[("WATCHDOG_USEC", "30000000")],
            false,
        );

        // Without NOTIFY_SOCKET nothing is sent and nothing fails.
        run_child("systemd::tests::child_ready", &[], false);
        // A socket nobody listens on any more: logged, not fatal.
        let gone = dir.path().join("gone.sock");
        drop(UnixDatagram::bind(&gone).unwrap());
        run_child(
            "systemd::tests::child_ready",
            &[("NOTIFY_SOCKET", gone.to_str().unwrap())],
            false,
        );
        sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        assert!(sock.recv(&mut buf).is_err(), "nothing more arrived");
    }

    // The children: they do their work only when started by the test above.

    #[test]
    fn child_ready() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        ready("3/3 agents running");
        status("2/3 agents running, 1 failed");
        watchdog_ping();
        stopping();
    }

    #[test]
    fn child_watchdog() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        assert_eq!(watchdog_interval(), Some(Duration::from_secs(15)));
    }

    #[test]
    fn child_no_watchdog() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        assert_eq!(watchdog_interval(), None);
    }
}
