//! How far the start of a fleet has come, for a caller that shows it
//! (`agentcluster run` on a terminal). [`crate::run`] publishes it on the
//! watch channel of [`crate::Triggers::progress`] and never prints it.

/// A stage of the start, with its counts. Each stage replaces the one
/// before; a reader sees the latest (bursts coalesce in the channel).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Progress {
    /// Checking the fleet against the host and binding the control
    /// socket.
    #[default]
    Preparing,
    /// Compiling the fleet's distinct snapshot files into stores (or
    /// finding them compiled in the cache).
    Compiling {
        /// Files compiled (or found) so far.
        done: usize,
        /// Distinct snapshot files of the fleet.
        total: usize,
        /// Records in the files done so far.
        records: usize,
    },
    /// Binding the active agents' endpoints, then setting up the spawn
    /// helpers and the event sinks.
    Binding {
        /// Endpoints of the active agents.
        endpoints: usize,
    },
    /// Starting the agent processes: agents whose process answered ready,
    /// and those that failed for good, out of the active ones.
    Starting {
        /// Agents running.
        ready: usize,
        /// Agents failed.
        failed: usize,
        /// Active agents.
        total: usize,
    },
    /// Every active agent is running or failed: the start is over.
    Started,
}
