//! Recorded histories: protocol-neutral event types, positions, and the
//! files that hold them. Nothing here knows a wire format: the client
//! adapters (`client::protocol`) translate into these types.
//!
//! - `event`, `position`: the types.
//! - `codec`: the compact record encoding (deltas, interned UUIDs).
//! - `binary`: `history.bin` framing, streaming [`HistoryWriter`] and
//!   [`HistoryReader`].
//! - `recorder`: the writer thread the sockets stream into during a run.
//! - `file`: whole histories in memory ([`read_history`] reads both
//!   `history.bin` and the `history.jsonl` export).
//! - `passes`: [`HistoryPasses`], a history file walked as often as a
//!   consumer needs without loading it (the checker, the analysis).

mod binary;
mod codec;
mod event;
mod file;
mod passes;
mod position;
mod recorder;
#[cfg(test)]
mod tests;

pub use binary::{is_binary_history, HistoryReader, HistoryWriter, WrittenHistory};
pub use event::*;
pub use file::{
    export_jsonl, read_history, read_history_jsonl, write_history, write_history_jsonl, History,
    HistoryError,
};
pub use passes::HistoryPasses;
pub use position::{Position, PositionError};
pub use recorder::Recorder;

/// The history file a run writes (binary, streamed during the run).
pub const HISTORY_FILE: &str = "history.bin";
/// The JSON-lines export (`harness export --jsonl`), and the history file
/// of runs recorded before `history.bin`.
pub const HISTORY_JSONL_FILE: &str = "history.jsonl";

/// The history file of a run directory: `history.bin`, or `history.jsonl`
/// for runs recorded before it.
pub fn history_path(run_dir: &std::path::Path) -> std::path::PathBuf {
    let binary = run_dir.join(HISTORY_FILE);
    let jsonl = run_dir.join(HISTORY_JSONL_FILE);
    if !binary.exists() && jsonl.exists() {
        jsonl
    } else {
        binary
    }
}
