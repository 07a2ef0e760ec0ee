//! Deliberate recovery bugs, switchable with `--inject-flaw NAME`: a
//! TESTING AID that re-creates, one by one, the bugs the seed project
//! shipped (docs/flaws.md), so the harness can prove it catches each.
//! Never enable one in production; the server logs a loud warning.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Flaw {
    /// Ignore the client's `client_id`; make a new one per connection, so a
    /// stored cursor is never found again (seed bug 1).
    NewClientId,
    /// Read the backlog, then register for live messages: what is appended
    /// in between is lost (seed bug 2).
    BacklogBeforeSubscribe,
    /// Register first but never drop the backlog/live overlap: it is sent
    /// twice (seed bug 2, "fixed").
    NoOverlapDedup,
    /// Resume with an inclusive range: the last message seen comes again
    /// on every reconnect (seed bug 3).
    InclusiveResume,
    /// Advance the stored cursor when a message is sent, not when the
    /// client acks it: what was in flight at a drop is lost (seed bug 4).
    CursorOnSend,
    /// One stored cursor per device shared by all its conversations
    /// (seed bug 5).
    CursorPerDevice,
    /// A socket whose live queue overflows drops messages instead of
    /// re-reading from Redis (seed bug 7, lagging receiver).
    DropOnLag,
    /// Live fan-out only to sockets of the same process (seed bug 7,
    /// in-memory broadcast).
    LocalFanout,
}

/// The set of flaws switched on (usually empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flaws(Vec<Flaw>);

impl Flaws {
    pub fn new(flaws: &[Flaw]) -> Flaws {
        let mut list = flaws.to_vec();
        list.dedup();
        Flaws(list)
    }

    pub fn has(&self, flaw: Flaw) -> bool {
        self.0.contains(&flaw)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|flaw| flaw.to_possible_value().map(|v| v.get_name().to_string()))
            .collect()
    }
}
