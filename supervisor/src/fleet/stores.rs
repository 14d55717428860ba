//! The compiled stores a fleet needs: every distinct snapshot compiled
//! once into the cache directory. Blocking (file I/O and CPU): callers on
//! the runtime run it on the blocking pool.

use std::collections::HashMap;
use std::path::PathBuf;

use agentcluster_agent::store;
use agentcluster_conf::Fleet;

use crate::error::Error;

/// Compiles every distinct snapshot of the fleet once. Returns, for each
/// source file, the compiled store file.
pub fn compile_stores(fleet: &Fleet) -> Result<HashMap<PathBuf, PathBuf>, Error> {
    let mut stores = HashMap::new();
    for agent in &fleet.agents {
        for path in agent.snapshots() {
            if stores.contains_key(path) {
                continue;
            }
            let compiled = store::compile(path, &fleet.cluster.cache_dir)?;
            for w in &compiled.warnings {
                tracing::warn!("{w}");
            }
            tracing::debug!(
                snapshot = %path.display(),
                records = compiled.records,
                built = compiled.built,
                "store ready"
            );
            stores.insert(path.clone(), compiled.store_path);
        }
    }
    Ok(stores)
}
