//! The adapter fed what the peer (peers/socketio) sends.

use serde_json::json;

use super::*;

const OPEN: &str =
    r#"0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

fn identity() -> DeviceIdentity {
    DeviceIdentity {
        user_id: Uuid::from_u128(1),
        client_id: Uuid::from_u128(2),
        conversation_id: Uuid::from_u128(3),
    }
}

fn text(inbound: &Inbound) -> &str {
    match inbound {
        Inbound::Reply(Message::Text(text)) => text.as_str(),
        other => panic!("not a text reply: {other:?}"),
    }
}

fn items(inbound: Inbound) -> Vec<Inbound> {
    match inbound {
        Inbound::Many(items) => items,
        one => vec![one],
    }
}

fn message_frame(client_msg_id: Uuid, offset: &str) -> String {
    let payload = json!({
        "conv": Uuid::from_u128(3).to_string(),
        "sender": Uuid::from_u128(9).to_string(),
        "client_msg_id": client_msg_id.to_string(),
        "body": "hello",
    });
    format!("42{}", json!(["message", payload, offset]))
}

#[test]
fn a_resume_presents_pid_and_the_last_received_offset() {
    let resume = ResumeState {
        last_position: Some(Position::new(20, 0)),
        session: Some("p1".into()),
        last_received: Some(Position::new(17, 3)),
    };
    let mut codec = SocketIoCodec::new(&identity(), &resume);
    assert_eq!(
        codec.resume_request(),
        (Some(Position::new(17, 3)), Some("p1".into()))
    );
    let connect = codec.decode(OPEN).unwrap();
    let frame = text(&connect);
    assert!(frame.starts_with("40{"), "{frame}");
    assert!(frame.contains(r#""pid":"p1""#), "{frame}");
    assert!(frame.contains(r#""offset":"17-3""#), "{frame}");
    assert!(
        frame.contains(&format!(r#""device":"{}""#, Uuid::from_u128(1))),
        "{frame}"
    );
    // Nothing to resume: no pid, no offset.
    let fresh = SocketIoCodec::new(&identity(), &ResumeState::default());
    assert_eq!(fresh.resume_request(), (None, None));
}

#[test]
fn a_recovery_claims_recovered_joins_and_hands_out_the_missed_messages() {
    let resume = ResumeState {
        last_position: Some(Position::new(5, 0)),
        session: Some("p1".into()),
        last_received: Some(Position::new(5, 0)),
    };
    let mut codec = SocketIoCodec::new(&identity(), &resume);
    codec.decode(OPEN).unwrap();
    // The missed packet comes before the CONNECT reply.
    let missed = Uuid::from_u128(7);
    assert!(matches!(
        codec.decode(&message_frame(missed, "6-0")).unwrap(),
        Inbound::Nothing
    ));
    let out = items(codec.decode(r#"40{"sid":"s2","pid":"p1"}"#).unwrap());
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(
        text(&out[0]).starts_with(r#"420["join",{"conv":"#),
        "{out:?}"
    );
    assert!(matches!(
        &out[1],
        Inbound::Event(EventKind::Connected {
            claim: ResumeClaim::Recovered { recovered: true },
            epoch: Some(pid),
            ..
        }) if pid == "p1"
    ));
    assert!(codec.is_ready_signal(match &out[1] {
        Inbound::Event(event) => event,
        _ => unreachable!(),
    }));
    assert!(matches!(
        &out[2],
        Inbound::Event(EventKind::Message { id, client_msg_id, sender_id, body_len: 5, replay: true, .. })
            if *id == Position::new(6, 0) && *client_msg_id == missed && *sender_id == Uuid::from_u128(9)
    ));
    // The join's ack is nothing to record.
    assert!(matches!(
        codec.decode(r#"430[{"ok":true}]"#).unwrap(),
        Inbound::Nothing
    ));
}

#[test]
fn a_new_pid_is_a_failed_recovery() {
    let resume = ResumeState {
        last_position: Some(Position::new(5, 0)),
        session: Some("p1".into()),
        last_received: None,
    };
    let mut codec = SocketIoCodec::new(&identity(), &resume);
    codec.decode(OPEN).unwrap();
    let out = items(codec.decode(r#"40{"sid":"s2","pid":"p2"}"#).unwrap());
    assert!(matches!(
        &out[1],
        Inbound::Event(EventKind::Connected {
            claim: ResumeClaim::Recovered { recovered: false },
            ..
        })
    ));
}

#[test]
fn send_acks_become_send_outcomes() {
    let mut codec = SocketIoCodec::new(&identity(), &ResumeState::default());
    codec.decode(OPEN).unwrap();
    codec.decode(r#"40{"sid":"s1","pid":"p1"}"#).unwrap(); // ack id 0: the join
    let mut outcome = |reply: &str| {
        let id = Uuid::new_v4();
        let Message::Text(frame) = codec.encode_send(id, "b") else {
            panic!("text frame");
        };
        let ack_id: String = frame
            .as_str()
            .trim_start_matches("42")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert!(frame.as_str().contains(&id.to_string()));
        match codec.decode(&format!("43{ack_id}[{reply}]")).unwrap() {
            Inbound::Event(EventKind::SendOutcome {
                client_msg_id,
                outcome,
            }) if client_msg_id == id => outcome,
            other => panic!("not this send's outcome: {other:?}"),
        }
    };
    assert_eq!(
        outcome(r#"{"ok":true,"status":"accepted","offset":"9-1"}"#),
        SendOutcome::Acked {
            id: Position::new(9, 1),
            duplicate: false
        }
    );
    assert_eq!(
        outcome(r#"{"ok":true,"status":"duplicate","offset":"9-1"}"#),
        SendOutcome::Acked {
            id: Position::new(9, 1),
            duplicate: true
        }
    );
    assert!(matches!(
        outcome(r#"{"ok":true,"status":"duplicate","offset":null}"#),
        SendOutcome::Indeterminate { .. }
    ));
    assert!(matches!(
        outcome(r#"{"ok":false,"error":"broadcast was not persisted"}"#),
        SendOutcome::Indeterminate { .. }
    ));
}

#[test]
fn protocol_breaches_drop_the_connection() {
    let mut codec = SocketIoCodec::new(&identity(), &ResumeState::default());
    codec.decode(OPEN).unwrap();
    codec.decode(r#"40{"sid":"s1","pid":"p1"}"#).unwrap();
    let wrong_conv = format!(
        "42{}",
        json!(["message", {"conv": "elsewhere", "sender": Uuid::nil().to_string(), "client_msg_id": Uuid::nil().to_string(), "body": ""}, "1-0"])
    );
    assert!(codec.decode(&wrong_conv).is_err());
    assert!(codec.decode(&message_frame(Uuid::nil(), "x-y")).is_err());
    assert!(
        codec.decode("41").is_err(),
        "a server-side disconnect ends it"
    );
    // A message without an offset is recorded, not positioned.
    let payload = json!({"conv": Uuid::from_u128(3).to_string(), "sender": Uuid::nil().to_string(), "client_msg_id": Uuid::nil().to_string(), "body": ""});
    let mut codec = SocketIoCodec::new(&identity(), &ResumeState::default());
    codec.decode(OPEN).unwrap();
    codec.decode(r#"40{"sid":"s1","pid":"p1"}"#).unwrap();
    assert!(matches!(
        codec
            .decode(&format!("42{}", json!(["message", payload])))
            .unwrap(),
        Inbound::Event(EventKind::Error { .. })
    ));
    assert_eq!(
        codec.encode_goodbye().map(|m| m.to_string()),
        Some("41".to_string())
    );
    assert_eq!(codec.encode_ack(Position::new(1, 0)), None);
}
