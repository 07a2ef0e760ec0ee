//! One Socket.IO client socket as a state machine, free of I/O: frames in,
//! [`Output`]s out. It mirrors `socket.io-client` 4.8 (`lib/socket.ts`)
//! where that decides what the checker sees:
//!
//! - The CONNECT sent after the Engine.IO `open` carries the auth payload
//!   plus `pid` and `offset` once a previous connection gave a pid (the
//!   client's `Object.assign({ pid, offset }, auth)`).
//! - `recovered` is true only when the server's CONNECT reply repeats the
//!   pid that was presented (`this.recovered = pid && this._pid === pid`).
//! - Events that arrive before the CONNECT reply are buffered and handed
//!   out right after `Connected`: on a recovery the server writes the
//!   missed packets *before* its CONNECT reply.
//! - An event's last argument is its offset when it is a string and the
//!   connection has a pid; the latest one is kept for the next resume, and
//!   it survives a reconnect (recovered or not) until a newer one arrives.

use serde_json::{Map, Value};

use super::engine::{EnginePacket, OpenInfo};
use super::packet::{Packet, PacketType};
use super::WireError;

/// What a reconnect presents to the server to ask for recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The private session id of the previous connection.
    pub pid: String,
    /// The offset of the last event received.
    pub offset: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A text frame to write to the WebSocket (pong, CONNECT).
    Send(String),
    /// The namespace accepted the connection.
    Connected {
        sid: String,
        pid: Option<String>,
        /// The server's claim: every missed event follows (or none were missed).
        recovered: bool,
    },
    Event(Event),
    /// The answer to one of our emits.
    Ack {
        id: u64,
        args: Vec<Value>,
    },
    /// The namespace refused the connection (middleware error).
    ConnectError {
        message: String,
        data: Option<Value>,
    },
    /// The server disconnected this socket from the namespace.
    Disconnected,
    /// The server closed the Engine.IO session.
    Closed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    /// The arguments, without the offset.
    pub args: Vec<Value>,
    pub offset: Option<String>,
    /// Set when the server wants an ack (answer with [`Session::ack`]).
    pub ack_id: Option<u64>,
}

#[derive(Debug)]
pub struct Session {
    namespace: String,
    auth: Map<String, Value>,
    engine: Option<OpenInfo>,
    connected: bool,
    /// The pid presented at the current connect (the previous connection's).
    presented_pid: Option<String>,
    pid: Option<String>,
    last_offset: Option<String>,
    buffered: Vec<Event>,
    next_ack_id: u64,
}

impl Session {
    /// A socket on `namespace` ("/" or "/name") sending `auth` on connect,
    /// resuming `resume` if given.
    pub fn new(namespace: &str, auth: Map<String, Value>, resume: Option<Resume>) -> Session {
        let (pid, last_offset) = match resume {
            Some(Resume { pid, offset }) => (Some(pid), Some(offset)),
            None => (None, None),
        };
        Session {
            namespace: namespace.to_string(),
            auth,
            engine: None,
            connected: false,
            presented_pid: None,
            pid,
            last_offset,
            buffered: Vec::new(),
            next_ack_id: 0,
        }
    }

    /// Forgets the transport (it dropped); the next frames are a new
    /// Engine.IO session, whose CONNECT asks to resume.
    pub fn reconnecting(&mut self) {
        self.engine = None;
        self.connected = false;
        self.buffered.clear();
    }

    /// What the next connect presents, if recovery is possible at all.
    pub fn resume_state(&self) -> Option<Resume> {
        Some(Resume {
            pid: self.pid.clone()?,
            offset: self.last_offset.clone()?,
        })
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The Engine.IO handshake of the current transport.
    pub fn engine(&self) -> Option<&OpenInfo> {
        self.engine.as_ref()
    }

    pub fn on_frame(&mut self, frame: &str) -> Result<Vec<Output>, WireError> {
        match EnginePacket::decode(frame)? {
            EnginePacket::Open(info) => {
                self.engine = Some(info);
                Ok(vec![Output::Send(self.connect_frame())])
            }
            EnginePacket::Ping(payload) => {
                Ok(vec![Output::Send(EnginePacket::Pong(payload).encode())])
            }
            EnginePacket::Close => {
                self.connected = false;
                Ok(vec![Output::Closed])
            }
            EnginePacket::Pong(_) | EnginePacket::Upgrade | EnginePacket::Noop => Ok(Vec::new()),
            EnginePacket::Message(text) => {
                if self.engine.is_none() {
                    return Err(WireError::BeforeOpen);
                }
                self.on_packet(Packet::decode(&text)?)
            }
        }
    }

    fn connect_frame(&mut self) -> String {
        let mut auth = Map::new();
        self.presented_pid = None;
        if let Some(pid) = &self.pid {
            auth.insert("pid".into(), Value::from(pid.as_str()));
            self.presented_pid = Some(pid.clone());
            if let Some(offset) = &self.last_offset {
                auth.insert("offset".into(), Value::from(offset.as_str()));
            }
        }
        auth.extend(self.auth.clone());
        let packet = Packet::new(
            PacketType::Connect,
            &self.namespace,
            None,
            Some(auth.into()),
        );
        EnginePacket::Message(packet.encode()).encode()
    }

    fn on_packet(&mut self, packet: Packet) -> Result<Vec<Output>, WireError> {
        if packet.namespace != self.namespace {
            return Ok(Vec::new());
        }
        let Packet { kind, id, data, .. } = packet;
        match (kind, data) {
            (PacketType::Connect, Some(Value::Object(reply))) => {
                let sid = reply
                    .get("sid")
                    .and_then(Value::as_str)
                    .ok_or(WireError::ConnectWithoutSid)?;
                let pid = reply.get("pid").and_then(Value::as_str).map(str::to_string);
                let recovered = pid.is_some() && pid == self.presented_pid;
                self.connected = true;
                self.pid = pid.clone();
                let mut out = vec![Output::Connected {
                    sid: sid.to_string(),
                    pid,
                    recovered,
                }];
                for event in std::mem::take(&mut self.buffered) {
                    out.push(self.deliver(event));
                }
                Ok(out)
            }
            (PacketType::Connect, _) => Err(WireError::ConnectWithoutSid),
            (PacketType::Event, Some(Value::Array(mut args))) => {
                let name = match args.remove(0) {
                    Value::String(name) => name,
                    other => other.to_string(),
                };
                let event = Event {
                    name,
                    args,
                    offset: None,
                    ack_id: id,
                };
                if self.connected {
                    Ok(vec![self.deliver(event)])
                } else {
                    self.buffered.push(event);
                    Ok(Vec::new())
                }
            }
            (PacketType::Ack, Some(Value::Array(args))) => match id {
                Some(id) => Ok(vec![Output::Ack { id, args }]),
                None => Err(WireError::AckWithoutId),
            },
            (PacketType::ConnectError, data) => {
                self.connected = false;
                let (message, data) = match data {
                    Some(Value::Object(mut fields)) => (
                        fields
                            .remove("message")
                            .and_then(|m| m.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        fields.remove("data"),
                    ),
                    Some(Value::String(message)) => (message, None),
                    _ => (String::new(), None),
                };
                Ok(vec![Output::ConnectError { message, data }])
            }
            (PacketType::Disconnect, _) => {
                self.connected = false;
                Ok(vec![Output::Disconnected])
            }
            // `Packet::decode` only lets valid payloads through.
            (kind, _) => Err(WireError::Unexpected(kind)),
        }
    }

    /// Hands an event out, taking its offset off the arguments.
    fn deliver(&mut self, mut event: Event) -> Output {
        if self.pid.is_some() {
            if let Some(Value::String(_)) = event.args.last() {
                if let Some(Value::String(offset)) = event.args.pop() {
                    self.last_offset = Some(offset.clone());
                    event.offset = Some(offset);
                }
            }
        }
        Output::Event(event)
    }

    /// The frame for `emit(name, ...args)`, and its ack id when `with_ack`.
    pub fn emit(
        &mut self,
        name: &str,
        args: Vec<Value>,
        with_ack: bool,
    ) -> Result<(String, Option<u64>), WireError> {
        if !self.connected {
            return Err(WireError::NotConnected);
        }
        let id = with_ack.then(|| {
            let id = self.next_ack_id;
            self.next_ack_id += 1;
            id
        });
        let mut data = vec![Value::from(name)];
        data.extend(args);
        let packet = Packet::new(PacketType::Event, &self.namespace, id, Some(data.into()));
        Ok((EnginePacket::Message(packet.encode()).encode(), id))
    }

    /// The frame leaving the namespace on purpose (no recovery after it).
    pub fn disconnect_frame(&self) -> String {
        let packet = Packet::new(PacketType::Disconnect, &self.namespace, None, None);
        EnginePacket::Message(packet.encode()).encode()
    }

    /// The frame answering a server event that asked for an ack.
    pub fn ack(&self, id: u64, args: Vec<Value>) -> String {
        let packet = Packet::new(
            PacketType::Ack,
            &self.namespace,
            Some(id),
            Some(args.into()),
        );
        EnginePacket::Message(packet.encode()).encode()
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
