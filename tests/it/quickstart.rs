//! `docs/quickstart.md`, run: every fleet file on the page passes `check`
//! as written, and the ones the page runs answer the commands it prints,
//! typed as printed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::harness::{Fleet, agentcluster, output, repo_file, tempdir, text};

/// The page's YAML blocks, by the file name of their first line
/// (`# lab.yaml`).
fn fleets() -> Vec<(String, String)> {
    let page = std::fs::read_to_string(repo_file("docs/quickstart.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        if line != "```yaml" {
            continue;
        }
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let name = block
            .first()
            .and_then(|l| l.strip_prefix("# "))
            .unwrap_or_else(|| panic!("a YAML block without its `# NAME.yaml` line: {block:?}"));
        out.push((name.to_string(), block.join("\n") + "\n"));
    }
    out
}

/// The page's command line that starts with `prefix`.
fn command(prefix: &str) -> String {
    let page = std::fs::read_to_string(repo_file("docs/quickstart.md")).unwrap();
    page.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line `{prefix}…` on the page"))
        .split("    #")
        .next()
        .unwrap()
        .trim()
        .to_string()
}

/// `name` from the page, written into `dir` beside a `mibs` link to the
/// repository's snapshots (as the page tells the reader to place it).
fn write(dir: &Path, name: &str) -> std::path::PathBuf {
    let link = dir.join("mibs");
    if !link.exists() {
        std::os::unix::fs::symlink(repo_file("mibs"), &link).unwrap();
    }
    let (_, yaml) = fleets().into_iter().find(|(n, _)| n == name).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    // The page's fleets hold demonstration secrets: keep them private.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn every_fleet_on_the_page_passes_check() {
    let names: Vec<String> = fleets().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["lab.yaml", "printers.yaml", "watched.yaml"]);
    let dir = tempdir();
    for name in &names {
        let path = write(dir.path(), name);
        let out = agentcluster(&["check", "-c", path.to_str().unwrap()]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{name}: {t}");
        assert!(!t.contains("warning"), "{name}: {t}");
    }
}

/// Runs the page's fleet `name` with its files in `dir` (the page's fleets
/// use the per-user defaults, which a test must not touch).
fn run(dir: &Path, name: &str) -> Fleet {
    let path = write(dir, name);
    let yaml = std::fs::read_to_string(&path).unwrap();
    let own = format!(
        "cluster:\n  cache_dir: {d}/cache\n  state_dir: {d}/state\n  control_socket: {d}/control.sock\n",
        d = dir.display()
    );
    let yaml = match yaml.split_once("cluster:\n") {
        Some((before, after)) => format!("{before}{own}{after}"),
        None => format!("{own}{yaml}"),
    };
    std::fs::write(&path, yaml).unwrap();
    Fleet::run(&path, &dir.join("control.sock").display().to_string())
}

fn sh(line: &str) -> String {
    let out = output(
        Command::new("sh")
            .args(["-c", line])
            .env("MIBS", "")
            .env("MIBDIRS", "/nonexistent")
            .env("SNMPCONFPATH", "/dev/null"),
    )
    .unwrap();
    assert!(out.status.success(), "`{line}`: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_lab_answers_snmpv3_as_printed() {
    let dir = tempdir();
    let _fleet = run(dir.path(), "lab.yaml");
    let answer = sh(&command("snmpget -v3 -u ops"));
    assert!(answer.contains("STRING:"), "{answer}");
}

#[test]
fn the_printers_are_distinct_devices_as_printed() {
    let dir = tempdir();
    let _fleet = run(dir.path(), "printers.yaml");
    let answer = sh(&command("snmpget -v2c -c public 127.7.1.43:161"));
    assert!(answer.contains("\"printer-292\""), "{answer}");
    assert!(answer.contains("\"floor 2, desk 92\""), "{answer}");
}
