//! Checker tests for servers that claim only "recovered: true / false"
//! (Socket.IO's `socket.recovered`) instead of naming a resume position:
//! `true` is held to exactly-once after the device's own last message,
//! `false` is a declared gap up to the socket's first delivery.

use fnv::FnvHashMap;

use super::testgen::{generate, Generated};
use super::tests::{rich_config, run, strict};
use super::*;
use crate::history::{CursorOrigin, EventKind, Position, ResumeClaim};

/// Rewrites every client-cursor claim that resumes from the device's own
/// highest receipt into `recovered: true` (what a Socket.IO server says in
/// that case); returns how many.
fn as_recovered_claims(generated: &mut Generated) -> usize {
    let mut highest: FnvHashMap<(u32, u32), Position> = FnvHashMap::default();
    let mut converted = 0;
    for event in &mut generated.history.events {
        let slot = (event.device, event.conversation);
        match &mut event.kind {
            EventKind::Message { id, .. } => {
                let top = highest.entry(slot).or_default();
                *top = (*top).max(*id);
            }
            EventKind::Connected { claim, .. } => {
                let own = highest.get(&slot).copied().unwrap_or(Position::ZERO);
                if let ResumeClaim::Cursor {
                    from,
                    origin: CursorOrigin::Client,
                } = *claim
                {
                    if from == own {
                        *claim = ResumeClaim::Recovered { recovered: true };
                        converted += 1;
                    }
                }
            }
            _ => {}
        }
    }
    converted
}

/// The index of the first replayed message right after a `recovered:
/// true` claim on a reconnect, with at least one more replayed after it.
fn first_replay_after_recovery(generated: &Generated) -> Option<(usize, usize)> {
    let events = &generated.history.events;
    (0..events.len()).find_map(|claim_ix| {
        let claim = &events[claim_ix];
        if claim.socket == 0
            || !matches!(
                claim.kind,
                EventKind::Connected {
                    claim: ResumeClaim::Recovered { recovered: true },
                    ..
                }
            )
        {
            return None;
        }
        let same_socket = |event: &crate::history::Event| {
            event.device == claim.device
                && event.conversation == claim.conversation
                && event.socket == claim.socket
        };
        let mut replays = events[claim_ix + 1..]
            .iter()
            .enumerate()
            .filter(|(_, event)| same_socket(event))
            .take_while(|(_, event)| matches!(event.kind, EventKind::Message { replay: true, .. }))
            .map(|(offset, _)| claim_ix + 1 + offset);
        let first = replays.next()?;
        replays.next()?;
        Some((claim_ix, first))
    })
}

#[test]
fn recovered_true_claims_are_checked_and_valid_when_kept() {
    for seed in 0..6 {
        let mut generated = generate(&rich_config_seeded(seed));
        let converted = as_recovered_claims(&mut generated);
        assert!(converted > 0, "seed {seed}: no claim to convert");
        let outcome = run(&generated, &strict(), true);
        assert_eq!(outcome.verdict, Verdict::Valid, "seed {seed}: {outcome:#?}");
    }
}

fn rich_config_seeded(seed: u64) -> testgen::GenConfig {
    testgen::GenConfig {
        seed,
        ..rich_config()
    }
}

/// A history where a `recovered: true` socket never delivers its first
/// missed message; and its claim index.
fn recovery_missing_a_message() -> (Generated, usize) {
    for seed in 0..40 {
        let mut generated = generate(&rich_config_seeded(seed));
        as_recovered_claims(&mut generated);
        if let Some((claim_ix, first)) = first_replay_after_recovery(&generated) {
            generated.history.events.remove(first);
            return (generated, claim_ix);
        }
    }
    panic!("no seed in 0..40 has a recovery replaying two messages");
}

#[test]
fn a_recovery_claimed_but_incomplete_is_a_violation() {
    let (generated, _) = recovery_missing_a_message();
    let outcome = run(&generated, &strict(), true);
    assert_eq!(outcome.verdict, Verdict::Invalid, "{outcome:#?}");
    assert!(
        outcome
            .anomalies
            .keys()
            .any(|kind| matches!(kind, AnomalyKind::Skip | AnomalyKind::Lost)),
        "{outcome:#?}"
    );
}

#[test]
fn a_recovery_declared_failed_excuses_what_precedes_the_first_delivery() {
    let (mut generated, claim_ix) = recovery_missing_a_message();
    if let EventKind::Connected { claim, .. } = &mut generated.history.events[claim_ix].kind {
        *claim = ResumeClaim::Recovered { recovered: false };
    }
    let outcome = run(&generated, &strict(), true);
    assert_eq!(outcome.verdict, Verdict::Valid, "{outcome:#?}");
}

/// A declared failed recovery on a socket that then delivers nothing:
/// what was first sent before its hello is excused, what was sent after
/// it is still owed (here: lost, as nothing else delivers it).
#[test]
fn a_recovery_declared_failed_with_no_delivery_still_owes_later_messages() {
    let (mut generated, claim_ix) = recovery_missing_a_message();
    let claim = generated.history.events[claim_ix].clone();
    if let EventKind::Connected { claim, .. } = &mut generated.history.events[claim_ix].kind {
        *claim = ResumeClaim::Recovered { recovered: false };
    }
    let on_socket = |event: &crate::history::Event| {
        (event.device, event.conversation, event.socket)
            == (claim.device, claim.conversation, claim.socket)
    };
    // This socket is the device's last in the conversation: later claims
    // would owe what it lacks and blur the test.
    generated.history.events.retain(|event| {
        (event.device, event.conversation) != (claim.device, claim.conversation)
            || event.socket <= claim.socket
    });
    let delivered_later = |events: &[crate::history::Event], id: Position| {
        events.iter().any(|event| {
            (event.device, event.conversation) == (claim.device, claim.conversation)
                && event.socket != claim.socket
                && matches!(event.kind, EventKind::Message { id: other, .. } if other == id)
        })
    };
    let first_sent: FnvHashMap<uuid::Uuid, u64> = generated
        .history
        .events
        .iter()
        .rev()
        .filter_map(|event| match event.kind {
            EventKind::Send { client_msg_id, .. } if event.conversation == claim.conversation => {
                Some((client_msg_id, event.at_us))
            }
            _ => None,
        })
        .collect();
    let (mut before_hello, mut after_hello) = (Vec::new(), Vec::new());
    for event in &generated.history.events {
        if let EventKind::Message {
            id, client_msg_id, ..
        } = event.kind
        {
            if on_socket(event) && !delivered_later(&generated.history.events, id) {
                let sent_at = first_sent.get(&client_msg_id).copied().unwrap_or(0);
                if sent_at < claim.at_us {
                    before_hello.push(id);
                } else {
                    after_hello.push(id);
                }
            }
        }
    }
    generated
        .history
        .events
        .retain(|event| !(on_socket(event) && matches!(event.kind, EventKind::Message { .. })));
    let outcome = run(&generated, &strict(), true);
    let named: Vec<Position> = outcome
        .anomalies
        .values()
        .flat_map(|report| {
            report
                .examples
                .iter()
                .flat_map(|example| example.ids.clone())
        })
        .collect();
    for id in &before_hello {
        assert!(!named.contains(id), "{id} predates the hello: {outcome:#?}");
    }
    assert!(
        outcome.count(AnomalyKind::Lost) >= after_hello.len() as u64,
        "{after_hello:?} were sent after the hello: {outcome:#?}"
    );
}
