//! The open-model send scheduler: Poisson arrivals at the scenario's
//! aggregate rate (varying over time with `[[stages]]`), each assigned to
//! a random online socket.
//!
//! Sends never wait for acks, and each carries the time it was DUE, so
//! latency is measured from the schedule, not from when a busy client got
//! round to it (no coordinated omission, as in oha / wrk2).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use uuid::Uuid;

use super::dist::exponential;
use super::shape::LoadShape;
use super::{ClientContext, Phase, SendOrder};

/// Online sockets tried per send before it is counted as skipped.
const PICK_TRIES: usize = 16;

/// A message body of exactly `bytes` bytes that names its send.
pub fn make_body(client_msg_id: Uuid, bytes: usize) -> String {
    let mut body = client_msg_id.simple().to_string();
    body.truncate(bytes);
    while body.len() < bytes {
        body.push('.');
    }
    body
}

/// Runs until `until` (run clock, µs) or until the phase leaves Running.
/// Returns how many orders were placed.
pub async fn run_scheduler(
    ctx: Arc<ClientContext>,
    orders: Vec<mpsc::Sender<SendOrder>>,
    shape: LoadShape,
    body_bytes: usize,
    start_us: u64,
    until_us: u64,
    mut rng: StdRng,
) -> u64 {
    let max_rate_per_s = shape.max_send_rate();
    if max_rate_per_s <= 0.0 || orders.is_empty() {
        return 0;
    }
    let mean_gap_s = 1.0 / max_rate_per_s;
    let mut due_us = start_us;
    let mut placed = 0u64;
    let mut phase = ctx.phase.clone();
    loop {
        due_us += exponential(mean_gap_s, &mut rng).as_micros() as u64;
        if due_us >= until_us {
            return placed;
        }
        // Thinning: keep a candidate with probability rate(t) / max. At the
        // maximum no draw is made, so a constant-rate scenario keeps the
        // exact schedule (and seeds) it had before stages existed.
        let rate_per_s = shape.send_rate_at(due_us);
        if rate_per_s < max_rate_per_s && !rng.random_bool(rate_per_s / max_rate_per_s) {
            continue;
        }
        let due_at = Instant::from_std(ctx.clock.instant_at(due_us));
        tokio::select! {
            _ = tokio::time::sleep_until(due_at) => {}
            _ = phase.wait_for(|p| *p != Phase::Running) => return placed,
        }
        let client_msg_id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let order = SendOrder {
            client_msg_id,
            body: make_body(client_msg_id, body_bytes),
            due_us,
        };
        let mut unplaced = Some(order);
        let mut saw_online = false;
        for _ in 0..PICK_TRIES {
            let index = rng.random_range(0..orders.len());
            if !ctx.online[index].load(Ordering::Relaxed) {
                continue;
            }
            saw_online = true;
            let Some(order) = unplaced.take() else { break };
            match orders[index].try_send(order) {
                Ok(()) => {
                    placed += 1;
                    break;
                }
                Err(TrySendError::Full(back) | TrySendError::Closed(back)) => unplaced = Some(back),
            }
        }
        if unplaced.is_some() {
            ctx.counters.sends_skipped.fetch_add(1, Ordering::Relaxed);
            if saw_online {
                ctx.counters
                    .sends_skipped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_requested_size() {
        let id = Uuid::new_v4();
        assert_eq!(make_body(id, 5).len(), 5);
        assert_eq!(make_body(id, 64).len(), 64);
        assert!(make_body(id, 64).starts_with(&id.simple().to_string()));
    }
}
