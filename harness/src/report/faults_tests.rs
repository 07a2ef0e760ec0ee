use crate::history::ErrorCode;
use proptest::prelude::*;

use super::*;
use crate::history::{DeviceIx, History, SendOutcome};
use crate::report::analysis::analyze;
use crate::report::analysis::tests::{
    ack, caught_up, connect, ev, hello, interleave, meta, msg, recv,
};

const A: DeviceIx = 0;
const B: DeviceIx = 1;
const C: DeviceIx = 2;
const D: DeviceIx = 3;

pub(crate) const FAULT_START_US: u64 = 10_000_000;
pub(crate) const FAULT_END_US: u64 = 12_000_000;

fn disconnect(cause: DisconnectCause) -> EventKind {
    EventKind::Disconnect(cause)
}

fn server_close() -> EventKind {
    disconnect(DisconnectCause::ServerClose { code: Some(1011) })
}

fn socket_error() -> EventKind {
    disconnect(DisconnectCause::Error {
        message: "connection reset".into(),
    })
}

/// How v1 reports `code` for a send (`Some`) or outside any send.
fn error(code: ErrorCode, client_msg_id: Option<u128>) -> EventKind {
    let message = "redis down".to_string();
    match client_msg_id {
        None => EventKind::Error { code, message },
        Some(id) => EventKind::SendOutcome {
            client_msg_id: msg(id),
            outcome: match code {
                ErrorCode::Unavailable => SendOutcome::DefiniteFailure { code, message },
                ErrorCode::Indeterminate | ErrorCode::Internal => {
                    SendOutcome::Indeterminate { code, message }
                }
                _ => SendOutcome::Rejected { code, message },
            },
        },
    }
}

pub(crate) fn redis_restart() -> FaultWindow {
    FaultWindow {
        kind: "redis_restart".into(),
        target: "redis".into(),
        start_us: FAULT_START_US,
        end_us: FAULT_END_US,
        error: None,
        sockets_dropped: None,
    }
}

/// Four sockets online; a Redis restart from 10 s to 12 s. What counts
/// and what does not is said beside each event.
pub(crate) fn fault_history() -> History {
    let events = vec![
        ev(1_000, A, 0, hello()),
        ev(2_000, B, 0, hello()),
        ev(3_000, C, 0, hello()),
        ev(4_000, D, 0, hello()),
        // Before the start: not caused by the fault; B is back before it.
        ev(9_000_000, B, 0, server_close()),
        ev(9_500_000, B, 1, connect()),
        ev(9_600_000, B, 1, hello()),
        ev(9_999_999, B, 1, ack(3, false)),
        // At the start exactly: caused.
        ev(FAULT_START_US, A, 0, server_close()),
        // Planned by the client: not caused.
        ev(10_200_000, C, 0, disconnect(DisconnectCause::ClientClose)),
        ev(10_300_000, B, 1, ack(1, false)),
        // The same message acked again counts once.
        ev(10_400_000, B, 1, ack(1, true)),
        ev(10_500_000, A, 1, connect()),
        ev(
            10_600_000,
            A,
            1,
            EventKind::ConnectFailed {
                error: "refused".into(),
            },
        ),
        ev(11_000_000, D, 0, socket_error()),
        ev(11_100_000, B, 1, error(ErrorCode::Unavailable, Some(7))),
        // Not a send's error, and not `unavailable`: neither counts.
        ev(11_200_000, B, 1, error(ErrorCode::Unavailable, None)),
        ev(11_300_000, B, 1, error(ErrorCode::Internal, Some(8))),
        // Live, but before the end: recovery needs one after it.
        ev(11_900_000, B, 1, recv(5, false)),
        ev(FAULT_END_US, B, 1, ack(2, false)),
        ev(12_000_001, B, 1, ack(4, false)),
        ev(12_050_000, B, 1, recv(6, true)),
        // The first live delivery after the end; only B is online then.
        ev(12_100_000, B, 1, recv(1, false)),
        ev(12_500_000, B, 1, error(ErrorCode::Unavailable, Some(9))),
        ev(13_000_000, A, 2, hello()),
        ev(14_000_000, C, 1, hello()),
        // Back to 4 of 4: recovered 3 s after the end.
        ev(15_000_000, D, 1, hello()),
        // The last instant of the attribution tail: caused.
        ev(
            FAULT_END_US + FAULT_ATTRIBUTION_TAIL_US,
            A,
            2,
            socket_error(),
        ),
        ev(17_000_001, C, 1, server_close()),
        ev(17_500_000, A, 3, hello()),
        ev(18_000_000, B, 1, disconnect(DisconnectCause::RunEnd)),
    ];
    let mut meta = meta(4);
    meta.faults = vec![redis_restart()];
    History { meta, events }
}

#[test]
fn reconnects_recovery_and_window_counts_are_exact() {
    let analysis = analyze(&fault_history());
    let expected = FaultImpact {
        kind: "redis_restart".into(),
        target: "redis".into(),
        start_s: 10.0,
        end_s: 12.0,
        duration_s: 2.0,
        // A's and D's first sockets, A's failed connect, A's socket at the tail end.
        reconnects_caused: 4,
        unplanned_disconnects: 3,
        connect_failures: 1,
        sockets_online_before: 4,
        recovery_s: Some(3.0),
        // Messages 1 and 2 (message 1 twice).
        messages_acked: 2,
        unavailable_send_errors: 1,
        sockets_dropped: None,
        catch_ups: 0,
        catch_up_p50_ms: None,
        catch_up_p99_ms: None,
        catch_up_max_ms: None,
        error: None,
    };
    assert_eq!(analysis.faults, vec![expected]);
}

#[test]
fn never_recovered_without_a_live_delivery_after_the_end() {
    let mut history = fault_history();
    history.events.retain(|event| {
        !matches!(event.kind, EventKind::Message { replay: false, .. })
            || event.at_us < FAULT_END_US
    });
    let fault = &analyze(&history).faults[0];
    assert_eq!(fault.recovery_s, None);
    assert!(!fault.recovered());
}

#[test]
fn never_recovered_while_too_few_sockets_come_back() {
    let mut history = fault_history();
    // Without D's return only 3 of 4 are ever online again (< 95%).
    history
        .events
        .retain(|event| !(event.device == D && event.socket == 1));
    assert_eq!(analyze(&history).faults[0].recovery_s, None);
}

#[test]
fn recovery_needs_95_percent_rounded_up() {
    // 20 sockets; 2 drop in the fault and 1 returns: 19 of 20 is 95%.
    let mut events: Vec<Event> = (0..20).map(|device| ev(0, device, 0, hello())).collect();
    events.push(ev(1_500_000, 0, 0, server_close()));
    events.push(ev(1_500_000, 1, 0, server_close()));
    events.push(ev(2_500_000, 2, 0, recv(1, false)));
    events.push(ev(3_250_000, 0, 1, hello()));
    let mut meta = meta(20);
    meta.faults = vec![FaultWindow {
        kind: "server_kill".into(),
        target: "server 0".into(),
        start_us: 1_000_000,
        end_us: 2_000_000,
        error: Some("restart took 3 tries".into()),
        sockets_dropped: None,
    }];
    let fault = &analyze(&History { meta, events }).faults[0];
    assert_eq!(fault.sockets_online_before, 20);
    assert_eq!(fault.reconnects_caused, 2);
    assert_eq!(fault.recovery_s, Some(1.25));
    assert_eq!(fault.error.as_deref(), Some("restart took 3 tries"));
}

#[test]
fn instant_fault_has_zero_duration_and_a_backwards_window_is_instant() {
    let mut history = fault_history();
    history.meta.faults = vec![
        FaultWindow {
            kind: "reset".into(),
            target: "link clients".into(),
            start_us: FAULT_START_US,
            end_us: FAULT_START_US,
            error: None,
            sockets_dropped: None,
        },
        FaultWindow {
            kind: "reset".into(),
            target: "link clients".into(),
            start_us: FAULT_START_US,
            end_us: FAULT_START_US - 1,
            error: None,
            sockets_dropped: None,
        },
    ];
    let faults = analyze(&history).faults;
    assert_eq!(faults[0], faults[1]);
    assert_eq!((faults[0].start_s, faults[0].duration_s), (10.0, 0.0));
    // A's drop at the start, A's failed connect and D's error within 5 s.
    assert_eq!(faults[0].reconnects_caused, 3);
    // Live at 12.1 s, all four online again at 15 s.
    assert_eq!(faults[0].recovery_s, Some(5.0));
}

/// A storm drops all four sockets at 10 s; they reconnect within the
/// 2 s window and catch up 100, 200, 300 and 4,000 ms after connecting.
/// A connection opened before the window and one never caught up do not
/// count; the dropped sockets count as reconnects caused.
#[test]
fn a_storm_reports_its_dropped_sockets_and_their_catch_up_latency() {
    let mut events: Vec<Event> = [A, B, C, D]
        .into_iter()
        .map(|device| ev(1_000, device, 0, hello()))
        .collect();
    events.push(ev(9_000_000, A, 9, connect()));
    events.push(ev(10_050_000, A, 9, caught_up()));
    for (device, connect_us, catch_up_ms) in [
        (A, 10_500_000, 100),
        (B, 11_000_000, 200),
        (C, 11_500_000, 300),
        (D, 12_000_000, 4_000),
    ] {
        events.push(ev(connect_us, device, 1, connect()));
        events.push(ev(connect_us + catch_up_ms * 1_000, device, 1, caught_up()));
    }
    events.push(ev(11_900_000, A, 2, connect()));
    let mut meta = meta(4);
    meta.faults = vec![FaultWindow {
        kind: "reconnect_storm".into(),
        target: "clients".into(),
        start_us: FAULT_START_US,
        end_us: FAULT_END_US,
        error: None,
        sockets_dropped: Some(4),
    }];
    let fault = &analyze(&History { meta, events }).faults[0];
    assert_eq!(fault.sockets_dropped, Some(4));
    assert_eq!(fault.reconnects_caused, 4);
    assert_eq!(fault.catch_ups, 4);
    assert_eq!(fault.catch_up_p50_ms, Some(200.0));
    assert_eq!(fault.catch_up_p99_ms, Some(4_000.0));
    assert_eq!(fault.catch_up_max_ms, Some(4_000.0));
}

#[test]
fn no_faults_no_impacts() {
    let mut history = fault_history();
    history.meta.faults.clear();
    assert!(analyze(&history).faults.is_empty());
}

#[test]
fn online_levels_before_and_first_at_least() {
    let levels = OnlineLevels::new(&[(10, 1), (10, 1), (20, -1), (30, -1), (30, 1), (40, 1)]);
    assert_eq!(levels.before(10), 0);
    assert_eq!(levels.before(11), 2);
    assert_eq!(levels.before(30), 1);
    // A hand-over at 30 keeps 1 online; 2 only at 40.
    assert_eq!(levels.first_at_least(25, 2), Some(40));
    assert_eq!(levels.first_at_least(10, 2), Some(10));
    assert_eq!(levels.first_at_least(0, 0), Some(0));
    assert_eq!(levels.first_at_least(41, 3), None);
}

proptest! {
    #[test]
    fn impacts_do_not_depend_on_interleaving(choices in prop::collection::vec(0usize..16, 1..64)) {
        let original = fault_history();
        let shuffled = interleave(&original, &choices);
        prop_assert_eq!(analyze(&original).faults, analyze(&shuffled).faults);
    }
}
