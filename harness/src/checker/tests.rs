//! End-to-end checker tests: generated valid histories must be judged
//! valid, and every single mutation must be reported as exactly the
//! anomaly it introduces, with an example naming the right device and ids.

use crate::history::Position;
use proptest::prelude::*;

use super::testgen::{generate, mutate, ExpectedAnomaly, GenConfig, Generated, Mutation};
use super::*;
use crate::history::{EventKind, LogOrigin, ResumeClaim, ResumeMode, SendOutcome};

pub(super) fn strict() -> Expectations {
    Expectations {
        allow_lost_ack: false,
        no_loss: true,
        no_duplicates: true,
        order: true,
        allow_stored_cursor_redelivery: false,
    }
}

pub(super) fn run(
    generated: &Generated,
    expect: &Expectations,
    drain_complete: bool,
) -> CheckOutcome {
    check(
        &generated.history,
        &CheckOptions {
            drain_complete,
            ..CheckOptions::new(&generated.log, expect)
        },
    )
}

/// Asserts the outcome reports exactly the expected kinds, with the
/// expected counts and at least one matching example each.
pub(super) fn assert_flagged(
    outcome: &CheckOutcome,
    expected: &[ExpectedAnomaly],
) -> Result<(), String> {
    let reported: Vec<AnomalyKind> = outcome.anomalies.keys().copied().collect();
    let mut wanted: Vec<AnomalyKind> = expected.iter().map(|anomaly| anomaly.kind).collect();
    wanted.sort();
    if reported != wanted {
        return Err(format!(
            "expected kinds {wanted:?}, got {:#?}",
            outcome.anomalies
        ));
    }
    for anomaly in expected {
        let report = &outcome.anomalies[&anomaly.kind];
        if report.count != anomaly.count {
            return Err(format!("expected {anomaly:?}, got {report:#?}"));
        }
        let matching = report.examples.iter().any(|example| {
            example.device == anomaly.device
                && example.conversation == anomaly.conversation
                && anomaly
                    .socket
                    .is_none_or(|socket| example.socket == Some(socket))
                && example.ids == anomaly.ids
                && !example.detail.is_empty()
        });
        if !matching {
            return Err(format!("no example matches {anomaly:?}: {report:#?}"));
        }
    }
    Ok(())
}

pub(super) fn rich_config() -> GenConfig {
    GenConfig {
        devices: 5,
        conversations: 2,
        steps: 300,
        stored_cursor_percent: 50,
        seed: 11,
        wipe_before_steps: Vec::new(),
    }
}

fn mutated(mutation: Mutation, pick: usize) -> (Generated, Vec<ExpectedAnomaly>) {
    let mut generated = generate(&rich_config());
    let expected = mutate(&mut generated, mutation, pick)
        .unwrap_or_else(|| panic!("the rich history has a site for {mutation:?}"));
    (generated, expected)
}

#[test]
fn generated_histories_are_valid() {
    for seed in 0..20 {
        let generated = generate(&GenConfig {
            seed,
            ..rich_config()
        });
        let outcome = run(&generated, &strict(), true);
        assert_eq!(outcome.verdict, Verdict::Valid, "seed {seed}: {outcome:#?}");
        assert!(outcome.anomalies.is_empty());
        let recvs = generated
            .history
            .events
            .iter()
            .filter(|event| matches!(event.kind, EventKind::Message { .. }))
            .count() as u64;
        assert_eq!(outcome.stats.deliveries_checked, recvs);
        let logged: usize = generated.log.conversations.iter().map(Vec::len).sum();
        assert_eq!(outcome.stats.messages_in_log, logged as u64);
        assert_eq!(outcome.stats.sends_acked, logged as u64);
        assert_eq!(outcome.stats.devices_checked, 5);
    }
}

#[test]
fn every_mutation_is_flagged_as_its_anomaly() {
    for mutation in Mutation::ALL {
        for pick in [0, 17, 1_000_003] {
            let (generated, expected) = mutated(mutation, pick);
            let outcome = run(&generated, &strict(), true);
            if let Err(message) = assert_flagged(&outcome, &expected) {
                panic!("{mutation:?} pick {pick}: {message}");
            }
            let verdict = if expected.is_empty() {
                Verdict::Valid
            } else {
                Verdict::Invalid
            };
            assert_eq!(outcome.verdict, verdict, "{mutation:?}");
        }
    }
}

#[test]
fn dropped_receipt_example_names_device_and_last_socket() {
    let (generated, expected) = mutated(Mutation::DropRecv, 3);
    let outcome = run(&generated, &strict(), true);
    let lost = &outcome.anomalies[&AnomalyKind::Lost].examples[0];
    let device = expected[0].device.unwrap_or_default();
    let info = &generated.history.meta.devices[device as usize];
    assert_eq!(lost.user_id, Some(info.user_id));
    assert_eq!(lost.client_id, Some(info.client_id));
    assert!(
        lost.detail
            .contains(&format!("never received {}", expected[0].ids[0])),
        "{}",
        lost.detail
    );
    assert!(lost.detail.contains("caught up to"), "{}", lost.detail);
    let conversation = &generated.history.meta.conversations[lost.conversation as usize];
    assert_eq!(lost.conversation_id, conversation.conversation_id);
}

#[test]
fn stored_cursor_redelivery_is_valid_only_when_allowed() {
    let (generated, expected) = mutated(Mutation::StoredCursorRedelivery, 2);
    let device = expected[0].device.unwrap_or_default();
    assert_eq!(
        generated.history.meta.devices[device as usize].resume_mode,
        ResumeMode::StoredCursor
    );
    let allowed = Expectations {
        allow_stored_cursor_redelivery: true,
        ..strict()
    };
    let outcome = run(&generated, &allowed, true);
    assert_eq!(outcome.verdict, Verdict::Valid);
    let report = &outcome.anomalies[&AnomalyKind::Redelivered];
    assert!(!report.violation);
    assert_eq!(report.count, expected[0].count);
    assert_eq!(run(&generated, &strict(), true).verdict, Verdict::Invalid);
}

#[test]
fn redelivery_to_a_client_cursor_device_is_a_duplicate() {
    let (mut generated, expected) = mutated(Mutation::StoredCursorRedelivery, 2);
    // The hello still says `cursor: "stored"`, but a client-cursor device
    // is owed exactly-once.
    let device = expected[0].device.unwrap_or_default() as usize;
    generated.history.meta.devices[device].resume_mode = ResumeMode::ClientCursor;
    let outcome = run(&generated, &strict(), true);
    assert_eq!(outcome.count(AnomalyKind::Duplicate), expected[0].count);
    assert!(!outcome.anomalies.contains_key(&AnomalyKind::Redelivered));
}

/// What happened to the device's acks before the `cursor: "none"` hello.
#[derive(Clone, Copy, PartialEq)]
enum EarlierAcks {
    /// Sent, each followed by a close the server read.
    Proven,
    /// Never sent.
    Dropped,
    /// Sent, each followed by a reset: the server may never have read them.
    LostInResets,
}

/// The stored-cursor redelivery rewritten so the redelivering socket's
/// hello says `cursor: "none"`; the device's acks in that conversation
/// before that socket are then left, removed, or followed by resets.
/// Returns the history and how many repeats it holds.
fn cursor_none_redelivery(acks: EarlierAcks) -> (Generated, u64) {
    let (mut generated, expected) = mutated(Mutation::StoredCursorRedelivery, 2);
    let device = expected[0].device.unwrap_or_default();
    let conversation = expected[0].conversation;
    let socket = expected[0]
        .socket
        .expect("the stored-cursor mutation names its socket");
    let of_slot = |event: &crate::history::Event| {
        event.device == device && event.conversation == conversation
    };
    for event in generated.history.events.iter_mut().filter(|e| of_slot(e)) {
        if event.socket != socket {
            continue;
        }
        if let EventKind::Connected {
            claim: ResumeClaim::Cursor { origin, .. },
            ..
        } = &mut event.kind
        {
            *origin = crate::history::CursorOrigin::None;
        }
    }
    if acks == EarlierAcks::LostInResets {
        for event in generated.history.events.iter_mut() {
            if of_slot(event) && event.socket < socket {
                if let EventKind::Disconnect(cause) = &mut event.kind {
                    *cause = crate::history::DisconnectCause::ClientReset;
                }
            }
        }
    }
    if acks == EarlierAcks::Dropped {
        generated.history.events.retain(|event| {
            !(of_slot(event)
                && event.socket < socket
                && matches!(event.kind, EventKind::AckSent { .. }))
        });
    }
    (generated, expected[0].count)
}

/// `cursor_none_redelivery` judged with stored-cursor redelivery allowed;
/// also returns how many repeats the history holds.
fn judge_cursor_none(acks: EarlierAcks) -> (CheckOutcome, u64) {
    let (generated, count) = cursor_none_redelivery(acks);
    let allowed = Expectations {
        allow_stored_cursor_redelivery: true,
        ..strict()
    };
    (run(&generated, &allowed, true), count)
}

#[test]
fn cursor_none_after_acks_is_a_duplicate() {
    // The device acked, so the server had a cursor to keep; "none" means it
    // lost it (seed bug 1) and the repeats are duplicates.
    let (outcome, count) = judge_cursor_none(EarlierAcks::Proven);
    assert_eq!(outcome.verdict, Verdict::Invalid);
    assert_eq!(outcome.count(AnomalyKind::Duplicate), count);
}

#[test]
fn cursor_none_before_any_ack_is_a_redelivery() {
    // A device that dropped before its first ack left nothing to store:
    // the replay from the start is at-least-once, not a broken promise.
    let (outcome, count) = judge_cursor_none(EarlierAcks::Dropped);
    assert_eq!(outcome.verdict, Verdict::Valid, "{:?}", outcome.anomalies);
    let report = &outcome.anomalies[&AnomalyKind::Redelivered];
    assert_eq!(report.count, count);
    assert!(report.examples[0]
        .detail
        .contains("no ack of it had provably reached a server that lived to save it"));
}

#[test]
fn cursor_none_after_acks_lost_in_resets_is_a_redelivery() {
    // Each ack went out right before a reset, so none provably reached the
    // server (seed 8869587605373180372 of `localhost_target_works_behind_
    // the_fault_proxy`: a 20 ms latency fault held the ack when the RST
    // came): "none" may be the truth.
    let (outcome, count) = judge_cursor_none(EarlierAcks::LostInResets);
    assert_eq!(outcome.verdict, Verdict::Valid, "{:?}", outcome.anomalies);
    assert_eq!(outcome.count(AnomalyKind::Redelivered), count);
}

#[test]
fn relaxed_expectations_count_but_do_not_invalidate() {
    let (generated, _) = mutated(Mutation::DropRecv, 5);
    let relaxed = Expectations {
        no_loss: false,
        order: false,
        ..strict()
    };
    let outcome = run(&generated, &relaxed, true);
    assert_eq!(outcome.verdict, Verdict::Valid);
    assert_eq!(outcome.count(AnomalyKind::Lost), 1);
    assert!(outcome.anomalies.values().all(|report| !report.violation));
}

/// Removes every receipt of device 0's last socket: the tail of what it
/// received, as if it had not caught up at the end.
fn without_final_catch_up() -> (Generated, u32, usize) {
    let mut generated = generate(&rich_config());
    let last_socket = generated
        .history
        .events
        .iter()
        .filter(|event| event.device == 0)
        .map(|event| (event.conversation, event.socket))
        .max()
        .expect("device 0 has events");
    let before = generated.history.events.len();
    generated.history.events.retain(|event| {
        !(event.device == 0
            && (event.conversation, event.socket) == last_socket
            && matches!(event.kind, EventKind::Message { .. }))
    });
    let removed = before - generated.history.events.len();
    (generated, last_socket.0, removed)
}

#[test]
fn incomplete_drain_leaves_the_tail_unknown_not_lost() {
    let (generated, conversation, removed) = without_final_catch_up();
    assert!(removed > 0, "the seed must give device 0 a final replay");
    let outcome = run(&generated, &strict(), false);
    assert_eq!(outcome.verdict, Verdict::Unknown, "{outcome:#?}");
    assert!(outcome.anomalies.is_empty());
    let note =
        format!("did not catch up in conversation {conversation}: {removed} messages outstanding");
    assert!(
        outcome
            .unknown_reasons
            .iter()
            .any(|reason| reason.contains(&note)),
        "{:?}",
        outcome.unknown_reasons
    );
    let drained = run(&generated, &strict(), true);
    assert_eq!(drained.count(AnomalyKind::Lost), removed as u64);
}

#[test]
fn incomplete_drain_still_reports_messages_moved_past() {
    let (generated, expected) = mutated(Mutation::UndeclaredGap, 4);
    let outcome = run(&generated, &strict(), false);
    assert_eq!(outcome.verdict, Verdict::Invalid);
    assert_flagged(&outcome, &expected).unwrap();
}

#[test]
fn given_unknown_reasons_make_a_clean_run_unknown() {
    let generated = generate(&rich_config());
    let expect = strict();
    let outcome = check(
        &generated.history,
        &CheckOptions {
            unknown_reasons: vec!["redis unreachable".into()],
            ..CheckOptions::new(&generated.log, &expect)
        },
    );
    assert_eq!(outcome.verdict, Verdict::Unknown);
    assert_eq!(
        outcome.unknown_reasons,
        vec!["redis unreachable".to_string()]
    );
}

#[test]
fn rebuilt_log_of_a_valid_history_equals_the_real_log() {
    for seed in 0..5 {
        let generated = generate(&GenConfig {
            seed,
            ..rich_config()
        });
        let rebuilt = rebuild_log(&generated.history);
        assert_eq!(rebuilt.source, LogOrigin::Rebuilt);
        assert_eq!(rebuilt.conversations, generated.log.conversations);
        let outcome = run(
            &Generated {
                log: rebuilt,
                ..generated
            },
            &strict(),
            true,
        );
        assert_eq!(outcome.verdict, Verdict::Valid);
        assert_eq!(outcome.log_source, LogOrigin::Rebuilt);
    }
}

#[test]
fn rebuilt_log_flags_receipts_nobody_sent() {
    let (mut generated, expected) = mutated(Mutation::PhantomRecv, 9);
    generated.log = rebuild_log(&generated.history);
    let phantom = expected[0].ids[0];
    let conversation = &generated.log.conversations[expected[0].conversation as usize];
    assert!(conversation.iter().any(|entry| entry.id == phantom));
    let outcome = run(&generated, &strict(), true);
    let report = &outcome.anomalies[&AnomalyKind::Phantom];
    assert_eq!(report.count, 1);
    assert_eq!(report.examples[0].ids, vec![phantom]);
    assert!(report.examples[0].detail.contains("no device sent"));
}

#[test]
fn rebuilt_log_does_not_flag_ids_missing_from_a_foreign_log() {
    // A rebuilt log of another run: receipts of sent messages that it
    // lacks make the verdict unknown, never phantom.
    let generated = generate(&rich_config());
    let mut log = rebuild_log(&generated.history);
    let removed = log.conversations[0]
        .pop()
        .expect("conversation 0 has messages");
    let outcome = run(&Generated { log, ..generated }, &strict(), true);
    assert!(!outcome.anomalies.contains_key(&AnomalyKind::Phantom));
    assert!(outcome.count(AnomalyKind::LostAck) == 1, "{outcome:#?}");
    assert!(outcome
        .unknown_reasons
        .iter()
        .any(|reason| reason.contains("rebuilt log")));
    let lost_ack = &outcome.anomalies[&AnomalyKind::LostAck].examples[0];
    assert_eq!(lost_ack.ids, vec![removed.id]);
}

#[test]
fn gap_to_a_recreated_stream_owes_from_first_available() {
    // After an epoch change the device's cursor (here: MAX) is meaningless
    // and delivery restarts at `first_available`; a jump after that point
    // is still a skip.
    let mut generated = generate(&rich_config());
    let events = &mut generated.history.events;
    let is_replay = |event: &crate::history::Event, socket| {
        event.socket == socket && matches!(event.kind, EventKind::Message { replay: true, .. })
    };
    let hello = (0..events.len().saturating_sub(3))
        .find(|&ix| {
            let socket = events[ix].socket;
            socket > 0
                && matches!(events[ix].kind, EventKind::Connected { .. })
                && (1..=3).all(|step| is_replay(&events[ix + step], socket))
        })
        .expect("the rich history has a reconnect replaying three messages");
    let replayed: Vec<Position> = (1..=3).map(|step| recv_id(&events[hello + step])).collect();
    if let EventKind::Connected {
        claim: ResumeClaim::Cursor {
            from: resume_from, ..
        },
        ..
    } = &mut events[hello].kind
    {
        *resume_from = Position::MAX;
    }
    let gap = crate::history::Event {
        kind: EventKind::Gap {
            resume_from: Some(Position::MAX),
            first_available: Some(replayed[0]),
            reason: crate::history::GapReason::EpochChanged,
        },
        ..events[hello].clone()
    };
    events.remove(hello + 2);
    events.insert(hello + 1, gap);
    let (device, conversation, socket) = (
        events[hello].device,
        events[hello].conversation,
        events[hello].socket,
    );
    let outcome = run(&generated, &strict(), true);
    let expected = [
        ExpectedAnomaly {
            kind: AnomalyKind::Lost,
            count: 1,
            device: Some(device),
            conversation,
            socket: None,
            ids: vec![replayed[1]],
        },
        ExpectedAnomaly {
            kind: AnomalyKind::Skip,
            count: 1,
            device: Some(device),
            conversation,
            socket: Some(socket),
            ids: vec![replayed[1], replayed[2]],
        },
    ];
    assert_flagged(&outcome, &expected).unwrap();
    assert_eq!(outcome.stats.declared_gaps, 1);
}

fn recv_id(event: &crate::history::Event) -> Position {
    match event.kind {
        EventKind::Message { id, .. } => id,
        _ => panic!("not a receipt: {event:?}"),
    }
}

fn gen_config() -> impl Strategy<Value = GenConfig> {
    (1u32..=5, 1u32..=3, 5u32..=150, 0u32..=100, any::<u64>()).prop_map(
        |(devices, conversations, steps, stored_cursor_percent, seed)| GenConfig {
            devices,
            conversations,
            steps,
            stored_cursor_percent,
            seed,
            wipe_before_steps: Vec::new(),
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn valid_histories_are_judged_valid(config in gen_config()) {
        let generated = generate(&config);
        let outcome = run(&generated, &strict(), true);
        prop_assert_eq!(outcome.verdict, Verdict::Valid, "{:#?}", outcome);
    }

    #[test]
    fn any_single_mutation_is_flagged(
        config in gen_config(),
        mutation in prop::sample::select(Mutation::ALL.to_vec()),
        pick in any::<usize>(),
    ) {
        let mut generated = generate(&config);
        let Some(expected) = mutate(&mut generated, mutation, pick) else {
            return Ok(());
        };
        let outcome = run(&generated, &strict(), true);
        if let Err(message) = assert_flagged(&outcome, &expected) {
            return Err(TestCaseError::fail(format!("{mutation:?}: {message}")));
        }
    }
}

#[test]
fn retention_excuses_a_trimmed_gap_over_expired_messages() {
    // Even pick: a `trimmed` false gap. Generated ids are a few seconds
    // after the run's start, so a 1 ms retention expired all of them (the
    // gap is honest) and a day's retention none.
    let (generated, expected) = mutated(Mutation::FalseGap, 0);
    let expect = strict();
    let with_retention = |retention| {
        check(
            &generated.history,
            &CheckOptions {
                retention: Some(retention),
                ..CheckOptions::new(&generated.log, &expect)
            },
        )
    };
    let expired = with_retention(std::time::Duration::from_millis(1));
    assert_eq!(expired.verdict, Verdict::Valid, "{expired:#?}");
    let young = with_retention(std::time::Duration::from_secs(86_400));
    assert_flagged(&young, &expected).unwrap();
    let example = &young.anomalies[&AnomalyKind::FalseGap].examples[0];
    assert!(
        example.detail.contains("`trimmed` gap") && example.detail.contains("still holds"),
        "{}",
        example.detail
    );
}

#[test]
fn false_epoch_changed_gap_is_named() {
    let (generated, expected) = mutated(Mutation::FalseGap, 1);
    let outcome = run(&generated, &strict(), true);
    assert_flagged(&outcome, &expected).unwrap();
    let example = &outcome.anomalies[&AnomalyKind::FalseGap].examples[0];
    assert!(
        example.detail.contains("`epoch_changed` gap"),
        "{}",
        example.detail
    );
}

#[test]
fn leak_example_names_both_conversations() {
    for pick in [0, 1] {
        let (generated, expected) = mutated(Mutation::Leak, pick);
        let outcome = run(&generated, &strict(), true);
        assert_flagged(&outcome, &expected).unwrap();
        assert_eq!(outcome.verdict, Verdict::Invalid);
        let example = &outcome.anomalies[&AnomalyKind::Leak].examples[0];
        let conversations = &generated.history.meta.conversations;
        let here = conversations[example.conversation as usize].conversation_id;
        let other = conversations[1 - example.conversation as usize].conversation_id;
        assert_eq!(example.conversation_id, here);
        assert!(
            example.detail.contains(&here.to_string())
                && example.detail.contains(&other.to_string()),
            "{}",
            example.detail
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Gaps declared over messages the log still holds are `false_gap`,
    /// one per message the device never got; honest gaps (the messages
    /// really gone from the log) are not.
    #[test]
    fn gaps_are_held_to_the_log(config in gen_config(), pick in any::<usize>()) {
        let mut lying = generate(&config);
        let Some(expected) = mutate(&mut lying, Mutation::FalseGap, pick) else {
            return Ok(());
        };
        let outcome = run(&lying, &strict(), true);
        prop_assert_eq!(outcome.verdict, Verdict::Invalid);
        if let Err(message) = assert_flagged(&outcome, &expected) {
            return Err(TestCaseError::fail(message));
        }
        let mut honest = generate(&config);
        prop_assert_eq!(mutate(&mut honest, Mutation::DeclaredGap, pick), Some(Vec::new()));
        let outcome = run(&honest, &strict(), true);
        prop_assert_eq!(outcome.verdict, Verdict::Valid, "{:#?}", outcome);
        prop_assert_eq!(outcome.stats.declared_gaps, 1);
    }
}

#[test]
fn rebuilt_log_keeps_a_leak_out_of_the_receiving_conversation() {
    // Otherwise the leaked receipt would enter B's rebuilt log and every
    // other member of B would be charged with losing it.
    // The leaked id is moved beyond every log, so no entry of B's own
    // (witnessed by an ack) hides it.
    let (mut generated, mut expected) = mutated(Mutation::Leak, 0);
    let beyond = Position::new(9_999_999_999_999, 0);
    let leaked = &expected[0];
    let receipt = generated
        .history
        .events
        .iter_mut()
        .find(|event| {
            Some(event.device) == leaked.device
                && event.conversation == leaked.conversation
                && Some(event.socket) == leaked.socket
                && matches!(event.kind, EventKind::Message { id, .. } if id == leaked.ids[0])
        })
        .expect("the leaked receipt");
    if let EventKind::Message { id, .. } = &mut receipt.kind {
        *id = beyond;
    }
    expected[0].ids = vec![beyond];
    generated.log = rebuild_log(&generated.history);
    let outcome = run(&generated, &strict(), true);
    assert_flagged(&outcome, &expected).unwrap();
}

/// `indeterminate` (and `internal`) promise nothing: the same history that
/// is a `false_failure` with `unavailable` is valid with them, and so is
/// one where another attempt went unanswered (it may have appended it).
#[test]
fn only_a_definite_failure_is_held_to_the_log() {
    use crate::history::ErrorCode;
    for pick in [0, 1] {
        for code in [ErrorCode::Indeterminate, ErrorCode::Internal] {
            let (mut generated, _) = mutated(Mutation::FalseFailure, pick);
            for event in &mut generated.history.events {
                if let EventKind::SendOutcome { outcome, .. } = &mut event.kind {
                    if let SendOutcome::DefiniteFailure { message, .. } = outcome {
                        // What v1 maps these codes to (client::protocol::v1).
                        *outcome = SendOutcome::Indeterminate {
                            code,
                            message: std::mem::take(message),
                        };
                    }
                }
            }
            let outcome = run(&generated, &strict(), true);
            assert_eq!(outcome.verdict, Verdict::Valid, "{code:?}: {outcome:#?}");
        }
        let (mut generated, _) = mutated(Mutation::FalseFailure, pick);
        let refusal = generated
            .history
            .events
            .iter()
            .position(|event| {
                matches!(
                    event.kind,
                    EventKind::SendOutcome {
                        outcome: SendOutcome::DefiniteFailure { .. },
                        ..
                    }
                )
            })
            .unwrap();
        let mut unanswered = generated.history.events[refusal].clone();
        let EventKind::SendOutcome {
            client_msg_id: refused,
            ..
        } = unanswered.kind
        else {
            unreachable!("the mutation refuses a send")
        };
        let send = generated.history.events[..refusal]
            .iter()
            .rev()
            .find(|event| {
                matches!(event.kind, EventKind::Send { client_msg_id, .. } if client_msg_id == refused)
            })
            .unwrap();
        unanswered.kind = send.kind.clone();
        generated.history.events.insert(refusal, unanswered);
        let outcome = run(&generated, &strict(), true);
        assert_eq!(
            outcome.verdict,
            Verdict::Valid,
            "unanswered attempt: {outcome:#?}"
        );
    }
}

/// Moves a window of events later in the recording: slots then interleave
/// differently, and some lose their (socket, time) order.
fn rotate_window(history: &mut crate::history::History, pick: usize) {
    let len = history.events.len();
    if len > 4 {
        let from = pick % (len / 2);
        let to = (from + 1 + pick % (len / 2)).min(len);
        history.events[from..to].rotate_left((to - from) / 2);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The streaming delivery walk (each event to its slot's state, in
    /// recording order) judges exactly like the slot-by-slot walk of each
    /// slot's sorted events: same verdict, counts, examples and reasons,
    /// on valid, mutated, wiped and reordered histories.
    #[test]
    fn streaming_walk_matches_the_slot_by_slot_walk(
        config in gen_config(),
        mutation in prop::option::of(prop::sample::select(Mutation::ALL.to_vec())),
        wipe in any::<bool>(),
        reorder in any::<bool>(),
        drain_complete in any::<bool>(),
        pick in any::<usize>(),
    ) {
        let mut config = config;
        if wipe {
            config.wipe_before_steps = vec![config.steps / 2];
        }
        let mut generated = generate(&config);
        if let Some(mutation) = mutation {
            if mutate(&mut generated, mutation, pick).is_none() {
                return Ok(());
            }
        }
        if reorder {
            rotate_window(&mut generated.history, pick);
        }
        let expect = Expectations {
            allow_lost_ack: wipe,
            ..strict()
        };
        let options = CheckOptions {
            drain_complete,
            ..CheckOptions::new(&generated.log, &expect)
        };
        let streamed = check(&generated.history, &options);
        let gathered = check_gathering_every_slot(&generated.history, &options);
        prop_assert_eq!(streamed, gathered);
    }
}

#[test]
fn a_history_file_is_checked_streaming_like_in_memory() {
    let (generated, expected) = mutated(Mutation::DropRecv, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.bin");
    crate::history::write_history(&path, &generated.history).unwrap();
    let expect = strict();
    let options = CheckOptions::new(&generated.log, &expect);
    let streamed = check_file(&path, &options).unwrap();
    assert_flagged(&streamed, &expected).unwrap();
    assert_eq!(streamed, run(&generated, &expect, true));
    // A damaged file is an error, not a verdict on half a history.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(check_file(&path, &options).is_err());
}
