//! Protocol v1 (docs/protocol.md): the reference server's JSON frames.
//!
//! The only module of the harness's client that knows v1's frames; the
//! mapping to history events is the table in docs/adapters.md.

use recovery_protocol::{
    ClientFrame, ConnectParams, CursorSource, ErrorCode as WireCode, GapReason as WireGap,
    ServerFrame, StreamId,
};
use tokio_tungstenite::tungstenite::Message;
use url::Url;
use uuid::Uuid;

use super::{DecodeError, DeviceIdentity, Inbound, ProtocolCodec, ResumeState};
use crate::history::{
    body_hash, CursorOrigin, ErrorCode, EventKind, GapReason, Position, ResumeClaim, SendOutcome,
};

/// v1 stream ids are positions 1:1 (`ms` major, `seq` minor).
pub fn position(id: StreamId) -> Position {
    Position::new(id.ms, id.seq)
}

pub fn stream_id(position: Position) -> StreamId {
    StreamId::new(position.major, position.minor)
}

fn origin(cursor: CursorSource) -> CursorOrigin {
    match cursor {
        CursorSource::Client => CursorOrigin::Client,
        CursorSource::Stored => CursorOrigin::Stored,
        CursorSource::None => CursorOrigin::None,
    }
}

fn gap_reason(reason: WireGap) -> GapReason {
    match reason {
        WireGap::Trimmed => GapReason::Trimmed,
        WireGap::EpochChanged => GapReason::EpochChanged,
    }
}

fn error_code(code: WireCode) -> ErrorCode {
    match code {
        WireCode::BadFrame => ErrorCode::BadFrame,
        WireCode::TooLarge => ErrorCode::TooLarge,
        WireCode::Unavailable => ErrorCode::Unavailable,
        WireCode::Indeterminate => ErrorCode::Indeterminate,
        WireCode::Internal => ErrorCode::Internal,
        WireCode::RateLimited => ErrorCode::RateLimited,
        WireCode::Unknown => ErrorCode::Other,
    }
}

/// What an `error` frame about a send means for that send
/// (docs/protocol.md, "Errors").
fn send_outcome(code: WireCode, message: String) -> SendOutcome {
    let code_seen = error_code(code);
    match code {
        // "the send never reached storage, so it was NOT appended"; a
        // rate-limited send was refused before it was appended.
        WireCode::Unavailable | WireCode::RateLimited => SendOutcome::DefiniteFailure {
            code: code_seen,
            message,
        },
        // Sent to storage without an answer, an unexpected failure, or a
        // code this harness does not know: may have been appended.
        WireCode::Indeterminate | WireCode::Internal | WireCode::Unknown => {
            SendOutcome::Indeterminate {
                code: code_seen,
                message,
            }
        }
        WireCode::BadFrame | WireCode::TooLarge => SendOutcome::Rejected {
            code: code_seen,
            message,
        },
    }
}

/// One v1 connection: the query string carries the resume state.
#[derive(Debug)]
pub struct V1Codec {
    params: ConnectParams,
}

impl V1Codec {
    pub fn new(identity: &DeviceIdentity, resume: &ResumeState) -> Self {
        V1Codec {
            params: ConnectParams {
                user_id: identity.user_id,
                conversation_id: identity.conversation_id,
                client_id: Some(identity.client_id),
                last_id: resume.last_position.map(stream_id),
                epoch: resume.session.clone(),
            },
        }
    }
}

/// A v1 server frame as a history event.
pub fn event_of(frame: ServerFrame) -> EventKind {
    match frame {
        ServerFrame::Hello {
            client_id,
            resume_from,
            cursor,
            epoch,
        } => EventKind::Connected {
            client_id: Some(client_id),
            claim: ResumeClaim::Cursor {
                from: position(resume_from),
                origin: origin(cursor),
            },
            epoch: Some(epoch),
        },
        ServerFrame::Gap {
            resume_from,
            first_available,
            reason,
        } => EventKind::Gap {
            resume_from: Some(position(resume_from)),
            first_available: Some(position(first_available)),
            reason: gap_reason(reason),
        },
        ServerFrame::Message(message) => EventKind::Message {
            id: position(message.id),
            sender_id: message.sender_id,
            client_msg_id: message.client_msg_id,
            body_hash: body_hash(&message.body),
            body_len: message.body.len() as u32,
            sent_at_ms: message.sent_at_ms,
            // The socket task knows whether `caught_up` came yet.
            replay: false,
        },
        ServerFrame::CaughtUp { last_id, replayed } => EventKind::CaughtUp {
            last_id: position(last_id),
            replayed,
        },
        ServerFrame::Ack {
            client_msg_id,
            id,
            duplicate,
        } => EventKind::SendOutcome {
            client_msg_id,
            outcome: SendOutcome::Acked {
                id: position(id),
                duplicate,
            },
        },
        ServerFrame::Error {
            code,
            message,
            client_msg_id: Some(client_msg_id),
            ..
        } => EventKind::SendOutcome {
            client_msg_id,
            outcome: send_outcome(code, message),
        },
        ServerFrame::Error {
            code,
            message,
            client_msg_id: None,
            ..
        } => EventKind::Error {
            code: error_code(code),
            message,
        },
    }
}

impl ProtocolCodec for V1Codec {
    fn connect_url(&self, target: &Url) -> Url {
        let mut url = target.clone();
        url.set_query(Some(&self.params.to_query()));
        url
    }

    fn resume_request(&self) -> (Option<Position>, Option<String>) {
        (self.params.last_id.map(position), self.params.epoch.clone())
    }

    fn decode(&mut self, frame: &str) -> Result<Inbound, DecodeError> {
        Ok(Inbound::Event(event_of(ServerFrame::parse(frame)?)))
    }

    fn is_ready_signal(&self, event: &EventKind) -> bool {
        matches!(event, EventKind::CaughtUp { .. })
    }

    fn encode_send(&mut self, client_msg_id: Uuid, body: &str) -> Message {
        let frame = ClientFrame::Send {
            client_msg_id,
            body: body.to_string(),
        };
        Message::Text(frame.to_json().into())
    }

    fn encode_ack(&mut self, position: Position) -> Option<Message> {
        let frame = ClientFrame::Ack {
            id: stream_id(position),
        };
        Some(Message::Text(frame.to_json().into()))
    }

    fn encode_goodbye(&mut self) -> Option<Message> {
        // v1 ends with the WebSocket close frame alone.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recovery_protocol::MessageFrame;

    fn codec(resume: ResumeState) -> V1Codec {
        let identity = DeviceIdentity {
            user_id: Uuid::from_u128(1),
            client_id: Uuid::from_u128(2),
            conversation_id: Uuid::from_u128(3),
        };
        V1Codec::new(&identity, &resume)
    }

    #[test]
    fn resume_state_goes_into_the_query() {
        let resume = ResumeState {
            last_position: Some(Position::new(17, 4)),
            session: Some("e1".into()),
            last_received: None,
        };
        let codec = codec(resume);
        let url = codec.connect_url(&Url::parse("ws://127.0.0.1:9/ws").unwrap());
        let query = url.query().unwrap();
        assert!(query.contains("last_id=17-4"), "{query}");
        assert!(query.contains("epoch=e1"), "{query}");
        assert_eq!(
            codec.resume_request(),
            (Some(Position::new(17, 4)), Some("e1".into()))
        );
    }

    #[test]
    fn frames_map_to_neutral_events() {
        let mut codec = codec(ResumeState::default());
        let hello = ServerFrame::Hello {
            client_id: Uuid::from_u128(2),
            resume_from: StreamId::new(5, 1),
            cursor: CursorSource::Stored,
            epoch: "e".into(),
        };
        let Inbound::Event(event) = codec.decode(&hello.to_json()).unwrap() else {
            panic!("hello is an event");
        };
        assert_eq!(
            event,
            EventKind::Connected {
                client_id: Some(Uuid::from_u128(2)),
                claim: ResumeClaim::Cursor {
                    from: Position::new(5, 1),
                    origin: CursorOrigin::Stored
                },
                epoch: Some("e".into()),
            }
        );
        let message = ServerFrame::Message(MessageFrame {
            id: StreamId::new(9, 0),
            conversation_id: Uuid::from_u128(3),
            sender_id: Uuid::from_u128(4),
            client_msg_id: Uuid::from_u128(5),
            body: "hi".into(),
            sent_at_ms: 9,
        });
        assert!(matches!(
            event_of(message),
            EventKind::Message { id, body_len: 2, .. } if id == Position::new(9, 0)
        ));
        let outcome = |code| match event_of(ServerFrame::Error {
            code,
            message: String::new(),
            client_msg_id: Some(Uuid::from_u128(5)),
            retry_after_ms: None,
        }) {
            EventKind::SendOutcome { outcome, .. } => outcome,
            other => panic!("not a send outcome: {other:?}"),
        };
        assert!(matches!(
            outcome(WireCode::Unavailable),
            SendOutcome::DefiniteFailure { .. }
        ));
        assert!(matches!(
            outcome(WireCode::Indeterminate),
            SendOutcome::Indeterminate { .. }
        ));
        assert!(matches!(
            outcome(WireCode::Internal),
            SendOutcome::Indeterminate { .. }
        ));
        assert!(matches!(
            outcome(WireCode::TooLarge),
            SendOutcome::Rejected { .. }
        ));
        // Refused before it was appended: definite, retried later.
        assert!(matches!(
            outcome(WireCode::RateLimited),
            SendOutcome::DefiniteFailure {
                code: ErrorCode::RateLimited,
                ..
            }
        ));
        assert!(matches!(
            outcome(WireCode::Unknown),
            SendOutcome::Indeterminate {
                code: ErrorCode::Other,
                ..
            }
        ));
        let unrelated = event_of(ServerFrame::Error {
            code: WireCode::BadFrame,
            message: "x".into(),
            client_msg_id: None,
            retry_after_ms: None,
        });
        assert!(matches!(
            unrelated,
            EventKind::Error {
                code: ErrorCode::BadFrame,
                ..
            }
        ));
        assert!(codec.decode("{\"type\":\"nope\"}").is_err());
    }

    #[test]
    fn ack_and_send_frames_are_v1() {
        let mut codec = codec(ResumeState::default());
        let Some(Message::Text(ack)) = codec.encode_ack(Position::new(3, 2)) else {
            panic!("v1 acks");
        };
        assert_eq!(
            ClientFrame::parse(ack.as_str()).unwrap(),
            ClientFrame::Ack {
                id: StreamId::new(3, 2)
            }
        );
        let Message::Text(send) = codec.encode_send(Uuid::from_u128(7), "b") else {
            panic!("text frame");
        };
        assert!(matches!(
            ClientFrame::parse(send.as_str()).unwrap(),
            ClientFrame::Send { body, .. } if body == "b"
        ));
    }
}
