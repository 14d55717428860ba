//! The cache directory: `agentcluster cache list|prune`, and the running
//! supervisor's own upkeep (stores it serves marked as used, stores unused
//! for longer than `cluster.cache_max_age` removed).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use agentcluster_agent::store;

use crate::harness::imports::Signal;
use crate::harness::{
    Fleet, agentcluster, free_port, is, kill, mib, pid_of, poll_until, sys_name_ok, tempdir, text,
};

const DAY: Duration = Duration::from_secs(86_400);

/// Sets the store's last use `days` days back.
fn age(store: &Path, days: u32) {
    fs::File::open(store)
        .unwrap()
        .set_modified(SystemTime::now() - DAY * days)
        .unwrap();
}

fn used_ago(store: &Path) -> Duration {
    fs::metadata(store)
        .unwrap()
        .modified()
        .unwrap()
        .elapsed()
        .unwrap_or_default()
}

/// A snapshot of its own in `dir` (so its store is not shared with other
/// tests' caches by content: each cache is the test's own anyway).
fn snapshot(dir: &Path, name: &str, descr: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(
        &p,
        format!("1.3.6.1.2.1.1.1.0|4|{descr}\n1.3.6.1.2.1.1.5.0|4|{name}\n"),
    )
    .unwrap();
    p
}

/// A supervisor in `dir` (its cache in `dir/cache`) serving one agent of
/// mibs/linux-host.snmprec, with `cluster` lines added to its cluster.
fn serve_linux_host(dir: tempfile::TempDir, cluster: &str) -> Fleet {
    serve_linux_host_at(dir, cluster, free_port())
}

fn serve_linux_host_at(dir: tempfile::TempDir, cluster: &str, port: u16) -> Fleet {
    let yaml = format!(
        "{cluster}agents:\n  - name: a\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        mib("linux-host.snmprec").display()
    );
    Fleet::start_in(dir, &[], &yaml, &[])
}

#[test]
fn prune_removes_only_old_stores_the_configuration_does_not_use() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let used = snapshot(dir.path(), "used.snmprec", "in the fleet");
    let gone = snapshot(dir.path(), "gone.snmprec", "no longer in the fleet");
    let fresh = snapshot(dir.path(), "fresh.snmprec", "another fleet's, used today");
    let [s_used, s_gone, s_fresh] =
        [&used, &gone, &fresh].map(|s| store::compile(s, &cache).unwrap().store_path);
    age(&s_used, 40);
    age(&s_gone, 40);
    age(&s_fresh, 1);
    // What a compile that died leaves, two hours old (no process has this PID).
    let tmp = cache.join(format!(".tmp-{}-0.store", 1 << 23));
    fs::write(&tmp, b"half").unwrap();
    fs::File::open(&tmp)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let config = dir.path().join("fleet.yaml");
    fs::write(
        &config,
        format!(
            "cluster: {{ cache_dir: {}, state_dir: {} }}\nagents:\n  - name: a\n    listen: [\"127.0.0.1:16999\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            cache.display(),
            dir.path().join("state").display(),
            used.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let out = agentcluster(&["cache", "list", "-c", config]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let line = |store: &Path| {
        let name = store.file_name().unwrap().to_str().unwrap().to_string();
        t.lines()
            .find(|l| l.starts_with(&name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{t}"))
            .to_string()
    };
    assert!(
        line(&s_used).contains("40d ago") && line(&s_used).ends_with(used.to_str().unwrap()),
        "{t}"
    );
    assert!(
        line(&s_gone).contains("40d ago") && line(&s_gone).ends_with(" -"),
        "{t}"
    );
    assert!(line(&s_fresh).contains("1d ago"), "{t}");
    assert!(t.contains("3 stores ("), "{t}");
    assert!(t.contains("; 1 used by this configuration"), "{t}");
    let out = agentcluster(&["cache", "list", "--json", "-c", config]);
    assert!(out.status.success(), "{}", text(&out));
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let row = |store: &Path| {
        rows.iter()
            .find(|r| r["store"] == store.to_str().unwrap())
            .unwrap_or_else(|| panic!("{} not in {rows:?}", store.display()))
    };
    assert_eq!(row(&s_used)["snapshot"], used.to_str().unwrap());
    assert_eq!(row(&s_gone)["snapshot"], serde_json::Value::Null);
    assert_eq!(row(&s_used)["bytes"], fs::metadata(&s_used).unwrap().len());
    assert!(
        row(&s_fresh)["used"].as_str().unwrap().ends_with('Z'),
        "{rows:?}"
    );

    // Dry: says what would go, removes nothing.
    let out = agentcluster(&["cache", "prune", "-c", config, "--dry-run"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!("would remove {} (", s_gone.display())),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "would remove {} (left by a compile that died)",
            tmp.display()
        )),
        "{t}"
    );
    assert!(t.contains("would remove 1 store ("), "{t}");
    assert!(t.contains("unused for longer than 30d; kept 2 in"), "{t}");
    assert!(s_gone.exists() && tmp.exists());

    let out = agentcluster(&["cache", "prune", "-c", config]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("removed 1 store ("), "{t}");
    assert!(!s_gone.exists() && !tmp.exists(), "{t}");
    assert!(
        s_used.exists() && s_fresh.exists(),
        "old but used, and fresh, are kept: {t}"
    );

    // A shorter age removes the fresh store of another fleet too, never
    // the configuration's own.
    let out = agentcluster(&["cache", "prune", "-c", config, "--older-than", "12h"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("removed 1 store (") && !s_fresh.exists(), "{t}");
    assert!(s_used.exists(), "{t}");

    let out = agentcluster(&["cache", "prune", "-c", config, "--older-than", "soon"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("`soon` is not a duration"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_supervisor_prunes_at_start_and_marks_what_it_serves_as_used() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let served = mib("linux-host.snmprec");
    let old = snapshot(dir.path(), "old.snmprec", "of a fleet long gone");
    let s_served = store::compile(&served, &cache).unwrap().store_path;
    let s_old = store::compile(&old, &cache).unwrap().store_path;
    age(&s_served, 40);
    age(&s_old, 40);
    let fleet = serve_linux_host(dir, "");
    poll_until(
        "the unused store pruned",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            if s_old.exists() {
                Err("still there".into())
            } else {
                Ok(())
            }
        },
    );
    assert!(s_served.exists(), "the served store stays");
    assert!(
        used_ago(&s_served) < Duration::from_secs(3600),
        "marked as used"
    );
    let (status, log) = fleet.stop();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("cache: removed stores unused for longer than cluster.cache_max_age"),
        "{log}"
    );
}

#[test]
fn a_cache_max_age_of_zero_prunes_nothing_and_a_short_one_is_refused() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let old = snapshot(dir.path(), "old.snmprec", "kept forever");
    let s_old = store::compile(&old, &cache).unwrap().store_path;
    age(&s_old, 400);
    let fleet = serve_linux_host(dir, "  cache_max_age: 0\n");
    // The upkeep runs as the loop starts; a status answer comes after it.
    let _ = fleet.status();
    std::thread::sleep(Duration::from_millis(300));
    assert!(s_old.exists(), "cache_max_age 0 never prunes");
    let (status, log) = fleet.stop();
    assert!(status.success(), "{log}");

    let dir = tempdir();
    let config = dir.path().join("fleet.yaml");
    fs::write(&config, "cluster: { cache_max_age: 10m }\nagents: []\n").unwrap();
    let out = agentcluster(&["check", "-c", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("`cache_max_age` must be 0 (never prune) or at least 1h"),
        "{}",
        text(&out)
    );
}

/// A store served now that someone deletes from the cache directory does
/// not keep its agent from restarting: the start that cannot open it says
/// so, the supervisor compiles it again, and the retry runs.
#[test]
fn a_served_store_deleted_by_hand_is_compiled_again_when_its_agent_restarts() {
    let dir = tempdir();
    let store = store::store_path(&mib("linux-host.snmprec"), &dir.path().join("cache")).unwrap();
    let port = free_port();
    let fleet = serve_linux_host_at(dir, "", port);
    // The upkeep at start has run once a status is answered.
    let before = pid_of(&fleet.status(), "a");
    std::thread::sleep(Duration::from_millis(300));
    fs::remove_file(&store).unwrap();
    let since = fleet.next_seq();
    kill(before, Signal::SIGKILL);
    let mut events = fleet.follow(since);
    let failed = events.wait("a start without its store", |e| is(e, "a", "start-failed"));
    let why = failed["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains(&store.display().to_string()) && why.ends_with("; compiling it again"),
        "{failed}"
    );
    events.wait("ready again", |e| is(e, "a", "ready"));
    assert!(store.exists(), "compiled again");
    assert_ne!(pid_of(&fleet.status(), "a"), before);
    sys_name_ok(port);
    let (status, log) = fleet.stop();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("a store served now is gone from the cache directory: compiling it again"),
        "{log}"
    );
}
