//! `agentcluster cache list|prune`: the compiled stores in a cache
//! directory, which snapshot of the configuration each one is, and removing
//! those nothing has used for a while (docs/snapshots.md#the-cache-directory).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use agentcluster_agent::store;
use agentcluster_conf::{Fleet, plural};
use clap::{Args, Subcommand};

use crate::{UserError, default_fleet};

/// The age `prune` uses when neither `--older-than` nor the
/// configuration's `cluster.cache_max_age` gives one.
const DEFAULT_AGE: Duration = Duration::from_secs(30 * 86_400);

#[derive(Subcommand)]
pub enum CacheCommand {
    /// List the compiled stores, with their size, when each was last used,
    /// and the snapshot of the configuration each one is.
    List {
        #[command(flatten)]
        place: Where,
        /// One JSON object a line per store: `store`, `bytes`, `used`
        /// (RFC 3339), `snapshot` (null when not the configuration's).
        #[arg(long)]
        json: bool,
    },
    /// Remove the stores the configuration does not use and nothing has
    /// used for a while (and the leftovers of compiles that died).
    Prune {
        #[command(flatten)]
        place: Where,
        /// Remove stores unused for longer than this (default: the
        /// configuration's `cluster.cache_max_age`, or 30d when that is 0).
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Option<Duration>,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which cache directory, and which configuration's snapshots are in use.
#[derive(Args)]
pub struct Where {
    /// Fleet configuration file: its `cluster.cache_dir`, and the stores of
    /// its snapshots are kept (default: the embedded default fleet's).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The cache directory, instead of the configuration's.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

fn parse_age(s: &str) -> Result<Duration, String> {
    agentcluster_conf::parse_duration(s)
        .ok_or_else(|| format!("`{s}` is not a duration (write e.g. 12h, 7d, 30d)"))
}

pub fn run(command: CacheCommand, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    match command {
        CacheCommand::List { place, json } => list(&place.resolve(config)?, json),
        CacheCommand::Prune {
            place,
            older_than,
            dry_run,
        } => {
            let place = place.resolve(config)?;
            let age = older_than.unwrap_or(if place.max_age.is_zero() {
                DEFAULT_AGE
            } else {
                place.max_age
            });
            prune(&place, age, dry_run)
        }
    }
}

/// A cache directory and the stores the configuration uses in it.
struct Place {
    dir: PathBuf,
    /// Store file → the snapshot it is compiled from.
    used: HashMap<PathBuf, PathBuf>,
    /// The configuration's `cluster.cache_max_age`.
    max_age: Duration,
}

impl Where {
    fn resolve(&self, before: Option<&Path>) -> anyhow::Result<Place> {
        let fleet = match self.config.as_deref().or(before) {
            Some(file) => crate::load_shared_fleet(file)?,
            None => default_fleet::load()?,
        };
        let dir = self
            .cache_dir
            .clone()
            .unwrap_or_else(|| fleet.cluster.cache_dir.clone());
        Ok(Place {
            used: used_stores(&fleet, &dir),
            max_age: fleet.cluster.cache_max_age,
            dir,
        })
    }
}

/// The store each snapshot of `fleet` has (or would have) in `dir`. A
/// snapshot that cannot be read has none.
fn used_stores(fleet: &Fleet, dir: &Path) -> HashMap<PathBuf, PathBuf> {
    fleet
        .snapshots()
        .into_iter()
        .filter_map(|source| Some((store::store_path(source, dir).ok()?, source.clone())))
        .collect()
}

fn list(place: &Place, json: bool) -> anyhow::Result<ExitCode> {
    let stores = store::cached(&place.dir).map_err(|e| cannot_read(&place.dir, e))?;
    let now = SystemTime::now();
    let mut out = std::io::stdout().lock();
    if json {
        for s in &stores {
            let line = serde_json::json!({
                "store": s.path,
                "bytes": s.bytes,
                "used": agentcluster_supervisor::rfc3339_millis(s.used),
                "snapshot": place.used.get(&s.path),
            });
            writeln!(out, "{line}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !stores.is_empty() {
        writeln!(
            out,
            "{:<38} {:>10} {:>9}  SNAPSHOT",
            "STORE", "SIZE", "USED"
        )?;
    }
    for s in &stores {
        let name = s.path.file_name().unwrap_or_default().to_string_lossy();
        let source = place
            .used
            .get(&s.path)
            .map_or_else(|| "-".to_string(), |p| p.display().to_string());
        writeln!(
            out,
            "{name:<38} {:>10} {:>9}  {source}",
            mib(s.bytes),
            ago(now, s.used)
        )?;
    }
    let in_use = stores
        .iter()
        .filter(|s| place.used.contains_key(&s.path))
        .count();
    writeln!(
        out,
        "{} ({}) in {}; {in_use} used by this configuration",
        plural(stores.len(), "store"),
        mib(stores.iter().map(|s| s.bytes).sum()),
        place.dir.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn prune(place: &Place, age: Duration, dry: bool) -> anyhow::Result<ExitCode> {
    let keep: Vec<PathBuf> = place.used.keys().cloned().collect();
    let now = SystemTime::now();
    let pruned =
        store::prune(&place.dir, &keep, age, now, dry).map_err(|e| cannot_read(&place.dir, e))?;
    let mut out = std::io::stdout().lock();
    let verb = if dry { "would remove" } else { "removed" };
    for s in &pruned.removed {
        writeln!(
            out,
            "{verb} {} ({}, used {})",
            s.path.display(),
            mib(s.bytes),
            ago(now, s.used)
        )?;
    }
    for t in &pruned.temporaries {
        writeln!(out, "{verb} {} (left by a compile that died)", t.display())?;
    }
    writeln!(
        out,
        "{verb} {} ({}) unused for longer than {}; kept {} in {}",
        plural(pruned.removed.len(), "store"),
        mib(pruned.bytes()),
        days(age),
        pruned.kept,
        place.dir.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn cannot_read(dir: &Path, e: std::io::Error) -> anyhow::Error {
    UserError(format!("cache directory {}: {e}", dir.display())).into()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// How long ago `then` was, in its largest whole unit (`3d ago`).
fn ago(now: SystemTime, then: SystemTime) -> String {
    match now.duration_since(then) {
        Ok(d) => format!("{} ago", days(d)),
        Err(_) => "now".to_string(),
    }
}

/// A duration in its largest whole unit: `30d`, `12h`, `5m`, `40s`.
fn days(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        86_400.. => format!("{}d", s / 86_400),
        3_600.. => format!("{}h", s / 3_600),
        60.. => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_in_their_largest_whole_unit() {
        let now = SystemTime::now();
        let before = |s: u64| now - Duration::from_secs(s);
        assert_eq!(ago(now, before(40 * 86_400 + 5)), "40d ago");
        assert_eq!(ago(now, before(5 * 3_600 + 59)), "5h ago");
        assert_eq!(ago(now, before(61)), "1m ago");
        assert_eq!(ago(now, before(0)), "0s ago");
        assert_eq!(ago(now, now + Duration::from_secs(9)), "now");
        assert_eq!(days(DEFAULT_AGE), "30d");
    }
}
