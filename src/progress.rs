//! `run`'s progress on a terminal: the stages the supervisor reports while
//! it starts (compiling snapshots, binding, starting agents) drawn with
//! indicatif on stderr. Only when stdout and stderr are both terminals
//! (and `NO_COLOR` is not set): into a pipe or a file, `run` prints
//! exactly what it always did.

use std::io::{IsTerminal as _, Write as _};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use agentcluster_conf::plural;
use agentcluster_supervisor::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

/// The bar being drawn, if any: the log writes its lines around it.
static DRAWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// How often the spinner turns (indicatif's own ticker; nothing is asked
/// of the supervisor).
const TICK: Duration = Duration::from_millis(120);

/// The progress of one start, drawn until [`Shown::finish`] or drop.
pub struct Shown {
    bar: ProgressBar,
}

/// Draws what `progress` reports, when stdout and stderr are terminals
/// and `NO_COLOR` is not set (the bar is drawn with escape codes, which
/// NO_COLOR promises to keep out of the output); `None` (nothing drawn)
/// otherwise. Must be called inside the runtime.
pub fn show(mut progress: watch::Receiver<Progress>) -> Option<Shown> {
    let terminals = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    if !terminals || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(TICK);
    *DRAWN.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar.clone());
    let drawn = bar.clone();
    tokio::spawn(async move {
        loop {
            let now = progress.borrow_and_update().clone();
            if drawn.is_finished() {
                return;
            }
            if now == Progress::Started {
                clear(&drawn);
                return;
            }
            draw(&drawn, &now);
            if progress.changed().await.is_err() {
                return;
            }
        }
    });
    Some(Shown { bar })
}

impl Shown {
    /// Clears the bar (before the ready block is printed).
    pub fn finish(&self) {
        clear(&self.bar);
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        clear(&self.bar);
    }
}

fn clear(bar: &ProgressBar) {
    bar.finish_and_clear();
    let mut drawn = DRAWN.lock().unwrap_or_else(PoisonError::into_inner);
    if drawn.as_ref().is_some_and(|b| b.is_finished()) {
        *drawn = None;
    }
}

/// One stage: a spinner with words, or a bar with counts.
fn draw(bar: &ProgressBar, progress: &Progress) {
    match *progress {
        Progress::Compiling {
            done,
            total,
            records,
        } => {
            bar.set_message(plural(records, "record"));
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_style(style(
                "{spinner} compiling snapshots [{bar:30}] {pos}/{len} files, {msg}",
            ));
        }
        Progress::Binding { endpoints } => {
            bar.set_message(format!("binding {}", plural(endpoints, "endpoint")));
            bar.set_style(style("{spinner} {msg}"));
        }
        Progress::Starting {
            ready,
            failed,
            total,
        } => {
            bar.set_message(format!("{ready} ready, {failed} failed"));
            bar.set_length(total as u64);
            bar.set_position((ready + failed) as u64);
            bar.set_style(style(
                "{spinner} starting agents [{bar:30}] {pos}/{len}: {msg}",
            ));
        }
        _ => {
            bar.set_message("preparing");
            bar.set_style(style("{spinner} {msg}"));
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .progress_chars("=> ")
}

/// The log's writer: stderr, with the progress bar (while one is drawn)
/// lifted for each line so that they do not garble each other. Without a
/// bar it writes each line as `std::io::stderr` would.
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// One log record, written to stderr when dropped.
pub struct LogLine(Vec<u8>);

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let write = || {
            let _ = std::io::stderr().write_all(&self.0);
        };
        let bar = DRAWN.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}
