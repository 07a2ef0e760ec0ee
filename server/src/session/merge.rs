//! The backlog/live merge (recovery steps 3-5), written against a small
//! I/O trait so the exact code the sessions run can be property-tested
//! without Redis or sockets.
//!
//! The whole correctness argument is three rules:
//! - write an id only if it is greater than the last one written (`offer`):
//!   removes every overlap between backlog, queue and re-reads;
//! - read the backlog with exclusive ranges up to a head snapshot taken
//!   AFTER subscribing: everything older is in the backlog, everything
//!   newer is queued (or the socket is flagged lagged);
//! - clear the lagged flag BEFORE re-reading: what was skipped before is in
//!   Redis, what is skipped after sets the flag again.

use recovery_protocol::StreamId;

/// Something with a stream id.
pub trait HasId {
    fn id(&self) -> StreamId;
}

/// What the merge needs from the outside world.
#[allow(async_fn_in_trait)] // used with concrete types only, never boxed
pub trait MergeIo {
    type Backlog: HasId;
    type Live: HasId;
    type Error;
    /// The newest id in the stream now (`0-0` when empty).
    async fn head(&mut self) -> Result<StreamId, Self::Error>;
    /// Entries with `after < id <= until`, oldest first, at most `count`.
    async fn page_after(
        &mut self,
        after: StreamId,
        until: StreamId,
        count: usize,
    ) -> Result<Vec<Self::Backlog>, Self::Error>;
    /// The next queued live message, if any (never waits for one to
    /// arrive; async only so a wrapper may write on the way).
    async fn try_queued(&mut self) -> Option<Self::Live>;
    /// Reads and clears the lagged flag.
    fn take_lagged(&mut self) -> bool;
    async fn write_backlog(&mut self, entry: Self::Backlog) -> Result<(), Self::Error>;
    async fn write_live(&mut self, message: Self::Live) -> Result<(), Self::Error>;
    async fn flush(&mut self) -> Result<(), Self::Error>;
}

/// Re-read rounds in `catch_up` before handing over to the live loop,
/// which keeps handling lag the same way; bounds the time to `caught_up`.
pub const MAX_CATCH_UP_ROUNDS: usize = 8;

/// The delivery state of one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merge {
    /// Highest id written; ids only ever go up.
    pub last_sent: StreamId,
}

impl Merge {
    pub fn new(deliver_after: StreamId) -> Merge {
        Merge {
            last_sent: deliver_after,
        }
    }

    /// The ordering rule: true if `id` must be written now.
    pub fn offer(&mut self, id: StreamId) -> bool {
        if id > self.last_sent {
            self.last_sent = id;
            true
        } else {
            false
        }
    }

    /// Writes every entry after `last_sent` up to the head as it is now.
    /// Bounded by that head, so a fast publisher cannot keep it replaying
    /// forever (newer messages arrive through the queue).
    pub async fn replay_until_head<I: MergeIo>(
        &mut self,
        io: &mut I,
        page_size: usize,
    ) -> Result<u64, I::Error> {
        let head = io.head().await?;
        let mut written = 0;
        while self.last_sent < head {
            let page = io
                .page_after(self.last_sent, head, page_size.max(1))
                .await?;
            if page.is_empty() {
                break;
            }
            // A short page does not mean the end: pages are bounded in
            // bytes too. The loop ends at the head (or an empty page).
            for entry in page {
                if self.offer(entry.id()) {
                    io.write_backlog(entry).await?;
                    written += 1;
                }
            }
            io.flush().await?;
        }
        Ok(written)
    }

    /// Writes what the queue holds now (newer than `last_sent` only),
    /// starting with `first` if given; at most `limit` queue items.
    pub async fn drain_queue<I: MergeIo>(
        &mut self,
        io: &mut I,
        first: Option<I::Live>,
        limit: usize,
    ) -> Result<u64, I::Error> {
        let mut written = 0;
        let mut next = match first {
            Some(first) => Some(first),
            None => io.try_queued().await,
        };
        let mut taken = 0;
        while let Some(live) = next.take() {
            if self.offer(live.id()) {
                io.write_live(live).await?;
                written += 1;
            }
            taken += 1;
            if taken < limit {
                next = io.try_queued().await;
            }
        }
        if written > 0 {
            io.flush().await?;
        }
        Ok(written)
    }

    /// After the tailer skipped this socket: clear the flag, re-read from
    /// Redis, then take what was queued meanwhile. Returns messages written,
    /// or `None` if the socket was not lagged.
    pub async fn recover_from_lag<I: MergeIo>(
        &mut self,
        io: &mut I,
        page_size: usize,
    ) -> Result<Option<u64>, I::Error> {
        if !io.take_lagged() {
            return Ok(None);
        }
        let replayed = self.replay_until_head(io, page_size).await?;
        let drained = self.drain_queue(io, None, usize::MAX).await?;
        Ok(Some(replayed + drained))
    }

    /// Steps 3-4: backlog, buffered live messages, and re-reads while the
    /// socket lagged during them. Returns messages written.
    pub async fn catch_up<I: MergeIo>(
        &mut self,
        io: &mut I,
        page_size: usize,
    ) -> Result<u64, I::Error> {
        let mut written = self.replay_until_head(io, page_size).await?;
        for _ in 0..MAX_CATCH_UP_ROUNDS {
            written += self.drain_queue(io, None, usize::MAX).await?;
            match self.recover_from_lag(io, page_size).await? {
                Some(more) => written += more,
                None => break,
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests;
