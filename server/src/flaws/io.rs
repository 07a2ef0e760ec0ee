//! The flow flaws, as a wrapper around the merge's I/O (`MergeIo`): the
//! merge itself stays the correct algorithm, and each flaw changes what it
//! is told or what reaches the socket.

use recovery_protocol::StreamId;

use super::{Flaw, Flaws};
use crate::session::merge::{HasId, MergeIo};

/// What the flow flaws remember about one session between merge calls.
#[derive(Debug, Default)]
pub struct SessionFlaws {
    /// The first merge call of a session is its catch-up (steps 3-4).
    past_catch_up: bool,
    /// `backlog-before-subscribe`: the session counts as registered for
    /// live messages from its first look at the queue; until then each
    /// head read moves the registration point.
    registered: bool,
    /// `backlog-before-subscribe`: live messages up to here were appended
    /// before the (late) registration and never arrive live.
    registered_at: Option<StreamId>,
}

/// Which flow flaws are on (looked up once per wrapper).
#[derive(Debug, Clone, Copy)]
struct On {
    backlog_first: bool,
    repeat_overlap: bool,
    inclusive_resume: bool,
    cursor_on_send: bool,
    drop_on_lag: bool,
}

/// A `MergeIo` with the flow flaws switched on; with none on, every call
/// goes straight to `inner`.
pub struct FlawedIo<'a, I: MergeIo> {
    inner: I,
    on: On,
    session: &'a mut SessionFlaws,
    /// The session's acked cursor (`cursor-on-send` moves it on writes).
    acked: &'a mut Option<StreamId>,
    catching_up: bool,
    /// Highest id written to the socket (the merge's `last_sent`).
    last_written: StreamId,
    /// `inclusive-resume`: the entry AT the cursor is still to be sent.
    inclusive_pending: bool,
    /// A write failed inside `try_queued` (which cannot return it).
    failed: Option<I::Error>,
}

impl SessionFlaws {
    /// Wraps one merge call's I/O. `last_sent` is the merge's, `acked` the
    /// session's acked cursor.
    pub fn wrap<'a, I: MergeIo>(
        &'a mut self,
        flaws: &Flaws,
        inner: I,
        last_sent: StreamId,
        acked: &'a mut Option<StreamId>,
    ) -> FlawedIo<'a, I> {
        let catching_up = !self.past_catch_up;
        self.past_catch_up = true;
        let on = On {
            backlog_first: flaws.has(Flaw::BacklogBeforeSubscribe),
            repeat_overlap: flaws.has(Flaw::NoOverlapDedup),
            inclusive_resume: flaws.has(Flaw::InclusiveResume),
            cursor_on_send: flaws.has(Flaw::CursorOnSend),
            drop_on_lag: flaws.has(Flaw::DropOnLag),
        };
        FlawedIo {
            inner,
            on,
            session: self,
            acked,
            catching_up,
            last_written: last_sent,
            inclusive_pending: catching_up && on.inclusive_resume,
            failed: None,
        }
    }
}

impl<I: MergeIo> FlawedIo<'_, I> {
    fn written(&mut self, id: StreamId) {
        self.last_written = self.last_written.max(id);
        if self.on.cursor_on_send {
            // Flaw `cursor-on-send`: the "acked" cursor follows what was sent.
            *self.acked = Some(self.last_written);
        }
    }

    fn take_failure(&mut self) -> Result<(), I::Error> {
        match self.failed.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn registering(&self) -> bool {
        self.on.backlog_first && self.catching_up && !self.session.registered
    }

    /// `backlog-before-subscribe`: while catching up and not yet
    /// registered, registration would happen after this point.
    async fn move_registration(&mut self) -> Result<(), I::Error> {
        if self.registering() {
            self.session.registered_at = Some(self.inner.head().await?);
        }
        Ok(())
    }

    /// Flaw `inclusive-resume`: an inclusive range starts AT the cursor,
    /// so the entry there (the last one the client saw) is sent again.
    async fn resend_cursor_entry(&mut self) -> Result<(), I::Error> {
        self.inclusive_pending = false;
        let at = self.last_written;
        let Some(before) = at.predecessor() else {
            return Ok(());
        };
        let page = self.inner.page_after(before, at, 1).await?;
        if let Some(entry) = page.into_iter().find(|entry| entry.id() == at) {
            self.inner.write_backlog(entry).await?;
        }
        Ok(())
    }
}

impl<I: MergeIo> MergeIo for FlawedIo<'_, I> {
    type Backlog = I::Backlog;
    type Live = I::Live;
    type Error = I::Error;

    async fn head(&mut self) -> Result<StreamId, I::Error> {
        if self.inclusive_pending {
            self.resend_cursor_entry().await?;
        }
        let head = self.inner.head().await?;
        if self.registering() {
            self.session.registered_at = Some(head);
        }
        Ok(head)
    }

    async fn page_after(
        &mut self,
        after: StreamId,
        until: StreamId,
        count: usize,
    ) -> Result<Vec<I::Backlog>, I::Error> {
        self.inner.page_after(after, until, count).await
    }

    async fn try_queued(&mut self) -> Option<I::Live> {
        if self.on.backlog_first {
            self.session.registered = true;
        }
        loop {
            let live = self.inner.try_queued().await?;
            let id = live.id();
            // Flaw `backlog-before-subscribe`: appended before the late
            // registration, so never queued for this socket.
            if self.session.registered_at.is_some_and(|at| id <= at) {
                continue;
            }
            // Flaw `no-overlap-dedup`: the backlog/live overlap is sent again.
            if self.on.repeat_overlap && id <= self.last_written {
                if let Err(err) = self.inner.write_live(live).await {
                    self.failed = Some(err);
                    return None;
                }
                continue;
            }
            return Some(live);
        }
    }

    fn take_lagged(&mut self) -> bool {
        if self.on.drop_on_lag {
            // Flaw `drop-on-lag`: never re-read; what was skipped is gone.
            self.inner.take_lagged();
            return false;
        }
        if self.on.backlog_first && self.catching_up {
            // The late-registering session had nothing to lag on yet.
            return false;
        }
        self.inner.take_lagged()
    }

    async fn write_backlog(&mut self, entry: I::Backlog) -> Result<(), I::Error> {
        self.take_failure()?;
        let id = entry.id();
        self.inner.write_backlog(entry).await?;
        self.written(id);
        Ok(())
    }

    async fn write_live(&mut self, message: I::Live) -> Result<(), I::Error> {
        self.take_failure()?;
        let id = message.id();
        self.inner.write_live(message).await?;
        self.written(id);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), I::Error> {
        self.take_failure()?;
        self.move_registration().await?;
        self.inner.flush().await
    }
}
