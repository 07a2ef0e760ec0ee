//! Recorded histories: protocol-neutral event types, positions, and
//! reading/writing `history.jsonl`. Nothing here knows a wire format: the
//! client adapters (`client::protocol`) translate into these types.

mod event;
mod file;
mod position;

pub use event::*;
pub use file::{read_history, write_history, History, HistoryError};
pub use position::{Position, PositionError};
