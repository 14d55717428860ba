//! The YAML fleet loader over any text: it reports problems (each one with
//! a position) or gives a fleet; it never panics.

use std::path::Path;

/// Runs one fuzz input. Relative paths resolve under a directory that does
/// not exist, so includes and snapshots are looked up and not found.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Path::new("/nonexistent/agentcluster-fuzz/fleet.yaml");
    if let Err(problems) = agentcluster_conf::load_str(text, source) {
        assert!(!problems.is_empty(), "a failed load says why");
    }
}
