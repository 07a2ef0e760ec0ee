//! Sharded runs: one scenario played by N processes (on one machine or
//! many), each playing the devices of its shard, then merged and checked
//! once.
//!
//! - this file: the shard spec (`I/N`), the deterministic split of the
//!   devices, and the shard directory's manifest (`shard.json`).
//! - [`sync`]: the two moments the shards agree on through the servers'
//!   Redis: a shared time origin (unless `--start-at` gives one) and "every
//!   shard's sends have settled" before the drain heads are read.
//! - [`play`]: `harness run --shard I/N`: plays one shard against running
//!   servers and writes its shard directory, without checking.
//! - [`merge`]: `harness merge DIR... --out RUN_DIR`: merges the shard
//!   directories, reads the message log back once, checks once, reports.
//! - [`local`]: `harness run` as local worker processes (each a `--shard`)
//!   when one process would pass its open-files limit, then the merge.
//!
//! Why the split is by device, not by socket: a device's sockets share
//! its cursor and its resume state, so one process must own all of them.
//! The senders and receivers of one conversation may still sit in
//! different shards; latency across shards is measured on the shared time
//! origin (a wall-clock instant), so it holds up to the clock skew
//! between machines.

pub mod local;
pub mod merge;
pub mod play;
pub mod sync;

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

pub use merge::{merge, MergeOptions};
pub use play::{play_shard, ShardRunOptions};
pub use sync::ShardSync;

/// The manifest of a shard directory.
pub const MANIFEST_FILE: &str = "shard.json";

/// Mixed into the seed for the device split, so the split does not
/// follow the cast's own random draws.
const SPLIT_SALT: u64 = 0x5348_4152_4453_504c; // "SHARDSPL"

/// Shard `index` of `count` (`--shard I/N`, I from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    pub index: u32,
    pub count: u32,
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for ShardSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<ShardSpec, String> {
        let usage = || format!("{text:?} is not a shard: expected I/N with 0 <= I < N, e.g. 0/3");
        let (index, count) = text.split_once('/').ok_or_else(usage)?;
        let index: u32 = index.trim().parse().map_err(|_| usage())?;
        let count: u32 = count.trim().parse().map_err(|_| usage())?;
        if count == 0 || index >= count {
            return Err(usage());
        }
        Ok(ShardSpec { index, count })
    }
}

/// The shard that plays each device: the devices in a seeded random
/// order, dealt round-robin. Every device is in exactly one shard, shard
/// sizes differ by at most one device, and every process computes the
/// same split from the same seed.
pub fn device_owners(seed: u64, device_count: usize, shard_count: u32) -> Vec<u32> {
    let mut order: Vec<usize> = (0..device_count).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed ^ SPLIT_SALT));
    let mut owners = vec![0; device_count];
    for (position, device) in order.into_iter().enumerate() {
        owners[device] = (position % shard_count.max(1) as usize) as u32;
    }
    owners
}

/// What a shard process needs while it plays.
pub struct ShardPlay {
    pub spec: ShardSpec,
    /// The run's time origin, shared by every shard.
    pub start_at_unix_ms: u64,
    pub sync: ShardSync,
}

/// `shard.json`: what a shard played and measured, besides its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardManifest {
    pub scenario_name: String,
    pub seed: u64,
    /// Names the run among others with the same scenario and seed.
    pub run_id: String,
    pub shard: ShardSpec,
    /// The shared time origin (`at_us == 0` of every shard's history).
    pub start_at_unix_ms: u64,
    /// When this shard wrote its directory.
    pub finished_at_unix_ms: u64,
    pub targets: Vec<String>,
    /// The servers' Redis: the merge reads the message log from it.
    pub redis_url: Option<String>,
    pub redis_description: String,
    /// Sockets this shard played, of the run's total.
    pub sockets: u64,
    pub total_sockets: u64,
    pub peak_sockets: u64,
    pub drain_complete: bool,
    pub stragglers: Vec<String>,
    pub unknown_reasons: Vec<String>,
    pub sends_scheduled: u64,
    pub sends_skipped: u64,
    pub sends_skipped_no_socket_online: u64,
    pub sends_skipped_queue_full: u64,
    pub acks: u64,
    pub harness_cpu_ms: u64,
    pub harness_peak_rss_bytes: u64,
    pub harness_rss_at_traffic_end_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error(
        "a sharded run plays against running servers: pass --target (and --redis-url, their Redis)"
    )]
    NeedsTargets,
    #[error("a sharded run needs the servers' Redis (--redis-url): the shards agree on the drain through it, and the merge reads the message log from it")]
    NeedsRedis,
    #[error("--inject-flaw applies to spawned reference servers; a shard plays against --target servers (start them with --inject-flaw instead)")]
    FlawWithShard,
    #[error("Redis {url} (shard coordination): {source}")]
    Redis {
        url: String,
        source: redis::RedisError,
    },
    #[error("waited {waited_s} s for the shards of run {run_id:?} to {what}: {present} of {count} arrived (are all {count} shard processes running with the same --run-id, seed and Redis?)")]
    Timeout {
        run_id: String,
        what: &'static str,
        waited_s: u64,
        present: u64,
        count: u32,
    },
    #[error("run id {run_id:?} already started at unix ms {start_at_unix_ms}, too long ago to join; pass a fresh --run-id (or --start-at)")]
    StaleRendezvous {
        run_id: String,
        start_at_unix_ms: u64,
    },
    #[error("{path} already holds a shard; remove it or pass another --out / --run-id")]
    ShardDirTaken { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a shard manifest: {source}")]
    Manifest {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no shard directories to merge")]
    NoShards,
    #[error("{dir} is from another run: its {what} is {found}, but {first_dir} has {expected}")]
    Mismatch {
        dir: PathBuf,
        first_dir: PathBuf,
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error("shard {index} appears twice: {first} and {second}")]
    DuplicateShard {
        index: u32,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("shards missing: {missing:?} of 0..{count} (every shard directory must be merged)")]
    MissingShards { missing: Vec<u32>, count: u32 },
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
    #[error(transparent)]
    Run(#[from] crate::runner::RunError),
    #[error("{0}")]
    Intruders(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shard_specs_parse_and_refuse_nonsense() {
        assert_eq!(
            "2/3".parse::<ShardSpec>(),
            Ok(ShardSpec { index: 2, count: 3 })
        );
        for bad in ["3/3", "0/0", "1", "a/3", "-1/3", "1/2/3"] {
            let err = bad.parse::<ShardSpec>().unwrap_err();
            assert!(err.contains("expected I/N"), "{bad}: {err}");
        }
    }

    proptest! {
        #[test]
        fn every_device_is_in_exactly_one_balanced_shard(
            seed in any::<u64>(),
            devices in 0usize..300,
            shards in 1u32..8,
        ) {
            let owners = device_owners(seed, devices, shards);
            prop_assert_eq!(owners.len(), devices);
            prop_assert!(owners.iter().all(|&owner| owner < shards));
            let mut sizes = vec![0usize; shards as usize];
            for &owner in &owners {
                sizes[owner as usize] += 1;
            }
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(max - min <= 1, "sizes {:?}", sizes);
            // Deterministic: every process computes the same split.
            prop_assert_eq!(owners, device_owners(seed, devices, shards));
        }
    }

    #[test]
    fn the_split_follows_the_seed() {
        assert_ne!(device_owners(1, 100, 3), device_owners(2, 100, 3));
    }
}
