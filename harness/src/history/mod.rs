//! Recorded histories: event types, and reading/writing `history.jsonl`.

mod event;
mod file;

pub use event::*;
pub use file::{read_history, write_history, History, HistoryError};
