//! `/readyz` (whether this daemon should get traffic, and why not) and `/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::error::without_internals;
use super::plugins::without_path;

/// How long `/readyz` waits for Redis to answer.
const READY_DEADLINE: Duration = Duration::from_secs(1);

/// What `/readyz` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Readiness {
    /// Redis answered a `PING` within a second.
    pub redis: bool,
    /// Why it did not; absent when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_error: Option<String>,
    /// Every pipeline has a plugin version serving (a refused upload or file change
    /// leaves the previous version serving: see `refused`).
    pub plugins: bool,
    /// Every pipeline: `ok`, or why it cannot reach or use Redis (state `error`).
    pub pipelines: BTreeMap<String, String>,
    /// Pipelines whose last new plugin version was refused, with the reason; their
    /// previous version keeps serving, so this does not make the daemon unready.
    pub refused: BTreeMap<String, String>,
}

/// `GET /readyz`: 200 when Redis answers a `PING` within a second and no pipeline is in
/// state `error`; 503 otherwise. The body says which, as [`Readiness`]: open, so its
/// reasons name neither Redis's address nor plugin paths.
#[utoipa::path(get, path = "/readyz", tag = "operate", responses((status = 200, body = Readiness, description = "Redis reachable and every pipeline able to use it"), (status = 503, body = Readiness, description = "not ready; the body says why")))]
pub async fn ready(State(state): State<Arc<AdminState>>) -> (StatusCode, Json<Readiness>) {
    let redis = state.broker.ping(READY_DEADLINE).await;
    let open = |text: &str| without_internals(&state.broker, text);
    let slots = state.registry.slots();
    let pipelines: BTreeMap<String, String> = slots
        .iter()
        .map(|s| {
            let reason = s
                .board()
                .fault()
                .map_or_else(|| "ok".to_owned(), |r| open(&r));
            (s.pipeline().to_owned(), reason)
        })
        .collect();
    let refused = slots
        .iter()
        .filter_map(|s| {
            let reason = s.status().last_error?;
            Some((s.pipeline().to_owned(), open(&without_path(s, &reason))))
        })
        .collect();
    let ready = redis.is_ok() && pipelines.values().all(|reason| reason == "ok");
    let body = Readiness {
        redis: redis.is_ok(),
        redis_error: redis.err().map(|e| open(&e)),
        plugins: true,
        pipelines,
        refused,
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operate", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::prometheus().render(),
    )
}
