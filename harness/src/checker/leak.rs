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
