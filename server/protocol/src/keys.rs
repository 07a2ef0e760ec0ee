//! Redis key names (docs/protocol.md, "Storage layout"). One place, in the
//! protocol crate, so the server, the harness (which reads the log back
//! without linking the server's store) and anyone reading Redis by hand
//! agree.

use uuid::Uuid;

const STREAM_PREFIX: &str = "stream:conversation:";

pub fn stream(conversation_id: Uuid) -> String {
    format!("{STREAM_PREFIX}{conversation_id}")
}

pub fn meta(conversation_id: Uuid) -> String {
    format!("{STREAM_PREFIX}{conversation_id}:meta")
}

/// Per device AND per conversation: a cursor from one conversation is
/// meaningless in another (ids are timestamps), the seed's bug 5.
pub fn sync_state(user_id: Uuid, client_id: Uuid, conversation_id: Uuid) -> String {
    format!("client:sync:{user_id}:{client_id}:{conversation_id}")
}

/// Per sender: a client_msg_id is only an idempotency key for the user
/// who sent it. Keyed per conversation alone, another member sending the
/// same id read back the first sender's message id (`duplicate: true`)
/// and had their own message silently dropped.
pub fn dedup(conversation_id: Uuid, sender_id: Uuid, client_msg_id: Uuid) -> String {
    format!("dedup:{conversation_id}:{sender_id}:{client_msg_id}")
}

/// One stream for the whole deployment: every append adds an entry naming
/// the conversation stream it went to (field `stream`), capped at about
/// [`APPENDED_SIGNALS_CAP`] entries. A server's live tailer blocks on this
/// one key and then reads only the streams it names, instead of blocking
/// on every tailed stream at once: an `XREAD` over N keys costs Redis O(N)
/// to register and unregister, once per append per process. A hint only:
/// the conversation streams stay the log; a tailer that misses hints still
/// reads every stream it tails on a periodic sweep.
pub const APPENDED_SIGNALS: &str = "fanout:appended";

/// About how many entries [`APPENDED_SIGNALS`] keeps (`MAXLEN ~`).
pub const APPENDED_SIGNALS_CAP: u64 = 10_000;

/// The conversation id of a stream key, for routing XREAD replies.
pub fn conversation_of_stream(key: &str) -> Option<Uuid> {
    key.strip_prefix(STREAM_PREFIX)
        .and_then(|rest| Uuid::parse_str(rest).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_key_round_trips() {
        let id = Uuid::new_v4();
        assert_eq!(conversation_of_stream(&stream(id)), Some(id));
        assert_eq!(conversation_of_stream(&meta(id)), None);
    }
}
