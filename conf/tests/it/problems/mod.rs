//! Every kind of problem a configuration can have, reported with its place.

mod device_values;
mod file;
mod names;
mod snmp;
mod templates;
mod values;

const AGENT_A: &str = "  - name: a
    listen: [\"127.0.0.1:10161\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
";
