//! `agentcluster record TARGET -o FILE`: walks a live device with the
//! agent crate's command generator into a sorted snapshot, with net-snmp's
//! option letters. Everything after `record` on the command line is its
//! own ([`split_args`]): `-v` and `-c` mean what they mean to `snmpwalk`,
//! not the global `--verbose` or a configuration file.

use std::ffi::OsString;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentcluster_agent::client::pdu::{NO_SUCH_NAME, TOO_BIG};
use agentcluster_agent::client::rates::{self, Seen};
use agentcluster_agent::client::{
    Client, ClientError, Credentials, Op, Security, Transport, Walk, WalkError,
};
use agentcluster_agent::snapshot::{self, Format, Record};
use agentcluster_agent::usm::{AuthProtocol, PrivProtocol};
use agentcluster_agent::value::{DisplayOid, Oid};
use anyhow::Context as _;
use clap::{Parser, ValueEnum};

use crate::snapshot_cmd::write_atomically;
use crate::{EXIT_USER, UserError};

/// The global options that take a value, as they may come before `record`.
const GLOBAL_WITH_VALUE: &[&str] = &["--log-format", "--control", "-c", "--config"];

/// Splits the command line at `record`: the global options before it, and
/// the command's own arguments after it (`None` for any other command).
pub fn split_args(args: Vec<OsString>) -> (Vec<OsString>, Vec<OsString>) {
    let mut i = 1;
    while let Some(arg) = args.get(i) {
        let text = arg.to_string_lossy();
        if text == "record" {
            let mut before = args;
            let after = before.split_off(i + 1);
            return (before, after);
        }
        if GLOBAL_WITH_VALUE.contains(&text.as_ref()) {
            i += 2;
        } else if text.starts_with('-') && text != "-" && text != "--" {
            i += 1;
        } else {
            break;
        }
    }
    (args, Vec::new())
}

/// `record`'s own command-line definition, for its manual page.
pub fn command() -> clap::Command {
    <RecordArgs as clap::CommandFactory>::command()
}

/// `agentcluster record`'s arguments.
#[derive(Parser, Debug)]
#[command(
    name = "agentcluster record",
    no_binary_name = true,
    about = "Walk a live SNMP device into a snapshot file (.snmprec, or .snmpwalk by the output's extension)",
    after_help = "TARGET is net-snmp's: HOST, HOST:PORT, udp:HOST:PORT, udp6:[ADDR]:PORT (port 161 by default).\n\
                  The whole tree from 1.3.6.1 is walked unless --subtree says otherwise."
)]
struct RecordArgs {
    /// The device: HOST, HOST:PORT, udp:HOST:PORT, udp6:[ADDR]:PORT.
    target: String,
    /// The snapshot to write; `.snmprec`, `.snmpwalk` or `.sapwalk` by its extension.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// SNMP version.
    #[arg(short = 'v', value_enum, default_value_t = SnmpVersion::V2c, value_name = "1|2c|3")]
    version: SnmpVersion,
    /// Community (SNMPv1/v2c).
    #[arg(short = 'c', default_value = "public", value_name = "COMMUNITY")]
    community: String,
    /// SNMPv3 user name.
    #[arg(short = 'u', value_name = "USER")]
    user: Option<String>,
    /// SNMPv3 security level (default: as far as -A and -X go).
    #[arg(short = 'l', value_enum, value_name = "LEVEL", ignore_case = true)]
    level: Option<Level>,
    /// Authentication protocol: MD5, SHA, SHA-224, SHA-256, SHA-384, SHA-512.
    #[arg(short = 'a', value_parser = auth_protocol, value_name = "PROTO", default_value = "MD5")]
    auth_protocol: AuthProtocol,
    /// Authentication password.
    #[arg(short = 'A', value_name = "PASS")]
    auth_password: Option<String>,
    /// Privacy protocol: DES, 3DES, AES (AES-128), AES-192, AES-256, AES-192-C, AES-256-C.
    #[arg(short = 'x', value_parser = priv_protocol, value_name = "PROTO", default_value = "DES")]
    priv_protocol: PrivProtocol,
    /// Privacy password.
    #[arg(short = 'X', value_name = "PASS")]
    priv_password: Option<String>,
    /// SNMPv3 context name.
    #[arg(short = 'n', default_value = "", value_name = "CONTEXT")]
    context: String,
    /// The device's engine ID in hex (else discovered).
    #[arg(short = 'e', value_parser = hex_id, value_name = "ENGINEID")]
    engine_id: Option<Vec<u8>>,
    /// The context engine ID in hex (else the device's engine ID).
    #[arg(short = 'E', value_parser = hex_id, value_name = "ENGINEID")]
    context_engine_id: Option<Vec<u8>>,
    /// Seconds to wait for each answer.
    #[arg(short = 't', default_value_t = 1.0, value_name = "SECONDS")]
    timeout: f64,
    /// Times a request is sent again before the walk stops.
    #[arg(short = 'r', default_value_t = 5, value_name = "RETRIES")]
    retries: u32,
    /// Walk this subtree (repeatable; default the whole tree, 1.3.6.1).
    #[arg(long = "subtree", value_parser = oid, value_name = "OID")]
    subtrees: Vec<Oid>,
    /// Leave this subtree out of the file (repeatable).
    #[arg(long = "exclude", value_parser = oid, value_name = "OID")]
    excludes: Vec<Oid>,
    /// GETBULK's max-repetitions (halved when the device answers tooBig).
    #[arg(long, default_value_t = 25, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_repetitions: u32,
    /// Walk twice, SECONDS apart, and write the counters that moved as
    /// `numeric` records with the rate observed (.snmprec only).
    #[arg(long, value_name = "SECONDS")]
    rates: Option<f64>,
    /// Go on after the last record of FILE, the partial result of a walk
    /// that timed out, and add what follows to it.
    #[arg(long, conflicts_with = "rates")]
    resume: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SnmpVersion {
    #[value(name = "1")]
    V1,
    #[value(name = "2c")]
    V2c,
    #[value(name = "3")]
    V3,
}

/// net-snmp's `-l`: the names are theirs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[allow(clippy::enum_variant_names)]
enum Level {
    #[value(name = "noAuthNoPriv")]
    NoAuthNoPriv,
    #[value(name = "authNoPriv")]
    AuthNoPriv,
    #[value(name = "authPriv")]
    AuthPriv,
}

fn auth_protocol(s: &str) -> Result<AuthProtocol, String> {
    Ok(match s.to_ascii_uppercase().replace('_', "-").as_str() {
        "MD5" => AuthProtocol::Md5,
        "SHA" | "SHA1" | "SHA-1" => AuthProtocol::Sha1,
        "SHA-224" | "SHA224" => AuthProtocol::Sha224,
        "SHA-256" | "SHA256" => AuthProtocol::Sha256,
        "SHA-384" | "SHA384" => AuthProtocol::Sha384,
        "SHA-512" | "SHA512" => AuthProtocol::Sha512,
        _ => return Err("one of MD5, SHA, SHA-224, SHA-256, SHA-384, SHA-512".into()),
    })
}

fn priv_protocol(s: &str) -> Result<PrivProtocol, String> {
    Ok(match s.to_ascii_uppercase().replace('_', "-").as_str() {
        "DES" => PrivProtocol::Des,
        "3DES" | "3DESEDE" => PrivProtocol::TripleDes,
        "AES" | "AES128" | "AES-128" => PrivProtocol::Aes128,
        "AES192" | "AES-192" => PrivProtocol::Aes192,
        "AES256" | "AES-256" => PrivProtocol::Aes256,
        "AES192C" | "AES-192-C" => PrivProtocol::Aes192C,
        "AES256C" | "AES-256-C" => PrivProtocol::Aes256C,
        _ => {
            return Err(
                "one of DES, 3DES, AES (AES-128), AES-192, AES-256, AES-192-C, AES-256-C".into(),
            );
        }
    })
}

fn hex_id(s: &str) -> Result<Vec<u8>, String> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let bytes: Result<Vec<u8>, _> = (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or(())
        })
        .collect();
    match bytes {
        Ok(b) if (5..=32).contains(&b.len()) => Ok(b),
        _ => Err("an engine ID is 5 to 32 bytes in hex".into()),
    }
}

fn oid(s: &str) -> Result<Oid, String> {
    let arcs: Result<Oid, _> = s
        .trim_start_matches('.')
        .split('.')
        .map(str::parse::<u32>)
        .collect();
    match arcs {
        Ok(a) if a.len() >= 2 => Ok(a),
        _ => Err("a numeric OID such as 1.3.6.1.2.1.2".into()),
    }
}

/// What stopped a walk before its end.
#[derive(Debug)]
enum Stop {
    /// No answer after every retry: the walk may go on from where it was.
    Timeout(ClientError),
    /// An answer that would loop.
    Loop(WalkError),
    /// Anything else: a Report, an error-status, a socket error.
    Failed(anyhow::Error),
}

/// Progress on stderr when it is a terminal: objects, objects per second,
/// the subtree walked now.
struct Progress {
    on: bool,
    begun: Instant,
    shown: Instant,
    pass: &'static str,
}

impl Progress {
    fn new(pass: &'static str) -> Progress {
        let now = Instant::now();
        Progress {
            on: std::io::stderr().is_terminal(),
            begun: now,
            shown: now,
            pass,
        }
    }

    fn tick(&mut self, objects: usize, subtree: Option<&Oid>) {
        if !self.on || self.shown.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.shown = Instant::now();
        let secs = self.begun.elapsed().as_secs_f64().max(0.001);
        let subtree = subtree
            .map(|s| DisplayOid(s).to_string())
            .unwrap_or_default();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K{}{objects} objects, {:.0} OIDs/s, walking {subtree}",
            self.pass,
            objects as f64 / secs
        );
        let _ = err.flush();
    }

    fn clear(&self) {
        if self.on {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}

pub fn run(args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let args = match RecordArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return Ok(if e.use_stderr() {
                ExitCode::from(EXIT_USER)
            } else {
                ExitCode::SUCCESS
            });
        }
    };
    let user_error = |m: String| anyhow::Error::new(UserError(m));
    let format = Format::from_path(&args.output).ok_or_else(|| {
        user_error(format!(
            "{}: the extension must be .snmprec, .snmpwalk or .sapwalk",
            args.output.display()
        ))
    })?;
    if args.rates.is_some() && format != Format::Snmprec {
        return Err(user_error(
            "--rates writes numeric variations, which only .snmprec holds".into(),
        ));
    }
    let rates = match args.rates {
        Some(s) if !(s.is_finite() && s > 0.0 && s <= 86_400.0) => {
            return Err(user_error("--rates takes 0 to 86400 seconds".into()));
        }
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
        return Err(user_error("-t takes 0 to 3600 seconds".into()));
    }
    let security = security(&args).map_err(user_error)?;
    let peer = Transport::parse(&args.target)
        .and_then(|t| t.resolve())
        .map_err(user_error)?;
    let earlier = if args.resume {
        let snap = snapshot::load(&args.output)
            .map_err(|e| user_error(format!("--resume needs the partial file: {e}")))?;
        snap.records
    } else {
        Vec::new()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(record(&args, peer, security, format, rates, earlier))
}

fn security(args: &RecordArgs) -> Result<Security, String> {
    Ok(match args.version {
        SnmpVersion::V1 | SnmpVersion::V2c => Security::Community {
            v2c: args.version == SnmpVersion::V2c,
            community: args.community.as_bytes().to_vec(),
        },
        SnmpVersion::V3 => {
            let name = args.user.clone().ok_or("SNMPv3 needs a user: -u USER")?;
            let level = args
                .level
                .unwrap_or(match (&args.auth_password, &args.priv_password) {
                    (Some(_), Some(_)) => Level::AuthPriv,
                    (Some(_), None) => Level::AuthNoPriv,
                    _ => Level::NoAuthNoPriv,
                });
            let pass = |p: &Option<String>, flag: &str| {
                p.clone().filter(|p| p.len() >= 8).ok_or(format!(
                    "-l {level:?} needs {flag} PASS of at least 8 characters"
                ))
            };
            let auth = match level {
                Level::NoAuthNoPriv => None,
                _ => Some((args.auth_protocol, pass(&args.auth_password, "-A")?)),
            };
            let privacy = match level {
                Level::AuthPriv => Some((args.priv_protocol, pass(&args.priv_password, "-X")?)),
                _ => None,
            };
            Security::Usm {
                user: Credentials {
                    name: name.into_bytes(),
                    auth,
                    privacy,
                },
                context: args.context.as_bytes().to_vec(),
                context_engine_id: args.context_engine_id.clone(),
                engine_id: args.engine_id.clone(),
            }
        }
    })
}

/// Walks the subtrees once; what it kept goes to `seen`, stamped with the
/// arrival of its answer.
async fn pass(
    client: &mut Client,
    walk: &mut Walk,
    bulk: Option<u32>,
    progress: &mut Progress,
    seen: &mut Vec<Seen>,
) -> Result<(), Stop> {
    let mut reps = bulk;
    while let Some(from) = walk.next_oid().cloned() {
        let op = match reps {
            Some(max_repetitions) => Op::GetBulk { max_repetitions },
            None => Op::GetNext,
        };
        let answer = match client.request(op, std::slice::from_ref(&from)).await {
            Ok(a) => a,
            Err(e @ ClientError::Timeout { .. }) => return Err(Stop::Timeout(e)),
            Err(e) => return Err(Stop::Failed(e.into())),
        };
        match answer.error_status {
            0 => {}
            TOO_BIG if reps.is_some_and(|r| r > 1) => {
                reps = reps.map(|r| (r / 2).max(1));
                continue;
            }
            NO_SUCH_NAME if reps.is_none() => {
                walk.end_of_view();
                continue;
            }
            status => {
                return Err(Stop::Failed(anyhow::anyhow!(
                    "{} answered error-status {status}{} to a request after {}",
                    client.peer(),
                    if status == TOO_BIG { " (tooBig)" } else { "" },
                    DisplayOid(&from)
                )));
            }
        }
        if answer.varbinds.is_empty() {
            return Err(Stop::Failed(anyhow::anyhow!(
                "{} answered a request after {} without any varbind",
                client.peer(),
                DisplayOid(&from)
            )));
        }
        let at = Instant::now();
        walk.feed(answer.varbinds, &mut |oid, value| {
            seen.push(Seen { oid, value, at })
        })
        .map_err(Stop::Loop)?;
        progress.tick(seen.len(), walk.current());
    }
    Ok(())
}

async fn record(
    args: &RecordArgs,
    peer: std::net::SocketAddr,
    security: Security,
    format: Format,
    rates: Option<Duration>,
    earlier: Vec<Record>,
) -> anyhow::Result<ExitCode> {
    let begun = Instant::now();
    let mut client = Client::connect(
        peer,
        security,
        Duration::from_secs_f64(args.timeout),
        args.retries,
    )
    .await
    .with_context(|| format!("cannot open a socket towards {peer}"))?;
    let subtrees = if args.subtrees.is_empty() {
        vec![vec![1, 3, 6, 1]]
    } else {
        args.subtrees.clone()
    };
    let bulk = (args.version != SnmpVersion::V1).then_some(args.max_repetitions);
    let mut walk = Walk::new(subtrees, args.excludes.clone());
    if let Some(last) = earlier.iter().map(|r| &r.oid).max() {
        walk.resume_after(last);
    }
    let fresh = walk.clone();
    let mut seen = Vec::new();
    let mut progress = Progress::new(if rates.is_some() { "walk 1: " } else { "" });
    let first = pass(&mut client, &mut walk, bulk, &mut progress, &mut seen).await;
    progress.clear();
    let records: Vec<Record> = match (first, rates) {
        (Ok(()), None) => plain(seen),
        (Ok(()), Some(apart)) => {
            tokio::time::sleep_until((begun + apart).into()).await;
            let mut again = fresh.clone();
            let mut second = Vec::new();
            let mut progress = Progress::new("walk 2: ");
            let r = pass(&mut client, &mut again, bulk, &mut progress, &mut second).await;
            progress.clear();
            if let Err(stop) = r {
                return Err(stopped_without_file(stop, &again));
            }
            walk = again;
            rates::records(&seen, second)
        }
        (Err(stop), rates) => {
            if rates.is_some() || matches!(stop, Stop::Failed(_)) {
                return Err(stopped_without_file(stop, &walk));
            }
            let got = seen.len();
            let all = merged(earlier, plain(seen));
            if all.is_empty() {
                return Err(stopped_without_file(stop, &walk));
            }
            write(&args.output, format, &all)?;
            let at = walk
                .position()
                .or(walk.current())
                .map(|o| DisplayOid(o).to_string())
                .unwrap_or_default();
            let (why, next) = match stop {
                Stop::Timeout(e) => (
                    e.to_string(),
                    "run the same command with --resume to go on from there",
                ),
                Stop::Loop(e) => (e.to_string(), "the device's MIB view loops there"),
                Stop::Failed(e) => (e.to_string(), ""),
            };
            return Err(anyhow::anyhow!(
                "{why}; stopped after {at}: {got} objects of this walk, {} in all, written to {}; {next}",
                all.len(),
                args.output.display()
            ));
        }
    };
    let recorded = records.len();
    let counting = records.iter().filter(|r| r.variation.is_some()).count();
    let all = merged(earlier, records);
    if all.is_empty() {
        return Err(anyhow::anyhow!(
            "{peer} returned no object under the subtrees walked; nothing written"
        ));
    }
    write(&args.output, format, &all)?;
    summary(
        &walk,
        recorded,
        all.len(),
        counting,
        begun,
        &args.output,
        rates.is_some(),
    );
    Ok(ExitCode::SUCCESS)
}

fn stopped_without_file(stop: Stop, walk: &Walk) -> anyhow::Error {
    let at = walk
        .position()
        .map(|o| format!(" (after {})", DisplayOid(o)))
        .unwrap_or_default();
    match stop {
        Stop::Timeout(e) => anyhow::anyhow!("{e}{at}; nothing written"),
        Stop::Loop(e) => anyhow::anyhow!("{e}; nothing written"),
        Stop::Failed(e) => e.context(format!("walk stopped{at}; nothing written")),
    }
}

fn plain(seen: Vec<Seen>) -> Vec<Record> {
    seen.into_iter()
        .enumerate()
        .map(|(i, s)| Record {
            oid: s.oid,
            value: s.value,
            variation: None,
            line: i + 1,
        })
        .collect()
}

/// The records of a resumed file and of this walk, sorted by OID; this
/// walk's win.
fn merged(earlier: Vec<Record>, now: Vec<Record>) -> Vec<Record> {
    let mut all: std::collections::BTreeMap<Oid, Record> =
        earlier.into_iter().map(|r| (r.oid.clone(), r)).collect();
    for r in now {
        all.insert(r.oid.clone(), r);
    }
    all.into_values().collect()
}

fn write(path: &Path, format: Format, records: &[Record]) -> anyhow::Result<()> {
    write_atomically(path, |w| snapshot::write(records, format, w))
}

fn summary(
    walk: &Walk,
    recorded: usize,
    total: usize,
    counting: usize,
    begun: Instant,
    output: &Path,
    rates: bool,
) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "recorded {recorded} objects in {:.1} s into {} ({total} records)",
        begun.elapsed().as_secs_f64(),
        output.display()
    );
    for (subtree, n) in walk.subtrees().iter().zip(walk.counts()) {
        let _ = writeln!(out, "  {:<30} {n}", DisplayOid(subtree).to_string());
    }
    if rates {
        let _ = writeln!(
            out,
            "{counting} counters moved between the two walks: written as numeric records"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_command_line_splits_at_record() {
        let (before, after) = split_args(os(&[
            "ac",
            "-q",
            "--log-format",
            "json",
            "record",
            "-v",
            "1",
            "h",
        ]));
        assert_eq!(before, os(&["ac", "-q", "--log-format", "json", "record"]));
        assert_eq!(after, os(&["-v", "1", "h"]));
        let (before, after) = split_args(os(&["ac", "snapshot", "check", "record"]));
        assert_eq!(before, os(&["ac", "snapshot", "check", "record"]));
        assert!(after.is_empty());
    }

    #[test]
    fn net_snmp_letters_parse() {
        let a = RecordArgs::try_parse_from(os(&[
            "-v",
            "3",
            "-u",
            "ops",
            "-l",
            "authpriv",
            "-a",
            "SHA-256",
            "-A",
            "authpass1",
            "-x",
            "AES",
            "-X",
            "privpass1",
            "udp:127.0.0.1:1161",
            "-o",
            "x.snmprec",
            "--subtree",
            ".1.3.6.1.2.1.1",
        ]))
        .unwrap();
        assert_eq!(a.version, SnmpVersion::V3);
        assert_eq!(a.level, Some(Level::AuthPriv));
        assert_eq!(a.auth_protocol, AuthProtocol::Sha256);
        assert_eq!(a.priv_protocol, PrivProtocol::Aes128);
        assert_eq!(a.subtrees, vec![vec![1, 3, 6, 1, 2, 1, 1]]);
        let Security::Usm { user, .. } = security(&a).unwrap() else {
            panic!()
        };
        assert!(user.privacy.is_some());
        assert!(RecordArgs::try_parse_from(os(&["-v", "2", "h", "-o", "x.snmprec"])).is_err());
    }
}
