//! Where a reconnecting socket resumes, and whether it must declare a gap.
//!
//! Precedence (docs/protocol.md): the client's `last_id`, else the stored
//! cursor, else `0`. A gap is declared whenever the server cannot prove
//! that nothing after the resume point was lost.

use recovery_protocol::{CursorSource, GapReason, StreamId};
use uuid::Uuid;

use crate::store::{Store, StoreError, SyncState};

/// The resume decision for one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePlan {
    pub resume_from: StreamId,
    pub cursor: CursorSource,
    pub gap: Option<DeclaredGap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclaredGap {
    pub first_available: StreamId,
    pub reason: GapReason,
}

impl ResumePlan {
    /// The id delivery starts after: every message with a greater id is
    /// owed to this socket.
    pub fn deliver_after(&self) -> StreamId {
        match self.gap {
            Some(gap) => gap.first_available.predecessor().unwrap_or(StreamId::ZERO),
            None => self.resume_from,
        }
    }
}

/// Picks the cursor and the epoch it belongs to (if known).
pub fn choose_cursor(
    client_last_id: Option<StreamId>,
    client_epoch: Option<&str>,
    stored: Option<&SyncState>,
) -> (StreamId, CursorSource, Option<String>) {
    match (client_last_id, stored) {
        (Some(last_id), _) => (
            last_id,
            CursorSource::Client,
            client_epoch.map(str::to_string),
        ),
        (None, Some(state)) => (
            state.last_message_id,
            CursorSource::Stored,
            state.epoch.clone(),
        ),
        (None, None) => (
            StreamId::ZERO,
            CursorSource::None,
            client_epoch.map(str::to_string),
        ),
    }
}

pub async fn plan(
    store: &Store,
    conversation_id: Uuid,
    resume_from: StreamId,
    cursor: CursorSource,
    cursor_epoch: Option<&str>,
    current_epoch: &str,
) -> Result<ResumePlan, StoreError> {
    let gap = detect_gap(
        store,
        conversation_id,
        resume_from,
        cursor_epoch,
        current_epoch,
    )
    .await?;
    Ok(ResumePlan {
        resume_from,
        cursor,
        gap,
    })
}

async fn first_entry_id(store: &Store, conversation_id: Uuid) -> Result<StreamId, StoreError> {
    Ok(store
        .read_from(conversation_id, StreamId::ZERO, StreamId::MAX, 1)
        .await?
        .first()
        .map_or(StreamId::ZERO, |entry| entry.message.id))
}

async fn detect_gap(
    store: &Store,
    conversation_id: Uuid,
    resume_from: StreamId,
    cursor_epoch: Option<&str>,
    current_epoch: &str,
) -> Result<Option<DeclaredGap>, StoreError> {
    let epoch_differs = cursor_epoch.is_some_and(|epoch| epoch != current_epoch);
    if epoch_differs
        && !resume_from.is_zero()
        && store.entry_exists(conversation_id, resume_from).await?
    {
        // The cursor names an entry of the CURRENT stream (the client got
        // it live from the new stream before learning the new epoch): it
        // is valid as it is, and replaying would only duplicate.
        return Ok(None);
    }
    if epoch_differs {
        // The stream the cursor points into is gone; its ids mean nothing
        // in the new one. Replay everything that exists now.
        return Ok(Some(DeclaredGap {
            first_available: first_entry_id(store, conversation_id).await?,
            reason: GapReason::EpochChanged,
        }));
    }
    if resume_from.is_zero() || store.entry_exists(conversation_id, resume_from).await? {
        return Ok(None);
    }
    let Some(shape) = store.stream_shape(conversation_id).await? else {
        // A cursor past 0 into a stream that does not exist: whatever it
        // saw is gone, and we cannot prove nothing after it was lost.
        return Ok(Some(DeclaredGap {
            first_available: StreamId::ZERO,
            reason: GapReason::EpochChanged,
        }));
    };
    if resume_from > shape.last_generated_id {
        // The cursor is newer than anything this stream ever held: it came
        // from an earlier incarnation (a client that sent no epoch). Every
        // message here would be skipped silently; declare and replay.
        return Ok(Some(DeclaredGap {
            first_available: shape.first_id.unwrap_or(StreamId::ZERO),
            reason: GapReason::EpochChanged,
        }));
    }
    // Redis 7.0's XTRIM/MINID does not update max-deleted-entry-id, so
    // the sound rule is: the entry itself is gone, the stream has lost
    // entries, and what remains starts after the cursor.
    let has_lost_entries = shape.entries_added > shape.length;
    let first_is_newer = shape.first_id.is_none_or(|first| first > resume_from);
    let messages_existed_after = resume_from < shape.last_generated_id;
    if has_lost_entries && first_is_newer && messages_existed_after {
        let first_available = shape
            .first_id
            .or_else(|| shape.last_generated_id.successor())
            .unwrap_or(StreamId::MAX);
        return Ok(Some(DeclaredGap {
            first_available,
            reason: GapReason::Trimmed,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(last: StreamId, epoch: &str) -> SyncState {
        SyncState {
            client_id: Uuid::nil(),
            user_id: Uuid::nil(),
            conversation_id: Uuid::nil(),
            last_message_id: last,
            last_sync_at: chrono::DateTime::UNIX_EPOCH,
            epoch: Some(epoch.into()),
        }
    }

    #[test]
    fn client_cursor_beats_stored_beats_none() {
        let stored = state(StreamId::new(5, 0), "s");
        let (id, source, epoch) =
            choose_cursor(Some(StreamId::new(9, 0)), Some("c"), Some(&stored));
        assert_eq!(
            (id, source, epoch.as_deref()),
            (StreamId::new(9, 0), CursorSource::Client, Some("c"))
        );
        let (id, source, epoch) = choose_cursor(None, Some("c"), Some(&stored));
        assert_eq!(
            (id, source, epoch.as_deref()),
            (StreamId::new(5, 0), CursorSource::Stored, Some("s"))
        );
        let (id, source, _) = choose_cursor(None, None, None);
        assert_eq!((id, source), (StreamId::ZERO, CursorSource::None));
    }

    #[test]
    fn delivery_after_a_gap_includes_first_available() {
        let plan = ResumePlan {
            resume_from: StreamId::new(3, 0),
            cursor: CursorSource::Client,
            gap: Some(DeclaredGap {
                first_available: StreamId::new(10, 0),
                reason: GapReason::Trimmed,
            }),
        };
        assert!(plan.deliver_after() < StreamId::new(10, 0));
        assert!(plan.deliver_after() >= StreamId::new(9, 0));
        let no_gap = ResumePlan { gap: None, ..plan };
        assert_eq!(no_gap.deliver_after(), StreamId::new(3, 0));
    }
}
