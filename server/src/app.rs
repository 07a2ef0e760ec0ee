//! HTTP surface: `/ws` (validated before the upgrade), `/healthz`, `/metrics`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use recovery_protocol::{ConnectParams, WS_PATH};
use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::fanout::Fanout;
use crate::metrics::Metrics;
use crate::store::Store;

/// Everything a request handler or session needs.
pub struct AppState {
    pub config: Config,
    pub auth: crate::auth::Authenticator,
    pub store: Store,
    pub fanout: Fanout,
    pub metrics: Arc<Metrics>,
    /// Deliberate bugs (testing aid); empty in normal use.
    pub flaws: crate::flaws::Flaws,
    pub shutdown: watch::Receiver<bool>,
    pub sessions: SessionCounter,
    pub limits: crate::limits::Limits,
}

/// Counts live sessions so shutdown can wait for their final cursor saves.
#[derive(Default)]
pub struct SessionCounter {
    active: AtomicUsize,
    idle: Notify,
}

pub struct SessionGuard<'a>(&'a SessionCounter);

impl SessionCounter {
    pub fn enter(&self) -> SessionGuard<'_> {
        self.active.fetch_add(1, Ordering::AcqRel);
        SessionGuard(self)
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Waits until no session is running, or the grace period ends.
    pub async fn wait_idle(&self, grace: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.active() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(grace, wait).await.is_ok()
    }
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(WS_PATH, get(ws_handler))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Boxed: a `Response` is large, and it only travels the error path.
fn bad_request(parameter: &str, message: String) -> Box<Response> {
    let body = serde_json::json!({ "error": message, "parameter": parameter });
    Box::new((StatusCode::BAD_REQUEST, Json(body)).into_response())
}

fn decode_query(raw: Option<&str>) -> Result<Vec<(String, String)>, Box<Response>> {
    // Strict decoding: a lenient one passes `%G1` through as text.
    recovery_protocol::decode_query(raw.unwrap_or(""))
        .map_err(|err| bad_request(err.parameter(), err.to_string()))
}

fn params_from(pairs: &[(String, String)]) -> Result<ConnectParams, Box<Response>> {
    ConnectParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|err| bad_request(err.parameter(), err.to_string()))
}

/// Who is asking for what: 400 for a bad query string, 401 without a
/// valid token, 403 for another user's id or a conversation the token
/// does not grant. The returned parameters' `user_id` is the token's.
/// Every 401 and 403 is counted in `chat_auth_refusals_total`.
fn admit(
    auth: &crate::auth::Authenticator,
    metrics: &Metrics,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Result<ConnectParams, Box<Response>> {
    let refuse = |refusal: crate::auth::Refusal| {
        metrics.auth_refused(refusal.status.as_u16(), refusal.reason);
        Box::new(refusal.into_response())
    };
    let pairs = decode_query(raw)?;
    let identity = auth.authenticate(headers, &pairs).map_err(refuse)?;
    let params = params_from(&identity.fill_user_id(pairs))?;
    identity.authorize(&params).map_err(refuse)?;
    Ok(params)
}

async fn ws_handler(
    State(app): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    connection: Option<axum::Extension<Arc<crate::limits::ConnectionSlot>>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // Validate before upgrading: a bad or unauthorised request gets a 4xx
    // and no state is written anywhere.
    let params = match admit(&app.auth, &app.metrics, &headers, raw.as_deref()) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    if *app.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let admission = match app.limits.admit(params.user_id) {
        Ok(admission) => admission,
        Err(err) => {
            app.metrics.limit_hit("sockets_per_user");
            let body = serde_json::json!({ "error": err.to_string() });
            return (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
        }
    };
    let frame_limit = app.config.max_frame_bytes;
    upgrade
        // tungstenite's default buffers are sized for throughput, not for
        // thousands of sockets; keep them small per connection. The read
        // buffer also costs time: tungstenite zero-fills this many bytes
        // each time the socket's read side is polled, which the live loop
        // does on every wake-up (every delivery), data or not. Client
        // frames are small (acks, sends); a larger one is read in pieces.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(frame_limit.max(64 * 1024) * 4)
        .max_message_size(frame_limit)
        .max_frame_size(frame_limit)
        .on_upgrade(move |socket| async move {
            let _session = app.sessions.enter();
            // Counts against --max-connections until the socket closes.
            let _connection = connection;
            crate::session::run(socket, params, admission, app.clone()).await;
        })
}

async fn healthz(State(app): State<Arc<AppState>>) -> Response {
    match tokio::time::timeout(Duration::from_secs(1), app.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok").into_response(),
        Ok(Err(err)) => (StatusCode::SERVICE_UNAVAILABLE, format!("redis: {err}")).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "redis: no answer within 1s",
        )
            .into_response(),
    }
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_query(raw: Option<&str>) -> Result<ConnectParams, Box<Response>> {
        params_from(&decode_query(raw)?)
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let response = validate_query(Some("user_id=x")).unwrap_err();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let ok = validate_query(Some(
            "user_id=6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f&conversation_id=6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5e&epoch=a%2Bb",
        ))
        .unwrap();
        assert_eq!(ok.epoch.as_deref(), Some("a+b"));
    }
}
