//! When did the server certainly read a device's ack?
//!
//! The server answers a `send` but never an `ack`, so a recorded `AckSent`
//! only says the bytes left the device. A `cursor: "none"` hello after an
//! ack the server never read is the truth, not a lost cursor. An ack
//! followed by a reset may die on the way: SO_LINGER 0 discards unsent
//! bytes, a fault proxy may hold them for its latency, and some stacks
//! drop unread data when the RST arrives. The checker therefore counts an
//! ack only once something proves the server read past it on that socket:
//!
//! - the server acked a `send` the device wrote after the ack (one socket
//!   is one ordered byte stream, read in order), or
//! - the socket ended in a way that delivers everything before it: a close
//!   frame, a plain FIN (`client_abrupt`), or the run's end.
//!
//! A reset, a server close or a failed connection proves nothing; the ack
//! then counts only if a later one on another socket is proven.

use uuid::Uuid;

use crate::history::{DisconnectCause, EventKind, SendOutcome};

/// Per socket: the latest ack still waiting for proof that the server read it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct AckProof {
    unproven: bool,
    /// The first new send (attempt 0) written after the unproven ack: its
    /// server ack proves the server read the stream past the ack.
    witness: Option<Uuid>,
}

impl AckProof {
    /// Feeds one event of the socket; true when it proves an ack.
    pub fn on_event(&mut self, kind: &EventKind) -> bool {
        match kind {
            EventKind::AckSent { .. } => {
                self.unproven = true;
                self.witness = None;
                false
            }
            EventKind::Send {
                client_msg_id,
                attempt: 0,
                ..
            } if self.unproven && self.witness.is_none() => {
                self.witness = Some(*client_msg_id);
                false
            }
            EventKind::SendOutcome {
                client_msg_id,
                outcome: SendOutcome::Acked { .. },
            } if self.unproven && self.witness == Some(*client_msg_id) => self.prove(),
            EventKind::Disconnect(cause) if self.unproven => match cause {
                DisconnectCause::ClientClose
                | DisconnectCause::ClientAbrupt
                | DisconnectCause::RunEnd => self.prove(),
                DisconnectCause::ClientReset
                | DisconnectCause::ServerClose { .. }
                | DisconnectCause::Error { .. } => {
                    self.unproven = false;
                    self.witness = None;
                    false
                }
            },
            _ => false,
        }
    }

    fn prove(&mut self) -> bool {
        self.unproven = false;
        self.witness = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Position;

    fn ack() -> EventKind {
        EventKind::AckSent {
            id: Position::new(1, 0),
        }
    }

    fn send(id: u128, attempt: u32) -> EventKind {
        EventKind::Send {
            client_msg_id: Uuid::from_u128(id),
            body_hash: 0,
            body_len: 0,
            due_us: 0,
            attempt,
        }
    }

    fn acked(id: u128) -> EventKind {
        EventKind::SendOutcome {
            client_msg_id: Uuid::from_u128(id),
            outcome: SendOutcome::Acked {
                id: Position::new(2, 0),
                duplicate: false,
            },
        }
    }

    fn proofs(events: &[EventKind]) -> usize {
        let mut proof = AckProof::default();
        events.iter().filter(|kind| proof.on_event(kind)).count()
    }

    #[test]
    fn an_ack_right_before_a_reset_is_not_proven() {
        let reset = EventKind::Disconnect(DisconnectCause::ClientReset);
        assert_eq!(proofs(&[ack(), reset]), 0);
        let server_close = EventKind::Disconnect(DisconnectCause::ServerClose { code: Some(1001) });
        assert_eq!(proofs(&[ack(), server_close]), 0);
    }

    #[test]
    fn a_close_frame_or_a_fin_proves_the_ack_before_it() {
        for cause in [
            DisconnectCause::ClientClose,
            DisconnectCause::ClientAbrupt,
            DisconnectCause::RunEnd,
        ] {
            assert_eq!(proofs(&[ack(), EventKind::Disconnect(cause)]), 1);
        }
    }

    #[test]
    fn the_answer_to_a_later_send_proves_the_ack() {
        let reset = EventKind::Disconnect(DisconnectCause::ClientReset);
        assert_eq!(proofs(&[ack(), send(7, 0), acked(7), reset]), 1);
    }

    #[test]
    fn an_answer_to_a_send_written_before_the_ack_proves_nothing() {
        let reset = EventKind::Disconnect(DisconnectCause::ClientReset);
        // Send 5 went out before the ack; its answer may have left the
        // server before the ack arrived.
        assert_eq!(proofs(&[send(5, 0), ack(), acked(5), reset.clone()]), 0);
        // A retry after the ack may be answered for its first attempt.
        assert_eq!(proofs(&[send(5, 0), ack(), send(5, 1), acked(5), reset]), 0);
    }

    #[test]
    fn a_newer_ack_needs_its_own_proof() {
        let reset = EventKind::Disconnect(DisconnectCause::ClientReset);
        // Send 7 followed the first ack but not the second.
        assert_eq!(proofs(&[ack(), send(7, 0), ack(), acked(7), reset]), 0);
    }
}
