//! `agentcluster snapshot check|convert|sort`.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agentcluster_agent::snapshot::{self, Format};
use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};

use crate::{EXIT_USER, UserError};
use agentcluster_conf::plural;

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Parse snapshot files and report every broken record and duplicate.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Convert a snapshot to another format (by the output's extension, or --to).
    Convert {
        input: PathBuf,
        /// Output file; its extension picks the format. Without it: stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Output format (needed when writing to stdout).
        #[arg(long, value_enum)]
        to: Option<FormatArg>,
    },
    /// Sort by OID and remove duplicates (the last one wins), in place.
    Sort {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Snmprec,
    Snmpwalk,
    Sapwalk,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Snmprec => Format::Snmprec,
            FormatArg::Snmpwalk => Format::Snmpwalk,
            FormatArg::Sapwalk => Format::Sapwalk,
        }
    }
}

pub fn run(command: SnapshotCommand) -> anyhow::Result<ExitCode> {
    match command {
        SnapshotCommand::Check { files } => check(&files),
        SnapshotCommand::Convert { input, output, to } => convert(&input, output.as_deref(), to),
        SnapshotCommand::Sort { files } => sort(&files),
    }
}

fn load(path: &Path) -> anyhow::Result<snapshot::Snapshot> {
    snapshot::load(path).map_err(|e| UserError(e.to_string()).into())
}

fn check(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for f in files {
        match snapshot::load(f) {
            Ok(s) => {
                for w in &s.warnings {
                    writeln!(out, "{w} (warning)")?;
                }
                writeln!(
                    out,
                    "{}: ok, {}, {}",
                    f.display(),
                    plural(s.records.len(), "record"),
                    plural(s.warnings.len(), "warning")
                )?;
            }
            // A broken file's warnings too, every message in line order.
            Err(snapshot::SnapshotError::Invalid { errors, warnings }) => {
                failed = true;
                let mut all: Vec<(&snapshot::Diagnostic, &str)> = errors
                    .iter()
                    .map(|e| (e, ""))
                    .chain(warnings.iter().map(|w| (w, " (warning)")))
                    .collect();
                all.sort_by_key(|(d, _)| d.line);
                for (d, suffix) in all {
                    writeln!(out, "{d}{suffix}")?;
                }
                writeln!(
                    out,
                    "{}: failed, {}, {}",
                    f.display(),
                    plural(errors.len(), "error"),
                    plural(warnings.len(), "warning")
                )?;
            }
            Err(e) => {
                failed = true;
                writeln!(out, "{e}")?;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_USER)
    } else {
        ExitCode::SUCCESS
    })
}

fn convert(input: &Path, output: Option<&Path>, to: Option<FormatArg>) -> anyhow::Result<ExitCode> {
    let format = match (to, output) {
        (Some(f), _) => f.into(),
        (None, Some(out)) => Format::from_path(out).ok_or_else(|| {
            UserError(format!(
                "{}: cannot tell the output format from the extension; use --to",
                out.display()
            ))
        })?,
        (None, None) => return Err(UserError("give -o FILE or --to FORMAT".into()).into()),
    };
    let snap = load(input)?;
    for w in &snap.warnings {
        eprintln!("{w} (warning)");
    }
    match output {
        Some(out) => write_atomically(out, |w| snapshot::write(&snap.records, format, w))?,
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            snapshot::write(&snap.records, format, &mut w).context("cannot write")?;
            w.flush().context("cannot write")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sort(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    for f in files {
        let format = Format::from_path(f)
            .ok_or_else(|| UserError(format!("{}: unknown snapshot format", f.display())))?;
        let snap = load(f)?;
        for w in &snap.warnings {
            eprintln!("{w} (warning)");
        }
        write_atomically(f, |w| snapshot::write(&snap.records, format, w))?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{}: {}",
            f.display(),
            plural(snap.records.len(), "record")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes to a temporary file beside `path`, then renames it over `path`.
pub(crate) fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut std::io::BufWriter<fs::File>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(fs::File::create(&tmp)?);
        body(&mut w)?;
        w.flush()?;
        w.get_ref().sync_data()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
