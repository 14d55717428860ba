//! AGENTCLUSTER-MIB as the real tools read it: `smilint -l 3` (libsmi)
//! reports nothing, and net-snmp's `snmptranslate` resolves every
//! notification and object to the OID the supervisor sends and serves.
//!
//! The module imports SNMPv2-SMI, SNMPv2-TC and SNMPv2-CONF, which Debian
//! ships only in non-free (snmp-mibs-downloader). `scripts/test` unpacks
//! them from the npm package net-snmp into `target/ietf-mibs`; another
//! directory can be given in `AGENTCLUSTER_IETF_MIBS`. Without them these
//! tests say so and skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::imports::{DEFAULT_MIB_ROOT, EventKind};
use crate::harness::{output, repo_file, tempdir, text};

const MODULE: &str = "AGENTCLUSTER-MIB";

/// `(name, number)` of every notification, `mib_root.0.number`.
const NOTIFICATIONS: &[(&str, u32)] = &[
    ("agentStarted", 1),
    ("agentStopped", 2),
    ("agentDied", 3),
    ("agentUnresponsive", 4),
    ("agentRestarting", 5),
    ("agentFailed", 6),
    ("agentConfigChanged", 7),
    ("supervisorStarted", 8),
    ("supervisorStopping", 9),
    ("agentStartFailed", 10),
    ("agentDataReloaded", 11),
    ("agentStarting", 12),
    ("eventsDropped", 13),
    ("reloadFailed", 14),
];

/// Objects and where they are under the root.
const OBJECTS: &[(&str, &str)] = &[
    ("acNotifyAgentName", "1.1.1"),
    ("acNotifyPid", "1.1.2"),
    ("acNotifyState", "1.1.3"),
    ("acNotifyRestarts", "1.1.4"),
    ("acNotifyExitCode", "1.1.5"),
    ("acNotifySignal", "1.1.6"),
    ("acNotifyReason", "1.1.7"),
    ("acNotifyNode", "1.1.8"),
    ("acNotifySeq", "1.1.9"),
    ("acAgentTable", "1.2"),
    ("acAgentEntry", "1.2.1"),
    ("acAgentIndex", "1.2.1.1"),
    ("acAgentName", "1.2.1.2"),
    ("acAgentState", "1.2.1.3"),
    ("acAgentPid", "1.2.1.4"),
    ("acAgentRestarts", "1.2.1.5"),
    ("acAgentLastChange", "1.2.1.6"),
    ("acAgentRequests", "1.2.1.7"),
    ("acAgentEndpoints", "1.2.1.8"),
    ("acAgentCount", "1.3"),
    ("acNode", "1.4"),
    ("acCompliance", "2.2.1"),
];

fn has_module(dir: &Path, name: &str) -> bool {
    ["", ".txt", ".mib", ".my"]
        .iter()
        .any(|ext| dir.join(format!("{name}{ext}")).is_file())
}

/// The directory with the IETF base modules, if there is one.
fn ietf_mibs() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("AGENTCLUSTER_IETF_MIBS") {
        candidates.push(d.into());
    }
    candidates.push(repo_file("target/ietf-mibs"));
    candidates.push("/usr/share/snmp/mibs/ietf".into());
    candidates.push("/usr/share/mibs/ietf".into());
    candidates.into_iter().find(|d| {
        ["SNMPv2-SMI", "SNMPv2-TC", "SNMPv2-CONF"]
            .iter()
            .all(|m| has_module(d, m))
    })
}

/// The base modules, or `None` after saying why the test is skipped.
fn base_modules(test: &str) -> Option<PathBuf> {
    let found = ietf_mibs();
    if found.is_none() {
        eprintln!(
            "SKIPPED {test}: the IETF base MIB modules (SNMPv2-SMI, SNMPv2-TC, SNMPv2-CONF) \
             are not installed; run scripts/test (it unpacks them into target/ietf-mibs) \
             or set AGENTCLUSTER_IETF_MIBS to a directory holding them"
        );
    }
    found
}

/// The directory of NET-SNMP-MIB (netSnmpPlaypen), shipped with net-snmp.
fn net_snmp_mibs() -> PathBuf {
    let d = PathBuf::from("/usr/share/snmp/mibs");
    assert!(
        has_module(&d, "NET-SNMP-MIB"),
        "NET-SNMP-MIB not in {}: install libsnmp-base (net-snmp)",
        d.display()
    );
    d
}

fn smilint(file: &Path, ietf: &Path) -> Output {
    let path = format!("{}:{}", ietf.display(), net_snmp_mibs().display());
    output(
        Command::new("smilint")
            .args(["-l", "3", "-s"])
            .arg(file)
            .env("SMIPATH", path),
    )
    .unwrap_or_else(|e| panic!("cannot run smilint (Debian smitools installed?): {e}"))
}

#[test]
fn smilint_level_3_reports_nothing() {
    let Some(ietf) = base_modules("smilint_level_3_reports_nothing") else {
        return;
    };
    let mib = repo_file("mibs/AGENTCLUSTER-MIB.txt");
    let out = smilint(&mib, &ietf);
    let said = text(&out);
    assert!(out.status.success() && said.is_empty(), "smilint:\n{said}");

    // The lint is not vacuous: a clash it must find in a broken copy.
    let dir = tempdir();
    let broken = dir.path().join("AGENTCLUSTER-MIB.txt");
    let source = std::fs::read_to_string(&mib).expect("read the MIB");
    let clash = source.replace("::= { acNotifyObjects 9 }", "::= { acNotifyObjects 8 }");
    assert_ne!(clash, source);
    std::fs::write(&broken, clash).expect("write");
    let said = text(&smilint(&broken, &ietf));
    assert!(
        said.contains("acNotifySeq"),
        "smilint missed a clash:\n{said}"
    );
}

fn snmptranslate(ietf: &Path, persist: &Path, name: &str) -> Output {
    let path = format!("+{}:{}", ietf.display(), repo_file("mibs").display());
    output(
        Command::new("snmptranslate")
            .args(["-M", &path, "-m", &format!("+{MODULE}"), "-On"])
            .arg(format!("{MODULE}::{name}"))
            .env_remove("MIBS")
            .env_remove("MIBDIRS")
            .env("SNMPCONFPATH", "/dev/null")
            .env("SNMP_PERSISTENT_DIR", persist),
    )
    .unwrap_or_else(|e| panic!("cannot run snmptranslate (net-snmp installed?): {e}"))
}

#[test]
fn snmptranslate_resolves_every_notification_and_object() {
    let Some(ietf) = base_modules("snmptranslate_resolves_every_notification_and_object") else {
        return;
    };
    let persist = tempdir();
    let root: Vec<String> = DEFAULT_MIB_ROOT.iter().map(u32::to_string).collect();
    let root = format!(".{}", root.join("."));
    assert_eq!(
        String::from_utf8_lossy(&snmptranslate(&ietf, persist.path(), "agentclusterMIB").stdout)
            .trim(),
        root,
        "the MIB's root is the configuration's default `events.mib_root`"
    );
    let wanted = NOTIFICATIONS
        .iter()
        .map(|(name, n)| (*name, format!("{root}.0.{n}")))
        .chain(
            OBJECTS
                .iter()
                .map(|(name, tail)| (*name, format!("{root}.{tail}"))),
        );
    for (name, oid) in wanted {
        let out = snmptranslate(&ietf, persist.path(), name);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), oid, "{name}");
    }
    // The mapping the supervisor sends is the MIB's.
    for (name, n) in NOTIFICATIONS {
        let kind = EventKind::ALL
            .iter()
            .find(|k| k.notification_number() == *n);
        assert!(kind.is_some(), "{name}: no event kind sends it");
    }
}
