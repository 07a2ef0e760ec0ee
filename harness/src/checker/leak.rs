//! `leak`: a message of one conversation delivered to a device that is not
//! entitled to it. Today the only way the harness sees one is a receipt on
//! a socket of conversation B of a message that belongs to conversation A
//! (by its id and client_msg_id in A's log, or by the `Send` that wrote it
//! in A). Intruder devices (devices that connect without the right to a
//! conversation, see the hardening issue) are meant to report through the
//! same `record_leak`, with the intruder's socket as the site: a leak is
//! one anomaly however it came about.

use crate::history::Position;
use uuid::Uuid;

use super::appends::MessageIndex;
use super::findings::{device_label, Findings, Site};
use super::index::LogIndex;
use super::outcome::AnomalyKind;
use crate::history::{ConversationIx, RunMeta};

/// The conversation, other than `here`, that a receipt belongs to: the one
/// whose log holds `id` with this client_msg_id, else the one some device
/// sent the client_msg_id in. Linear in the number of conversations; only
/// asked for receipts that do not fit their own conversation.
pub(crate) fn owner_elsewhere(
    log: &LogIndex,
    messages: &MessageIndex,
    here: ConversationIx,
    id: Position,
    client_msg_id: Uuid,
) -> Option<ConversationIx> {
    let others =
        || (0..log.conversations.len() as ConversationIx).filter(move |conv| *conv != here);
    others()
        .find(|&conv| {
            let entries = &log.conversations[conv as usize];
            entries
                .position(id)
                .is_some_and(|position| entries.entries[position].client_msg_id == client_msg_id)
        })
        .or_else(|| others().find(|&conv| messages.was_sent((conv, client_msg_id))))
}

/// Records one `leak`: `site` is where it was seen (the socket of the
/// device that should not have it), `owner` the conversation the message
/// belongs to. The example names both conversations.
pub(crate) fn record_leak(
    findings: &mut Findings,
    meta: &RunMeta,
    messages: &MessageIndex,
    site: Site,
    owner: ConversationIx,
    id: Position,
    client_msg_id: Uuid,
) {
    findings.record(AnomalyKind::Leak, site, || {
        let conversation_label = |conv: ConversationIx| match meta.conversations.get(conv as usize)
        {
            Some(info) => format!("conversation {conv} ({})", info.conversation_id),
            None => format!("conversation {conv}"),
        };
        let receiver = site.device.map_or_else(
            || "a device".to_string(),
            |device| device_label(meta, device),
        );
        let socket = site
            .socket
            .map_or_else(String::new, |socket| format!(" socket {socket} of"));
        let sender = messages
            .send_of((owner, client_msg_id))
            .map_or_else(String::new, |send| {
                format!(", sent by {}", device_label(meta, send.device))
            });
        let detail = format!(
            "{receiver} received {id} (client_msg_id {client_msg_id}) on{socket} {}, but it is \
             a message of {}{sender}",
            conversation_label(site.conversation),
            conversation_label(owner),
        );
        (vec![id], detail)
    });
}

/// Intruders (`crate::intruders`): every admitted attempt of an intruder
/// that may not read the conversation is a `leak`, one per message it got
/// (or one for the admission itself when no message arrived: `hello`
/// alone is already a frame of the conversation); a victim's stored cursor
/// that changed while only intruders presented its `client_id` is a
/// `leak` too. Refusals are what should happen and count nothing.
pub(crate) fn check_intruders(
    meta: &RunMeta,
    records: &[crate::intruders::IntruderRecord],
    findings: &mut Findings,
) {
    use crate::intruders::AttemptOutcome;
    for record in records {
        let who = format!(
            "intruder {} #{} (user {}, client {})",
            record.kind.name(),
            record.index,
            record.user_id,
            record.client_id
        );
        let conversation = match meta.conversations.get(record.conversation as usize) {
            Some(info) => format!(
                "conversation {} ({})",
                record.conversation, info.conversation_id
            ),
            None => format!(
                "conversation {} ({})",
                record.conversation, record.conversation_id
            ),
        };
        let site = |at_us: u64, client_msg_id: Option<Uuid>| Site {
            device: None,
            conversation: record.conversation,
            socket: None,
            at_us: Some(at_us),
            client_msg_id,
        };
        if !record.kind.may_read() {
            for (number, attempt) in record.attempts.iter().enumerate() {
                let AttemptOutcome::Admitted {
                    hello,
                    messages_received,
                    messages,
                    ..
                } = &attempt.outcome
                else {
                    continue;
                };
                let attempt_number = number + 1;
                for message in messages {
                    findings.record(
                        AnomalyKind::Leak,
                        site(message.at_us, Some(message.client_msg_id)),
                        || {
                            (
                                vec![message.id],
                                format!(
                                    "{who} was let into {conversation} (attempt {attempt_number}) \
                                     and received {} (client_msg_id {})",
                                    message.id, message.client_msg_id
                                ),
                            )
                        },
                    );
                }
                // Messages past the kept ones are still counted.
                for _ in messages.len() as u64..*messages_received {
                    findings.record(AnomalyKind::Leak, site(attempt.at_us, None), || {
                        (
                            Vec::new(),
                            format!("{who} received a message of {conversation}"),
                        )
                    });
                }
                if *messages_received == 0 {
                    findings.record(AnomalyKind::Leak, site(attempt.at_us, None), || {
                        (
                            Vec::new(),
                            format!(
                                "{who} was let into {conversation} (attempt {attempt_number}, \
                                 hello cursor {}); no message arrived before it left",
                                hello.as_deref().unwrap_or("not sent")
                            ),
                        )
                    });
                }
            }
        }
        if let (Some(victim), Some(watch)) = (record.victim, &record.victim_cursor) {
            if watch.moved() {
                findings.record(AnomalyKind::Leak, site(watch.at_us, None), || {
                    let show = |text: &Option<String>| {
                        text.clone().unwrap_or_else(|| "absent".to_string())
                    };
                    (
                        Vec::new(),
                        format!(
                            "{who} presented the client_id of device (user {}, client {}) in \
                             {conversation}, which stayed offline; its stored cursor changed \
                             from {} to {}",
                            victim.user_id,
                            victim.client_id,
                            show(&watch.before),
                            show(&watch.after)
                        ),
                    )
                });
            }
        }
    }
}
