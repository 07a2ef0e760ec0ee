//! A [`Session`] driven over a tokio-tungstenite WebSocket: connect (with
//! resume), emit with acks, receive events, answer pings, and drop the
//! connection abruptly to test recovery.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::session::{Event, Output, Session};
use super::WireError;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("WebSocket to {url}: {source}")]
    WebSocket {
        url: String,
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the server refused the namespace connection: {message}")]
    Refused {
        message: String,
        data: Option<Value>,
    },
    #[error("no {what} within {timeout:?}")]
    Timeout { what: String, timeout: Duration },
    #[error("the server ended the connection ({0})")]
    Ended(&'static str),
    #[error("binary frames are not supported (Socket.IO attachments)")]
    Binary,
}

/// The URL of the Engine.IO WebSocket endpoint under `base` (`ws://host:port`).
pub fn engine_url(base: &str) -> String {
    format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        base.trim_end_matches('/')
    )
}

/// What the namespace connect said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    pub sid: String,
    pub pid: Option<String>,
    pub recovered: bool,
}

pub struct SocketIoClient {
    url: String,
    ws: Ws,
    session: Session,
    /// Events and acks read while waiting for something else.
    pending: VecDeque<Output>,
}

impl SocketIoClient {
    /// Opens `url` (see [`engine_url`]) and connects `session`'s namespace;
    /// events that came with the connect (missed ones, on a recovery) are
    /// queued for [`next_event`](Self::next_event).
    pub async fn connect(
        url: &str,
        mut session: Session,
        timeout: Duration,
    ) -> Result<(SocketIoClient, Connected), ClientError> {
        session.reconnecting();
        // Nagle off: acked sends are small frames that wait for a reply.
        let handshake = tokio_tungstenite::connect_async_with_config(url, None, true);
        let (ws, _) = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| ClientError::Timeout {
                what: format!("WebSocket handshake with {url}"),
                timeout,
            })?
            .map_err(|source| ClientError::WebSocket {
                url: url.to_string(),
                source: Box::new(source),
            })?;
        let mut client = SocketIoClient {
            url: url.to_string(),
            ws,
            session,
            pending: VecDeque::new(),
        };
        let connected = client
            .wait_for(
                "the namespace CONNECT reply",
                timeout,
                |output| match output {
                    Output::Connected {
                        sid,
                        pid,
                        recovered,
                    } => Some(Connected {
                        sid: sid.clone(),
                        pid: pid.clone(),
                        recovered: *recovered,
                    }),
                    _ => None,
                },
            )
            .await?;
        Ok((client, connected))
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Emits without asking for an ack.
    pub async fn emit(&mut self, name: &str, args: Vec<Value>) -> Result<(), ClientError> {
        let (frame, _) = self.session.emit(name, args, false)?;
        self.send(frame).await
    }

    /// Emits and waits for the server's ack; events meanwhile are queued.
    pub async fn call(
        &mut self,
        name: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<Value>, ClientError> {
        let (frame, id) = self.session.emit(name, args, true)?;
        self.send(frame).await?;
        let what = format!("ack for {name:?}");
        self.wait_for(&what, timeout, |output| match output {
            Output::Ack { id: acked, args } if Some(*acked) == id => Some(args.clone()),
            _ => None,
        })
        .await
    }

    /// The next event, or `None` if none arrives within `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>, ClientError> {
        let found = self
            .wait_for("an event", timeout, |output| match output {
                Output::Event(event) => Some(event.clone()),
                _ => None,
            })
            .await;
        match found {
            Ok(event) => Ok(Some(event)),
            Err(ClientError::Timeout { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Drops the TCP connection without a close frame or a Socket.IO
    /// DISCONNECT (as a device losing its network would), handing back
    /// the session to reconnect with.
    pub fn drop_abruptly(self) -> Session {
        drop(self.ws);
        self.session
    }

    /// Closes politely: DISCONNECT for the namespace, then a close frame.
    /// (Socket.IO does not keep the session of a client that said goodbye.)
    pub async fn close(mut self) -> Result<(), ClientError> {
        let disconnect = self.session.disconnect_frame();
        self.send(disconnect).await?;
        self.ws
            .close(None)
            .await
            .map_err(|source| self.ws_error(source))
    }

    async fn send(&mut self, frame: String) -> Result<(), ClientError> {
        let sent = self.ws.send(Message::text(frame)).await;
        sent.map_err(|source| self.ws_error(source))
    }

    fn ws_error(&self, source: tokio_tungstenite::tungstenite::Error) -> ClientError {
        ClientError::WebSocket {
            url: self.url.clone(),
            source: Box::new(source),
        }
    }

    /// Reads frames (answering pings) until `wanted` picks an output;
    /// other events and acks are queued, in order.
    async fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut wanted: impl FnMut(&Output) -> Option<T>,
    ) -> Result<T, ClientError> {
        if let Some(index) = self.pending.iter().position(|o| wanted(o).is_some()) {
            if let Some(found) = self.pending.remove(index).as_ref().and_then(&mut wanted) {
                return Ok(found);
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => {
                    return Err(ClientError::Timeout {
                        what: what.to_string(),
                        timeout,
                    })
                }
                Ok(None) => return Err(ClientError::Ended("the WebSocket ended")),
                Ok(Some(Err(source))) => return Err(self.ws_error(source)),
                Ok(Some(Ok(message))) => message,
            };
            let text = match frame {
                Message::Text(text) => text,
                Message::Binary(_) => return Err(ClientError::Binary),
                Message::Close(_) => return Err(ClientError::Ended("close frame")),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            let mut found = None;
            for output in self.session.on_frame(text.as_str())? {
                match output {
                    Output::Send(frame) => self.send(frame).await?,
                    Output::ConnectError { message, data } => {
                        return Err(ClientError::Refused { message, data })
                    }
                    Output::Disconnected => return Err(ClientError::Ended("Socket.IO DISCONNECT")),
                    Output::Closed => return Err(ClientError::Ended("Engine.IO close")),
                    output => match (found.is_none()).then(|| wanted(&output)).flatten() {
                        Some(value) => found = Some(value),
                        None => self.pending.push_back(output),
                    },
                }
            }
            if let Some(found) = found {
                return Ok(found);
            }
        }
    }
}

/// An auth payload from `(key, value)` pairs.
pub fn auth(fields: &[(&str, &str)]) -> Map<String, Value> {
    fields
        .iter()
        .map(|(key, value)| (key.to_string(), Value::from(*value)))
        .collect()
}
