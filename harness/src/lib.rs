//! The harness: plays scenario files with thousands of WebSocket clients
//! that connect, send, drop and come back; records what every client saw;
//! checks no-loss / no-duplicate / order; writes latency reports.
//!
//! Layout (data flows top to bottom):
//! - [`scenario`]: the scenario model and its TOML parser/validator.
//! - [`runner`]: one run: Redis, servers, ramp-up, churn, drain.
//! - [`client`]: one lightweight task per simulated socket; the wire
//!   protocol sits behind `client::protocol` (one adapter per protocol).
//! - [`history`]: the recorded protocol-neutral events (`history.bin`),
//!   positions, and the message log.
//! - [`checker`]: judges a history against the log; named anomalies.
//! - [`report`]: HDR latency histograms, time series, summary/markdown/HTML.
//! - [`target`]: server and Redis URLs (`url::Url`), parsed once.
//! - [`auth`]: the devices' tokens (minted, or from a command).
//! - [`intruders`]: devices without the right to a conversation that try
//!   to get in during a run (`[intruders]`); the checker calls what they
//!   got a `leak`.
//! - [`tls`]: the rustls client configuration for `wss://` targets.
//! - [`shard`]: sharded runs: `run --shard I/N` plays a share of the
//!   devices and writes a shard directory; `merge` checks them as one run.
//! - [`proxy`]: loopback TCP proxy injecting latency, bandwidth limits,
//!   partitions and resets between clients, servers and Redis.

pub mod auth;
pub mod checker;
pub mod cli;
pub mod client;
pub mod history;
pub mod intruders;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod shard;
pub mod target;
pub mod tls;
