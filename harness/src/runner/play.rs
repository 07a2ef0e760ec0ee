//! The play stage: the cast of devices placed and started (each socket's
//! seed and ramp slot drawn from the whole cast, so a shard plays its
//! devices exactly as one process would), the `[intruders]`, the traffic
//! phase, the drain, and what the servers and Redis cost meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use super::metrics::LiveSlot;
use super::{
    cost, drain, faults, log_store, population, progress, resources, unix_ms, Provisioned,
    RunError, ORDER_QUEUE,
};
use crate::client::live::LiveStats;
use crate::client::orders::{order_queue, OrderSender};
use crate::client::shape::{LoadShape, StormControl};
use crate::client::socket::SocketTask;
use crate::client::traffic::{run_scheduler, ScheduleShare};
use crate::client::{ClientContext, Counters, Phase, RunClock};
use crate::history::{Position, Recorder};
use crate::report;
use crate::scenario::{Scenario, ServersSpec};
/// What playing the scenario produced, before collecting and checking.
pub struct Played {
    /// Where every socket's events went; `collect` closes it.
    pub history: Recorder,
    pub cast: population::Cast,
    pub faults: Vec<crate::history::FaultWindow>,
    /// Wall clock at the run clock's origin.
    pub clock_started_at_unix_ms: u64,
    pub drain_complete: bool,
    pub stragglers: Vec<String>,
    pub unknown_reasons: Vec<String>,
    pub peak_sockets: u64,
    /// Harness resident memory when the traffic phase ended.
    pub rss_at_traffic_end_bytes: Option<u64>,
    /// What the spawned server processes cost (`None`: none were spawned
    /// as processes).
    pub server_cost: Option<report::ServerResourcesInput>,
    /// What Redis cost (`None`: its `INFO` could not be read).
    pub redis_cost: Option<report::RedisResourcesInput>,
    pub sends_skipped: report::SendsSkipped,
    /// Sends acked during the run (to tell an unreadable log from an empty one).
    pub acks: u64,
    /// What the `[intruders]` got.
    pub intruders: Vec<crate::intruders::IntruderRecord>,
}

/// The devices of a run, started.
struct Devices {
    ctx: Arc<ClientContext>,
    cast: population::Cast,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    scheduler: tokio::task::JoinHandle<u64>,
    phase_tx: watch::Sender<Phase>,
    fault_schedule: tokio::task::JoinHandle<Vec<crate::history::FaultWindow>>,
    clock_started_at_unix_ms: u64,
    /// When the traffic phase ends.
    traffic_end: tokio::time::Instant,
}

/// Stage 2: the devices against the provisioned targets: ramp-up,
/// traffic, churn and faults for the scenario's duration, then the drain.
/// Bounded in time by ramp-up + duration + drain timeout (+ a few seconds
/// to close).
pub async fn play(
    scenario: &Scenario,
    seed: u64,
    provisioned: &Provisioned,
    show_progress: bool,
    live_slot: &LiveSlot,
    shard: Option<&crate::shard::ShardPlay>,
    history: Recorder,
) -> Result<Played, RunError> {
    if provisioned.targets.is_empty() {
        return Err(RunError::NoTargets);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cast = population::build(
        &scenario.population,
        scenario.churn.client_cursor_share,
        &mut rng,
    );
    let (placed, share) = place_sockets(scenario, seed, &mut cast, &mut rng, shard);
    // Valid through ramp-up, traffic and drain, with an hour to spare.
    let valid_for =
        scenario.ramp_up + scenario.duration + scenario.drain_timeout + Duration::from_secs(3600);
    let tokens =
        crate::auth::tokens_for(&provisioned.credentials, &cast.memberships(), valid_for).await?;
    for spec in &mut cast.sockets {
        spec.bearer = tokens.get(&spec.user_id).cloned();
    }
    let devices = start_devices(
        scenario,
        rng,
        cast,
        (&placed, share),
        provisioned,
        shard,
        history.clone(),
    );
    // The intruders are played once per run: by the only process, or by
    // shard 0 of a sharded run.
    let intruders = match shard {
        Some(shard) if shard.spec.index != 0 => tokio::spawn(async { Ok(Vec::new()) }),
        _ => start_intruders(scenario, seed, &devices, provisioned),
    };
    // Set once, here; only the metrics endpoint reads it.
    let _ = live_slot.set(devices.ctx.clone()); // Err only if already set, which nothing else does
    let socket_count = devices.cast.sockets.len();
    let progress =
        progress::Progress::start(devices.ctx.clone(), show_progress, socket_count as u64);
    let cost_sampler =
        cost::CostSampler::start(provisioned.rig.clone(), provisioned.redis_url.as_deref()).await;

    tokio::time::sleep_until(devices.traffic_end).await;
    let rss_at_traffic_end_bytes = resources::current_rss_bytes();
    let cost_at_traffic_end = cost_sampler.at_traffic_end().await;
    progress.set_phase("draining");
    // Sends stop; devices come back (spread over `drain_return_spread`)
    // and stay.
    let _ = devices.phase_tx.send(Phase::Draining); // Err only when no socket task is left: nothing to tell
    let placed = devices.scheduler.await.unwrap_or(0);
    tracing::info!(placed, "traffic phase over");
    let drain_started = std::time::Instant::now();
    let ctx = devices.ctx.clone();
    let skipped = ctx.counters.sends_skipped.load(Ordering::Relaxed);
    let queue_full = ctx
        .counters
        .sends_skipped_queue_full
        .load(Ordering::Relaxed);
    let sends_skipped = report::SendsSkipped {
        scheduled: placed + skipped,
        skipped,
        no_socket_online: skipped.saturating_sub(queue_full),
        queue_full,
    };

    let mut unknown_reasons = Vec::new();
    // Every fault is lifted before the drain reads the heads (a fault may
    // outlast the traffic; each ends after its own bounded duration).
    let faults = match devices.fault_schedule.await {
        Ok(windows) => windows,
        Err(join) => {
            unknown_reasons.push(format!("the fault schedule failed: {join}"));
            Vec::new()
        }
    };
    tracing::debug!(elapsed = ?drain_started.elapsed(), "fault schedule over");
    let stragglers = drain::drain(
        &ctx,
        &devices.phase_tx,
        &devices.cast,
        scenario.drain_timeout,
        log_store(scenario, provisioned.redis_url.as_deref()),
        shard.map(|shard| &shard.sync),
        &mut unknown_reasons,
    )
    .await?;
    let intruders = match intruders.await {
        Ok(Ok(records)) => records,
        Ok(Err(err)) => return Err(RunError::Tokens(err)),
        Err(join) => {
            unknown_reasons.push(format!("the intruders' task failed: {join}"));
            Vec::new()
        }
    };
    let _ = devices.phase_tx.send(Phase::Done); // Err only when no socket task is left
    progress.set_phase("closing");
    drain::join_sockets(devices.tasks, &mut unknown_reasons).await;
    progress.finish();
    let cost::SystemCost {
        servers: server_cost,
        redis: redis_cost,
    } = cost_sampler.finish(cost_at_traffic_end).await;
    Ok(Played {
        history,
        cast: devices.cast,
        faults,
        clock_started_at_unix_ms: devices.clock_started_at_unix_ms,
        drain_complete: stragglers.is_empty(),
        stragglers,
        unknown_reasons,
        peak_sockets: ctx.counters.peak_sockets_online.load(Ordering::Relaxed),
        rss_at_traffic_end_bytes,
        server_cost,
        redis_cost,
        sends_skipped,
        acks: ctx.counters.acks.load(Ordering::Relaxed),
        intruders,
    })
}

/// The `[intruders]`, played on their own task from the ramp-up's end to
/// the traffic's end (bounded: `crate::intruders::play`).
fn start_intruders(
    scenario: &Scenario,
    seed: u64,
    devices: &Devices,
    provisioned: &Provisioned,
) -> tokio::task::JoinHandle<Result<Vec<crate::intruders::IntruderRecord>, crate::auth::TokenError>>
{
    let intruders = scenario.intruders.clone();
    let credentials = provisioned.credentials.clone();
    let conversations = devices.cast.conversation_ids();
    let targets = provisioned.targets.clone();
    let tls = provisioned.tls.clone();
    let clock = devices.ctx.clock;
    let start_us = scenario.ramp_up.as_micros() as u64;
    let end_us = start_us + scenario.duration.as_micros() as u64;
    let redis_url = provisioned
        .redis_url
        .clone()
        .filter(|_| scenario.protocol == crate::client::protocol::Protocol::V1);
    // The server saves a cursor when its socket closes and every sync interval.
    let settle = match &scenario.servers {
        ServersSpec::Spawn { sync_interval, .. } => *sync_interval + Duration::from_secs(1),
        ServersSpec::External { .. } => Duration::from_secs(2),
    };
    tokio::spawn(async move {
        if intruders.total() == 0 {
            return Ok(Vec::new());
        }
        crate::intruders::play(crate::intruders::IntruderSetup {
            intruders: &intruders,
            seed,
            conversations,
            targets,
            tls,
            credentials: &credentials,
            clock,
            start_us,
            end_us,
            redis_url,
            settle,
        })
        .await
    })
}

/// Where and how one socket of this process starts.
struct PlacedSocket {
    /// Seed of the socket task's own random numbers: drawn for every
    /// socket of the whole cast in order, so a socket behaves the same
    /// whichever shard plays it.
    rng_seed: u64,
    /// When it first connects: its place in the whole cast, spread evenly
    /// over the ramp-up.
    connect_offset_us: u64,
}

/// Draws every socket's seed and ramp slot from the whole cast, then
/// keeps in `cast.sockets` only this process's sockets (all of them, or
/// the devices of this shard), renumbered from 0. Returns the kept
/// sockets' placements, in `cast.sockets` order, and this process's share
/// of the send schedule (its sockets' share of the run's).
fn place_sockets(
    scenario: &Scenario,
    seed: u64,
    cast: &mut population::Cast,
    rng: &mut StdRng,
    shard: Option<&crate::shard::ShardPlay>,
) -> (Vec<PlacedSocket>, ScheduleShare) {
    let socket_count = cast.sockets.len();
    let ramp_us = scenario.ramp_up.as_micros() as u64;
    let mut placed: Vec<(crate::client::SocketSpec, PlacedSocket)> = cast
        .sockets
        .drain(..)
        .map(|spec| {
            let connect_offset_us = if socket_count > 1 {
                ramp_us * spec.index as u64 / socket_count as u64
            } else {
                0
            };
            let rng_seed = rng.random();
            (
                spec,
                PlacedSocket {
                    rng_seed,
                    connect_offset_us,
                },
            )
        })
        .collect();
    let mut share = ScheduleShare::ALL;
    if let Some(shard) = shard {
        let owners = crate::shard::device_owners(seed, cast.devices.len(), shard.spec.count);
        let owner_of = |spec: &crate::client::SocketSpec| owners[spec.device as usize];
        let before = placed
            .iter()
            .filter(|(spec, _)| owner_of(spec) < shard.spec.index)
            .count();
        placed.retain(|(spec, _)| owner_of(spec) == shard.spec.index);
        for (index, (spec, _)) in placed.iter_mut().enumerate() {
            spec.index = index;
        }
        let total = socket_count.max(1) as f64;
        share = ScheduleShare {
            from: before as f64 / total,
            to: (before + placed.len()) as f64 / total,
        };
        if shard.spec.index + 1 == shard.spec.count {
            // The last shard's part ends exactly at 1: no id falls between.
            share.to = 1.0;
        }
    }
    let (specs, placements) = placed.into_iter().unzip();
    cast.sockets = specs;
    (placements, share)
}

/// The cast, one task per socket (connects spread evenly over the
/// ramp), the send scheduler and the fault schedule, all started.
/// A shard's clock starts at the run's shared origin, and its scheduler
/// places its share of the run's one send schedule.
fn start_devices(
    scenario: &Scenario,
    mut rng: StdRng,
    cast: population::Cast,
    // What `place_sockets` decided: each socket's placement, and this
    // process's share of the send schedule.
    (placed, share): (&[PlacedSocket], ScheduleShare),
    provisioned: &Provisioned,
    shard: Option<&crate::shard::ShardPlay>,
    history: Recorder,
) -> Devices {
    let socket_count = cast.sockets.len();
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let (clock, clock_started_at_unix_ms) = match shard {
        Some(shard) => (
            RunClock::at_unix_ms(shard.start_at_unix_ms),
            shard.start_at_unix_ms,
        ),
        None => (RunClock::start(), unix_ms()),
    };
    let live = Arc::new(LiveStats::default());
    let storms = Arc::new(StormControl::default());
    let fault_schedule = tokio::spawn(faults::run_schedule(
        scenario.faults.clone(),
        provisioned.rig.clone(),
        clock,
        live.clone(),
        storms.clone(),
    ));
    let shape = LoadShape::new(scenario.traffic.send_rate_per_s, &scenario.stages);
    let ctx = Arc::new(ClientContext {
        protocol: scenario.protocol,
        clock,
        targets: provisioned.targets.clone(),
        churn: scenario.churn.clone(),
        phase: phase_rx,
        counters: Counters::default(),
        online: (0..socket_count).map(|_| AtomicBool::new(false)).collect(),
        drained: (0..socket_count).map(|_| AtomicBool::new(false)).collect(),
        drain_heads: OnceLock::new(),
        max_acked: (0..cast.conversations.len())
            .map(|_| Mutex::new(Position::ZERO))
            .collect(),
        connect_timeout: Duration::from_secs(10),
        drain_return_spread: crate::client::dist::drain_return_spread(scenario.drain_timeout),
        tls: provisioned.tls.clone(),
        live,
        shape: shape.clone(),
        storms,
        history,
    });
    let mut order_senders: Vec<OrderSender> = Vec::with_capacity(socket_count);
    let mut tasks = Vec::with_capacity(socket_count);
    let ramp_us = scenario.ramp_up.as_micros() as u64;
    let start = tokio::time::Instant::from_std(clock.instant_at(0));
    for (spec, placement) in cast.sockets.iter().zip(placed) {
        let (tx, rx) = order_queue(ORDER_QUEUE);
        order_senders.push(tx);
        let task = SocketTask::new(
            spec.clone(),
            ctx.clone(),
            StdRng::seed_from_u64(placement.rng_seed),
            rx,
        );
        let running = task.run(start + Duration::from_micros(placement.connect_offset_us));
        if tasks.is_empty() {
            // Per-socket memory: the task future lives as long as the run.
            tracing::debug!(
                bytes = std::mem::size_of_val(&running),
                "socket task future size"
            );
        }
        tasks.push(tokio::spawn(running));
    }
    let traffic_end_us = ramp_us + scenario.duration.as_micros() as u64;
    // The same schedule (times and ids) on every shard; each keeps its share.
    let scheduler_seed = rng.random();
    // Its own thread: it sleeps with the OS's timer (see `client::traffic`).
    let scheduler_ctx = ctx.clone();
    let body_bytes = scenario.traffic.body_bytes as usize;
    let scheduler = tokio::task::spawn_blocking(move || {
        run_scheduler(
            scheduler_ctx,
            order_senders,
            shape,
            body_bytes,
            0,
            traffic_end_us,
            StdRng::seed_from_u64(scheduler_seed),
            share,
        )
    });
    Devices {
        ctx,
        cast,
        tasks,
        scheduler,
        phase_tx,
        fault_schedule,
        clock_started_at_unix_ms,
        traffic_end: start + Duration::from_micros(traffic_end_us),
    }
}
