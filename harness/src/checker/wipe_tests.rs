//! Checker tests for runs whose Redis data is destroyed on purpose
//! (`allow_lost_ack`): simulated wipes must be judged valid, and the rules
//! that tolerate wiped messages must not hide phantoms, duplicates, reorders
//! or skips.

use std::collections::HashSet;

use crate::history::{CursorOrigin, GapReason, Position, ResumeClaim, SendOutcome};
use proptest::prelude::*;
use uuid::Uuid;

use super::testgen::{generate, mutate, ExpectedAnomaly, GenConfig, Generated, Mutation};
use super::tests::{assert_flagged, rich_config, run, strict};
use super::*;
use crate::history::{
    ConversationInfo, DeviceInfo, DisconnectCause, Event, EventKind, History, LogEntry, LogOrigin,
    MessageLog, ResumeMode, RunMeta,
};

/// What a wipe scenario expects: acked messages may vanish.
fn wipe_allowed() -> Expectations {
    Expectations {
        allow_lost_ack: true,
        ..strict()
    }
}

/// A wipe scenario that also accepts at-least-once replays.
fn wipe_and_redelivery_allowed() -> Expectations {
    Expectations {
        allow_stored_cursor_redelivery: true,
        ..wipe_allowed()
    }
}

fn kinds(outcome: &CheckOutcome) -> Vec<AnomalyKind> {
    outcome.anomalies.keys().copied().collect()
}

fn is_recv(event: &Event) -> bool {
    matches!(event.kind, EventKind::Message { .. })
}

fn recv_id(event: &Event) -> Option<Position> {
    match event.kind {
        EventKind::Message { id, .. } => Some(id),
        _ => None,
    }
}

fn logged_ids(log: &MessageLog) -> HashSet<(u32, Position)> {
    log.conversations
        .iter()
        .enumerate()
        .flat_map(|(conversation, entries)| {
            entries
                .iter()
                .map(move |entry| (conversation as u32, entry.id))
        })
        .collect()
}

/// Receipts whose id the log does not hold.
fn receipts_off_log(generated: &Generated) -> u64 {
    let logged = logged_ids(&generated.log);
    generated
        .history
        .events
        .iter()
        .filter_map(|event| Some((event.conversation, recv_id(event)?)))
        .filter(|key| !logged.contains(key))
        .count() as u64
}

/// Whether some socket received an id missing from the log and later an
/// id the log holds: it lived through a wipe.
fn has_socket_across_a_wipe(generated: &Generated) -> bool {
    let logged = logged_ids(&generated.log);
    let mut saw_wiped: HashSet<(u32, u32, u32)> = HashSet::new();
    generated.history.events.iter().any(|event| {
        let Some(id) = recv_id(event) else {
            return false;
        };
        let socket = (event.device, event.conversation, event.socket);
        if logged.contains(&(event.conversation, id)) {
            saw_wiped.contains(&socket)
        } else {
            saw_wiped.insert(socket);
            false
        }
    })
}

/// A valid history whose log lost the older half of each conversation,
/// as if Redis had been wiped with every receipt already made.
fn with_log_prefix_wiped(seed: u64) -> (Generated, u64) {
    let mut generated = generate(&GenConfig {
        seed,
        ..rich_config()
    });
    let mut wiped = 0;
    for entries in &mut generated.log.conversations {
        let half = entries.len() / 2;
        entries.drain(..half);
        wiped += half as u64;
    }
    (generated, wiped)
}

#[test]
fn wiped_acked_messages_are_counted_but_valid_when_allowed() {
    for seed in 0..8 {
        let (generated, wiped) = with_log_prefix_wiped(seed);
        assert!(wiped > 0, "seed {seed} must wipe something");
        let outcome = run(&generated, &wipe_allowed(), true);
        assert_eq!(outcome.verdict, Verdict::Valid, "seed {seed}: {outcome:#?}");
        assert_eq!(kinds(&outcome), vec![AnomalyKind::LostAck]);
        let lost_ack = &outcome.anomalies[&AnomalyKind::LostAck];
        assert_eq!(lost_ack.count, wiped);
        assert!(!lost_ack.violation);
        let recvs = generated
            .history
            .events
            .iter()
            .filter(|e| is_recv(e))
            .count();
        assert_eq!(outcome.stats.deliveries_checked, recvs as u64);
    }
}

#[test]
fn wiped_acked_messages_are_violations_when_not_allowed() {
    let (generated, wiped) = with_log_prefix_wiped(3);
    let outcome = run(&generated, &strict(), true);
    assert_eq!(outcome.verdict, Verdict::Invalid);
    let lost_ack = &outcome.anomalies[&AnomalyKind::LostAck];
    assert!(lost_ack.violation);
    assert_eq!(lost_ack.count, wiped);
    // Without the allowance every receipt of a wiped id is a phantom.
    assert_eq!(
        outcome.count(AnomalyKind::Phantom),
        receipts_off_log(&generated)
    );
    assert_eq!(
        kinds(&outcome),
        vec![AnomalyKind::Phantom, AnomalyKind::LostAck]
    );
}

#[test]
fn unknown_client_msg_id_is_a_phantom_in_both_modes() {
    for expect in [strict(), wipe_allowed()] {
        for pick in [0, 9, 1_000_003] {
            let mut generated = generate(&rich_config());
            let expected = mutate(&mut generated, Mutation::PhantomRecv, pick)
                .expect("the rich history has receipts");
            let outcome = run(&generated, &expect, true);
            assert_flagged(&outcome, &expected).unwrap();
            assert_eq!(outcome.verdict, Verdict::Invalid);
        }
    }
    let outcome = run(
        &mutated_wipe_with_phantom(),
        &wipe_and_redelivery_allowed(),
        true,
    );
    assert_eq!(outcome.count(AnomalyKind::Phantom), 1, "{outcome:#?}");
    let example = &outcome.anomalies[&AnomalyKind::Phantom].examples[0];
    assert!(example.detail.contains("no device sent"), "{example:?}");
}

/// A simulated wipe history plus one receipt of a message nobody sent.
fn mutated_wipe_with_phantom() -> Generated {
    let mut generated = generate(&wipe_config(4));
    let ix = generated
        .history
        .events
        .iter()
        .position(is_recv)
        .expect("the history has receipts");
    let mut phantom = generated.history.events[ix].clone();
    if let EventKind::Message {
        id, client_msg_id, ..
    } = &mut phantom.kind
    {
        *id = Position::new(id.major, id.minor + 1_000_000);
        *client_msg_id = Uuid::from_u128(0xfeed);
    }
    generated.history.events.insert(ix + 1, phantom);
    generated
}

fn wipe_config(seed: u64) -> GenConfig {
    GenConfig {
        seed,
        wipe_before_steps: vec![120],
        ..rich_config()
    }
}

#[test]
fn simulated_wipes_are_valid_when_data_loss_is_allowed() {
    let (mut across, mut repeats, mut gaps) = (0, 0, 0);
    for seed in 0..12 {
        let generated = generate(&wipe_config(seed));
        assert!(generated.wiped_messages > 0, "seed {seed}");
        let outcome = run(&generated, &wipe_and_redelivery_allowed(), true);
        assert_eq!(outcome.verdict, Verdict::Valid, "seed {seed}: {outcome:#?}");
        assert_eq!(
            outcome.count(AnomalyKind::LostAck),
            generated.wiped_messages
        );
        assert_eq!(
            outcome.count(AnomalyKind::Redelivered),
            generated.repeated_receipts
        );
        assert!(kinds(&outcome)
            .iter()
            .all(|kind| matches!(kind, AnomalyKind::LostAck | AnomalyKind::Redelivered)));

        // Without the allowance the same run is invalid, and the replays
        // that follow a destroyed cursor are plain duplicates.
        let strict_outcome = run(&generated, &strict(), true);
        assert_eq!(strict_outcome.verdict, Verdict::Invalid);
        assert!(strict_outcome.anomalies[&AnomalyKind::LostAck].violation);
        assert_eq!(
            strict_outcome.count(AnomalyKind::Phantom),
            receipts_off_log(&generated)
        );
        assert_eq!(
            strict_outcome.count(AnomalyKind::Duplicate),
            generated.repeated_receipts
        );
        across += u64::from(has_socket_across_a_wipe(&generated));
        repeats += generated.repeated_receipts;
        gaps += outcome.stats.declared_gaps;
    }
    // The seeds must exercise what the rules are about.
    assert!(across > 0, "no socket lived through a wipe");
    assert!(repeats > 0, "no replay after a destroyed cursor");
    assert!(gaps > 0, "no epoch_changed gap");
}

#[test]
fn replays_after_a_destroyed_cursor_are_violations_if_redelivery_is_not_allowed() {
    let generated = (0..12)
        .map(|seed| generate(&wipe_config(seed)))
        .find(|generated| generated.repeated_receipts > 0)
        .expect("some seed replays after a destroyed cursor");
    let outcome = run(&generated, &wipe_allowed(), true);
    assert_eq!(outcome.verdict, Verdict::Invalid);
    let redelivered = &outcome.anomalies[&AnomalyKind::Redelivered];
    assert!(redelivered.violation);
    assert!(redelivered.examples[0].detail.contains("destroyed"));
    assert!(!outcome.anomalies.contains_key(&AnomalyKind::Duplicate));
}

// --- Hand-written histories: one device, one conversation. -------------

const DEVICE_USER: u128 = 0xa11ce;

fn meta(mode: ResumeMode) -> RunMeta {
    RunMeta {
        faults: Vec::new(),
        scenario_name: "wipe".into(),
        seed: 0,
        started_at_unix_ms: 0,
        devices: vec![DeviceInfo {
            user_id: Uuid::from_u128(DEVICE_USER),
            client_id: Uuid::from_u128(0xc1),
            resume_mode: mode,
            conversations: vec![0],
        }],
        conversations: vec![ConversationInfo {
            conversation_id: Uuid::from_u128(0xc0),
        }],
    }
}

fn cmid(message: u64) -> Uuid {
    Uuid::from_u128(0x1000 + u128::from(message))
}

fn body_hash(message: u64) -> u64 {
    message * 31 + 7
}

fn entry(message: u64, id: Position) -> LogEntry {
    LogEntry {
        id,
        sender_id: Uuid::from_u128(DEVICE_USER),
        client_msg_id: cmid(message),
        body_hash: body_hash(message),
    }
}

#[derive(Default)]
struct Script {
    events: Vec<Event>,
}

impl Script {
    fn push(&mut self, socket: u32, kind: EventKind) {
        let at_us = self.events.len() as u64 * 10;
        self.events.push(Event {
            at_us,
            device: 0,
            conversation: 0,
            socket,
            kind,
        });
    }

    fn hello(&mut self, socket: u32, resume_from: Position, cursor: CursorOrigin) {
        let connect = EventKind::Connect {
            last_id: (cursor == CursorOrigin::Client).then_some(resume_from),
            epoch: None,
            target: "ws://127.0.0.1:1/ws".into(),
        };
        self.push(socket, connect);
        let hello = EventKind::Connected {
            client_id: Some(Uuid::from_u128(0xc1)),
            claim: ResumeClaim::Cursor {
                from: resume_from,
                origin: cursor,
            },
            epoch: Some(format!("epoch-{socket}")),
        };
        self.push(socket, hello);
    }

    /// The device sends `message`, the server acks it at `id`, and the
    /// device receives it live.
    fn send(&mut self, socket: u32, message: u64, id: Position) {
        let send = EventKind::Send {
            client_msg_id: cmid(message),
            body_hash: body_hash(message),
            body_len: 8,
            due_us: 0,
            attempt: 0,
        };
        self.push(socket, send);
        let ack = EventKind::SendOutcome {
            client_msg_id: cmid(message),
            outcome: SendOutcome::Acked {
                id,
                duplicate: false,
            },
        };
        self.push(socket, ack);
        self.recv(socket, message, id);
    }

    fn recv(&mut self, socket: u32, message: u64, id: Position) {
        let entry = entry(message, id);
        let recv = EventKind::Message {
            id,
            sender_id: entry.sender_id,
            client_msg_id: entry.client_msg_id,
            body_hash: entry.body_hash,
            body_len: 8,
            sent_at_ms: id.major,
            replay: false,
        };
        self.push(socket, recv);
    }

    fn end(&mut self, socket: u32, cause: DisconnectCause) {
        self.push(socket, EventKind::Disconnect(cause));
    }

    fn into_generated(self, mode: ResumeMode, log: Vec<LogEntry>) -> Generated {
        Generated {
            history: History {
                meta: meta(mode),
                events: self.events,
            },
            log: MessageLog {
                source: LogOrigin::Redis,
                conversations: vec![log],
            },
            wiped_messages: 0,
            repeated_receipts: 0,
        }
    }
}

fn id(ms: u64, seq: u64) -> Position {
    Position::new(ms, seq)
}

/// Socket 0 receives messages 1 and 2 (wiped: not in the log), then 3 and
/// 4 appended after the wipe; `edit` changes the events before the end.
fn across_a_wipe(edit: impl FnOnce(&mut Script)) -> Generated {
    let mut script = Script::default();
    script.hello(0, Position::ZERO, CursorOrigin::None);
    script.send(0, 1, id(100, 0));
    script.send(0, 2, id(200, 0));
    script.send(0, 3, id(300, 0));
    script.send(0, 4, id(300, 1));
    edit(&mut script);
    script.end(0, DisconnectCause::RunEnd);
    let log = vec![entry(3, id(300, 0)), entry(4, id(300, 1))];
    script.into_generated(ResumeMode::ClientCursor, log)
}

fn recv_position(script: &Script, wanted: Position) -> usize {
    script
        .events
        .iter()
        .position(|event| recv_id(event) == Some(wanted))
        .expect("the script has that receipt")
}

fn expected(kind: AnomalyKind, ids: Vec<Position>) -> ExpectedAnomaly {
    ExpectedAnomaly {
        kind,
        count: 1,
        device: Some(0),
        conversation: 0,
        socket: Some(0),
        ids,
    }
}

#[test]
fn socket_receiving_wiped_then_new_ids_in_order_is_clean() {
    let generated = across_a_wipe(|_| {});
    let outcome = run(&generated, &wipe_allowed(), true);
    assert_eq!(outcome.verdict, Verdict::Valid, "{outcome:#?}");
    assert_eq!(kinds(&outcome), vec![AnomalyKind::LostAck]);
    assert_eq!(outcome.count(AnomalyKind::LostAck), 2);
    assert_eq!(outcome.stats.deliveries_checked, 4);
}

#[test]
fn wiped_receipts_still_count_for_duplicates_and_order() {
    let repeated = across_a_wipe(|script| {
        let at = recv_position(script, id(200, 0));
        let copy = script.events[at].clone();
        script.events.insert(at + 1, copy);
    });
    let outcome = run(&repeated, &wipe_allowed(), true);
    let lost_ack = ExpectedAnomaly {
        count: 2,
        ids: vec![id(100, 0)],
        ..expected(AnomalyKind::LostAck, Vec::new())
    };
    let duplicate = expected(AnomalyKind::Duplicate, vec![id(200, 0)]);
    assert_flagged(&outcome, &[lost_ack.clone(), duplicate]).unwrap();

    // A wiped id after a newer one on the same socket.
    let late = across_a_wipe(|script| {
        let at = recv_position(script, id(200, 0));
        let mut moved = script.events.remove(at);
        let after = recv_position(script, id(300, 0));
        // The checker orders a socket's events by time.
        moved.at_us = script.events[after].at_us;
        script.events.insert(after + 1, moved);
    });
    let outcome = run(&late, &wipe_allowed(), true);
    let reorder = expected(AnomalyKind::Reorder, vec![id(300, 0), id(200, 0)]);
    assert_flagged(&outcome, &[lost_ack, reorder]).unwrap();
}

#[test]
fn wiped_receipts_do_not_hide_a_skip() {
    let generated = across_a_wipe(|script| {
        let at = recv_position(script, id(300, 0));
        script.events.remove(at);
    });
    let outcome = run(&generated, &wipe_allowed(), true);
    let skip = expected(AnomalyKind::Skip, vec![id(300, 0), id(300, 1)]);
    let lost = ExpectedAnomaly {
        socket: None,
        ..expected(AnomalyKind::Lost, vec![id(300, 0)])
    };
    assert!(outcome.anomalies.contains_key(&AnomalyKind::LostAck));
    let mut reported = kinds(&outcome);
    reported.retain(|kind| *kind != AnomalyKind::LostAck);
    assert_eq!(reported, vec![AnomalyKind::Lost, AnomalyKind::Skip]);
    for anomaly in [skip, lost] {
        let report = &outcome.anomalies[&anomaly.kind];
        assert_eq!(report.count, 1);
        assert_eq!(report.examples[0].ids, anomaly.ids);
    }
}

#[test]
fn wiped_receipt_is_compared_with_its_send() {
    let generated = across_a_wipe(|script| {
        let at = recv_position(script, id(100, 0));
        if let EventKind::Message { body_hash, .. } = &mut script.events[at].kind {
            *body_hash ^= 1;
        }
    });
    let outcome = run(&generated, &wipe_allowed(), true);
    assert_eq!(outcome.count(AnomalyKind::Corrupt), 1, "{outcome:#?}");
    let example = &outcome.anomalies[&AnomalyKind::Corrupt].examples[0];
    assert_eq!(example.ids, vec![id(100, 0)]);
    assert!(example.detail.contains("body"), "{}", example.detail);
    assert!(!outcome.anomalies.contains_key(&AnomalyKind::Phantom));
}

/// A client-cursor device: socket 0 lives through a wipe and receives the
/// new stream's 300-0 and 300-1; socket 1 resumes from 300-1 with the old
/// epoch, gets a gap with `reason`, and the whole new stream again.
fn replay_after_gap(reason: GapReason) -> Generated {
    let mut script = Script::default();
    script.hello(0, Position::ZERO, CursorOrigin::None);
    script.send(0, 1, id(100, 0));
    script.send(0, 3, id(300, 0));
    script.send(0, 4, id(300, 1));
    script.end(0, DisconnectCause::ClientAbrupt);
    script.hello(1, id(300, 1), CursorOrigin::Client);
    let gap = EventKind::Gap {
        resume_from: Some(id(300, 1)),
        first_available: Some(id(300, 0)),
        reason,
    };
    script.push(1, gap);
    script.recv(1, 3, id(300, 0));
    script.recv(1, 4, id(300, 1));
    script.end(1, DisconnectCause::RunEnd);
    let log = vec![entry(3, id(300, 0)), entry(4, id(300, 1))];
    script.into_generated(ResumeMode::ClientCursor, log)
}

#[test]
fn replay_after_an_epoch_change_is_redelivery_only_where_data_may_vanish() {
    let generated = replay_after_gap(GapReason::EpochChanged);
    let outcome = run(&generated, &wipe_and_redelivery_allowed(), true);
    assert_eq!(outcome.verdict, Verdict::Valid, "{outcome:#?}");
    assert_eq!(outcome.count(AnomalyKind::Redelivered), 2);
    assert!(!outcome.anomalies[&AnomalyKind::Redelivered].violation);
    assert!(!outcome.anomalies.contains_key(&AnomalyKind::Duplicate));

    let strict_outcome = run(&generated, &strict(), true);
    assert_eq!(strict_outcome.count(AnomalyKind::Duplicate), 2);
    assert!(!strict_outcome
        .anomalies
        .contains_key(&AnomalyKind::Redelivered));

    // A trimmed stream keeps its ids: the client cursor was good.
    let trimmed = run(
        &replay_after_gap(GapReason::Trimmed),
        &wipe_and_redelivery_allowed(),
        true,
    );
    assert_eq!(trimmed.count(AnomalyKind::Duplicate), 2);
    assert_eq!(trimmed.verdict, Verdict::Invalid);
}

/// A stored-cursor device whose stored cursor was wiped: its second hello
/// finds none and the server replays 300-0 it already had.
#[test]
fn replay_after_a_wiped_stored_cursor_is_redelivery_only_where_data_may_vanish() {
    let mut script = Script::default();
    script.hello(0, Position::ZERO, CursorOrigin::None);
    script.send(0, 1, id(100, 0));
    script.send(0, 3, id(300, 0));
    // It acked, so a cursor was stored (and then wiped): without the ack
    // "none" would be the truth and the repeat a redelivery either way.
    script.push(0, EventKind::AckSent { id: id(300, 0) });
    script.end(0, DisconnectCause::ClientAbrupt);
    script.hello(1, Position::ZERO, CursorOrigin::None);
    script.recv(1, 3, id(300, 0));
    script.end(1, DisconnectCause::RunEnd);
    let generated = script.into_generated(ResumeMode::StoredCursor, vec![entry(3, id(300, 0))]);

    let outcome = run(&generated, &wipe_and_redelivery_allowed(), true);
    assert_eq!(outcome.verdict, Verdict::Valid, "{outcome:#?}");
    assert_eq!(outcome.count(AnomalyKind::Redelivered), 1);
    let strict_outcome = run(&generated, &strict(), true);
    assert_eq!(strict_outcome.count(AnomalyKind::Duplicate), 1);
    assert!(!strict_outcome
        .anomalies
        .contains_key(&AnomalyKind::Redelivered));
}

fn wipe_gen_config() -> impl Strategy<Value = GenConfig> {
    (
        1u32..=5,
        1u32..=3,
        5u32..=150,
        0u32..=100,
        any::<u64>(),
        prop::collection::vec(0u32..150, 1..=3),
    )
        .prop_map(
            |(devices, conversations, steps, stored_cursor_percent, seed, wipes)| GenConfig {
                devices,
                conversations,
                steps,
                stored_cursor_percent,
                seed,
                wipe_before_steps: wipes,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn histories_with_wipes_are_valid_when_data_loss_is_allowed(config in wipe_gen_config()) {
        let generated = generate(&config);
        let outcome = run(&generated, &wipe_and_redelivery_allowed(), true);
        prop_assert_eq!(outcome.verdict, Verdict::Valid, "{:#?}", outcome);
        prop_assert_eq!(outcome.count(AnomalyKind::LostAck), generated.wiped_messages);
        prop_assert_eq!(
            outcome.count(AnomalyKind::Redelivered),
            generated.repeated_receipts
        );
        if generated.wiped_messages > 0 {
            let strict_outcome = run(&generated, &strict(), true);
            prop_assert_eq!(strict_outcome.verdict, Verdict::Invalid);
        }
    }
}
