//! The binary history: any event sequence survives encoding, and a broken
//! file is an error naming the file and the byte offset, never a panic or
//! a silently shorter history.

use proptest::prelude::*;
use uuid::Uuid;

use super::binary::{HistoryReader, HistoryWriter};
use super::codec::{Bytes, Decoder, Encoder};
use super::*;

fn position() -> impl Strategy<Value = Position> {
    let part = prop_oneof![
        0u64..4,
        1_700_000_000_000u64..1_700_000_000_100,
        any::<u64>()
    ];
    (part.clone(), part).prop_map(|(major, minor)| Position::new(major, minor))
}

/// Few distinct UUIDs, so references to interned ones are exercised.
fn uuid() -> impl Strategy<Value = Uuid> {
    prop_oneof![
        (0u128..6).prop_map(Uuid::from_u128),
        any::<u128>().prop_map(Uuid::from_u128)
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z0-9 é:/.-]{0,12}"]
}

fn code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::BadFrame),
        Just(ErrorCode::TooLarge),
        Just(ErrorCode::Unavailable),
        Just(ErrorCode::Indeterminate),
        Just(ErrorCode::Internal),
        Just(ErrorCode::RateLimited),
        Just(ErrorCode::Other),
    ]
}

fn outcome() -> impl Strategy<Value = SendOutcome> {
    prop_oneof![
        (position(), any::<bool>())
            .prop_map(|(id, duplicate)| SendOutcome::Acked { id, duplicate }),
        (code(), text()).prop_map(|(code, message)| SendOutcome::DefiniteFailure { code, message }),
        (code(), text()).prop_map(|(code, message)| SendOutcome::Indeterminate { code, message }),
        (code(), text()).prop_map(|(code, message)| SendOutcome::Rejected { code, message }),
    ]
}

fn cause() -> impl Strategy<Value = DisconnectCause> {
    prop_oneof![
        Just(DisconnectCause::ClientClose),
        Just(DisconnectCause::ClientAbrupt),
        Just(DisconnectCause::ClientReset),
        proptest::option::of(any::<u16>()).prop_map(|code| DisconnectCause::ServerClose { code }),
        text().prop_map(|message| DisconnectCause::Error { message }),
        Just(DisconnectCause::RunEnd),
    ]
}

fn claim() -> impl Strategy<Value = ResumeClaim> {
    let origin = prop_oneof![
        Just(CursorOrigin::Client),
        Just(CursorOrigin::Stored),
        Just(CursorOrigin::None)
    ];
    prop_oneof![
        (position(), origin).prop_map(|(from, origin)| ResumeClaim::Cursor { from, origin }),
        any::<bool>().prop_map(|recovered| ResumeClaim::Recovered { recovered }),
    ]
}

fn kind() -> impl Strategy<Value = EventKind> {
    let reason = prop_oneof![
        Just(GapReason::Trimmed),
        Just(GapReason::EpochChanged),
        Just(GapReason::RecoveryFailed)
    ];
    // Few bodies, so "same body as remembered" and "different" both occur.
    let body = (0u64..3, 0u32..3);
    prop_oneof![
        (
            proptest::option::of(position()),
            proptest::option::of(text()),
            text()
        )
            .prop_map(|(last_id, epoch, target)| EventKind::Connect {
                last_id,
                epoch,
                target
            }),
        text().prop_map(|error| EventKind::ConnectFailed { error }),
        (
            proptest::option::of(uuid()),
            claim(),
            proptest::option::of(text())
        )
            .prop_map(|(client_id, claim, epoch)| EventKind::Connected {
                client_id,
                claim,
                epoch
            }),
        (
            proptest::option::of(position()),
            proptest::option::of(position()),
            reason
        )
            .prop_map(|(resume_from, first_available, reason)| EventKind::Gap {
                resume_from,
                first_available,
                reason
            }),
        (
            position(),
            uuid(),
            uuid(),
            body.clone(),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(
                |(id, sender_id, client_msg_id, (body_hash, body_len), sent_at_ms, replay)| {
                    EventKind::Message {
                        id,
                        sender_id,
                        client_msg_id,
                        body_hash,
                        body_len,
                        sent_at_ms,
                        replay,
                    }
                }
            ),
        (position(), any::<u64>())
            .prop_map(|(last_id, replayed)| EventKind::CaughtUp { last_id, replayed }),
        (uuid(), body, any::<u64>(), any::<u32>()).prop_map(
            |(client_msg_id, (body_hash, body_len), due_us, attempt)| EventKind::Send {
                client_msg_id,
                body_hash,
                body_len,
                due_us,
                attempt,
            }
        ),
        (uuid(), outcome()).prop_map(|(client_msg_id, outcome)| EventKind::SendOutcome {
            client_msg_id,
            outcome
        }),
        (code(), text()).prop_map(|(code, message)| EventKind::Error { code, message }),
        position().prop_map(|id| EventKind::AckSent { id }),
        cause().prop_map(EventKind::Disconnect),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let small = prop_oneof![0u32..4, any::<u32>()];
    (
        prop_oneof![0u64..1_000, any::<u64>()],
        small.clone(),
        small.clone(),
        small,
        kind(),
    )
        .prop_map(|(at_us, device, conversation, socket, kind)| Event {
            at_us,
            device,
            conversation,
            socket,
            kind,
        })
}

fn meta() -> RunMeta {
    RunMeta {
        scenario_name: "codec".into(),
        seed: 3,
        started_at_unix_ms: 1,
        devices: vec![DeviceInfo {
            user_id: Uuid::from_u128(1),
            client_id: Uuid::from_u128(2),
            resume_mode: ResumeMode::StoredCursor,
            conversations: vec![0],
        }],
        conversations: vec![ConversationInfo {
            conversation_id: Uuid::from_u128(3),
        }],
        faults: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any sequence of events encodes and decodes to itself, in memory and
    /// through a file.
    #[test]
    fn any_event_sequence_round_trips(events in proptest::collection::vec(event(), 0..60)) {
        let mut encoder = Encoder::new();
        let mut decoder = Decoder::new();
        for event in &events {
            let mut record = Vec::new();
            encoder.encode(event, &mut record);
            let mut bytes = Bytes::new(&record);
            prop_assert_eq!(&decoder.decode(&mut bytes).unwrap(), event);
            prop_assert_eq!(bytes.at, record.len());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        let history = History { meta: meta(), events };
        write_history(&path, &history).unwrap();
        prop_assert_eq!(read_history(&path).unwrap(), history);
    }

    /// Cutting a history file anywhere gives an error naming the file and
    /// an offset, never a panic or a shorter history.
    #[test]
    fn any_truncation_is_a_named_error(events in proptest::collection::vec(event(), 1..20), cut in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        write_history(&path, &History { meta: meta(), events }).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let cut = cut.index(bytes.len());
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = read_history(&path).unwrap_err().to_string();
        prop_assert!(err.contains(&path.display().to_string()), "{}", err);
        prop_assert!(err.contains("offset") || cut < 8, "{}", err);
    }
}

/// UUIDs beyond the interning window are written again in full, and the
/// decoder follows (a long run sends far more message ids than the window).
#[test]
fn uuids_past_the_window_round_trip() {
    let window = super::codec::UUID_WINDOW as u128;
    let events: Vec<Event> = (0..window * 2 + 10)
        .map(|n| Event {
            at_us: n as u64,
            device: 0,
            conversation: 0,
            socket: 0,
            kind: EventKind::SendOutcome {
                // Every id twice: once new, once a window later (re-interned).
                client_msg_id: Uuid::from_u128(n % (window + 3)),
                outcome: SendOutcome::Acked {
                    id: Position::new(n as u64, 0),
                    duplicate: false,
                },
            },
        })
        .collect();
    let mut encoder = Encoder::new();
    let mut decoder = Decoder::new();
    let mut record = Vec::new();
    for event in &events {
        record.clear();
        encoder.encode(event, &mut record);
        assert_eq!(&decoder.decode(&mut Bytes::new(&record)).unwrap(), event);
    }
}

/// A typical delivery stays well under 40 bytes on disk.
#[test]
fn a_delivery_is_compact() {
    let sender = Uuid::from_u128(77);
    let mut writer_events = Vec::new();
    for n in 0..1_000u64 {
        let client_msg_id = Uuid::from_u128(1_000 + u128::from(n));
        writer_events.push(Event {
            at_us: 1_000 + n * 2_000,
            device: 1,
            conversation: (n % 50) as u32,
            socket: 0,
            kind: EventKind::Send {
                client_msg_id,
                body_hash: n * 7919,
                body_len: 120,
                due_us: 995 + n * 2_000,
                attempt: 0,
            },
        });
        for device in 0..9u32 {
            writer_events.push(Event {
                at_us: n * 2_000 + 300 + u64::from(device),
                device: 100 + device * 37,
                conversation: (n % 50) as u32,
                socket: 3,
                kind: EventKind::Message {
                    id: Position::new(1_764_000_000_000 + n * 2, 0),
                    sender_id: sender,
                    client_msg_id,
                    body_hash: n * 7919,
                    body_len: 120,
                    sent_at_ms: 1_764_000_000_000 + n * 2,
                    replay: false,
                },
            });
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(HISTORY_FILE);
    let mut writer = HistoryWriter::create(&path).unwrap();
    for event in &writer_events {
        writer.write(event).unwrap();
    }
    let written = writer.finish(&meta()).unwrap();
    let per_event = written.bytes as f64 / written.events as f64;
    println!("{per_event:.1} bytes per event");
    assert!(per_event < 20.0, "{per_event} bytes per event");
}

#[test]
fn corrupt_record_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(HISTORY_FILE);
    let event = Event {
        at_us: 5,
        device: 0,
        conversation: 0,
        socket: 0,
        kind: EventKind::AckSent {
            id: Position::new(1, 2),
        },
    };
    write_history(
        &path,
        &History {
            meta: meta(),
            events: vec![event.clone(), event],
        },
    )
    .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // The second frame starts after the magic (8) and the first frame
    // (1 length byte + its record); give its record an unknown kind.
    let first_len = bytes[8] as usize;
    let second = 8 + 1 + first_len;
    bytes[second + 1] = 0x0e;
    std::fs::write(&path, &bytes).unwrap();
    let err = read_history(&path).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains(&format!("offset {second}")), "{err}");
    assert!(err.contains("unknown record tag"), "{err}");

    // Streaming: the meta still reads, the error comes at the bad event.
    let mut reader = HistoryReader::open(&path).unwrap();
    assert_eq!(reader.meta(), &meta());
    assert!(reader.next_event().unwrap().is_some());
    assert!(reader.next_event().is_err());
}

#[test]
fn truncated_file_says_the_run_did_not_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(HISTORY_FILE);
    let recorder_path = path.clone();
    let mut writer = HistoryWriter::create(&recorder_path).unwrap();
    writer
        .write(&Event {
            at_us: 1,
            device: 0,
            conversation: 0,
            socket: 0,
            kind: EventKind::AckSent { id: Position::ZERO },
        })
        .unwrap();
    writer.finish(&meta()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let err = read_history(&path).unwrap_err().to_string();
    assert!(err.contains("did not finish"), "{err}");
    assert!(
        err.contains(&format!("offset {}", bytes.len() - 3)),
        "{err}"
    );
}

/// The recorder streams events from many threads into one valid file.
#[tokio::test]
async fn recorder_streams_events_into_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(HISTORY_FILE);
    let recorder = Recorder::create(&path).unwrap();
    let handles: Vec<_> = (0..4u32)
        .map(|device| {
            let recorder = recorder.clone();
            std::thread::spawn(move || {
                for n in 0..1_000u64 {
                    recorder.record(Event {
                        at_us: n,
                        device,
                        conversation: 0,
                        socket: 0,
                        kind: EventKind::AckSent {
                            id: Position::new(n, 0),
                        },
                    });
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let written = recorder.finish(meta()).await.unwrap();
    assert_eq!(written.events, 4_000);
    let history = read_history(&path).unwrap();
    assert_eq!(history.events.len(), 4_000);
    for device in 0..4 {
        let ids: Vec<u64> = history
            .events
            .iter()
            .filter(|event| event.device == device)
            .map(|event| event.at_us)
            .collect();
        assert_eq!(ids, (0..1_000).collect::<Vec<_>>(), "per-socket order kept");
    }
}

/// `harness export --jsonl` streams the binary history into JSON lines
/// that read back to the same history.
#[test]
fn export_writes_jsonl_that_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join(HISTORY_FILE);
    let jsonl = dir.path().join(HISTORY_JSONL_FILE);
    let events: Vec<Event> = (0..50u64)
        .map(|n| Event {
            at_us: n,
            device: 0,
            conversation: 0,
            socket: (n / 10) as u32,
            kind: EventKind::AckSent {
                id: Position::new(n, 1),
            },
        })
        .collect();
    let history = History {
        meta: meta(),
        events,
    };
    write_history(&binary, &history).unwrap();
    assert_eq!(export_jsonl(&binary, &jsonl).unwrap(), 50);
    let text = std::fs::read_to_string(&jsonl).unwrap();
    assert_eq!(text.lines().count(), 51, "meta line + one line per event");
    assert_eq!(read_history_jsonl(&jsonl).unwrap(), history);
    assert_eq!(read_history(&jsonl).unwrap(), history);
}
