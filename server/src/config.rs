//! Server configuration: command-line flags, each also settable by an
//! environment variable. `server --help` lists them; README.md has the table.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// The duration grammar of scenario files too (`recovery-units`): a
/// decimal with a mandatory unit, `ns us ms s m h d`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    recovery_units::parse_duration(text).map_err(|err| match err.hint() {
        Some(hint) => format!("{err} ({hint})"),
        None => err.to_string(),
    })
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "server",
    version,
    about = "Reference chat server: WebSocket over Redis Streams with correct offline recovery (protocol v1, docs/protocol.md)"
)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the bound address is logged).
    #[arg(long, env = "SERVER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Redis URL.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// How often a socket's acked cursor is saved when it changed.
    #[arg(long, env = "SERVER_SYNC_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub sync_interval: Duration,

    /// TTL of the stored sync state (cursor) of a device.
    #[arg(long, env = "SERVER_STATE_TTL", default_value = "30d", value_parser = parse_duration)]
    pub state_ttl: Duration,

    /// Messages older than this are trimmed from streams (XADD MINID).
    #[arg(long, env = "SERVER_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub retention: Duration,

    /// How long a send's client_msg_id is remembered for idempotent retries.
    #[arg(long, env = "SERVER_DEDUP_TTL", default_value = "24h", value_parser = parse_duration)]
    pub dedup_ttl: Duration,

    /// Largest message body in bytes; larger sends get `error too_large`.
    #[arg(long, env = "SERVER_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Largest WebSocket frame/message in bytes; larger ones close the socket with 1009.
    #[arg(long, env = "SERVER_MAX_FRAME_BYTES", default_value_t = 256 * 1024)]
    pub max_frame_bytes: usize,

    /// Interval between server pings; a socket silent for two intervals is dropped.
    #[arg(long, env = "SERVER_HEARTBEAT_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Messages per XRANGE page when replaying a backlog (a page is also
    /// bounded by --replay-page-bytes). 1000: with pages decoded from the
    /// reply bytes, the chain of page round trips is what a long replay
    /// waits on (docs/performance.md, "Replay, fifth pass").
    #[arg(long, env = "SERVER_BACKLOG_PAGE_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub backlog_page_size: u32,

    /// Live messages queued per socket before it is marked lagged and re-reads from Redis.
    #[arg(long, env = "SERVER_LIVE_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub live_queue_capacity: u32,

    /// TESTING AID: switch on a deliberate recovery bug (repeatable, or
    /// comma-separated). See docs/flaws.md. Never in production.
    #[arg(
        long = "inject-flaw",
        env = "SERVER_INJECT_FLAWS",
        value_enum,
        value_delimiter = ',',
        value_name = "FLAW"
    )]
    pub inject_flaws: Vec<crate::flaws::Flaw>,

    #[command(flatten)]
    pub limits: crate::limits::LimitsConfig,

    /// How long shutdown waits for sockets to save their cursors and close.
    #[arg(long, env = "SERVER_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Who may connect (JWT); see `auth`.
    #[command(flatten)]
    pub auth: crate::auth::AuthConfig,

    /// `wss://` from a certificate and key; see `tls`.
    #[command(flatten)]
    pub tls: crate::tls::TlsConfig,
}

impl Config {
    /// Defaults with a given Redis URL and an ephemeral port, for tests and
    /// for the harness's in-process servers. Authentication stays on and has
    /// no key: set `auth.jwt_secret`, or `auth.insecure_no_auth` where a test
    /// is about something else, or `start` refuses.
    pub fn for_tests(redis_url: &str) -> Config {
        let mut config = Config::parse_from(["server"]);
        config.redis_url = redis_url.to_string();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = Config::parse_from(["server"]);
        assert_eq!(config.sync_interval, Duration::from_secs(5));
        assert_eq!(config.state_ttl, Duration::from_secs(30 * 86400));
        assert_eq!(config.retention, Duration::from_secs(30 * 86400));
        assert_eq!(config.max_body_bytes, 65536);
        assert_eq!(config.heartbeat_interval, Duration::from_secs(15));
    }

    #[test]
    fn durations_use_the_scenario_grammar() {
        let config =
            Config::try_parse_from(["server", "--state-ttl", "30d", "--sync-interval", "1.5s"])
                .unwrap();
        assert_eq!(config.state_ttl, Duration::from_secs(30 * 86400));
        assert_eq!(config.sync_interval, Duration::from_millis(1500));
    }

    #[test]
    fn bad_duration_is_named() {
        let err = Config::try_parse_from(["server", "--sync-interval", "5"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--sync-interval"), "{err}");
        assert!(err.contains("units are mandatory, e.g. \"5s\""), "{err}");
        let err = Config::try_parse_from(["server", "--backlog-page-size", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--backlog-page-size"), "{err}");
    }
}
