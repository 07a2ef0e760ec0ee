//! Prometheus metrics, one registry per server instance (no globals, so
//! several instances can live in one test process).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

pub struct Metrics {
    registry: Registry,
    pub sockets_open: Gauge,
    pub messages_appended: Counter,
    pub messages_deduplicated: Counter,
    pub messages_delivered_live: Counter,
    pub messages_replayed: Counter,
    pub lagged_sockets: Counter,
    pub gaps_declared: Counter,
    pub recovery_duration_seconds: Histogram,
    pub redis_errors: Family<OpLabel, Counter>,
    /// Times each limit refused or closed something (docs/security.md).
    pub limit_hits: Family<LimitLabel, Counter>,
    /// Live-message bytes queued for sockets now (the queue budget's use).
    pub queued_bytes: Gauge,
    /// Upgrades refused by authentication (401) or membership (403), by
    /// [`AuthRefusal`] class (docs/security.md).
    pub auth_refusals: Family<AuthLabel, Counter>,
}

/// Why a `/ws` request was refused before the upgrade, as counted in
/// `chat_auth_refusals_total{reason}`: four classes, so that the label set
/// stays small however many reason codes the refusals carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// No token at all (401 `missing_token`).
    Missing,
    /// A token that does not verify or is malformed (every other 401).
    Invalid,
    /// A valid token past its `exp` (401 `expired`).
    Expired,
    /// A valid token without the right to what was asked (403:
    /// `not_member`, `user_mismatch`).
    Forbidden,
}

impl AuthRefusal {
    pub const ALL: [AuthRefusal; 4] = [
        AuthRefusal::Missing,
        AuthRefusal::Invalid,
        AuthRefusal::Expired,
        AuthRefusal::Forbidden,
    ];

    /// The class of a refusal with this status and reason code.
    pub fn classify(status: u16, reason: &str) -> AuthRefusal {
        match (status, reason) {
            (403, _) => AuthRefusal::Forbidden,
            (_, "missing_token") => AuthRefusal::Missing,
            (_, "expired") => AuthRefusal::Expired,
            _ => AuthRefusal::Invalid,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AuthRefusal::Missing => "missing",
            AuthRefusal::Invalid => "invalid",
            AuthRefusal::Expired => "expired",
            AuthRefusal::Forbidden => "forbidden",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: String,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("chat");
        let sockets_open = Gauge::default();
        registry.register(
            "sockets_open",
            "WebSocket connections currently open",
            sockets_open.clone(),
        );
        let messages_appended = Counter::default();
        registry.register(
            "messages_appended",
            "Messages appended to a stream",
            messages_appended.clone(),
        );
        let messages_deduplicated = Counter::default();
        registry.register(
            "messages_deduplicated",
            "Sends recognised as retries of an earlier append",
            messages_deduplicated.clone(),
        );
        let messages_delivered_live = Counter::default();
        registry.register(
            "messages_delivered",
            "Live messages written to sockets",
            messages_delivered_live.clone(),
        );
        let messages_replayed = Counter::default();
        registry.register(
            "messages_replayed",
            "Backlog messages written to reconnecting sockets",
            messages_replayed.clone(),
        );
        let lagged_sockets = Counter::default();
        registry.register(
            "lagged_sockets",
            "Times a socket's live queue overflowed and it re-read from Redis",
            lagged_sockets.clone(),
        );
        let gaps_declared = Counter::default();
        registry.register("gaps_declared", "gap frames sent", gaps_declared.clone());
        let recovery_duration_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "recovery_duration_seconds",
            "From socket accepted to caught_up sent",
            recovery_duration_seconds.clone(),
        );
        let redis_errors = Family::<OpLabel, Counter>::default();
        registry.register(
            "redis_errors",
            "Failed Redis operations by operation",
            redis_errors.clone(),
        );
        let limit_hits = Family::<LimitLabel, Counter>::default();
        registry.register(
            "limit_hits",
            "Connections, sockets or sends refused or closed by a limit, by limit",
            limit_hits.clone(),
        );
        let queued_bytes = Gauge::default();
        registry.register(
            "queued_bytes",
            "Live-message bytes queued for sockets",
            queued_bytes.clone(),
        );
        let auth_refusals = Family::<AuthLabel, Counter>::default();
        registry.register(
            "auth_refusals",
            "WebSocket upgrades refused by authentication or membership, by reason (missing, invalid, expired, forbidden)",
            auth_refusals.clone(),
        );
        // Every class from the start at 0, so a dashboard's rate() has a
        // series before the first refusal.
        for class in AuthRefusal::ALL {
            // Creating the series is the point; the guard is not needed.
            drop(auth_refusals.get_or_create(&AuthLabel {
                reason: class.label().to_string(),
            }));
        }
        Metrics {
            registry,
            sockets_open,
            messages_appended,
            messages_deduplicated,
            messages_delivered_live,
            messages_replayed,
            lagged_sockets,
            gaps_declared,
            recovery_duration_seconds,
            redis_errors,
            limit_hits,
            queued_bytes,
            auth_refusals,
        }
    }

    /// Counts one upgrade refused with `status` and `reason` (401 / 403).
    pub fn auth_refused(&self, status: u16, reason: &str) {
        self.auth_refusals
            .get_or_create(&AuthLabel {
                reason: AuthRefusal::classify(status, reason).label().to_string(),
            })
            .inc();
    }

    pub fn limit_hit(&self, limit: &str) {
        self.limit_hits
            .get_or_create(&LimitLabel {
                limit: limit.to_string(),
            })
            .inc();
    }

    pub fn redis_error(&self, op: &str) {
        self.redis_errors
            .get_or_create(&OpLabel { op: op.to_string() })
            .inc();
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new();
        metrics.messages_appended.inc();
        metrics.redis_error("xadd");
        let text = metrics.render();
        assert!(text.contains("chat_messages_appended_total 1"), "{text}");
        assert!(
            text.contains("chat_redis_errors_total{op=\"xadd\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("chat_recovery_duration_seconds_bucket"),
            "{text}"
        );
    }

    #[test]
    fn auth_refusals_are_counted_in_four_classes() {
        let metrics = Metrics::new();
        let text = metrics.render();
        for class in ["missing", "invalid", "expired", "forbidden"] {
            let line = format!("chat_auth_refusals_total{{reason=\"{class}\"}} 0");
            assert!(text.contains(&line), "{line} in {text}");
        }
        metrics.auth_refused(401, "missing_token");
        metrics.auth_refused(401, "bad_signature");
        metrics.auth_refused(401, "malformed_token");
        metrics.auth_refused(401, "expired");
        metrics.auth_refused(403, "not_member");
        metrics.auth_refused(403, "user_mismatch");
        let text = metrics.render();
        for (class, count) in [
            ("missing", 1),
            ("invalid", 2),
            ("expired", 1),
            ("forbidden", 2),
        ] {
            let line = format!("chat_auth_refusals_total{{reason=\"{class}\"}} {count}");
            assert!(text.contains(&line), "{line} in {text}");
        }
    }
}
