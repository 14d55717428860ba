//! Walk comparison: a snapshot as the map of what an agent serves, and
//! net-snmp's walk output read back with our own `.snmpwalk` parser (an
//! independent path from the `.snmprec` one), compared object by object.

use std::collections::BTreeMap;
use std::path::Path;

use super::imports::snapshot::{self, Format};
use super::imports::{Oid, Value};

/// sysUpTime.0
const SYS_UP_TIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];

/// What an agent was walked with: it decides which objects the agent
/// serves live (with values of its own, not the snapshot's), and SNMPv1
/// cannot carry Counter64 objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walked {
    /// An SNMPv1 agent's walk.
    V1,
    /// An SNMPv2c agent's walk.
    V2c,
    /// An SNMPv3 agent's walk (its engine, MPD, target and USM objects are
    /// live too).
    V3,
}

impl Walked {
    /// Whether the agent serves `oid` live: sysUpTime and the snmp group;
    /// with SNMPv3 also the engine, MPD, target and USM statistics objects.
    pub fn is_live(self, oid: &[u32]) -> bool {
        let v3 = self == Walked::V3
            && (oid.starts_with(&[1, 3, 6, 1, 6, 3, 10, 2, 1])
                || oid.starts_with(&[1, 3, 6, 1, 6, 3, 11, 2, 1])
                || oid == [1, 3, 6, 1, 6, 3, 12, 1, 4, 0]
                || oid == [1, 3, 6, 1, 6, 3, 12, 1, 5, 0]
                || oid.starts_with(&[1, 3, 6, 1, 6, 3, 15, 1, 1]));
        v3 || oid == SYS_UP_TIME || oid.starts_with(&[1, 3, 6, 1, 2, 1, 11])
    }

    /// Live objects a whole walk must show.
    fn always_there(self) -> &'static [&'static [u32]] {
        match self {
            Walked::V1 | Walked::V2c => &[SYS_UP_TIME],
            Walked::V3 => &[
                SYS_UP_TIME,
                &[1, 3, 6, 1, 6, 3, 10, 2, 1, 1, 0],
                &[1, 3, 6, 1, 6, 3, 15, 1, 1, 5, 0],
            ],
        }
    }
}

/// The objects a snapshot serves (exceptions such as noSuchObject left
/// out), by OID.
pub fn snapshot_map(path: &Path) -> BTreeMap<Oid, Value> {
    let snap = snapshot::load(path).expect("snapshot parses");
    snap.records
        .into_iter()
        .filter(|r| {
            !matches!(
                r.value,
                Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView
            )
        })
        .map(|r| (r.oid, r.value))
        .collect()
}

/// net-snmp's walk output, in order; a walk never repeats an OID.
pub fn walk_map(output: &str) -> Vec<(Oid, Value)> {
    let snap = snapshot::parse(output.as_bytes(), Format::Snmpwalk, Path::new("walk"))
        .unwrap_or_else(|e| panic!("net-snmp output parses: {e}"));
    assert!(
        snap.warnings.is_empty(),
        "a walk never repeats an OID: {:?}",
        snap.warnings
    );
    snap.records.into_iter().map(|r| (r.oid, r.value)).collect()
}

/// Compares a walk of a whole agent with the snapshot it serves: the same
/// OIDs in the same order, the same values, except live objects (there,
/// with their own values) and, for SNMPv1, Counter64 objects (absent).
pub fn assert_walk_matches(
    what: &str,
    walked: Walked,
    walk: &[(Oid, Value)],
    expected: &BTreeMap<Oid, Value>,
) {
    let got: Vec<&(Oid, Value)> = walk.iter().filter(|(o, _)| !walked.is_live(o)).collect();
    let carried = |v: &Value| walked != Walked::V1 || !matches!(v, Value::Counter64(_));
    let want: Vec<(&Oid, &Value)> = expected
        .iter()
        .filter(|(o, v)| !walked.is_live(o) && carried(v))
        .collect();
    assert_eq!(got.len(), want.len(), "{what}: number of objects walked");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(&g.0, w.0, "{what}: OID order");
        assert_eq!(&g.1, w.1, "{what}: value of {:?}", g.0);
    }
    for live in walked.always_there() {
        assert!(
            walk.iter().any(|(o, _)| o == live),
            "{what}: {live:?} served live"
        );
    }
}
