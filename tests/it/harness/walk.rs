//! Walk comparison: a snapshot as the map of what an agent serves, and
//! net-snmp's walk output read back with our own `.snmpwalk` parser (an
//! independent path from the `.snmprec` one).

use std::collections::BTreeMap;
use std::path::Path;

use agentcluster_agent::snapshot::{self, Format};
use agentcluster_agent::value::{Oid, Value};

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
