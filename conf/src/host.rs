//! What the defaults depend on: host name, whether we run as root, the
//! user's XDG directories. Read once per load; tests pass their own.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host {
    pub hostname: String,
    /// Effective uid 0: system-wide directories instead of per-user ones.
    pub root: bool,
    pub home: Option<PathBuf>,
    pub xdg_state_home: Option<PathBuf>,
    pub xdg_cache_home: Option<PathBuf>,
}

impl Host {
    pub fn detect() -> Host {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        Host {
            hostname,
            root: effective_uid_is_root(),
            home: abs_env("HOME"),
            xdg_state_home: abs_env("XDG_STATE_HOME"),
            xdg_cache_home: abs_env("XDG_CACHE_HOME"),
        }
    }

    /// `/var/lib/agentcluster` as root, else `$XDG_STATE_HOME/agentcluster`
    /// or `~/.local/state/agentcluster`.
    pub fn state_dir(&self) -> PathBuf {
        self.user_dir(
            "/var/lib/agentcluster",
            self.xdg_state_home.as_deref(),
            ".local/state",
        )
    }

    /// `/var/cache/agentcluster` as root, else `$XDG_CACHE_HOME/agentcluster`
    /// or `~/.cache/agentcluster`.
    pub fn cache_dir(&self) -> PathBuf {
        self.user_dir(
            "/var/cache/agentcluster",
            self.xdg_cache_home.as_deref(),
            ".cache",
        )
    }

    fn user_dir(&self, system: &str, xdg: Option<&Path>, under_home: &str) -> PathBuf {
        if self.root {
            return PathBuf::from(system);
        }
        if let Some(x) = xdg {
            return x.join("agentcluster");
        }
        match &self.home {
            Some(h) => h.join(under_home).join("agentcluster"),
            // No home at all (a bare service account): stay out of `/`.
            None => std::env::temp_dir().join("agentcluster").join(
                Path::new(under_home)
                    .file_name()
                    .unwrap_or_else(|| under_home.as_ref()),
            ),
        }
    }
}

/// An environment variable holding an absolute path (the XDG spec says
/// relative values are to be ignored).
fn abs_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// From the `Uid:` line of /proc/self/status (real, effective, saved, fs).
fn effective_uid_is_root() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(root: bool) -> Host {
        Host {
            hostname: "h".into(),
            root,
            home: Some(PathBuf::from("/home/u")),
            xdg_state_home: None,
            xdg_cache_home: Some(PathBuf::from("/xdg/cache")),
        }
    }

    #[test]
    fn directories() {
        assert_eq!(
            host(true).state_dir(),
            PathBuf::from("/var/lib/agentcluster")
        );
        assert_eq!(
            host(true).cache_dir(),
            PathBuf::from("/var/cache/agentcluster")
        );
        assert_eq!(
            host(false).state_dir(),
            PathBuf::from("/home/u/.local/state/agentcluster")
        );
        assert_eq!(
            host(false).cache_dir(),
            PathBuf::from("/xdg/cache/agentcluster")
        );
    }

    #[test]
    fn detect_reads_something() {
        let h = Host::detect();
        assert!(!h.hostname.is_empty());
    }
}
