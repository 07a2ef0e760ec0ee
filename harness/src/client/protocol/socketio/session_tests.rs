//! The session state machine fed the frames a Socket.IO 4.8 server sends.

use serde_json::{json, Map, Value};

use super::*;

const OPEN: &str =
    r#"0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

fn auth() -> Map<String, Value> {
    let mut auth = Map::new();
    auth.insert("device".into(), json!("d1"));
    auth
}

fn sent(outputs: &[Output]) -> Vec<&str> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send(frame) => Some(frame.as_str()),
            _ => None,
        })
        .collect()
}

fn events(outputs: &[Output]) -> Vec<(String, Option<String>)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Event(event) => Some((event.args[0]["body"].to_string(), event.offset.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_fresh_connect_sends_auth_and_is_not_recovered() {
    let mut session = Session::new("/", auth(), None);
    let out = session.on_frame(OPEN).unwrap();
    assert_eq!(sent(&out), [r#"40{"device":"d1"}"#]);
    let out = session.on_frame(r#"40{"sid":"s1","pid":"p1"}"#).unwrap();
    assert_eq!(
        out,
        [Output::Connected {
            sid: "s1".into(),
            pid: Some("p1".into()),
            recovered: false
        }]
    );
    assert!(session.is_connected());
    // No event yet: nothing to resume from.
    assert_eq!(session.resume_state(), None);
}

#[test]
fn the_server_pings_and_the_client_pongs() {
    let mut session = Session::new("/", auth(), None);
    session.on_frame(OPEN).unwrap();
    assert_eq!(session.on_frame("2").unwrap(), [Output::Send("3".into())]);
}

#[test]
fn offsets_are_taken_off_events_and_kept_for_the_resume() {
    let mut session = Session::new("/", auth(), None);
    session.on_frame(OPEN).unwrap();
    session.on_frame(r#"40{"sid":"s1","pid":"p1"}"#).unwrap();
    let out = session
        .on_frame(r#"42["message",{"body":"a"},"1-0"]"#)
        .unwrap();
    let Output::Event(event) = &out[0] else {
        panic!("an event: {out:?}");
    };
    assert_eq!(event.name, "message");
    assert_eq!(event.args, [json!({"body": "a"})]);
    assert_eq!(event.offset.as_deref(), Some("1-0"));
    assert_eq!(
        session.resume_state(),
        Some(Resume {
            pid: "p1".into(),
            offset: "1-0".into()
        })
    );
}

#[test]
fn a_recovery_presents_pid_and_offset_and_buffers_missed_events_until_connect() {
    let resume = Resume {
        pid: "p1".into(),
        offset: "1-0".into(),
    };
    let mut session = Session::new("/", auth(), Some(resume));
    let out = session.on_frame(OPEN).unwrap();
    assert_eq!(
        sent(&out),
        [r#"40{"device":"d1","offset":"1-0","pid":"p1"}"#]
    );
    // Socket.IO writes the missed packets before its CONNECT reply.
    assert!(session
        .on_frame(r#"42["message",{"body":"b"},"2-0"]"#)
        .unwrap()
        .is_empty());
    assert!(session
        .on_frame(r#"42["message",{"body":"c"},"3-0"]"#)
        .unwrap()
        .is_empty());
    let out = session.on_frame(r#"40{"sid":"s1","pid":"p1"}"#).unwrap();
    assert_eq!(
        out[0],
        Output::Connected {
            sid: "s1".into(),
            pid: Some("p1".into()),
            recovered: true
        }
    );
    assert_eq!(
        events(&out),
        [
            ("\"b\"".to_string(), Some("2-0".to_string())),
            ("\"c\"".to_string(), Some("3-0".to_string()))
        ]
    );
}

#[test]
fn a_new_pid_means_recovery_failed_and_the_old_offset_is_kept() {
    let resume = Resume {
        pid: "p1".into(),
        offset: "1-0".into(),
    };
    let mut session = Session::new("/", auth(), Some(resume));
    session.on_frame(OPEN).unwrap();
    let out = session.on_frame(r#"40{"sid":"s2","pid":"p2"}"#).unwrap();
    assert!(matches!(
        out[0],
        Output::Connected {
            recovered: false,
            ..
        }
    ));
    // As socket.io-client: the last offset outlives a failed recovery.
    assert_eq!(
        session.resume_state(),
        Some(Resume {
            pid: "p2".into(),
            offset: "1-0".into()
        })
    );
}

#[test]
fn reconnecting_on_the_same_session_resumes_from_the_last_event() {
    let mut session = Session::new("/", auth(), None);
    session.on_frame(OPEN).unwrap();
    session.on_frame(r#"40{"sid":"s1","pid":"p1"}"#).unwrap();
    session
        .on_frame(r#"42["message",{"body":"a"},"5-1"]"#)
        .unwrap();
    session.reconnecting();
    assert!(!session.is_connected());
    let out = session.on_frame(OPEN).unwrap();
    assert_eq!(
        sent(&out),
        [r#"40{"device":"d1","offset":"5-1","pid":"p1"}"#]
    );
}

#[test]
fn emits_number_their_acks_and_acks_come_back() {
    let mut session = Session::new("/", auth(), None);
    assert!(matches!(
        session.emit("join", vec![], true),
        Err(WireError::NotConnected)
    ));
    session.on_frame(OPEN).unwrap();
    session.on_frame(r#"40{"sid":"s1","pid":"p1"}"#).unwrap();
    let (frame, id) = session
        .emit("join", vec![json!({"conv": "c1"})], true)
        .unwrap();
    assert_eq!(
        (frame.as_str(), id),
        (r#"420["join",{"conv":"c1"}]"#, Some(0))
    );
    let (frame, id) = session.emit("send", vec![json!(1)], true).unwrap();
    assert_eq!((frame.as_str(), id), (r#"421["send",1]"#, Some(1)));
    let out = session.on_frame(r#"431[{"ok":true}]"#).unwrap();
    assert_eq!(
        out,
        [Output::Ack {
            id: 1,
            args: vec![json!({"ok": true})]
        }]
    );
    assert_eq!(session.ack(4, vec![json!("x")]), r#"434["x"]"#);
}

#[test]
fn other_namespaces_are_ignored_and_ours_is_prefixed() {
    let mut session = Session::new("/chat", auth(), None);
    let out = session.on_frame(OPEN).unwrap();
    assert_eq!(sent(&out), [r#"40/chat,{"device":"d1"}"#]);
    assert!(session
        .on_frame(r#"40{"sid":"x","pid":"y"}"#)
        .unwrap()
        .is_empty());
    let out = session.on_frame(r#"40/chat,{"sid":"s1"}"#).unwrap();
    // Without connection state recovery there is no pid, and no offsets.
    assert!(matches!(
        &out[0],
        Output::Connected {
            pid: None,
            recovered: false,
            ..
        }
    ));
    let out = session.on_frame(r#"42/chat,["m","last-string"]"#).unwrap();
    let Output::Event(event) = &out[0] else {
        panic!("an event");
    };
    assert_eq!((event.offset.clone(), event.args.len()), (None, 1));
}

#[test]
fn refusals_disconnects_and_closes() {
    let mut session = Session::new("/", auth(), None);
    session.on_frame(OPEN).unwrap();
    let out = session
        .on_frame(r#"44{"message":"unauthorized","data":{"code":1}}"#)
        .unwrap();
    assert_eq!(
        out,
        [Output::ConnectError {
            message: "unauthorized".into(),
            data: Some(json!({"code": 1}))
        }]
    );
    assert_eq!(session.on_frame("41").unwrap(), [Output::Disconnected]);
    assert_eq!(session.on_frame("1").unwrap(), [Output::Closed]);
}

#[test]
fn protocol_violations_are_errors() {
    let mut session = Session::new("/", auth(), None);
    assert!(matches!(
        session.on_frame("42[\"m\"]"),
        Err(WireError::BeforeOpen)
    ));
    session.on_frame(OPEN).unwrap();
    assert!(matches!(
        session.on_frame("40{}"),
        Err(WireError::ConnectWithoutSid)
    ));
    assert!(matches!(
        session.on_frame("43[1]"),
        Err(WireError::AckWithoutId)
    ));
}
