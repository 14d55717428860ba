//! A real `snmptrapd` on a loopback port, in the foreground, logging each
//! notification as one line on stdout; killed when dropped.

use std::cell::Cell;
use std::process::Command;
use std::time::{Duration, Instant};

use super::imports::{COLD_START, Kind, LocalEngine, Notification, Sender, Target, Value, Version};
use super::{Process, free_port, tempdir};

/// How long [`Trapd::expect`] waits for a line.
const EXPECT_WITHIN: Duration = Duration::from_secs(10);

pub struct Trapd {
    process: Process,
    /// The next line [`Trapd::next`] or [`Trapd::expect`] looks at.
    cursor: Cell<usize>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Trapd {
    /// Starts snmptrapd with `conf` (its snmptrapd.conf) and waits until it
    /// listens. Each notification is logged as `%b|%P|%N|%w|%q|%v` (source
    /// address, security, enterprise, trap type, subtype, varbinds).
    pub fn start(conf: &str) -> Trapd {
        Trapd::start_on(conf, free_port())
    }

    /// Like [`Trapd::start`], on a port chosen before (a target that comes
    /// up late).
    pub fn start_on(conf: &str, port: u16) -> Trapd {
        Trapd::start_logging(conf, port, "%b|%P|%N|%w|%q|%v\n")
    }

    /// Like [`Trapd::start`], logging each notification in `format`
    /// (snmptrapd's `-F`; it must end in `\n`).
    pub fn start_format(conf: &str, format: &str) -> Trapd {
        Trapd::start_logging(conf, free_port(), format)
    }

    fn start_logging(conf: &str, port: u16, format: &str) -> Trapd {
        let dir = tempdir();
        let conf_path = dir.path().join("snmptrapd.conf");
        std::fs::write(&conf_path, conf).expect("write snmptrapd.conf");
        let mut cmd = Command::new("snmptrapd");
        cmd.args(["-f", "-Lo", "-C", "-c"])
            .arg(&conf_path)
            .args(["-M", "/dev/null", "-m", "", "-On", "-F", format])
            .arg(format!("udp:127.0.0.1:{port}"))
            .env("SNMP_PERSISTENT_DIR", dir.path().join("persist"))
            .env("MIBS", "");
        let trapd = Trapd {
            process: Process::spawn(cmd),
            cursor: Cell::new(0),
            port,
            _dir: dir,
        };
        trapd.expect("NET-SNMP version");
        trapd
    }

    /// The next logged line, if one comes `within`.
    pub fn next(&self, within: Duration) -> Option<String> {
        let i = self
            .process
            .stdout
            .wait_for(self.cursor.get(), within, |_| true)?;
        self.cursor.set(i + 1);
        self.process.stdout.get(i)
    }

    /// The next line containing `needle` (bounded wait: 10 s); the lines
    /// before it are passed over.
    pub fn expect(&self, needle: &str) -> String {
        let from = self.cursor.get();
        let begun = Instant::now();
        let Some(i) = self
            .process
            .stdout
            .wait_for(from, EXPECT_WITHIN, |l| l.contains(needle))
        else {
            panic!(
                "snmptrapd never logged {needle:?} within {:?}; it logged {:?}",
                begun.elapsed(),
                self.process.stdout.range(from, usize::MAX)
            );
        };
        self.cursor.set(i + 1);
        self.process.stdout.get(i).unwrap_or_default()
    }

    /// Every line logged so far (the start-up line too).
    pub fn logged(&self) -> Vec<String> {
        self.process.stdout.range(0, usize::MAX)
    }

    /// Waits until snmptrapd has logged everything sent to it before: it
    /// handles datagrams in the order they come, so once a trap of our own
    /// (v2c, community `public`), sent now, is logged, so is all that came
    /// before it. The cursor of [`Trapd::next`] is left where it was.
    pub fn sync(&self) {
        static SYNCS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("sync-{}-{n}", std::process::id());
        let note = Notification {
            trap_oid: COLD_START.to_vec(),
            uptime: 0,
            varbinds: vec![(
                vec![1, 3, 6, 1, 2, 1, 1, 5, 0],
                Value::OctetString(tag.clone().into_bytes()),
            )],
            agent_addr: [127, 0, 0, 1],
        };
        let target = Target {
            address: format!("127.0.0.1:{}", self.port),
            version: Version::V2c,
            kind: Kind::Trap,
            community: b"public".to_vec(),
            user: None,
            retries: 0,
            timeout: Duration::from_secs(1),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let engine = LocalEngine {
                engine_id: vec![0x80, 0, 0x1f, 0x88, 4, b's'],
                boots: 1,
                start: Instant::now(),
            };
            let mut sender = Sender::bind("127.0.0.1:0".parse().expect("an address"), engine)
                .await
                .expect("a socket");
            sender.send(&target, &note).await.expect("the trap is sent");
        });
        let from = self.cursor.get();
        self.expect(&tag);
        self.cursor.set(from);
    }
}
