//! The fault knobs and the proxy's lifecycle, as values published through
//! `watch` channels: every pump reads the current value per chunk (an
//! uncontended read lock, never held across an await) and waits on
//! `changed()` so a new value reaches a blocked pump at once.

use std::time::Duration;

/// The faults applied to every forwarded chunk, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultSettings {
    /// Added to every chunk's delivery time.
    pub latency: Duration,
    /// Up to this much more, drawn per chunk; never reorders bytes.
    pub jitter: Duration,
    /// Per connection, per direction; `None` is unlimited.
    pub bandwidth_bytes_per_s: Option<u64>,
    /// Partition: nothing is read or written until lifted.
    pub blackhole: bool,
}

/// Signals that end connections: a reset round (RST everything open now)
/// or the end of the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lifecycle {
    /// Bumped by every `reset_all`; a connection resets when it differs
    /// from the value it saw when it was accepted.
    pub reset_round: u64,
    pub shutdown: bool,
}

/// Why a connection must stop before its peers are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Reset,
    Shutdown,
}

impl Lifecycle {
    /// What this value asks of a connection accepted in `accepted_round`.
    pub fn stop_for(&self, accepted_round: u64) -> Option<Stop> {
        if self.shutdown {
            Some(Stop::Shutdown)
        } else if self.reset_round != accepted_round {
            Some(Stop::Reset)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_resets_only_for_rounds_after_its_accept() {
        let now = Lifecycle {
            reset_round: 3,
            shutdown: false,
        };
        assert_eq!(now.stop_for(3), None);
        assert_eq!(now.stop_for(2), Some(Stop::Reset));
    }

    #[test]
    fn shutdown_wins_over_reset() {
        let now = Lifecycle {
            reset_round: 5,
            shutdown: true,
        };
        assert_eq!(now.stop_for(5), Some(Stop::Shutdown));
        assert_eq!(now.stop_for(1), Some(Stop::Shutdown));
    }
}
