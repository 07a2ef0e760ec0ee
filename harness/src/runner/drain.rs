//! The end of the play stage: the drain (in-flight sends settle, the heads
//! are fixed, every device must reach them) and gathering the sockets'
//! histories.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::log::{LogSource, Store};
use super::population;
use super::RunError;
use crate::client::{ClientContext, Phase};
use crate::history::Position;

/// The drain: in-flight sends settle, the heads are fixed, and every
/// device must reach its conversation's head before the timeout.
/// Returns the stragglers (devices that did not).
pub(super) async fn drain(
    ctx: &ClientContext,
    phase_tx: &watch::Sender<Phase>,
    cast: &population::Cast,
    timeout: Duration,
    store: Option<Store<'_>>,
    shards: Option<&crate::shard::ShardSync>,
    unknown_reasons: &mut Vec<String>,
) -> Result<Vec<String>, RunError> {
    let deadline = tokio::time::Instant::now() + timeout;
    // Let in-flight sends settle (acked, or retried after reconnect) so the
    // heads below include them.
    while ctx.counters.outstanding_sends.load(Ordering::Relaxed) > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outstanding = ctx.counters.outstanding_sends.load(Ordering::Relaxed);
    if outstanding > 0 {
        unknown_reasons.push(format!(
            "{outstanding} sends were never acked before the drain timeout"
        ));
    }
    // A shard's devices also receive the other shards' sends: the heads
    // are read only once every shard's sends have settled.
    if let Some(shards) = shards {
        if let Err(err) = shards.barrier("settled", deadline).await {
            unknown_reasons.push(format!("the drain heads may be early: {err}"));
        }
    }
    // The acked maximum also covers a target whose Redis layout differs
    // from ours (its streams read back empty).
    tracing::debug!(outstanding, "in-flight sends settled");
    let acked_heads = ctx.max_acked_ids();
    let heads: Vec<Position> = match store {
        Some(store) => store
            .read_heads(&cast.conversation_ids())
            .await?
            .into_iter()
            .zip(&acked_heads)
            .map(|(head, acked)| head.max(*acked))
            .collect(),
        None => acked_heads,
    };
    tracing::debug!("drain heads read");
    // Set once, here; the sockets only read it.
    let _ = ctx.drain_heads.set(heads.clone()); // Err only if already set, which nothing else does
    let _ = phase_tx.send(Phase::HeadsFixed); // Err only when no socket task is left: nothing to tell
    let socket_count = cast.sockets.len() as u64;
    while ctx.counters.drained.load(Ordering::Relaxed) < socket_count
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stragglers: Vec<String> = cast
        .sockets
        .iter()
        .filter(|spec| !ctx.drained[spec.index].load(Ordering::Relaxed))
        .map(|spec| {
            format!(
                "device {} (user {}, client {}) in conversation {} ({}): not caught up to {}",
                spec.device,
                spec.user_id,
                spec.client_id,
                spec.conversation,
                spec.conversation_id,
                heads[spec.conversation as usize]
            )
        })
        .collect();
    if !stragglers.is_empty() {
        unknown_reasons.push(format!(
            "{} of {socket_count} sockets did not catch up within the drain timeout",
            stragglers.len()
        ));
    }
    Ok(stragglers)
}

/// Waits for every socket task to end (their events are in the history
/// writer's queue by then).
pub(super) async fn join_sockets(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    unknown_reasons: &mut Vec<String>,
) {
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(15), task).await {
            Ok(Ok(())) => {}
            Ok(Err(join)) => unknown_reasons.push(format!("a socket task failed: {join}")),
            Err(_) => unknown_reasons
                .push("a socket task did not finish within 15s of the run end".into()),
        }
    }
}
