//! Stage 3, collect: the history and the authoritative message log
//! (read back from the servers' store, or rebuilt from acks and
//! receipts), written into the run directory with the scenario as run.
//!
//! The history stays on disk: the later stages (check, analysis) walk
//! `history.bin` streaming, so the harness's memory at the end of a run
//! is bounded by the cast and the message log, not by the events.

use std::path::Path;

use super::log::{LogSource, Rebuilt, Store};
use super::{report, write_json, Played, RunError};
use crate::checker::rebuild_log_from_passes;
use crate::history::{HistoryPasses, MessageLog, RunMeta};
use crate::scenario::{render_scenario, Scenario};

/// What the collect stage assembled.
pub struct Collected {
    /// The history file, opened for streaming passes (never loaded).
    pub history: HistoryPasses,
    pub log: MessageLog,
    pub played: PlayedFacts,
}

/// The parts of [`Played`] the later stages still need.
pub struct PlayedFacts {
    pub drain_complete: bool,
    pub stragglers: Vec<String>,
    pub unknown_reasons: Vec<String>,
    pub peak_sockets: u64,
    pub rss_at_traffic_end_bytes: Option<u64>,
    pub server_cost: Option<report::ServerResourcesInput>,
    pub redis_cost: Option<report::RedisResourcesInput>,
    pub sends_skipped: report::SendsSkipped,
    pub intruders: Vec<crate::intruders::IntruderRecord>,
}

/// Stage 3: the history and the authoritative message log, written into
/// the run directory with the scenario as run.
pub async fn collect(
    run_dir: &Path,
    scenario: &Scenario,
    store: Option<Store<'_>>,
    played: Played,
) -> Result<Collected, RunError> {
    let conversation_ids = played.cast.conversation_ids();
    let meta = RunMeta {
        scenario_name: scenario.name.clone(),
        seed: scenario.seed.unwrap_or_default(),
        started_at_unix_ms: played.clock_started_at_unix_ms,
        devices: played.cast.devices,
        conversations: played.cast.conversations,
        faults: played.faults,
    };
    // The events are on disk already; the meta closes the file.
    let written = played.history.finish(meta).await?;
    tracing::info!(
        events = written.events,
        bytes = written.bytes,
        "history written"
    );
    let history = HistoryPasses::open(played.history.path())?;
    let log = match store {
        Some(store) => {
            let log = store.read_log(&conversation_ids).await?;
            let entries: usize = log.conversations.iter().map(Vec::len).sum();
            if entries == 0 && played.acks > 0 {
                // Messages were acked but the store holds none: the target
                // does not keep them where its protocol says.
                // Checking against an empty log would call every delivery
                // a phantom; the rebuilt log is the honest fallback.
                tracing::warn!(acks = played.acks, "no conversation stream found in the given Redis; checking against the log rebuilt from acks and receipts");
                println!(
                    "note: the Redis holds no {} although {} sends were acked; checking against the log rebuilt from acks and receipts",
                    store.describe(),
                    played.acks
                );
                rebuild_log_from_passes(&history)?
            } else {
                log
            }
        }
        None => {
            let rebuilt = Rebuilt {
                history: &history,
                acked_heads: &[],
            };
            rebuilt.read_log(&conversation_ids).await?
        }
    };
    write_json(&run_dir.join("log.json"), &log)?;
    if !played.intruders.is_empty() {
        write_json(
            &run_dir.join(crate::intruders::INTRUDERS_FILE),
            &played.intruders,
        )?;
    }
    let scenario_path = run_dir.join("scenario.toml");
    std::fs::write(&scenario_path, render_scenario(scenario)).map_err(|source| {
        RunError::Write {
            path: scenario_path,
            source,
        }
    })?;
    Ok(Collected {
        history,
        log,
        played: PlayedFacts {
            drain_complete: played.drain_complete,
            stragglers: played.stragglers,
            unknown_reasons: played.unknown_reasons,
            peak_sockets: played.peak_sockets,
            rss_at_traffic_end_bytes: played.rss_at_traffic_end_bytes,
            server_cost: played.server_cost,
            redis_cost: played.redis_cost,
            sends_skipped: played.sends_skipped,
            intruders: played.intruders,
        },
    })
}
