//! Names the git commit in `agentcluster --version`: `0.1.0 (git
//! 0123456789ab)`, or the crate version alone when the source is not a git
//! checkout (or git is missing). Runs again when HEAD moves.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    let full = match &commit {
        Some(c) => format!("{version} (git {c})"),
        None => version.to_string(),
    };
    println!("cargo:rustc-env=AGENTCLUSTER_VERSION={full}");
    println!("cargo:rerun-if-changed=build.rs");
    // HEAD, the branch it points to, and packed refs: what moves with a
    // commit or a checkout (each only if it exists, or cargo would run this
    // script on every build).
    let dirs = |arg: &str| git(&["rev-parse", arg]).map(PathBuf::from);
    let (Some(git_dir), Some(common)) = (dirs("--git-dir"), dirs("--git-common-dir")) else {
        return;
    };
    let mut watch = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(common.join(&branch));
        watch.push(git_dir.join(&branch));
    }
    for path in watch.iter().filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
