//! The checker's half of `[intruders]`: what an intruder got is judged by
//! `leak::check_intruders` (refused: nothing; let in without the right to
//! read: `leak`; a victim's stored cursor changed: `leak`).

use uuid::Uuid;

use super::testgen::{generate, GenConfig};
use super::tests::strict;
use super::*;
use crate::history::Position;
use crate::intruders::{
    Attempt, AttemptOutcome, CursorWatch, IntruderRecord, ReceivedMessage, Victim,
};
use crate::scenario::IntruderKind;

fn intruder(kind: IntruderKind, outcome: AttemptOutcome) -> IntruderRecord {
    IntruderRecord {
        kind,
        index: 0,
        user_id: Uuid::from_u128(7),
        client_id: Uuid::from_u128(8),
        conversation: 1,
        conversation_id: Uuid::from_u128(9),
        victim: None,
        attempts: vec![Attempt {
            at_us: 1_000,
            impersonated: false,
            outcome,
        }],
        victim_cursor: None,
        not_played: None,
    }
}

fn admitted(messages: Vec<ReceivedMessage>) -> AttemptOutcome {
    AttemptOutcome::Admitted {
        hello: Some("none".into()),
        frames: messages.len() as u64 + 2,
        messages_received: messages.len() as u64,
        messages,
        acked: None,
        closed_with: None,
    }
}

fn verdict_with(records: &[IntruderRecord]) -> CheckOutcome {
    let generated = generate(&GenConfig::default());
    let expect = strict();
    check(
        &generated.history,
        &CheckOptions {
            intruders: records,
            ..CheckOptions::new(&generated.log, &expect)
        },
    )
}

#[test]
fn refused_intruders_leave_a_valid_run_valid() {
    let refused = AttemptOutcome::Refused {
        status: 401,
        reason: Some("missing_token".into()),
    };
    let mut member = intruder(IntruderKind::ClientId, admitted(Vec::new()));
    member.victim = Some(Victim {
        user_id: Uuid::from_u128(10),
        client_id: Uuid::from_u128(8),
    });
    member.victim_cursor = Some(CursorWatch {
        before: None,
        after: None,
        at_us: 2_000,
    });
    let outcome = verdict_with(&[intruder(IntruderKind::NoToken, refused), member]);
    assert_eq!(outcome.verdict, Verdict::Valid, "{:?}", outcome.anomalies);
}

#[test]
fn every_message_an_intruder_got_is_a_leak_naming_it() {
    let message = |n: u64| ReceivedMessage {
        at_us: 1_500 + n,
        id: Position::new(100, n),
        client_msg_id: Uuid::from_u128(u128::from(n) + 100),
    };
    let outcome = verdict_with(&[
        intruder(
            IntruderKind::NotMember,
            admitted(vec![message(1), message(2)]),
        ),
        intruder(IntruderKind::ExpiredToken, admitted(Vec::new())),
    ]);
    assert_eq!(outcome.verdict, Verdict::Invalid);
    let leak = &outcome.anomalies[&AnomalyKind::Leak];
    assert_eq!(leak.count, 3, "two messages and one bare admission");
    let details: Vec<&str> = leak.examples.iter().map(|e| e.detail.as_str()).collect();
    assert!(
        details.iter().any(|d| d.contains("intruder not_member #0")
            && d.contains("conversation 1")
            && d.contains("100-1")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains("intruder expired_token") && d.contains("no message arrived")),
        "{details:?}"
    );
}

#[test]
fn a_victim_cursor_that_moved_is_a_leak() {
    // A member may read (no leak for its messages), but not move another
    // device's cursor.
    let mut hijacker = intruder(
        IntruderKind::ClientId,
        admitted(vec![ReceivedMessage {
            at_us: 1_500,
            id: Position::new(100, 1),
            client_msg_id: Uuid::from_u128(5),
        }]),
    );
    hijacker.victim = Some(Victim {
        user_id: Uuid::from_u128(10),
        client_id: Uuid::from_u128(8),
    });
    hijacker.victim_cursor = Some(CursorWatch {
        before: None,
        after: Some("{\"acked\":\"100-1\"}".into()),
        at_us: 2_000,
    });
    let outcome = verdict_with(&[hijacker]);
    let leak = &outcome.anomalies[&AnomalyKind::Leak];
    assert_eq!(leak.count, 1);
    assert!(
        leak.examples[0]
            .detail
            .contains("stored cursor changed from absent to"),
        "{}",
        leak.examples[0].detail
    );
    assert_eq!(outcome.verdict, Verdict::Invalid);
}
