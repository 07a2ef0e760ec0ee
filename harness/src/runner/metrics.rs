//! `--metrics-listen ADDR`: a Prometheus endpoint (`GET /metrics`) served
//! while the run goes, so a latency spike can be lined up with the
//! server's own dashboards. Every scrape reads the same relaxed counters
//! and live latencies as the progress line; nothing is kept per scrape.
//!
//! The listener is bound before any load (a busy port is an input error,
//! exit 3); the counters appear once the devices exist (after Redis and
//! the servers are up). Exposition is OpenMetrics text from
//! `prometheus-client`, which Prometheus scrapes natively.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;

use crate::client::live::LiveLatency;
use crate::client::ClientContext;

/// Histogram bucket upper bounds, microseconds: 1 ms to 60 s.
const LATENCY_BOUNDS_US: [u64; 15] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where the run publishes its live context once the devices exist.
pub type LiveSlot = Arc<OnceLock<Arc<ClientContext>>>;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for --metrics-listen on {addr}: {source}")]
pub struct MetricsListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// The endpoint, serving until dropped.
pub struct MetricsServer {
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics` from whatever `slot` holds.
    pub async fn start(addr: SocketAddr, slot: LiveSlot) -> Result<Self, MetricsListenError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsListenError { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| MetricsListenError { addr, source })?;
        let mut registry = Registry::default();
        registry.register_collector(Box::new(RunCollector { slot }));
        let app = Router::new()
            .route("/metrics", get(scrape))
            .with_state(Arc::new(registry));
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!(%err, "the metrics endpoint stopped");
            }
        });
        Ok(MetricsServer { local_addr, task })
    }
}

async fn scrape(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => ([(CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(err) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {err}"),
        )
            .into_response(),
    }
}

struct RunCollector {
    slot: LiveSlot,
}

impl std::fmt::Debug for RunCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCollector")
            .field("devices_started", &self.slot.get().is_some())
            .finish()
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    latency: &LiveLatency,
) -> std::fmt::Result {
    let snapshot = latency.snapshot(&LATENCY_BOUNDS_US);
    // prometheus-client accumulates per-bucket counts itself.
    let mut buckets = Vec::with_capacity(LATENCY_BOUNDS_US.len() + 1);
    let mut below = 0;
    for (bound_us, cumulative) in &snapshot.cumulative {
        buckets.push((*bound_us as f64 / 1e6, cumulative.saturating_sub(below)));
        below = *cumulative;
    }
    buckets.push((f64::INFINITY, snapshot.count.saturating_sub(below)));
    encoder
        .encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(
            snapshot.sum_us as f64 / 1e6,
            snapshot.count,
            &buckets,
            None,
        )
}

impl Collector for RunCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        const STARTED: &str = "1 once the simulated devices exist (after Redis and servers are up)";
        let Some(ctx) = self.slot.get() else {
            return gauge(&mut encoder, "harness_devices_started", STARTED, 0);
        };
        let c = &ctx.counters;
        let load = |value: &std::sync::atomic::AtomicU64| value.load(Ordering::Relaxed);
        let gauges = [
            ("harness_devices_started", STARTED, 1),
            (
                "harness_run_elapsed_seconds",
                "Seconds since the run's time origin",
                ctx.clock.now_us() / 1_000_000,
            ),
            (
                "harness_sockets",
                "Sockets the run simulates (device x conversation)",
                ctx.online.len() as u64,
            ),
            (
                "harness_sockets_online",
                "Sockets connected right now",
                load(&c.sockets_online),
            ),
            (
                "harness_outstanding_sends",
                "Sends written and not acked yet",
                load(&c.outstanding_sends),
            ),
            (
                "harness_sockets_drained",
                "Sockets caught up to the drain heads",
                load(&c.drained),
            ),
            (
                "harness_faults_active",
                "Injected faults in effect right now",
                load(&ctx.live.faults_active),
            ),
        ];
        let counters = [
            ("harness_connects", "Connection attempts", load(&c.connects)),
            ("harness_connect_failures", "Connection attempts that failed", load(&c.connect_failures)),
            ("harness_disconnects", "Planned drops and lost connections", load(&c.disconnects)),
            ("harness_sends", "Send frames written (new messages)", load(&c.sends)),
            ("harness_acks", "Sends acked by the server", load(&c.acks)),
            ("harness_deliveries", "Messages received, live and replayed", load(&c.deliveries)),
            ("harness_sends_skipped", "Scheduled sends no socket could take (not sent, no latency)", load(&c.sends_skipped)),
            ("harness_anomalies_seen_live", "Messages a socket received at or below an id it already had on that connection (duplicate or reorder; the checker names them after the run)", ctx.live.anomalies_seen()),
        ];
        for (name, help, value) in gauges {
            gauge(&mut encoder, name, help, value)?;
        }
        for (name, help, value) in counters {
            counter(&mut encoder, name, help, value)?;
        }
        histogram(
            &mut encoder,
            "harness_ack_latency",
            "Send due time to its ack, measured by the sender",
            &ctx.live.ack,
        )?;
        histogram(
            &mut encoder,
            "harness_connect_to_hello_latency",
            "Connection attempt to the server's hello",
            &ctx.live.connect_to_hello,
        )
    }
}
