//! Deliberate recovery bugs, switchable with `--inject-flaw NAME`: a
//! TESTING AID that re-creates, one by one, the bugs the seed project
//! shipped, and three lies a server can tell (`false-gap`, `crosstalk`,
//! `unavailable-after-append`; docs/flaws.md), so the harness can prove
//! it catches each.
//! Never enable one in production; the server logs a loud warning.
//!
//! The flaws live here, not in the recovery code people copy: they are
//! attached from outside, through seams that are pass-throughs when no
//! flaw is on.
//! - at start ([`Flaws::inject_at_start`], [`Flaws::wrap_router`]):
//!   `cursor-per-device` (store keys), `local-fanout` (no tailer),
//!   `new-client-id` (the request loses its `client_id`);
//! - around the merge's I/O ([`io::FlawedIo`], a `MergeIo` wrapper):
//!   `backlog-before-subscribe`, `no-overlap-dedup`, `inclusive-resume`,
//!   `cursor-on-send`, `drop-on-lag`;
//! - around the resume plan ([`Flaws::disguise_loss`]): `false-gap`;
//! - around the append's result ([`Flaws::after_append`]): `crosstalk`,
//!   `local-fanout`'s in-process broadcast, `unavailable-after-append`.

pub mod io;

use std::sync::atomic::{AtomicU64, Ordering};

use clap::ValueEnum;
use recovery_protocol::{GapReason, MessageFrame, StreamId};
use uuid::Uuid;

use crate::fanout::Fanout;
use crate::session::resume::{DeclaredGap, ResumePlan};
use crate::store::{Appended, Store, StoreError};

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
    /// On every second reconnect with a cursor that needs no gap, declare
    /// a `trimmed` gap up to the stream head and skip the backlog, though
    /// nothing was trimmed: loss disguised as a declared gap.
    FalseGap,
    /// Every 8th new message is appended, then answered `error
    /// unavailable` ("not appended") instead of `ack`: a definite failure
    /// that is false (the client's retry gets `duplicate: true`).
    UnavailableAfterAppend,
    /// Every 40th appended message also goes live to the sockets of
    /// another conversation (labelled with its own): one conversation's
    /// messages reach another conversation's members.
    Crosstalk,
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

/// How often the counted flaws strike: every `FALSE_GAP_EVERY`th eligible
/// reconnect, every `CROSSTALK_EVERY`th / `DENY_APPEND_EVERY`th append.
const FALSE_GAP_EVERY: u64 = 2;
const CROSSTALK_EVERY: u64 = 40;
const DENY_APPEND_EVERY: u64 = 8;

static FALSE_GAP_TURN: AtomicU64 = AtomicU64::new(0);
static CROSSTALK_TURN: AtomicU64 = AtomicU64::new(0);
static DENY_APPEND_TURN: AtomicU64 = AtomicU64::new(0);

// `is_multiple_of` needs Rust 1.87; the workspace declares rust-version 1.85.
#[allow(clippy::manual_is_multiple_of)]
fn due(turn: &AtomicU64, every: u64) -> bool {
    turn.fetch_add(1, Ordering::Relaxed) % every == 0
}

impl Flaws {
    /// The flaws that change how the server is put together; called once
    /// at start, after the store and the fan-out are built.
    pub fn inject_at_start(&self, store: &mut Store, fanout: &Fanout) {
        if self.has(Flaw::CursorPerDevice) {
            store.flaw_share_cursor_across_conversations();
        }
        if self.has(Flaw::LocalFanout) {
            // No tailer: only `after_append` feeds sockets, so other
            // processes' appends never arrive live.
            fanout.stop_tailer();
        }
    }

    /// Flaw `new-client-id`: every `/ws` request loses its `client_id`, so
    /// each connection gets a new one and never finds its stored cursor.
    /// The router is returned unchanged when the flaw is off.
    pub fn wrap_router(&self, router: axum::Router) -> axum::Router {
        if !self.has(Flaw::NewClientId) {
            return router;
        }
        router.layer(axum::middleware::map_request(forget_client_id))
    }

    /// Flaw `false-gap`: turns some honest resume plans (a cursor, no gap)
    /// into a `trimmed` gap whose `first_available` is just past the stream
    /// head, so the backlog is skipped. The plan is returned unchanged when
    /// the flaw is off.
    pub async fn disguise_loss(
        &self,
        store: &Store,
        conversation_id: Uuid,
        plan: ResumePlan,
    ) -> Result<ResumePlan, StoreError> {
        if !self.has(Flaw::FalseGap) || plan.gap.is_some() || plan.resume_from.is_zero() {
            return Ok(plan);
        }
        let Some(shape) = store.stream_shape(conversation_id).await? else {
            return Ok(plan);
        };
        // Only where there is a backlog to skip, and only every so often.
        if shape.last_generated_id <= plan.resume_from || !due(&FALSE_GAP_TURN, FALSE_GAP_EVERY) {
            return Ok(plan);
        }
        let first_available = shape.last_generated_id.successor().unwrap_or(StreamId::MAX);
        Ok(ResumePlan {
            gap: Some(DeclaredGap {
                first_available,
                reason: GapReason::Trimmed,
            }),
            ..plan
        })
    }

    /// Flaws that act on a message just appended through this process:
    /// `local-fanout` (hand it to this process's sockets, as there is no
    /// tailer), `crosstalk` (every so often, also to another
    /// conversation's sockets) and `unavailable-after-append` (every so
    /// often, turn the success into a definite "not appended" failure).
    /// The result is returned unchanged when no flaw is on.
    pub fn after_append(
        &self,
        fanout: &Fanout,
        sent: SentMessage<'_>,
        appended: Result<Appended, StoreError>,
    ) -> Result<Appended, StoreError> {
        let new = match &appended {
            Ok(appended) if !appended.duplicate && !self.is_empty() => appended,
            _ => return appended,
        };
        let message = MessageFrame {
            id: new.id,
            conversation_id: sent.conversation_id,
            sender_id: sent.sender_id,
            client_msg_id: sent.client_msg_id,
            body: sent.body.to_string(),
            sent_at_ms: new.sent_at_ms,
        };
        if self.has(Flaw::Crosstalk) && due(&CROSSTALK_TURN, CROSSTALK_EVERY) {
            // Labelled with its own conversation, queued for another's sockets.
            let other = fanout
                .conversations()
                .into_iter()
                .find(|conversation_id| *conversation_id != message.conversation_id);
            if let Some(other) = other {
                fanout.enqueue(other, message.clone());
            }
        }
        if self.has(Flaw::LocalFanout) {
            // The seed's in-memory broadcast: this process's sockets only.
            fanout.dispatch(message);
        }
        if self.has(Flaw::UnavailableAfterAppend) && due(&DENY_APPEND_TURN, DENY_APPEND_EVERY) {
            // A failure the session reports as certainly not applied.
            return Err(StoreError::Redis {
                op: "append (injected flaw unavailable-after-append)",
                source: redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "the message WAS appended; this failure is a deliberate lie",
                )),
            });
        }
        appended
    }
}

/// What a client sent, as `after_append` needs it.
#[derive(Debug, Clone, Copy)]
pub struct SentMessage<'a> {
    pub conversation_id: Uuid,
    pub sender_id: Uuid,
    pub client_msg_id: Uuid,
    pub body: &'a str,
}

/// Drops `client_id` from the query string (matched on the raw key; the
/// harness never percent-encodes it).
async fn forget_client_id(mut request: axum::extract::Request) -> axum::extract::Request {
    let uri = request.uri();
    let Some(query) = uri.query() else {
        return request;
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split('=').next() != Some("client_id"))
        .collect();
    let path_and_query = format!("{}?{}", uri.path(), kept.join("&"));
    let mut parts = uri.clone().into_parts();
    match path_and_query.parse() {
        Ok(path_and_query) => parts.path_and_query = Some(path_and_query),
        // Built from a valid URI minus some pairs: cannot fail; keep it.
        Err(_) => return request,
    }
    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}
