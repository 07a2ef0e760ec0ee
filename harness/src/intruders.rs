//! Intruders: devices without the right to a conversation that try to
//! get in while the scenario's traffic flows (scenario `[intruders]`,
//! docs/scenario-format.md). Each one connects `attempts` times, every
//! `interval`, and records what it got: the HTTP status and `reason` of a
//! refusal, or, if it was let in, every frame (it reads the backlog and
//! live messages for a moment, then acks the newest id it saw, as a real
//! attacker would to move a cursor).
//!
//! What they send is what an attacker would, so that a server without
//! authentication (`--insecure-no-auth`) lets them in and the checker sees
//! it (`checker::leak`):
//! - `no_token`: a made-up `user_id` and a real conversation id;
//! - `expired_token` / `bad_signature`: a token whose `conversations`
//!   claim grants the conversation, expired an hour ago / signed with
//!   another key;
//! - `not_member`: a valid token of its own, for a conversation it is not
//!   a member of;
//! - `client_id`: a member with a valid token of its own that presents the
//!   `client_id` of a victim device (a member device that stays offline),
//!   on even attempts with the victim's `user_id` too (the hijack a server
//!   without authentication allows), on odd ones with its own identity (the
//!   server's device binding must give it a separate cursor). The victim's
//!   stored cursor is read from Redis before the first attempt and after
//!   the last one; any change is a `leak`.
//!
//! Records go to `intruders.json` in the run directory; the report's
//! intruder section summarises them per kind ([`summarize`]).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recovery_protocol::{ClientFrame, CursorSource, ServerFrame};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;
use url::Url;
use uuid::Uuid;

use crate::auth::{Credentials, TokenError};
use crate::client::connection::{connect, drop_connection, ConnectError, DropKind};
use crate::client::protocol::v1::{position, stream_id};
use crate::client::RunClock;
use crate::history::{ConversationIx, Position};
use crate::scenario::{IntruderKind, Intruders};

/// The intruders' records in a run directory (absent without intruders).
pub const INTRUDERS_FILE: &str = "intruders.json";

/// Reads a run directory's intruder records (none if the file is absent).
pub fn read_records(run_dir: &std::path::Path) -> Result<Vec<IntruderRecord>, String> {
    let path = run_dir.join(INTRUDERS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|err| format!("cannot read {}: {err}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(format!("cannot read {}: {err}", path.display())),
    }
}

/// How long one connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an admitted intruder reads at most.
const READ_FOR: Duration = Duration::from_secs(3);
/// How long it keeps reading live messages after `caught_up`.
const READ_AFTER_CAUGHT_UP: Duration = Duration::from_millis(500);
/// Messages kept per attempt (all are counted).
const MAX_MESSAGES_KEPT: usize = 1_000;
/// How long the signed tokens of intruders stay valid (or, for
/// `expired_token`, how long ago theirs expired).
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A device whose `client_id` a `client_id` intruder presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Victim {
    pub user_id: Uuid,
    pub client_id: Uuid,
}

/// One intruder, what it presented and what it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntruderRecord {
    pub kind: IntruderKind,
    /// Index among the intruders of its kind.
    pub index: u32,
    /// Its own (made-up) user id: `sub` of its token, if it has one.
    pub user_id: Uuid,
    pub client_id: Uuid,
    /// The conversation it asks for (index into the run's conversations).
    pub conversation: ConversationIx,
    pub conversation_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim: Option<Victim>,
    pub attempts: Vec<Attempt>,
    /// The victim's stored cursor (`client_id` intruders, when the run
    /// can read Redis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim_cursor: Option<CursorWatch>,
    /// Why this intruder did not play (e.g. no key to sign an expired token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_played: Option<String>,
}

/// One connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// Run clock, when the connect started.
    pub at_us: u64,
    /// Whether the query named the victim's `user_id` (`client_id` kind).
    #[serde(default)]
    pub impersonated: bool,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The upgrade was refused with this status (and the JSON `reason`).
    Refused { status: u16, reason: Option<String> },
    /// Let in: what arrived before it left.
    Admitted {
        /// `hello`'s cursor: `none`, `client`, or `stored <id>`.
        hello: Option<String>,
        frames: u64,
        messages_received: u64,
        /// The first [`MAX_MESSAGES_KEPT`] messages.
        messages: Vec<ReceivedMessage>,
        /// The id it acked (the newest it saw), if any.
        acked: Option<Position>,
        /// The close code, if the server closed.
        closed_with: Option<u16>,
    },
    /// No HTTP answer (timeout, connection refused, handshake error).
    Failed { error: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedMessage {
    pub at_us: u64,
    pub id: Position,
    pub client_msg_id: Uuid,
}

/// The victim's stored cursor (the JSON text of its Redis key) before the
/// first attempt and after the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CursorWatch {
    pub before: Option<String>,
    pub after: Option<String>,
    pub at_us: u64,
}

impl CursorWatch {
    pub fn moved(&self) -> bool {
        self.before != self.after
    }
}

/// What the intruders of a run need.
pub struct IntruderSetup<'a> {
    pub intruders: &'a Intruders,
    pub seed: u64,
    /// Conversation ids in conversation-index order.
    pub conversations: Vec<Uuid>,
    pub targets: Vec<Url>,
    pub tls: Option<Connector>,
    pub credentials: &'a Credentials,
    pub clock: RunClock,
    /// Run clock: the first attempts come after this (the ramp-up's end).
    pub start_us: u64,
    /// Run clock: no attempt starts at or after this (the traffic's end).
    pub end_us: u64,
    /// Redis to read victims' stored cursors from (protocol v1 layout).
    pub redis_url: Option<String>,
    /// How long after its last attempt a victim's cursor is read again
    /// (the server saves cursors on close and every sync interval).
    pub settle: Duration,
}

/// One intruder ready to play.
struct Plan {
    record: IntruderRecord,
    bearer: Option<String>,
    /// Global index, to spread the first attempts.
    slot: u32,
}

/// The intruders of a run, each with its identity and token. Seeded from
/// the run's seed on its own stream, so adding intruders changes nothing
/// else in a run.
async fn plans(setup: &IntruderSetup<'_>) -> Result<Vec<Plan>, TokenError> {
    let mut rng = StdRng::seed_from_u64(setup.seed ^ 0x1a7b_d0e5_5eed_0001);
    let uuid = |rng: &mut StdRng| uuid::Builder::from_random_bytes(rng.random()).into_uuid();
    let mut plans = Vec::new();
    let mut slot = 0u32;
    for kind in IntruderKind::ALL {
        for index in 0..setup.intruders.count(kind) {
            let conversation = slot % setup.conversations.len().max(1) as u32;
            let Some(&conversation_id) = setup.conversations.get(conversation as usize) else {
                break;
            };
            let user_id = uuid(&mut rng);
            let client_id = uuid(&mut rng);
            let victim = (kind == IntruderKind::ClientId).then(|| Victim {
                user_id: uuid(&mut rng),
                client_id: uuid(&mut rng),
            });
            let outsider_conversation = uuid(&mut rng);
            let (bearer, not_played) = token_for(
                kind,
                setup.credentials,
                user_id,
                conversation_id,
                outsider_conversation,
            )
            .await?;
            plans.push(Plan {
                record: IntruderRecord {
                    kind,
                    index,
                    user_id,
                    client_id: victim.map_or(client_id, |victim| victim.client_id),
                    conversation,
                    conversation_id,
                    victim,
                    attempts: Vec::new(),
                    victim_cursor: None,
                    not_played,
                },
                bearer,
                slot,
            });
            slot += 1;
        }
    }
    Ok(plans)
}

/// The token an intruder of `kind` presents, or why it cannot play.
async fn token_for(
    kind: IntruderKind,
    credentials: &Credentials,
    user: Uuid,
    conversation: Uuid,
    outsider_conversation: Uuid,
) -> Result<(Option<String>, Option<String>), TokenError> {
    let valid = |conversations: Vec<Uuid>| async move {
        let memberships = BTreeMap::from([(user, conversations)]);
        let tokens = crate::auth::tokens_for(credentials, &memberships, TOKEN_LIFETIME).await?;
        Ok::<_, TokenError>(tokens.get(&user).map(|bearer| bearer.as_str().to_string()))
    };
    Ok(match kind {
        IntruderKind::NoToken => (None, None),
        IntruderKind::ExpiredToken => match credentials {
            Credentials::Secret(secret) => (
                Some(crate::auth::mint_expired(
                    secret,
                    user,
                    &[conversation],
                    TOKEN_LIFETIME,
                )?),
                None,
            ),
            _ => (
                None,
                Some("an expired token needs the servers' HS256 secret (--jwt-secret)".into()),
            ),
        },
        IntruderKind::BadSignature => (
            Some(crate::auth::mint(
                &crate::auth::random_secret(),
                user,
                &[conversation],
                TOKEN_LIFETIME,
            )?),
            None,
        ),
        IntruderKind::NotMember => (valid(vec![outsider_conversation]).await?, None),
        IntruderKind::ClientId => (valid(vec![conversation]).await?, None),
    })
}

/// Plays every intruder; returns their records, in kind then index order.
/// Bounded: `attempts` connects each, none after `end_us`, each connect
/// and read bounded by [`CONNECT_TIMEOUT`] and [`READ_FOR`].
pub async fn play(setup: IntruderSetup<'_>) -> Result<Vec<IntruderRecord>, TokenError> {
    let plans = plans(&setup).await?;
    let total = plans.len() as u64;
    let window = setup.intruders.interval.as_micros() as u64;
    let tasks = plans.into_iter().map(|plan| {
        // Spread the first attempts over one interval after the ramp-up.
        let first_us = setup.start_us + window * (plan.slot as u64 + 1) / (total + 1);
        play_one(&setup, plan, first_us)
    });
    Ok(futures_util::future::join_all(tasks).await)
}

async fn play_one(setup: &IntruderSetup<'_>, plan: Plan, first_us: u64) -> IntruderRecord {
    let Plan {
        mut record, bearer, ..
    } = plan;
    if record.not_played.is_some() || setup.targets.is_empty() {
        return record;
    }
    let victim_key = record.victim.map(|victim| {
        recovery_protocol::keys::sync_state(
            victim.user_id,
            victim.client_id,
            record.conversation_id,
        )
    });
    let before = match (&victim_key, &setup.redis_url) {
        (Some(key), Some(url)) => Some(read_key(url, key).await),
        _ => None,
    };
    let interval_us = setup.intruders.interval.as_micros() as u64;
    for attempt in 0..setup.intruders.attempts {
        let due_us = first_us + interval_us * attempt as u64;
        if due_us >= setup.end_us {
            break;
        }
        tokio::time::sleep_until(setup.clock.instant_at(due_us).into()).await;
        let impersonated = record.victim.is_some() && attempt % 2 == 0;
        let query_user = match record.victim {
            Some(victim) if impersonated => Some(victim.user_id),
            // Its own identity: leave `user_id` to the token.
            Some(_) => None,
            None => Some(record.user_id),
        };
        let target = &setup.targets[(record.index + attempt) as usize % setup.targets.len()];
        let url = intruder_url(target, &record, query_user);
        let at_us = setup.clock.now_us();
        let outcome = attempt_once(&url, bearer.as_deref(), setup.tls.as_ref(), setup.clock).await;
        record.attempts.push(Attempt {
            at_us,
            impersonated,
            outcome,
        });
    }
    if let (Some(key), Some(url), Some(before)) = (&victim_key, &setup.redis_url, before) {
        tokio::time::sleep(setup.settle).await;
        match (before, read_key(url, key).await) {
            (Ok(before), Ok(after)) => {
                record.victim_cursor = Some(CursorWatch {
                    before,
                    after,
                    at_us: setup.clock.now_us(),
                })
            }
            // Unknown is not "moved": the report says the cursor was not checked.
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(%err, "cannot read a victim's stored cursor");
            }
        }
    }
    record
}

fn intruder_url(target: &Url, record: &IntruderRecord, user: Option<Uuid>) -> Url {
    let mut url = target.clone();
    {
        let mut query = url.query_pairs_mut();
        query.clear();
        if let Some(user) = user {
            query.append_pair("user_id", &user.to_string());
        }
        query.append_pair("conversation_id", &record.conversation_id.to_string());
        query.append_pair("client_id", &record.client_id.to_string());
    }
    url
}

/// The stored cursor's JSON text, `None` if absent.
async fn read_key(url: &str, key: &str) -> Result<Option<String>, redis::RedisError> {
    let read = async {
        let client = redis::Client::open(url)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(3)));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("GET")
            .arg(key)
            .query_async::<Option<String>>(&mut conn)
            .await
    };
    read.await
}

/// One connect: refused, failed, or admitted and read.
async fn attempt_once(
    url: &Url,
    bearer: Option<&str>,
    tls: Option<&Connector>,
    clock: RunClock,
) -> AttemptOutcome {
    match connect(url, bearer, tls, CONNECT_TIMEOUT).await {
        Err(ConnectError::Http { status, body }) => AttemptOutcome::Refused {
            status,
            reason: serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|json| json["reason"].as_str().map(str::to_string)),
        },
        Err(err) => AttemptOutcome::Failed {
            error: err.to_string(),
        },
        Ok(ws) => read_admitted(ws, clock).await,
    }
}

/// Reads what an admitted intruder is sent, acks the newest message id,
/// and closes.
async fn read_admitted(mut ws: crate::client::connection::Ws, clock: RunClock) -> AttemptOutcome {
    let mut hello = None;
    let mut frames = 0u64;
    let mut messages_received = 0u64;
    let mut messages = Vec::new();
    let mut newest: Option<Position> = None;
    let mut closed_with = None;
    let mut deadline = tokio::time::Instant::now() + READ_FOR;
    loop {
        let next = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(err))) => {
                tracing::debug!(%err, "an admitted intruder's socket failed");
                break;
            }
            Ok(Some(Ok(message))) => message,
        };
        let text = match next {
            Message::Text(text) => text,
            Message::Close(frame) => {
                closed_with = Some(frame.map_or(1005, |frame| u16::from(frame.code)));
                break;
            }
            _ => continue,
        };
        frames += 1;
        match ServerFrame::parse(&text) {
            Ok(ServerFrame::Hello {
                cursor,
                resume_from,
                ..
            }) => {
                hello = Some(match cursor {
                    CursorSource::None => "none".to_string(),
                    CursorSource::Client => "client".to_string(),
                    CursorSource::Stored => format!("stored {}", position(resume_from)),
                });
            }
            Ok(ServerFrame::Message(message)) => {
                let id = position(message.id);
                messages_received += 1;
                newest = newest.max(Some(id));
                if messages.len() < MAX_MESSAGES_KEPT {
                    messages.push(ReceivedMessage {
                        at_us: clock.now_us(),
                        id,
                        client_msg_id: message.client_msg_id,
                    });
                }
            }
            Ok(ServerFrame::CaughtUp { .. }) => {
                deadline = deadline.min(tokio::time::Instant::now() + READ_AFTER_CAUGHT_UP);
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(%err, "an intruder got a frame it cannot parse"),
        }
    }
    let mut acked = None;
    if let (Some(id), None) = (newest, closed_with) {
        let ack = ClientFrame::Ack { id: stream_id(id) };
        if ws.send(Message::Text(ack.to_json().into())).await.is_ok() {
            acked = Some(id);
        }
    }
    if closed_with.is_none() {
        drop_connection(ws, DropKind::Close).await;
    }
    AttemptOutcome::Admitted {
        hello,
        frames,
        messages_received,
        messages,
        acked,
        closed_with,
    }
}

/// The report's intruder section: per kind, what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntruderSummary {
    pub kinds: Vec<IntruderKindSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntruderKindSummary {
    pub kind: IntruderKind,
    pub intruders: u32,
    pub attempts: u64,
    /// `"401 missing_token"` -> count.
    pub refused: BTreeMap<String, u64>,
    pub admitted: u64,
    pub failed: u64,
    /// Frames received by admitted attempts (hello, messages, ...).
    pub frames: u64,
    pub messages: u64,
    /// Victims' stored cursors checked, and how many moved.
    pub cursors_checked: u64,
    pub cursors_moved: u64,
    /// Why some of them did not play, if any did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_played: Option<String>,
}

/// Per kind, in [`IntruderKind::ALL`] order; kinds without intruders are left out.
pub fn summarize(records: &[IntruderRecord]) -> IntruderSummary {
    let kinds = IntruderKind::ALL
        .iter()
        .filter_map(|kind| {
            let of_kind: Vec<_> = records.iter().filter(|r| r.kind == *kind).collect();
            if of_kind.is_empty() {
                return None;
            }
            let mut summary = IntruderKindSummary {
                kind: *kind,
                intruders: of_kind.len() as u32,
                attempts: 0,
                refused: BTreeMap::new(),
                admitted: 0,
                failed: 0,
                frames: 0,
                messages: 0,
                cursors_checked: 0,
                cursors_moved: 0,
                not_played: of_kind.iter().find_map(|r| r.not_played.clone()),
            };
            for record in of_kind {
                if let Some(watch) = &record.victim_cursor {
                    summary.cursors_checked += 1;
                    summary.cursors_moved += u64::from(watch.moved());
                }
                for attempt in &record.attempts {
                    summary.attempts += 1;
                    match &attempt.outcome {
                        AttemptOutcome::Refused { status, reason } => {
                            let label = match reason {
                                Some(reason) => format!("{status} {reason}"),
                                None => status.to_string(),
                            };
                            *summary.refused.entry(label).or_default() += 1;
                        }
                        AttemptOutcome::Admitted {
                            frames,
                            messages_received,
                            ..
                        } => {
                            summary.admitted += 1;
                            summary.frames += frames;
                            summary.messages += messages_received;
                        }
                        AttemptOutcome::Failed { .. } => summary.failed += 1,
                    }
                }
            }
            Some(summary)
        })
        .collect();
    IntruderSummary { kinds }
}

/// The intruder table's columns, shared by report.md and report.html.
pub const INTRUDER_COLUMNS: [&str; 8] = [
    "kind",
    "intruders",
    "attempts",
    "refused (status reason ×n)",
    "admitted",
    "frames received",
    "messages received",
    "victim cursors",
];

impl IntruderSummary {
    /// The sentence under the table: what the section proves or shows.
    pub fn note(&self) -> String {
        let admitted: u64 = self
            .kinds
            .iter()
            .filter(|kind| !kind.kind.may_read())
            .map(|kind| kind.admitted)
            .sum();
        let moved: u64 = self.kinds.iter().map(|kind| kind.cursors_moved).sum();
        let not_played: Vec<String> = self
            .kinds
            .iter()
            .filter_map(|kind| {
                kind.not_played
                    .as_ref()
                    .map(|why| format!("{} not played: {why}", kind.kind.name()))
            })
            .collect();
        let mut note = if admitted == 0 && moved == 0 {
            "Every intruder without the right to read was refused before the upgrade, and no              victim's stored cursor moved."
                .to_string()
        } else {
            format!(
                "{admitted} connects of intruders without the right to read were let in and                  {moved} victim cursors moved: each is a `leak` (see the anomalies)."
            )
        };
        for line in not_played {
            note.push_str(&format!(" {line}."));
        }
        note
    }
}

impl IntruderKindSummary {
    pub fn cells(&self) -> [String; 8] {
        [
            self.kind.name().to_string(),
            self.intruders.to_string(),
            self.attempts.to_string(),
            self.refused_text(),
            self.admitted.to_string(),
            self.frames.to_string(),
            self.messages.to_string(),
            self.cursors_text(),
        ]
    }

    /// `401 missing_token ×3, 403 not_member ×1`, or `none`.
    pub fn refused_text(&self) -> String {
        if self.refused.is_empty() {
            return "none".to_string();
        }
        self.refused
            .iter()
            .map(|(label, count)| format!("{label} ×{count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `2 of 2 unchanged`, `1 of 2 MOVED`, or `-` (none checked).
    pub fn cursors_text(&self) -> String {
        match (self.cursors_checked, self.cursors_moved) {
            (0, _) if self.kind == IntruderKind::ClientId => {
                "not checked (Redis not readable)".into()
            }
            (0, _) => "-".into(),
            (checked, 0) => format!("{checked} of {checked} unchanged"),
            (checked, moved) => format!("{moved} of {checked} MOVED"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: IntruderKind, outcomes: Vec<AttemptOutcome>) -> IntruderRecord {
        IntruderRecord {
            kind,
            index: 0,
            user_id: Uuid::nil(),
            client_id: Uuid::nil(),
            conversation: 0,
            conversation_id: Uuid::nil(),
            victim: None,
            attempts: outcomes
                .into_iter()
                .map(|outcome| Attempt {
                    at_us: 1,
                    impersonated: false,
                    outcome,
                })
                .collect(),
            victim_cursor: None,
            not_played: None,
        }
    }

    #[test]
    fn the_summary_counts_refusals_by_status_and_reason() {
        let refused = |status, reason: &str| AttemptOutcome::Refused {
            status,
            reason: Some(reason.into()),
        };
        let admitted = AttemptOutcome::Admitted {
            hello: Some("none".into()),
            frames: 4,
            messages_received: 2,
            messages: Vec::new(),
            acked: None,
            closed_with: None,
        };
        let mut client_id = record(
            IntruderKind::ClientId,
            vec![refused(403, "user_mismatch"), admitted.clone()],
        );
        client_id.victim_cursor = Some(CursorWatch {
            before: None,
            after: Some("{}".into()),
            at_us: 9,
        });
        let records = vec![
            record(
                IntruderKind::NoToken,
                vec![refused(401, "missing_token"), refused(401, "missing_token")],
            ),
            record(IntruderKind::NoToken, vec![admitted]),
            client_id,
        ];
        let summary = summarize(&records);
        assert_eq!(summary.kinds.len(), 2);
        let no_token = &summary.kinds[0];
        assert_eq!((no_token.intruders, no_token.attempts), (2, 3));
        assert_eq!(no_token.refused_text(), "401 missing_token ×2");
        assert_eq!(
            (no_token.admitted, no_token.frames, no_token.messages),
            (1, 4, 2)
        );
        assert_eq!(no_token.cursors_text(), "-");
        let hijack = &summary.kinds[1];
        assert_eq!(hijack.cursors_text(), "1 of 1 MOVED");
        assert_eq!(hijack.refused_text(), "403 user_mismatch ×1");
    }
}
