//! `false_caught_up`: a `caught_up` frame says "the backlog is done; this
//! is where you are". The backlog is everything the stream held when the
//! socket connected, so a message acked to anyone before the socket even
//! connected (it was in the stream then) cannot lie above the head the
//! socket was told it reached: that `caught_up` came before the backlog
//! was done, and a client showing "up to date" would be wrong.
//!
//! Judged once per socket, on its first `caught_up`. Its `replayed` and
//! `last_id` are not compared with the receipts before it: a receipt
//! missing there is already a `skip` or `lost`, and one fault gets one
//! name.

use crate::history::Position;

use super::index::ConvLog;

/// Why a `caught_up` is false: the ids involved (the claimed head, the
/// message above it) and the rest of the sentence.
pub(crate) struct FalseCaughtUp {
    pub ids: Vec<Position>,
    pub what: String,
}

/// Ack times of one conversation's log, by position (`u64::MAX`: none).
pub(crate) struct AckTimes<'a> {
    pub acked_at_us: &'a [u64],
    /// Earliest ack time of positions `p..`, see `earliest_ack_from`.
    pub acked_from: &'a [u64],
}

/// Judges one socket's first `caught_up` (`last_id`), given when the
/// device asked to connect.
pub(crate) fn judge(
    conv: &ConvLog,
    acks: &AckTimes,
    connect_at_us: u64,
    last_id: Position,
) -> Option<FalseCaughtUp> {
    let above = conv.first_after(last_id);
    // Cheap test first: most sockets have nothing acked above their head.
    if acks
        .acked_from
        .get(above)
        .is_none_or(|earliest| *earliest >= connect_at_us)
    {
        return None;
    }
    let missed =
        (above..conv.len()).find(|&position| acks.acked_at_us[position] < connect_at_us)?;
    let missed_id = conv.ids[missed];
    Some(FalseCaughtUp {
        ids: vec![last_id, missed_id],
        what: format!(
            "said the backlog ended at {last_id}, but {missed_id} had been acked before this \
             socket connected"
        ),
    })
}

/// `acked_from` for `judge`: suffix minimum of each entry's ack time.
pub(crate) fn earliest_ack_from(acked_at_us: &[u64]) -> Vec<u64> {
    let mut earliest = acked_at_us.to_vec();
    for position in (0..earliest.len().saturating_sub(1)).rev() {
        earliest[position] = earliest[position].min(earliest[position + 1]);
    }
    earliest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_ack_is_a_suffix_minimum() {
        assert_eq!(
            earliest_ack_from(&[5, 9, 3, u64::MAX, 7]),
            vec![3, 3, 3, 7, 7]
        );
        assert!(earliest_ack_from(&[]).is_empty());
    }
}
