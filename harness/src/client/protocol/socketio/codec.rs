//! The Socket.IO adapter: a [`Session`] behind the protocol seam, so the
//! runner plays Socket.IO devices exactly as it plays v1 ones.
//!
//! The mapping (docs/adapters.md has the table):
//! - connect: the target URL as given (`/socket.io/?EIO=4&transport=websocket`);
//!   the CONNECT auth carries `device` (the user id, which the peer sends
//!   back as `sender`) plus `pid` and `offset` when resuming;
//! - CONNECT reply: `connected` with the claim `recovered: true/false`
//!   (the session token recorded is the new pid), and a `join` for the
//!   device's conversation (its room) written at once, before any send:
//!   a failed recovery comes back with no rooms;
//! - `message` events: a `message` at the event's offset (a Redis stream
//!   id, so a [`Position`] 1:1);
//! - acks of `send`: a send outcome (accepted / duplicate with the offset,
//!   anything else indeterminate: the peer may have delivered it locally);
//! - goodbye: the namespace DISCONNECT, after which the server keeps no
//!   session (so a clean drop never claims recovery).
//!
//! Socket.IO has no client acks of received messages: the resume point
//! is the offset of the last event the client handled, as in
//! `socket.io-client`, which is why [`ResumeState::last_received`] exists.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::Message;
use url::Url;
use uuid::Uuid;

use super::engine::EnginePacket;
use super::session::{Event, Output, Resume, Session};
use crate::client::protocol::{DecodeError, DeviceIdentity, Inbound, ProtocolCodec, ResumeState};
use crate::history::{body_hash, ErrorCode, EventKind, Position, ResumeClaim, SendOutcome};

/// What an ack id answers.
#[derive(Debug, Clone, Copy)]
enum Awaiting {
    Join,
    Send(Uuid),
}

#[derive(Debug)]
pub struct SocketIoCodec {
    session: Session,
    /// The room: the conversation id as text.
    room: String,
    awaiting: HashMap<u64, Awaiting>,
    resume_request: (Option<Position>, Option<String>),
}

impl SocketIoCodec {
    pub fn new(identity: &DeviceIdentity, resume: &ResumeState) -> Self {
        let mut auth = Map::new();
        auth.insert("device".into(), Value::from(identity.user_id.to_string()));
        // socket.io-client resumes from the last event it handled, not the
        // highest offset it saw.
        let offset = resume.last_received.or(resume.last_position);
        let presented = match (&resume.session, offset) {
            (Some(pid), Some(offset)) => Some(Resume {
                pid: pid.clone(),
                offset: offset.to_string(),
            }),
            _ => None,
        };
        let resume_request = match &presented {
            Some(_) => (offset, resume.session.clone()),
            None => (None, None),
        };
        SocketIoCodec {
            session: Session::new("/", auth, presented),
            room: identity.conversation_id.to_string(),
            awaiting: HashMap::new(),
            resume_request,
        }
    }

    fn emit(&mut self, name: &str, args: Value, awaiting: Awaiting) -> Option<Message> {
        match self.session.emit(name, vec![args], true) {
            Ok((frame, ack_id)) => {
                if let Some(id) = ack_id {
                    self.awaiting.insert(id, awaiting);
                }
                Some(Message::Text(frame.into()))
            }
            Err(err) => {
                tracing::warn!(%err, name, "Socket.IO emit before the namespace connected");
                None
            }
        }
    }

    /// `replay`: the event came with the CONNECT reply (buffered before it:
    /// a recovery's missed packets).
    fn inbound(&mut self, output: Output, replay: bool) -> Result<Vec<Inbound>, DecodeError> {
        Ok(match output {
            Output::Send(frame) => vec![Inbound::Reply(Message::Text(frame.into()))],
            Output::Connected { pid, recovered, .. } => {
                let room = json!({ "conv": self.room });
                let join = self.emit("join", room, Awaiting::Join);
                let connected = Inbound::Event(EventKind::Connected {
                    client_id: None,
                    claim: ResumeClaim::Recovered { recovered },
                    epoch: pid,
                });
                join.map(Inbound::Reply)
                    .into_iter()
                    .chain([connected])
                    .collect()
            }
            Output::Event(event) => vec![self.event(event, replay)?],
            Output::Ack { id, args } => match self.awaiting.remove(&id) {
                Some(Awaiting::Join) => join_outcome(&args, &self.room).into_iter().collect(),
                Some(Awaiting::Send(client_msg_id)) => {
                    vec![Inbound::Event(EventKind::SendOutcome {
                        client_msg_id,
                        outcome: send_outcome(&args),
                    })]
                }
                // An ack for nothing we asked: of no interest.
                None => vec![Inbound::Nothing],
            },
            Output::ConnectError { message, .. } => {
                return Err(DecodeError::Other(format!(
                    "the server refused the namespace connection: {message}"
                )))
            }
            Output::Disconnected => {
                return Err(DecodeError::Other(
                    "the server disconnected the socket from the namespace".into(),
                ))
            }
            Output::Closed => {
                return Err(DecodeError::Other(
                    "the server closed the Engine.IO session".into(),
                ))
            }
        })
    }

    fn event(&self, event: Event, replay: bool) -> Result<Inbound, DecodeError> {
        if event.name != "message" {
            return Ok(Inbound::Nothing);
        }
        let bad = |problem: &str| {
            DecodeError::Other(format!(
                "Socket.IO `message` event {}: {problem}",
                clip(&Value::from(event.args.clone()).to_string())
            ))
        };
        let payload = event.args.first().ok_or_else(|| bad("has no payload"))?;
        let text = |field: &str| payload.get(field).and_then(Value::as_str);
        let uuid = |field: &str| text(field).and_then(|t| Uuid::try_parse(t).ok());
        if text("conv") != Some(self.room.as_str()) {
            return Err(bad("is not for this socket's conversation"));
        }
        let sender_id = uuid("sender").ok_or_else(|| bad("lacks a uuid `sender`"))?;
        let client_msg_id =
            uuid("client_msg_id").ok_or_else(|| bad("lacks a uuid `client_msg_id`"))?;
        let body = text("body").ok_or_else(|| bad("lacks a string `body`"))?;
        let Some(offset) = &event.offset else {
            // Delivered but in no log (the adapter's XADD failed): no
            // position to check it at, which is itself worth recording.
            return Ok(Inbound::Event(EventKind::Error {
                code: ErrorCode::Other,
                message: format!("message {client_msg_id} arrived without an offset"),
            }));
        };
        let id: Position = offset
            .parse()
            .map_err(|err| bad(&format!("has a bad offset: {err}")))?;
        Ok(Inbound::Event(EventKind::Message {
            id,
            sender_id,
            client_msg_id,
            body_hash: body_hash(body),
            body_len: body.len() as u32,
            // The peer's payload has no send time.
            sent_at_ms: 0,
            replay,
        }))
    }
}

fn clip(text: &str) -> String {
    super::engine::clip(text)
}

/// `{ ok: true }` is nothing to record; a refused join is an error (the
/// device then receives nothing, which the checker will show).
fn join_outcome(args: &[Value], room: &str) -> Option<Inbound> {
    let reply = args.first();
    if reply.and_then(|r| r.get("ok")).and_then(Value::as_bool) == Some(true) {
        return None;
    }
    Some(Inbound::Event(EventKind::Error {
        code: ErrorCode::Other,
        message: format!(
            "join {room} refused: {}",
            reply.map_or_else(|| "no reply".to_string(), Value::to_string)
        ),
    }))
}

/// A `send` ack (peers/socketio/README.md, "Wire contract").
fn send_outcome(args: &[Value]) -> SendOutcome {
    let reply = args.first();
    let field = |name: &str| reply.and_then(|r| r.get(name));
    let offset = field("offset")
        .and_then(Value::as_str)
        .and_then(|o| o.parse::<Position>().ok());
    let ok = field("ok").and_then(Value::as_bool) == Some(true);
    match (ok, field("status").and_then(Value::as_str), offset) {
        (true, Some("accepted"), Some(id)) => SendOutcome::Acked {
            id,
            duplicate: false,
        },
        (true, Some("duplicate"), Some(id)) => SendOutcome::Acked {
            id,
            duplicate: true,
        },
        // A duplicate of a send still being appended, a refusal, or an
        // answer this adapter does not know: the peer may have broadcast
        // it (it delivers locally even when its XADD fails), so it may
        // or may not be in the log. Retried with the same client id.
        _ => SendOutcome::Indeterminate {
            code: ErrorCode::Other,
            message: reply.map_or_else(|| "empty ack".to_string(), Value::to_string),
        },
    }
}

impl ProtocolCodec for SocketIoCodec {
    fn connect_url(&self, target: &Url) -> Url {
        target.clone()
    }

    fn resume_request(&self) -> (Option<Position>, Option<String>) {
        self.resume_request.clone()
    }

    fn decode(&mut self, frame: &str) -> Result<Inbound, DecodeError> {
        let outputs = self.session.on_frame(frame)?;
        let mut inbound = Vec::with_capacity(outputs.len());
        let mut replay = false;
        for output in outputs {
            let connected = matches!(output, Output::Connected { .. });
            inbound.extend(self.inbound(output, replay)?);
            replay |= connected;
        }
        Ok(match inbound.len() {
            0 => Inbound::Nothing,
            1 => inbound.pop().unwrap_or(Inbound::Nothing),
            _ => Inbound::Many(inbound),
        })
    }

    fn is_ready_signal(&self, event: &EventKind) -> bool {
        // No backlog marker: a recovery's missed messages come before the
        // CONNECT reply (buffered and handed out right after it).
        matches!(event, EventKind::Connected { .. })
    }

    fn encode_send(&mut self, client_msg_id: Uuid, body: &str) -> Message {
        let args = json!({
            "conv": self.room,
            "client_msg_id": client_msg_id.to_string(),
            "body": body,
        });
        self.emit("send", args, Awaiting::Send(client_msg_id))
            // Only reachable before the CONNECT reply, when the socket
            // task does not send: a no-op keeps the frame count honest.
            .unwrap_or_else(|| Message::Text(EnginePacket::Noop.encode().into()))
    }

    fn encode_ack(&mut self, _position: Position) -> Option<Message> {
        None
    }

    fn encode_goodbye(&mut self) -> Option<Message> {
        Some(Message::Text(self.session.disconnect_frame().into()))
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
