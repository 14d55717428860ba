//! The shipped example fleets (conf/examples/*.yaml) load without errors.

use std::path::Path;

#[test]
fn examples_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        match agentcluster_conf::load(file) {
            Ok(loaded) => {
                // The examples hold demonstration secrets, and a checkout
                // leaves them readable by all: that warning is expected.
                let warnings: Vec<_> = loaded
                    .warnings
                    .iter()
                    .filter(|w| !w.message.contains("holds secrets"))
                    .collect();
                assert!(warnings.is_empty(), "{}: {:?}", file.display(), warnings);
                assert!(!loaded.fleet.agents.is_empty(), "{}", file.display());
            }
            Err(problems) => {
                let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                panic!("{} does not load:\n{}", file.display(), list.join("\n"));
            }
        }
    }
}
