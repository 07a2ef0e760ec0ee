//! The open-model send scheduler: Poisson arrivals at the scenario's
//! aggregate rate (varying over time with `[[stages]]`), each assigned to
//! a random online socket.
//!
//! Sends never wait for acks, and each carries the time it was DUE, so
//! latency is measured from the schedule, not from when a busy client got
//! round to it (no coordinated omission, as in oha / wrk2).
//!
//! The scheduler runs on its own thread and sleeps with the OS's timer,
//! not tokio's: tokio's timer wheel has 1 ms slots and rounds a deadline
//! up to the next one, and the runtime then gets to the woken task among
//! the sockets' work. A send was written ~1 ms (median) after it was due,
//! all of it in every live-latency figure though none of it is the
//! server's (docs/performance.md, "Live path, sixth pass"). From a thread,
//! the order reaches its socket task through the queue's `Notify`, which
//! wakes the runtime at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::dist::exponential;
use super::orders::OrderSender;
use super::shape::LoadShape;
use super::{ClientContext, Phase, SendOrder};

/// Online sockets tried per send before it is counted as skipped.
const PICK_TRIES: usize = 16;
/// Longest single sleep between two sends: how soon the scheduler sees
/// that the phase left Running (the run is draining or torn down).
const PHASE_CHECK: Duration = Duration::from_millis(20);

/// A message body of exactly `bytes` bytes that names its send.
pub fn make_body(client_msg_id: Uuid, bytes: usize) -> String {
    let mut body = client_msg_id.simple().to_string();
    body.truncate(bytes);
    while body.len() < bytes {
        body.push('.');
    }
    body
}

/// Which sends of the run's schedule this process places: all of them,
/// or (a shard) those whose id falls in its share. Every shard draws the
/// whole schedule (same times, same ids) and keeps its own part, so the
/// shards together send exactly what one process would.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScheduleShare {
    /// This shard's part of [0, 1): its sockets' share of the run's,
    /// after the shards before it.
    pub from: f64,
    pub to: f64,
}

impl ScheduleShare {
    pub const ALL: ScheduleShare = ScheduleShare { from: 0.0, to: 1.0 };

    /// Whether the send with this id is this process's: the id's last
    /// 48 bits (random; the version and variant bits sit before them) as
    /// a point in [0, 1).
    pub fn keeps(&self, client_msg_id: Uuid) -> bool {
        const RANDOM_BITS: u32 = 48;
        let random = client_msg_id.as_u128() & ((1u128 << RANDOM_BITS) - 1);
        let point = random as f64 / 2f64.powi(RANDOM_BITS as i32);
        self.from <= point && point < self.to
    }
}

/// Runs until `until` (run clock, µs) or until the phase leaves Running.
/// Returns how many orders were placed (plus skipped: this process's
/// part of the schedule). Times, thinning and ids come from `rng`; the
/// socket picks from their own stream, so the schedule does not depend
/// on which sockets happen to be online.
///
/// Blocking: run it on its own thread (`tokio::task::spawn_blocking`).
#[allow(clippy::too_many_arguments)] // each is one setting of the schedule
pub fn run_scheduler(
    ctx: Arc<ClientContext>,
    orders: Vec<OrderSender>,
    shape: LoadShape,
    body_bytes: usize,
    start_us: u64,
    until_us: u64,
    mut rng: StdRng,
    share: ScheduleShare,
) -> u64 {
    let max_rate_per_s = shape.max_send_rate();
    if max_rate_per_s <= 0.0 || orders.is_empty() {
        return 0;
    }
    let mut pick_rng = StdRng::seed_from_u64(rng.random());
    let mean_gap_s = 1.0 / max_rate_per_s;
    let mut due_us = start_us;
    let mut placed = 0u64;
    let phase = ctx.phase.clone();
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
        if !sleep_until_due(ctx.clock.instant_at(due_us), &phase) {
            return placed;
        }
        let client_msg_id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        if !share.keeps(client_msg_id) {
            continue;
        }
        let order = SendOrder {
            client_msg_id,
            body: make_body(client_msg_id, body_bytes),
            due_us,
        };
        let mut unplaced = Some(order);
        let mut saw_online = false;
        for _ in 0..PICK_TRIES {
            let index = pick_rng.random_range(0..orders.len());
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
                Err(back) => unplaced = Some(back),
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

/// Sleeps until `due`, in slices of at most `PHASE_CHECK`; false as soon
/// as the phase is no longer Running (or its sender is gone).
fn sleep_until_due(due: Instant, phase: &tokio::sync::watch::Receiver<Phase>) -> bool {
    loop {
        let running = phase.has_changed().is_ok() && *phase.borrow() == Phase::Running;
        if !running {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(PHASE_CHECK));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_for_a_send_ends_when_the_phase_leaves_running() {
        let (phase_tx, phase) = tokio::sync::watch::channel(Phase::Running);
        let now = Instant::now();
        assert!(sleep_until_due(now, &phase), "a send already due goes out");
        // Due in an hour: the wait must end on the phase change, not then
        // (bounded here, so a broken check fails instead of hanging).
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let sent = sleep_until_due(Instant::now() + Duration::from_secs(3600), &phase);
            // Err only if the test already gave up waiting.
            let _ = done_tx.send(sent);
        });
        phase_tx
            .send(Phase::Draining)
            .expect("the waiter holds a receiver");
        let sent = done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the wait ended within 10 s of the phase change");
        assert!(!sent, "no send once the phase left Running");
        // A dropped sender (the run torn down) ends it too.
        let (phase_tx, phase) = tokio::sync::watch::channel(Phase::Running);
        drop(phase_tx);
        assert!(!sleep_until_due(
            Instant::now() + Duration::from_secs(3600),
            &phase
        ));
    }

    #[test]
    fn bodies_have_the_requested_size() {
        let id = Uuid::new_v4();
        assert_eq!(make_body(id, 5).len(), 5);
        assert_eq!(make_body(id, 64).len(), 64);
        assert!(make_body(id, 64).starts_with(&id.simple().to_string()));
    }

    #[test]
    fn shares_split_the_schedule_exactly() {
        let shares = [
            ScheduleShare {
                from: 0.0,
                to: 0.25,
            },
            ScheduleShare {
                from: 0.25,
                to: 0.7,
            },
            ScheduleShare { from: 0.7, to: 1.0 },
        ];
        let mut per_share = [0usize; 3];
        for _ in 0..3000 {
            let id = Uuid::new_v4();
            let keepers: Vec<usize> = (0..3).filter(|&s| shares[s].keeps(id)).collect();
            assert_eq!(keepers.len(), 1, "{id} kept by {keepers:?}");
            per_share[keepers[0]] += 1;
            assert!(ScheduleShare::ALL.keeps(id));
        }
        // Roughly proportional (the ids are random).
        assert!((500..1000).contains(&per_share[0]), "{per_share:?}");
    }
}
