//! The embedded default fleet: `agentcluster run` without `-c` writes the
//! fleet file and its three snapshots to a per-user directory (only when they
//! changed) and runs them from there.

use std::fs;
use std::path::PathBuf;

use anyhow::Context as _;

const FILES: &[(&str, &[u8])] = &[
    (
        "default-fleet.yaml",
        include_bytes!("../mibs/default-fleet.yaml"),
    ),
    (
        "cisco-c3750.snmprec",
        include_bytes!("../mibs/cisco-c3750.snmprec"),
    ),
    (
        "linux-host.snmprec",
        include_bytes!("../mibs/linux-host.snmprec"),
    ),
    ("apc-ups.snmprec", include_bytes!("../mibs/apc-ups.snmprec")),
    (
        "LICENSE.snmpsim-data",
        include_bytes!("../mibs/LICENSE.snmpsim-data"),
    ),
];

/// Where the default fleet's files go: beside the per-user cache.
fn dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("agentcluster").join("default-fleet")
}

/// Materialises and loads the default fleet.
pub fn load() -> anyhow::Result<agentcluster_conf::Fleet> {
    let dir = dir();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, bytes) in FILES {
        let path = dir.join(name);
        if fs::read(&path).ok().as_deref() != Some(*bytes) {
            fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    let path = dir.join("default-fleet.yaml");
    let text = std::str::from_utf8(FILES[0].1).context("embedded fleet is not UTF-8")?;
    match agentcluster_conf::load_str(text, &path) {
        Ok(loaded) => Ok(loaded.fleet),
        Err(problems) => {
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            anyhow::bail!(
                "the embedded default fleet is invalid:\n{}",
                text.join("\n")
            )
        }
    }
}
