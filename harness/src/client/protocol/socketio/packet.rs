//! Socket.IO v5 packets (the payload of an Engine.IO `message`), in the
//! text encoding of `socket.io-parser`:
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]`, where the
//! namespace is written only when it is not `/`.

use serde_json::Value;

use super::engine::clip;
use super::WireError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketType {
    fn from_digit(digit: char) -> Option<PacketType> {
        Some(match digit {
            '0' => PacketType::Connect,
            '1' => PacketType::Disconnect,
            '2' => PacketType::Event,
            '3' => PacketType::Ack,
            '4' => PacketType::ConnectError,
            '5' => PacketType::BinaryEvent,
            '6' => PacketType::BinaryAck,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: PacketType,
    pub namespace: String,
    pub id: Option<u64>,
    pub data: Option<Value>,
}

impl Packet {
    pub fn new(kind: PacketType, namespace: &str, id: Option<u64>, data: Option<Value>) -> Packet {
        Packet {
            kind,
            namespace: namespace.to_string(),
            id,
            data,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = (self.kind as u8).to_string();
        if self.namespace != "/" {
            out.push_str(&self.namespace);
            out.push(',');
        }
        if let Some(id) = self.id {
            out.push_str(&id.to_string());
        }
        if let Some(data) = &self.data {
            out.push_str(&data.to_string());
        }
        out
    }

    /// Parses and checks a packet as `socket.io-parser`'s decoder does.
    /// Binary packets need attachments sent as separate binary frames,
    /// which this client never asks for, so they are rejected.
    pub fn decode(text: &str) -> Result<Packet, WireError> {
        let bad = |problem: &str| WireError::BadPacket {
            problem: problem.to_string(),
            packet: clip(text),
        };
        let mut rest = text;
        let digit = rest.chars().next().ok_or_else(|| bad("empty packet"))?;
        let kind = PacketType::from_digit(digit).ok_or_else(|| bad("unknown packet type"))?;
        rest = &rest[1..];
        if matches!(kind, PacketType::BinaryEvent | PacketType::BinaryAck) {
            return Err(bad("binary packets are not supported"));
        }
        let mut namespace = "/".to_string();
        if rest.starts_with('/') {
            let end = rest.find(',').unwrap_or(rest.len());
            namespace = rest[..end].to_string();
            rest = rest.get(end + 1..).unwrap_or("");
        }
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let id = if digits > 0 {
            Some(
                rest[..digits]
                    .parse()
                    .map_err(|_| bad("ack id out of range"))?,
            )
        } else {
            None
        };
        rest = &rest[digits..];
        let data = if rest.is_empty() {
            None
        } else {
            Some(serde_json::from_str::<Value>(rest).map_err(|_| bad("payload is not JSON"))?)
        };
        let valid = match (kind, &data) {
            (PacketType::Connect, None | Some(Value::Object(_))) => true,
            (PacketType::Disconnect, None) => true,
            (PacketType::ConnectError, Some(Value::Object(_) | Value::String(_))) => true,
            (PacketType::Event, Some(Value::Array(items))) => {
                matches!(items.first(), Some(Value::String(_) | Value::Number(_)))
            }
            (PacketType::Ack, Some(Value::Array(_))) => true,
            _ => false,
        };
        if !valid {
            return Err(bad("payload does not fit the packet type"));
        }
        Ok(Packet {
            kind,
            namespace,
            id,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn connect_reply_with_sid_and_pid() {
        let packet = Packet::decode(r#"0{"sid":"abc","pid":"p1"}"#).unwrap();
        assert_eq!(packet.kind, PacketType::Connect);
        assert_eq!(packet.namespace, "/");
        assert_eq!(packet.data, Some(json!({"sid": "abc", "pid": "p1"})));
    }

    #[test]
    fn event_with_namespace_and_ack_id_round_trips() {
        let packet = Packet::new(
            PacketType::Event,
            "/chat",
            Some(12),
            Some(json!(["send", {"conv": "c1"}])),
        );
        let text = packet.encode();
        assert_eq!(text, r#"2/chat,12["send",{"conv":"c1"}]"#);
        assert_eq!(Packet::decode(&text).unwrap(), packet);
    }

    #[test]
    fn ack_and_event_with_offset() {
        let ack = Packet::decode(r#"37[{"ok":true}]"#).unwrap();
        assert_eq!((ack.kind, ack.id), (PacketType::Ack, Some(7)));
        let event = Packet::decode(r#"2["message",{"body":"x"},"1700000000000-0"]"#).unwrap();
        assert_eq!(event.id, None);
        assert_eq!(
            event.data,
            Some(json!(["message", {"body": "x"}, "1700000000000-0"]))
        );
    }

    #[test]
    fn connect_error_and_disconnect() {
        let err = Packet::decode(r#"4{"message":"not authorized"}"#).unwrap();
        assert_eq!(err.kind, PacketType::ConnectError);
        let bye = Packet::decode("1/admin,").unwrap();
        assert_eq!(
            (bye.kind, bye.namespace.as_str()),
            (PacketType::Disconnect, "/admin")
        );
    }

    #[test]
    fn malformed_packets_are_rejected_with_the_reason() {
        for (text, problem) in [
            ("", "empty packet"),
            ("9", "unknown packet type"),
            (
                "51-[\"x\",{\"_placeholder\":true,\"num\":0}]",
                "binary packets are not supported",
            ),
            ("2[\"x\"", "payload is not JSON"),
            ("2{}", "payload does not fit the packet type"),
            ("2[]", "payload does not fit the packet type"),
            ("1[1]", "payload does not fit the packet type"),
            ("399999999999999999999999[]", "ack id out of range"),
        ] {
            let err = Packet::decode(text).unwrap_err();
            assert!(err.to_string().contains(problem), "{text:?}: {err}");
        }
    }
}
