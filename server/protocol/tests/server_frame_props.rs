//! `ServerFrame::parse` (the harness's fast path: tag first, then the
//! variant's fields, no `serde_json::Value`) against
//! `ServerFrame::parse_generic` (the `Value` path): the same frame or the
//! same error for every frame the encoders write, every mutation of one,
//! and arbitrary text.

mod common;

use common::{apply, edit};
use proptest::prelude::*;
use recovery_protocol::{
    CursorSource, ErrorCode, FrameError, GapReason, MessageFrame, ServerFrame, StreamId,
};
use uuid::Uuid;

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn stream_id() -> impl Strategy<Value = StreamId> {
    (any::<u64>(), any::<u64>()).prop_map(|(ms, seq)| StreamId::new(ms, seq))
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\"\\\\/\u{7f}\u{2028}a-z]{0,40}"
    ]
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    let cursor = prop_oneof![
        Just(CursorSource::Client),
        Just(CursorSource::Stored),
        Just(CursorSource::None)
    ];
    let reason = prop_oneof![Just(GapReason::Trimmed), Just(GapReason::EpochChanged)];
    let code = prop_oneof![
        Just(ErrorCode::BadFrame),
        Just(ErrorCode::TooLarge),
        Just(ErrorCode::Unavailable),
        Just(ErrorCode::Indeterminate),
        Just(ErrorCode::Internal),
        Just(ErrorCode::RateLimited),
    ];
    prop_oneof![
        (uuid(), stream_id(), cursor, text()).prop_map(
            |(client_id, resume_from, cursor, epoch)| {
                ServerFrame::Hello {
                    client_id,
                    resume_from,
                    cursor,
                    epoch,
                }
            }
        ),
        (stream_id(), stream_id(), reason).prop_map(|(resume_from, first_available, reason)| {
            ServerFrame::Gap {
                resume_from,
                first_available,
                reason,
            }
        }),
        (stream_id(), uuid(), uuid(), uuid(), text(), any::<u64>()).prop_map(
            |(id, conversation_id, sender_id, client_msg_id, body, sent_at_ms)| {
                ServerFrame::Message(MessageFrame {
                    id,
                    conversation_id,
                    sender_id,
                    client_msg_id,
                    body,
                    sent_at_ms,
                })
            }
        ),
        (stream_id(), any::<u64>())
            .prop_map(|(last_id, replayed)| ServerFrame::CaughtUp { last_id, replayed }),
        (uuid(), stream_id(), any::<bool>()).prop_map(|(client_msg_id, id, duplicate)| {
            ServerFrame::Ack {
                client_msg_id,
                id,
                duplicate,
            }
        }),
        (
            code,
            text(),
            prop::option::of(uuid()),
            prop::option::of(any::<u64>())
        )
            .prop_map(|(code, message, client_msg_id, retry_after_ms)| {
                ServerFrame::Error {
                    code,
                    message,
                    client_msg_id,
                    retry_after_ms,
                }
            }),
    ]
}

/// The encodings a server may use: serde's, the hand-written `message`
/// encoder, and the same frame with its keys in another order.
fn encodings(frame: &ServerFrame) -> Vec<String> {
    let json = frame.to_json();
    let mut out = vec![json.clone()];
    if let ServerFrame::Message(message) = frame {
        out.push(message.to_frame_json());
    }
    // Keys reversed: the tag is no longer first (generic path).
    let value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&json).expect("an encoded frame is a JSON object");
    let reversed: Vec<String> = value
        .iter()
        .rev()
        .map(|(key, value)| format!("{}:{}", serde_json::to_string(key).unwrap(), value))
        .collect();
    out.push(format!("{{{}}}", reversed.join(",")));
    out
}

/// The two parses as comparable values (errors by their full message,
/// which names the variant, the field and the position).
fn both(text: &str) -> (Result<ServerFrame, String>, Result<ServerFrame, String>) {
    let show = |err: FrameError| err.to_string();
    (
        ServerFrame::parse(text).map_err(show),
        ServerFrame::parse_generic(text).map_err(show),
    )
}

#[test]
fn tricky_frames_agree() {
    let id = "00000000-0000-0000-0000-000000000001";
    for text in [
        // A second `type`: the generic path takes the last one.
        format!(r#"{{"type":"ack","client_msg_id":"{id}","id":"1-1","duplicate":false,"type":"hello"}}"#),
        // A duplicate field: last one wins on the generic path.
        format!(r#"{{"type":"ack","client_msg_id":"{id}","id":"1-1","id":"2-2","duplicate":true}}"#),
        // An escaped tag, and an escaped id.
        format!(r#"{{"type":"a\u0063k","client_msg_id":"{id}","id":"1-1","duplicate":false}}"#),
        format!(r#"{{"type":"ack","client_msg_id":"{id}","id":"1\u002d1","duplicate":false}}"#),
        // Unknown fields, nulls for optional ones, an unknown code.
        r#"{"type":"error","code":"from_the_future","message":"m","client_msg_id":null,"x":[1,{"y":2}]}"#.to_string(),
        // Wrong types, a float, a negative number, trailing text.
        r#"{"type":"caught_up","last_id":"1-1","replayed":1.0}"#.to_string(),
        r#"{"type":"caught_up","last_id":"1-1","replayed":-0}"#.to_string(),
        r#"{"type":"caught_up","last_id":"1-1","replayed":3} x"#.to_string(),
        r#"{"type":"caught_up","last_id":"+1-1","replayed":3}"#.to_string(),
        // The `message` layout the exact reader takes, bent one way each:
        // leading zero, overflow, a float, an escaped and a raw control
        // character in the body, an uppercase UUID, a short UUID,
        // whitespace, a missing or an extra closing brace, a bare id.
        format!(r#"{{"type":"message","id":"1-1","conversation_id":"{id}","sender_id":"{id}","client_msg_id":"{id}","body":"b","sent_at_ms":07}}"#),
        format!(r#"{{"type":"message","id":"1-1","conversation_id":"{id}","sender_id":"{id}","client_msg_id":"{id}","body":"b","sent_at_ms":18446744073709551616}}"#),
        format!(r#"{{"type":"message","id":"1-1","conversation_id":"{id}","sender_id":"{id}","client_msg_id":"{id}","body":"b","sent_at_ms":1.5}}"#),
        format!(r#"{{"type":"message","id":"1-1","conversation_id":"{id}","sender_id":"{id}","client_msg_id":"{id}","body":"a\"b\n","sent_at_ms":0}}"#),
        format!("{{\"type\":\"message\",\"id\":\"1-1\",\"conversation_id\":\"{id}\",\"sender_id\":\"{id}\",\"client_msg_id\":\"{id}\",\"body\":\"a\tb\",\"sent_at_ms\":0}}"),
        format!(r#"{{"type":"message","id":"1-1","conversation_id":"{}","sender_id":"{id}","client_msg_id":"{id}","body":"b","sent_at_ms":0}}"#, "ABCDEF00-0000-0000-0000-00000000000A"),
        format!(r#"{{"type":"message","id":"1-1","conversation_id":"{}","sender_id":"{id}","client_msg_id":"{id}","body":"b","sent_at_ms":0}}"#, "00000000-0000-0000-0000-00000000001"),
        format!(r#"{{"type":"message","id":"1-1","conversation_id":"{id}","sender_id":"{id}","client_msg_id":"{id}","body":"b","sent_at_ms":0 }}"#),
        format!(r#"{{"type":"message","id":"1-1","conversation_id":"{id}","sender_id":"{id}","client_msg_id":"{id}","body":"b","sent_at_ms":0"#),
        format!(r#"{{"type":"message","id":"1-1","conversation_id":"{id}","sender_id":"{id}","client_msg_id":"{id}","body":"b","sent_at_ms":0}}}}"#),
        format!(r#"{{"type":"message","id":"17","conversation_id":"{id}","sender_id":"{id}","client_msg_id":"{id}","body":"a long body past one eight-byte word, \u00e9 and é","sent_at_ms":0}}"#),
        // Past the first eight-byte word: a raw control character, an
        // escaped quote.
        format!("{{\"type\":\"message\",\"id\":\"1-1\",\"conversation_id\":\"{id}\",\"sender_id\":\"{id}\",\"client_msg_id\":\"{id}\",\"body\":\"0123456789\u{1}bcdefghijklmnop\",\"sent_at_ms\":0}}"),
        format!(r#"{{"type":"message","id":"1-1","conversation_id":"{id}","sender_id":"{id}","client_msg_id":"{id}","body":"0123456789\"b","sent_at_ms":0}}"#),
        r#"{"type":"nope"}"#.to_string(),
        r#"{"type":"gap"}"#.to_string(),
        "{}".to_string(),
        "[]".to_string(),
        String::new(),
    ] {
        let (fast, generic) = both(&text);
        assert_eq!(fast, generic, "{text}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn encoded_frames_parse_the_same_both_ways(frame in server_frame()) {
        for text in encodings(&frame) {
            let (fast, generic) = both(&text);
            prop_assert_eq!(&fast, &generic);
            prop_assert_eq!(fast, Ok(frame.clone()));
        }
    }

    #[test]
    fn mutated_frames_parse_the_same_both_ways(
        frame in server_frame(),
        which in any::<usize>(),
        edits in prop::collection::vec(edit(), 1..5),
    ) {
        let texts = encodings(&frame);
        let text = apply(&texts[which % texts.len()], &edits);
        let (fast, generic) = both(&text);
        prop_assert_eq!(fast, generic, "{}", text);
    }

    #[test]
    fn arbitrary_text_parses_the_same_both_ways(text in any::<String>()) {
        let (fast, generic) = both(&text);
        prop_assert_eq!(fast, generic);
    }
}
