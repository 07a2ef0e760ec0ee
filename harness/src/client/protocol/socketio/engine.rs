//! Engine.IO v4 packets as they travel in WebSocket text frames: one packet
//! per frame, a one-digit type then the payload. In v4 the *server* pings
//! (`2`) and the client answers pong (`3`) with the same payload.

use serde::Deserialize;

use super::WireError;

/// The `open` packet's handshake data (`0{"sid":...}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInfo {
    /// The Engine.IO session id (not the Socket.IO socket id).
    pub sid: String,
    #[serde(default)]
    pub upgrades: Vec<String>,
    /// How often the server pings, in milliseconds.
    pub ping_interval: u64,
    /// How long after a ping is due the server gives up, in milliseconds.
    pub ping_timeout: u64,
    #[serde(default)]
    pub max_payload: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnginePacket {
    Open(OpenInfo),
    Close,
    Ping(String),
    Pong(String),
    /// A Socket.IO packet (see `packet.rs`).
    Message(String),
    Upgrade,
    Noop,
}

impl EnginePacket {
    pub fn decode(frame: &str) -> Result<EnginePacket, WireError> {
        let mut chars = frame.chars();
        let kind = chars.next().ok_or(WireError::EmptyFrame)?;
        let payload = chars.as_str();
        Ok(match kind {
            '0' => EnginePacket::Open(serde_json::from_str(payload).map_err(|source| {
                WireError::BadOpen {
                    frame: clip(frame),
                    source,
                }
            })?),
            '1' => EnginePacket::Close,
            '2' => EnginePacket::Ping(payload.to_string()),
            '3' => EnginePacket::Pong(payload.to_string()),
            '4' => EnginePacket::Message(payload.to_string()),
            '5' => EnginePacket::Upgrade,
            '6' => EnginePacket::Noop,
            other => {
                return Err(WireError::UnknownEngineType {
                    kind: other,
                    frame: clip(frame),
                })
            }
        })
    }

    /// The frame text for the client's side (no `Open`: only servers send it).
    pub fn encode(&self) -> String {
        match self {
            EnginePacket::Open(info) => format!(
                "0{{\"sid\":{},\"pingInterval\":{},\"pingTimeout\":{}}}",
                serde_json::Value::from(info.sid.as_str()),
                info.ping_interval,
                info.ping_timeout
            ),
            EnginePacket::Close => "1".into(),
            EnginePacket::Ping(payload) => format!("2{payload}"),
            EnginePacket::Pong(payload) => format!("3{payload}"),
            EnginePacket::Message(payload) => format!("4{payload}"),
            EnginePacket::Upgrade => "5".into(),
            EnginePacket::Noop => "6".into(),
        }
    }
}

/// A frame shortened for an error message.
pub(super) fn clip(frame: &str) -> String {
    const MAX_CHARS: usize = 120;
    if frame.chars().count() <= MAX_CHARS {
        frame.to_string()
    } else {
        let head: String = frame.chars().take(MAX_CHARS).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_packet_as_socket_io_4_8_sends_it() {
        let frame = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(
            EnginePacket::decode(frame).unwrap(),
            EnginePacket::Open(OpenInfo {
                sid: "lv_VI97HAXpY6yYWAAAC".into(),
                upgrades: vec![],
                ping_interval: 25_000,
                ping_timeout: 20_000,
                max_payload: Some(1_000_000),
            })
        );
    }

    #[test]
    fn ping_is_answered_with_a_pong_carrying_the_same_payload() {
        let EnginePacket::Ping(payload) = EnginePacket::decode("2probe").unwrap() else {
            panic!("2 is ping");
        };
        assert_eq!(EnginePacket::Pong(payload).encode(), "3probe");
        assert_eq!(
            EnginePacket::decode("2").unwrap(),
            EnginePacket::Ping(String::new())
        );
    }

    #[test]
    fn message_round_trips() {
        let packet = EnginePacket::Message("2[\"hi\"]".into());
        assert_eq!(packet.encode(), "42[\"hi\"]");
        assert_eq!(EnginePacket::decode("42[\"hi\"]").unwrap(), packet);
    }

    #[test]
    fn bad_frames_are_named() {
        assert!(matches!(
            EnginePacket::decode(""),
            Err(WireError::EmptyFrame)
        ));
        let err = EnginePacket::decode("9x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown Engine.IO packet type '9' in frame \"9x\""
        );
        let err = EnginePacket::decode("0{\"sid\":1}").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad Engine.IO open packet \"0{\\\"sid\\\":1}\""),
            "{err}"
        );
    }
}
