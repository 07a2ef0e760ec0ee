use crate::history::{CursorOrigin, Position, ResumeClaim, SendOutcome};
use proptest::prelude::*;

use super::*;
use crate::history::{ConversationInfo, DeviceInfo, ResumeMode, RunMeta};
use crate::report::latency::LatencyStats;

const A: DeviceIx = 0;
const B: DeviceIx = 1;
const C: DeviceIx = 2;

pub(crate) fn msg(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub(crate) fn ev(at_us: u64, device: DeviceIx, socket: u32, kind: EventKind) -> Event {
    Event {
        at_us,
        device,
        conversation: 0,
        socket,
        kind,
    }
}

pub(crate) fn connect() -> EventKind {
    EventKind::Connect {
        last_id: None,
        epoch: None,
        target: "ws://127.0.0.1:1/ws".into(),
    }
}

pub(crate) fn hello() -> EventKind {
    EventKind::Connected {
        client_id: Some(Uuid::nil()),
        claim: ResumeClaim::Cursor {
            from: Position::ZERO,
            origin: CursorOrigin::None,
        },
        epoch: Some("e".into()),
    }
}

pub(crate) fn caught_up() -> EventKind {
    EventKind::CaughtUp {
        last_id: Position::ZERO,
        replayed: 0,
    }
}

pub(crate) fn send(id: u128, due_us: u64, attempt: u32) -> EventKind {
    EventKind::Send {
        client_msg_id: msg(id),
        body_hash: 0,
        body_len: 1,
        due_us,
        attempt,
    }
}

pub(crate) fn recv(id: u128, replay: bool) -> EventKind {
    EventKind::Message {
        id: Position::new(1, id as u64),
        sender_id: Uuid::nil(),
        client_msg_id: msg(id),
        body_hash: 0,
        body_len: 1,
        sent_at_ms: 0,
        replay,
    }
}

pub(crate) fn ack(id: u128, duplicate: bool) -> EventKind {
    EventKind::SendOutcome {
        client_msg_id: msg(id),
        outcome: SendOutcome::Acked {
            id: Position::new(1, id as u64),
            duplicate,
        },
    }
}

pub(crate) fn meta(devices: usize) -> RunMeta {
    RunMeta {
        faults: Vec::new(),
        scenario_name: "handmade".into(),
        seed: 1,
        started_at_unix_ms: 0,
        devices: (0..devices)
            .map(|_| DeviceInfo {
                user_id: Uuid::nil(),
                client_id: Uuid::nil(),
                resume_mode: ResumeMode::ClientCursor,
                conversations: vec![0],
            })
            .collect(),
        conversations: vec![ConversationInfo {
            conversation_id: Uuid::nil(),
        }],
    }
}

/// A sends m1 and m2 (m2 retried), B receives m1 live, drops, comes back
/// and gets m2 replayed, C fails to connect; one phantom receipt.
pub(crate) fn handmade_history() -> History {
    let events = vec![
        ev(0, A, 0, connect()),
        ev(100, B, 0, connect()),
        ev(1_000, A, 0, hello()),
        ev(1_500, A, 0, caught_up()),
        ev(2_100, B, 0, hello()),
        // Recorded before its send: the join must not depend on order.
        ev(1_001_800, B, 0, recv(1, false)),
        ev(1_000_200, A, 0, send(1, 1_000_000, 0)),
        ev(1_001_500, A, 0, ack(1, false)),
        ev(1_500_100, A, 0, send(2, 1_500_000, 0)),
        ev(1_500_900, A, 0, recv(2, false)),
        ev(
            1_600_000,
            B,
            0,
            EventKind::Disconnect(DisconnectCause::ClientAbrupt),
        ),
        // A retry with a later due time: latency still counts from attempt 0.
        ev(1_700_000, A, 0, send(2, 1_650_000, 1)),
        ev(1_800_000, A, 0, ack(2, false)),
        ev(1_900_000, A, 0, ack(2, true)),
        ev(2_000_000, B, 1, connect()),
        ev(2_000_500, B, 1, hello()),
        ev(
            2_000_600,
            B,
            1,
            EventKind::Gap {
                resume_from: Some(Position::ZERO),
                first_available: Some(Position::new(1, 1)),
                reason: GapReason::Trimmed,
            },
        ),
        ev(2_001_000, B, 1, recv(2, true)),
        ev(2_002_000, B, 1, caught_up()),
        ev(2_100_000, C, 0, connect()),
        ev(
            2_200_000,
            C,
            0,
            EventKind::ConnectFailed {
                error: "refused".into(),
            },
        ),
        ev(2_500_000, B, 1, recv(9, false)),
        ev(
            2_600_000,
            A,
            0,
            EventKind::SendOutcome {
                client_msg_id: msg(3),
                outcome: SendOutcome::DefiniteFailure {
                    code: ErrorCode::Unavailable,
                    message: "redis down".into(),
                },
            },
        ),
        ev(
            2_700_000,
            A,
            0,
            EventKind::AckSent {
                id: Position::new(1, 2),
            },
        ),
        ev(
            3_000_000,
            A,
            0,
            EventKind::Disconnect(DisconnectCause::RunEnd),
        ),
        ev(
            3_000_000,
            B,
            1,
            EventKind::Disconnect(DisconnectCause::RunEnd),
        ),
    ];
    History {
        meta: meta(3),
        events,
    }
}

fn stats(analysis: &Analysis, metric: LatencyMetric) -> LatencyStats {
    analysis.latency(metric).stats()
}

#[test]
fn latency_metrics_are_exact_on_a_handmade_history() {
    let analysis = analyze(&handmade_history());

    let live = stats(&analysis, LatencyMetric::LiveDelivery);
    assert_eq!(
        (live.count, live.min_us, live.max_us),
        (2, Some(900), Some(1_800))
    );
    assert_eq!((live.p50_us, live.p99_us), (Some(900), Some(1_800)));
    assert_eq!(live.mean_us, Some(1_350.0));

    let ack = stats(&analysis, LatencyMetric::Ack);
    // m1: 1_001_500 - 1_000_000; m2: first ack 1_800_000 - attempt-0 due 1_500_000.
    assert_eq!(
        (ack.count, ack.p50_us, ack.max_us),
        (2, Some(1_500), Some(300_000))
    );
    assert_eq!(ack.p99_us, Some(300_000));

    let hello = stats(&analysis, LatencyMetric::ConnectToHello);
    assert_eq!(hello.count, 3);
    assert_eq!(
        (hello.min_us, hello.p50_us, hello.max_us),
        (Some(500), Some(1_000), Some(2_000))
    );

    let recovery = stats(&analysis, LatencyMetric::Recovery);
    assert_eq!((recovery.count, recovery.max_us), (1, Some(2_000)));

    let replay = stats(&analysis, LatencyMetric::ReplayStaleness);
    assert_eq!((replay.count, replay.max_us), (1, Some(501_000)));
}

#[test]
fn per_second_series_on_a_handmade_history() {
    let analysis = analyze(&handmade_history());
    let expected = vec![
        SecondStats {
            second: 0,
            sockets_online: 2,
            ..SecondStats::default()
        },
        SecondStats {
            second: 1,
            sockets_online: 2,
            sends: 3,
            deliveries: 2,
            acks: 3,
            reconnects: 0,
            live_delivery_p99_us: Some(1_800),
        },
        SecondStats {
            second: 2,
            sockets_online: 2,
            sends: 0,
            deliveries: 2,
            acks: 0,
            reconnects: 1,
            // The only live receipt this second is a phantom: no latency.
            live_delivery_p99_us: None,
        },
        SecondStats {
            second: 3,
            sockets_online: 2,
            ..SecondStats::default()
        },
    ];
    assert_eq!(analysis.series, expected);
    assert!(!analysis.series_truncated);
}

#[test]
fn totals_on_a_handmade_history() {
    let totals = analyze(&handmade_history()).totals;
    let map = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs
            .iter()
            .map(|(name, count)| (name.to_string(), *count))
            .collect()
    };
    let expected = Totals {
        devices: 3,
        conversations: 1,
        connects: 4,
        reconnects: 1,
        connect_failures: 1,
        hellos: 3,
        caught_ups: 2,
        sends: 3,
        send_retries: 1,
        messages_sent: 2,
        acks: 3,
        duplicate_acks: 1,
        acks_sent: 1,
        errors_by_code: map(&[("unavailable", 1)]),
        deliveries_live: 3,
        deliveries_replayed: 1,
        deliveries_without_send: 1,
        gaps: 1,
        // Reasons never seen are still listed, at 0.
        gaps_by_reason: map(&[("epoch_changed", 0), ("trimmed", 1)]),
        disconnects_by_cause: map(&[("client_abrupt", 1), ("run_end", 2)]),
        peak_sockets_online: 2,
        history_duration_s: 3.0,
        delivery_rate_per_s: 4.0 / 3.0,
    };
    assert_eq!(totals, expected);
}

#[test]
fn first_send_is_the_lowest_attempt_even_if_recorded_later() {
    let events = vec![
        ev(5_000, A, 0, send(1, 4_000, 1)),
        ev(1_000, A, 0, send(1, 1_000, 0)),
        ev(6_000, B, 0, recv(1, false)),
    ];
    let analysis = analyze(&History {
        meta: meta(2),
        events,
    });
    assert_eq!(
        analysis.latency(LatencyMetric::LiveDelivery).max_us(),
        Some(5_000)
    );
}

#[test]
fn sockets_online_counts_concurrency_not_events() {
    // Hand-over at the same instant (drop then hello) never shows 2 online.
    let events = vec![
        ev(0, A, 0, hello()),
        ev(
            500_000,
            A,
            0,
            EventKind::Disconnect(DisconnectCause::ClientClose),
        ),
        ev(500_000, A, 1, hello()),
        ev(
            2_500_000,
            A,
            1,
            EventKind::Disconnect(DisconnectCause::ClientClose),
        ),
    ];
    let analysis = analyze(&History {
        meta: meta(1),
        events,
    });
    let online: Vec<u64> = analysis.series.iter().map(|s| s.sockets_online).collect();
    assert_eq!(online, vec![1, 1, 1]);
    assert_eq!(analysis.totals.peak_sockets_online, 1);
}

#[test]
fn per_second_p99_is_a_percentile_not_the_max() {
    let mut events: Vec<Event> = Vec::new();
    for n in 1..=200u64 {
        events.push(ev(0, A, 0, send(u128::from(n), 0, 0)));
        events.push(ev(n, B, 0, recv(u128::from(n), false)));
    }
    let analysis = analyze(&History {
        meta: meta(2),
        events,
    });
    assert_eq!(analysis.series[0].live_delivery_p99_us, Some(198));
}

#[test]
fn far_future_events_do_not_grow_the_series() {
    let events = vec![ev(0, A, 0, hello()), ev(u64::MAX / 2, A, 0, send(1, 0, 0))];
    let analysis = analyze(&History {
        meta: meta(1),
        events,
    });
    assert_eq!(analysis.series.len(), 1);
    assert!(analysis.series_truncated);
    assert_eq!(analysis.totals.sends, 1);
}

/// Interleaves per-socket sequences as `choices` dictate: any recording
/// order the recorder could produce (each socket's own events stay in order).
pub(crate) fn interleave(history: &History, choices: &[usize]) -> History {
    let mut queues: Vec<(SocketKey, std::collections::VecDeque<Event>)> = Vec::new();
    for event in &history.events {
        let key = socket_key(event);
        match queues.iter_mut().find(|(candidate, _)| *candidate == key) {
            Some((_, queue)) => queue.push_back(event.clone()),
            None => queues.push((key, std::iter::once(event.clone()).collect())),
        }
    }
    let mut events = Vec::with_capacity(history.events.len());
    let mut choice = choices.iter().cycle();
    while queues.iter().any(|(_, queue)| !queue.is_empty()) {
        let non_empty: Vec<usize> = (0..queues.len())
            .filter(|ix| !queues[*ix].1.is_empty())
            .collect();
        let pick = non_empty[choice.next().copied().unwrap_or(0) % non_empty.len()];
        events.extend(queues[pick].1.pop_front());
    }
    History {
        meta: history.meta.clone(),
        events,
    }
}

proptest! {
    #[test]
    fn analysis_does_not_depend_on_interleaving(choices in prop::collection::vec(0usize..16, 1..64)) {
        let original = handmade_history();
        let shuffled = interleave(&original, &choices);
        let (expected, actual) = (analyze(&original), analyze(&shuffled));
        prop_assert_eq!(&expected.series, &actual.series);
        prop_assert_eq!(&expected.totals, &actual.totals);
        for metric in LatencyMetric::ALL {
            prop_assert_eq!(expected.latency(metric).stats(), actual.latency(metric).stats());
        }
    }
}
