//! `agentcluster kvp dump [PATH]`: decodes a Hyper-V KVP pool file (ours,
//! cloud-init's, anyone's), one record per line.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use agentcluster_supervisor::kvp;
use clap::{Args, Subcommand};

use crate::UserError;
use crate::ctl::one_line;

#[derive(Subcommand)]
pub enum KvpCommand {
    /// Decode a KVP pool file: `KEY = VALUE` per record (NULs stripped).
    Dump(DumpArgs),
}

#[derive(Args)]
pub struct DumpArgs {
    /// The pool file.
    #[arg(default_value = kvp::DEFAULT_POOL)]
    path: PathBuf,
    /// One JSON object per record: {"key": …, "value": …}.
    #[arg(long)]
    json: bool,
    /// Join values sliced over several records (`msg_i`) back into one.
    #[arg(long)]
    reassemble: bool,
}

pub fn run(command: KvpCommand) -> anyhow::Result<ExitCode> {
    match command {
        KvpCommand::Dump(args) => dump(&args),
    }
}

fn dump(args: &DumpArgs) -> anyhow::Result<ExitCode> {
    let bytes = kvp::read_pool(&args.path)
        .map_err(|e| UserError(format!("cannot read {}: {e}", args.path.display())))?;
    let mut pool = kvp::decode(&bytes);
    let path = args.path.display();
    // A file whose whole records all break the layout (or that has none)
    // is something else: say so instead of "decoding" it.
    if pool.malformed.len() == pool.records.len() && (pool.trailing > 0 || !pool.records.is_empty())
    {
        let why = match pool.malformed.first() {
            Some((_, why)) => format!("its first record is not a KVP record: {why}"),
            None => format!(
                "{} bytes, less than one {}-byte record",
                pool.trailing,
                kvp::RECORD_SIZE
            ),
        };
        return Err(UserError(format!("{path} is not a KVP pool: {why}")).into());
    }
    for (i, why) in &pool.malformed {
        eprintln!(
            "agentcluster: {path}: record {} (bytes {}..{}) is damaged and not shown: {why}",
            i + 1,
            i * kvp::RECORD_SIZE,
            (i + 1) * kvp::RECORD_SIZE
        );
    }
    let damaged: Vec<usize> = pool.malformed.iter().map(|(i, _)| *i).collect();
    let mut index = 0;
    pool.records.retain(|r| {
        index += 1;
        // A free slot (all NULs) holds no record.
        let free = r.key.is_empty() && r.value.is_empty();
        !free && !damaged.contains(&(index - 1))
    });
    let entries = if args.reassemble {
        kvp::reassemble(&pool.records)
    } else {
        pool.records
            .into_iter()
            .map(|r| kvp::Entry {
                key: r.key,
                value: r.value,
                parts: 1,
                complete: true,
            })
            .collect()
    };
    let mut out = std::io::stdout().lock();
    for e in &entries {
        let line = if args.json {
            let mut j = serde_json::json!({ "key": e.key, "value": e.value });
            if e.parts > 1 {
                j["parts"] = e.parts.into();
            }
            j.to_string()
        } else {
            format!("{} = {}", one_line(&e.key), one_line(&e.value))
        };
        if writeln!(out, "{line}").is_err() {
            // A closed pipe (`| head`) is not an error.
            return Ok(ExitCode::SUCCESS);
        }
    }
    let _ = out.flush();
    for e in entries.iter().filter(|e| !e.complete) {
        eprintln!(
            "agentcluster: {path}: {}: a slice whose other parts are missing",
            one_line(&e.key)
        );
    }
    if pool.trailing > 0 {
        eprintln!(
            "agentcluster: {path}: the last record is truncated ({} of {} bytes): a write cut short, or not a KVP pool",
            pool.trailing,
            kvp::RECORD_SIZE
        );
    }
    Ok(ExitCode::SUCCESS)
}
