//! What a valid configuration turns into: defaults, both community forms,
//! templates, includes, legacy files.

mod cluster;
mod data_dir;
mod device_values;
mod files;
mod scenarios;
mod snmp;
mod templates;

use std::net::SocketAddr;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

const LEGACY: &str = "{
    \"__comment__\": [\"This file specifies the behavior of a SNMP agent\"],
    \"name\":     \"Mixed device\",
    \"engineID\": \"mixed\",
    \"active\":\t\"True\",
    \"__comment__\": [\"List of addresses\"],
    \"listen\": {
        \"udp\": [ \"127.0.0.1:33400\", \"127.0.0.1\" ],
        \"udp6\":  \"[::1]:33401\"
    },
    \"snmpv1\": {
        \"users\": [ { \"name\": \"public\" } ],
        \"mib\": { \"public\": \"Linux.snmpwalk\" }
    },
    \"snmpv2c\": {
        \"users\": [ { \"name\": \"public\"}, { \"name\": \"v2c\"} ],
        \"mib\": {
            \"public\":   \"Solaris.snmpwalk\",
            \"v2c\":      \"Linux.snmpwalk\"
        }
    },
    \"snmpv3\": {
        \"users\": [
            {
\t\"name\":      \"usr-snmp\",
                \"authAlgo\":  \"sha\",
                \"privAlgo\":  \"aes\",
                \"authPass\":  \"test-auth-password\",
                \"privPass\":  \"test-priv-password\"
            },
            { \"name\": \"usr-md5\", \"authProtocol\": \"MD5\", \"authKey\": \"test-auth-password\", \"privAlgo\": \"none\" }
        ],
        \"mib\": {
    \t    \"\":                 \"Solaris.snmpwalk\",
    \t    \"Linux\":            \"Linux.snmpwalk\"
        }
    }
}
";
