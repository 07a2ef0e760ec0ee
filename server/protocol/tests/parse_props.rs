//! Property tests for everything the server parses from a client: frames
//! and the query string (docs/security.md, "Fuzzing"). Arbitrary and
//! mutated input never panics; what parses means exactly what it says;
//! valid input round-trips.

mod common;

use common::{apply, edit};
use proptest::prelude::*;
use recovery_protocol::{
    decode_query, ClientFrame, ConnectParams, FrameError, MessageFrame, QueryError, ServerFrame,
    StreamId,
};
use uuid::Uuid;

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn stream_id() -> impl Strategy<Value = StreamId> {
    (any::<u64>(), any::<u64>()).prop_map(|(ms, seq)| StreamId::new(ms, seq))
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        (uuid(), any::<String>()).prop_map(|(client_msg_id, body)| ClientFrame::Send {
            client_msg_id,
            body
        }),
        stream_id().prop_map(|id| ClientFrame::Ack { id }),
    ]
}

/// Percent-encodes every byte outside the unreserved set.
fn encode_component(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn client_frames_round_trip(frame in client_frame()) {
        prop_assert_eq!(ClientFrame::parse(&frame.to_json()).unwrap(), frame);
    }

    /// The hand-written client encoder (the harness's acks and sends)
    /// writes serde's bytes, for any body, UUID and id.
    #[test]
    fn client_frame_encoder_matches_serde(
        frame in prop_oneof![
            client_frame(),
            (uuid(), "[\\x00-\\x1f\"\\\\/\u{7f}\u{2028}a-z]{0,40}")
                .prop_map(|(client_msg_id, body)| ClientFrame::Send { client_msg_id, body }),
        ],
    ) {
        prop_assert_eq!(frame.to_json(), frame.to_json_generic());
    }

    /// A mutated frame either fails with a precise error or is a frame
    /// that serializes back to itself: no panic, no half-parsed frame.
    #[test]
    fn mutated_client_frames_parse_or_fail_cleanly(
        frame in client_frame(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let text = apply(&frame.to_json(), &edits);
        match ClientFrame::parse(&text) {
            Ok(parsed) => {
                prop_assert_eq!(ClientFrame::parse(&parsed.to_json()).unwrap(), parsed);
            }
            Err(FrameError::NotJson(_) | FrameError::NoType | FrameError::UnknownType(_)
                | FrameError::BadFields { .. }) => {}
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = ClientFrame::parse(&text); // only the absence of a panic matters
        let _ = ServerFrame::parse(&text); // the harness parses server frames
    }

    /// `client_msg_id` has one accepted spelling, hyphenated: the simple,
    /// braced and urn forms are refused.
    #[test]
    fn other_uuid_spellings_are_refused(id in uuid(), form in 0usize..3) {
        let spelled = match form {
            0 => id.simple().to_string(),
            1 => format!("{{{}}}", id.hyphenated()),
            _ => id.urn().to_string(),
        };
        let text = format!(r#"{{"type":"send","client_msg_id":"{spelled}","body":"x"}}"#);
        let is_bad_fields = matches!(ClientFrame::parse(&text), Err(FrameError::BadFields { .. }));
        prop_assert!(is_bad_fields);
    }

    #[test]
    fn encoded_queries_decode_to_the_same_pairs(
        pairs in prop::collection::vec((".{1,12}", ".{0,24}"), 0..6),
    ) {
        let raw = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
            .collect::<Vec<_>>()
            .join("&");
        prop_assert_eq!(decode_query(&raw).unwrap(), pairs);
    }

    /// Whatever the query string, decoding fails only with a `query` error
    /// and parameters only with errors naming a parameter.
    #[test]
    fn arbitrary_queries_fail_cleanly(raw in any::<String>()) {
        match decode_query(&raw) {
            Ok(pairs) => {
                if let Err(err) = ConnectParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
                    prop_assert!(!err.parameter().is_empty());
                }
            }
            Err(err) => {
                prop_assert!(matches!(err, QueryError::BadEncoding(_)));
                prop_assert_eq!(err.parameter(), "query");
            }
        }
    }

    #[test]
    fn a_percent_without_two_hex_digits_is_refused(
        prefix in "[a-z]{0,5}",
        tail in "([g-zG-Z%&=]|[0-9a-f][g-z])?",
    ) {
        let raw = format!("epoch={prefix}%{tail}");
        prop_assert!(matches!(decode_query(&raw), Err(QueryError::BadEncoding(_))));
    }

    #[test]
    fn connect_params_round_trip(
        user_id in uuid(),
        conversation_id in uuid(),
        client_id in prop::option::of(uuid()),
        last_id in prop::option::of(stream_id()),
        epoch in prop::option::of("[!-~]{1,128}"),
    ) {
        let params = ConnectParams { user_id, conversation_id, client_id, last_id, epoch };
        let pairs = decode_query(&params.to_query()).unwrap();
        let parsed = ConnectParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        prop_assert_eq!(parsed.unwrap(), params);
    }

    /// The hand-written `message` encoder (replay and live fan-out) is
    /// byte-compatible with the serde encoding of the same frame, for any
    /// body (control characters, quotes, backslashes, non-ASCII) and any
    /// id, UUIDs and timestamp.
    #[test]
    fn message_frame_encoder_matches_serde(
        id in stream_id(),
        conversation_id in uuid(),
        sender_id in uuid(),
        client_msg_id in uuid(),
        body in prop_oneof![any::<String>(), "[\\x00-\\x1f\"\\\\/\u{7f}\u{2028}a-z]{0,40}"],
        sent_at_ms in any::<u64>(),
    ) {
        let frame = MessageFrame { id, conversation_id, sender_id, client_msg_id, body, sent_at_ms };
        let fast = frame.to_frame_json();
        prop_assert_eq!(&fast, &ServerFrame::Message(frame.clone()).to_json());
        prop_assert_eq!(ServerFrame::parse(&fast).unwrap(), ServerFrame::Message(frame));
    }
}
