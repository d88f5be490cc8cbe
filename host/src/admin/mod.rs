//! The admin HTTP API: the only user of `axum`. Health, plugin status, and zero-downtime
//! plugin deploys.
//!
//! Mutating calls need `Authorization: Bearer <SLUICE_ADMIN_TOKEN>`; with no token
//! configured they are refused. Reads are open (bind the listener to loopback, the
//! default, or put it behind your own proxy).

mod error;
mod pipelines;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Html;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::AdminConfig;
use crate::control::{ReloadHandle, ReloadReport};
use crate::registry::{Origin, PluginStatus, Registry};
use crate::wasm::{Runtime, write_atomically};
pub use error::ApiError;
pub use pipelines::{DeadLetter, DeadPage, PipelineView};

/// The dashboard: one page, no build step, embedded in the binary; it uses the API.
const DASHBOARD: &str = include_str!("dashboard.html");

/// What the handlers share.
pub struct AdminState {
    /// The live plugins.
    pub registry: Arc<Registry>,
    /// The engine new versions are compiled with.
    pub runtime: Runtime,
    /// The bearer token for mutating calls; `None` refuses them all ([`start`] takes it
    /// from the config or `SLUICE_ADMIN_TOKEN`).
    pub token: Option<String>,
    /// Asks the daemon to reload its config.
    pub reload: ReloadHandle,
    /// Redis, for readiness and dead letters.
    pub broker: Broker,
}

/// The API's routes; `max_body` bounds uploads.
pub fn router(state: Arc<AdminState>, max_body: usize) -> Router {
    Router::new()
        .route("/", get(|| async { Html(DASHBOARD) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/plugins", get(list_plugins))
        .route(
            "/v1/plugins/{pipeline}",
            put(deploy_plugin).get(show_plugin),
        )
        .route("/v1/reload", post(reload_config))
        .route("/v1/openapi.json", get(|| async { Json(openapi()) }))
        .route("/readyz", get(pipelines::ready))
        .route("/metrics", get(pipelines::metrics))
        .route("/v1/pipelines", get(pipelines::list))
        .route("/v1/pipelines/{name}", get(pipelines::show))
        .route("/v1/pipelines/{name}/pause", post(pipelines::pause))
        .route("/v1/pipelines/{name}/resume", post(pipelines::resume))
        .route(
            "/v1/pipelines/{name}/dead",
            get(pipelines::dead).delete(pipelines::purge),
        )
        .route("/v1/pipelines/{name}/dead/replay", post(pipelines::replay))
        .route(
            "/v1/pipelines/{name}/state/{key}",
            get(pipelines::state_key),
        )
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// The API's OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    #[derive(utoipa::OpenApi)]
    #[openapi(
        info(title = "Sluice admin API", description = "Health, metrics, pipelines, plugins and dead letters of a Sluice daemon. Mutating calls need `Authorization: Bearer $SLUICE_ADMIN_TOKEN`."),
        paths(
            list_plugins, show_plugin, deploy_plugin, reload_config,
            pipelines::metrics, pipelines::ready, pipelines::list, pipelines::show,
            pipelines::pause, pipelines::resume, pipelines::dead, pipelines::replay, pipelines::purge,
            pipelines::state_key,
        ),
        modifiers(&BearerAuth)
    )]
    struct Doc;
    Doc::openapi()
}

/// Declares the bearer-token scheme the mutating calls use.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Serves `router` on `listener` until `shutdown`.
/// Listens on `config.listen` and serves the API on `tasks` until `shutdown`; returns the
/// bound address. The token comes from `config.token`, else `SLUICE_ADMIN_TOKEN`.
pub async fn start(
    config: &AdminConfig,
    mut state: AdminState,
    tasks: &tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<std::net::SocketAddr> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on [admin] listen = {:?}; pick a free address",
                config.listen.to_string()
            )
        })?;
    let addr = listener.local_addr()?;
    state.token = config
        .token
        .clone()
        .or_else(|| std::env::var("SLUICE_ADMIN_TOKEN").ok())
        .filter(|t| !t.is_empty());
    if state.token.is_none() {
        tracing::warn!("SLUICE_ADMIN_TOKEN is not set: the admin API refuses mutating calls");
    }
    let max_body = usize::try_from(config.max_body.as_u64()).unwrap_or(usize::MAX);
    tasks.spawn(serve(listener, router(Arc::new(state), max_body), shutdown));
    tracing::info!(%addr, "admin API listening");
    Ok(addr)
}

async fn serve(listener: tokio::net::TcpListener, router: Router, shutdown: CancellationToken) {
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the admin API stopped");
    }
}

#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", responses((status = 200, body = [PluginStatus])))]
async fn list_plugins(State(state): State<Arc<AdminState>>) -> Json<Vec<PluginStatus>> {
    Json(state.registry.slots().iter().map(|s| s.status()).collect())
}

#[utoipa::path(get, path = "/v1/plugins/{pipeline}", tag = "plugins", params(("pipeline" = String, Path, description = "pipeline")), responses((status = 200, body = PluginStatus), (status = 404)))]
async fn show_plugin(
    State(state): State<Arc<AdminState>>,
    Path(pipeline): Path<String>,
) -> Result<Json<PluginStatus>, ApiError> {
    let slot = state
        .registry
        .get(&pipeline)
        .ok_or_else(|| ApiError::no_pipeline(&pipeline))?;
    Ok(Json(slot.status()))
}

/// The answer to a deploy.
#[derive(Debug, Serialize)]
struct Deployed {
    pipeline: String,
    digest: String,
    /// False when the upload was the version already running.
    changed: bool,
    compile_ms: u64,
}

/// `PUT /v1/plugins/{pipeline}` with the `.wasm` file as the body: compiles and checks it
/// off the hot path, swaps it in, and stores it over the pipeline's plugin file (so that
/// a restart runs it too). A bad component answers 422 with the reason and changes nothing.
#[utoipa::path(put, path = "/v1/plugins/{pipeline}", tag = "plugins", params(("pipeline" = String, Path, description = "pipeline")), request_body(content = Vec<u8>, content_type = "application/wasm", description = "the component"), security(("bearer" = [])), responses((status = 200, description = "deployed"), (status = 400), (status = 401), (status = 403), (status = 404), (status = 413), (status = 422)))]
async fn deploy_plugin(
    State(state): State<Arc<AdminState>>,
    Path(pipeline): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Deployed>), ApiError> {
    authorize(&state, &headers)?;
    let slot = state
        .registry
        .get(&pipeline)
        .ok_or_else(|| ApiError::no_pipeline(&pipeline))?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is empty: send the plugin's .wasm file as the request body",
        ));
    }
    let (plugin, changed) = slot
        .deploy(&state.runtime, body.to_vec(), Origin::Upload)
        .await
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")))?;
    let path = slot.path().to_owned();
    tokio::task::spawn_blocking(move || write_atomically(&path, &body))
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("the store task failed: {e}")))?
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::OK,
        Json(Deployed {
            pipeline,
            digest: plugin.digest().to_string(),
            changed,
            compile_ms: plugin.compile_time().as_millis() as u64,
        }),
    ))
}

/// `POST /v1/reload`: re-reads the config file, as SIGHUP does. An invalid config
/// answers 422 with its error; the running config stays.
#[utoipa::path(post, path = "/v1/reload", tag = "operate", security(("bearer" = [])), responses((status = 200, body = ReloadReport), (status = 401), (status = 403), (status = 422)))]
async fn reload_config(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Result<Json<ReloadReport>, ApiError> {
    authorize(&state, &headers)?;
    state
        .reload
        .reload()
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))
}

pub(crate) fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "mutating calls are disabled: start sluice with SLUICE_ADMIN_TOKEN set to enable them",
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <SLUICE_ADMIN_TOKEN>)",
        )),
    }
}

/// Compares without an early exit, so the time taken does not tell how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
