//! Did a socket leave the server a cursor to store?
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
//! A reset, a server close or a failed connection proves nothing.
//!
//! Even a read ack leaves nothing to store when the server vanished with
//! the socket open (the connection failed, as on a `server_kill`): a
//! server saves cursors every sync interval and on disconnect (protocol
//! §9), so a crash may lose every ack since its last save, and a device
//! that never had a save is then rightly told `"none"`.

use uuid::Uuid;

use crate::history::{DisconnectCause, EventKind, SendOutcome};

/// One socket's acks, from its first event to its `Disconnect`.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct AckProof {
    /// The latest ack still waits for proof that the server read it.
    unproven: bool,
    /// The first new send (attempt 0) written after the unproven ack: its
    /// server ack proves the server read the stream past the ack.
    witness: Option<Uuid>,
    /// Some ack of this socket was provably read.
    proven: bool,
}

impl AckProof {
    /// Feeds one event of the socket; true at its `Disconnect` when the
    /// server provably read an ack on it and did not vanish before it
    /// could save the cursor.
    pub fn on_event(&mut self, kind: &EventKind) -> bool {
        match kind {
            EventKind::AckSent { .. } => {
                self.unproven = true;
                self.witness = None;
            }
            EventKind::Send {
                client_msg_id,
                attempt: 0,
                ..
            } if self.unproven && self.witness.is_none() => {
                self.witness = Some(*client_msg_id);
            }
            EventKind::SendOutcome {
                client_msg_id,
                outcome: SendOutcome::Acked { .. },
            } if self.unproven && self.witness == Some(*client_msg_id) => self.prove(),
            EventKind::Disconnect(cause) => {
                let delivers_all = matches!(
                    cause,
                    DisconnectCause::ClientClose
                        | DisconnectCause::ClientAbrupt
                        | DisconnectCause::RunEnd
                );
                if self.unproven && delivers_all {
                    self.prove();
                }
                let server_vanished = matches!(cause, DisconnectCause::Error { .. });
                let kept = self.proven && !server_vanished;
                *self = AckProof::default();
                return kept;
            }
            _ => {}
        }
        false
    }

    fn prove(&mut self) {
        self.unproven = false;
        self.witness = None;
        self.proven = true;
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

    fn ended(cause: DisconnectCause) -> EventKind {
        EventKind::Disconnect(cause)
    }

    fn reset() -> EventKind {
        ended(DisconnectCause::ClientReset)
    }

    fn crashed() -> EventKind {
        ended(DisconnectCause::Error {
            message: "Connection reset without closing handshake".to_string(),
        })
    }

    /// Whether the socket's events leave the server a cursor to store.
    fn kept(events: &[EventKind]) -> bool {
        let mut proof = AckProof::default();
        let answers: Vec<bool> = events.iter().map(|kind| proof.on_event(kind)).collect();
        let (last, before) = answers.split_last().expect("at least one event");
        assert!(
            before.iter().all(|answer| !answer),
            "only a Disconnect answers"
        );
        *last
    }

    #[test]
    fn an_ack_right_before_a_reset_is_not_proven() {
        assert!(!kept(&[ack(), reset()]));
        assert!(!kept(&[
            ack(),
            ended(DisconnectCause::ServerClose { code: Some(1001) })
        ]));
    }

    #[test]
    fn a_close_frame_or_a_fin_proves_the_ack_before_it() {
        for cause in [
            DisconnectCause::ClientClose,
            DisconnectCause::ClientAbrupt,
            DisconnectCause::RunEnd,
        ] {
            assert!(kept(&[ack(), ended(cause)]));
        }
    }

    #[test]
    fn the_answer_to_a_later_send_proves_the_ack() {
        assert!(kept(&[ack(), send(7, 0), acked(7), reset()]));
        // The server closing afterwards saves on its way out.
        let server_close = ended(DisconnectCause::ServerClose { code: Some(1001) });
        assert!(kept(&[ack(), send(7, 0), acked(7), server_close]));
    }

    #[test]
    fn an_answer_to_a_send_written_before_the_ack_proves_nothing() {
        // Send 5 went out before the ack; its answer may have left the
        // server before the ack arrived.
        assert!(!kept(&[send(5, 0), ack(), acked(5), reset()]));
        // A retry after the ack may be answered for its first attempt.
        assert!(!kept(&[send(5, 0), ack(), send(5, 1), acked(5), reset()]));
    }

    #[test]
    fn a_newer_ack_does_not_undo_an_earlier_proof() {
        // Send 7 followed the first ack but not the second: the first ack
        // was read, so the server had a cursor either way.
        assert!(kept(&[ack(), send(7, 0), acked(7), ack(), reset()]));
        // Send 7 followed neither ack's proof window: nothing read.
        assert!(!kept(&[ack(), send(7, 0), ack(), acked(7), reset()]));
    }

    #[test]
    fn a_server_that_vanished_with_the_socket_open_kept_nothing() {
        // Seed 3 of server-crash.toml with the kill at 3 s: the ack was
        // read (a later send was acked), then SIGKILL came before the
        // server's next cursor save.
        assert!(!kept(&[ack(), send(7, 0), acked(7), crashed()]));
    }
}
