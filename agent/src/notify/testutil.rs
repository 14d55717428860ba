//! What the notification tests share: a small coldStart and a local
//! engine to send it as.

use std::time::Instant;

use super::{COLD_START, LocalEngine, Notification};
use crate::wire::value::Value;

/// A coldStart with one varbind (sysName.0 = "x"), from 127.0.0.1.
pub(crate) fn note() -> Notification {
    Notification {
        trap_oid: COLD_START.to_vec(),
        uptime: 1,
        varbinds: vec![(
            vec![1, 3, 6, 1, 2, 1, 1, 5, 0],
            Value::OctetString(b"x".to_vec()),
        )],
        agent_addr: [127, 0, 0, 1],
    }
}

/// An engine that has booted once, just now.
pub(crate) fn local() -> LocalEngine {
    LocalEngine {
        engine_id: vec![0x80, 0, 0x1f, 0x88, 5, 1, 2, 3],
        boots: 1,
        start: Instant::now(),
    }
}
