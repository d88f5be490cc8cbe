//! The admin HTTP API: the only user of `axum`. Health, metrics, pipelines, dead
//! letters, plugin status and zero-downtime plugin deploys.
//!
//! Who may call what: a call that changes something, or that reads data (dead letters,
//! handler state, plugin file paths), needs `Authorization: Bearer <SLUICE_ADMIN_TOKEN>`
//! ([`auth`]), checked before any body is read; with no token configured such calls are
//! refused. Health, metrics, the dashboard page, the OpenAPI document and the pipeline
//! and plugin listings (names, streams, states, counts, digests, errors; no entry
//! contents, state values or paths) are open.
//!
//! Every request passes the `Host` check first ([`host`]): only loopback names, IP
//! addresses (only loopback ones on a loopback listener) and `[admin] allowed_hosts` are
//! answered (no DNS rebinding from a web page). At most `max_connections` connections
//! are served at once, each buffering at most 64 KiB of headers, which must arrive
//! within `request_timeout` ([`serve`]); a body may not stall longer, nor take longer
//! than `body_timeout` in all ([`body`]); at most `max_uploads` plugin uploads run at
//! once. Every error is answered as JSON ([`error`]).
//!
//! # Layout
//!
//! - [`serve`]: the listener (hyper, with a header read timeout, a cap on buffered
//!   headers and on connections) and graceful shutdown.
//! - [`auth`]: the bearer token, compared as SHA-256 digests.
//! - [`host`]: the `Host` rule.
//! - [`body`]: the clocks on request bodies.
//! - [`guard`]: the upload permits.
//! - [`plugins`]: plugin status, deploys, config reload.
//! - [`shadow`]: shadow runs: attach a candidate, its comparison, promote, detach,
//!   revert.
//! - [`pipelines`]: pipeline views, pause and resume, handler state.
//! - [`letters`]: the dead-letter pages (bounded: paged and capped in bytes).
//! - [`dead`]: dead-letter replay and purge.
//! - [`health`]: `/readyz` and `/metrics`.
//! - [`openapi`]: the OpenAPI document.
//! - [`error`]: errors as JSON answers (all of them), without internals.

mod auth;
mod body;
mod dead;
mod error;
mod guard;
mod health;
mod host;
mod letters;
mod openapi;
mod pipelines;
mod plugins;
mod serve;
mod shadow;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state, map_response};
use axum::response::{Html, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::AdminConfig;
use crate::control::ReloadHandle;
use crate::registry::Registry;
use crate::status::Warnings;
use crate::wasm::Runtime;
pub use auth::Token;
pub use error::ApiError;
pub use letters::{DeadLetter, DeadPage};
pub use openapi::openapi;
pub use pipelines::PipelineView;

pub(crate) use auth::authorize;

/// The dashboard: one page, no build step, embedded in the binary; it uses the API.
const DASHBOARD: &str = include_str!("dashboard.html");

/// What the handlers share.
pub struct AdminState {
    /// The live plugins.
    pub registry: Arc<Registry>,
    /// The engine new versions are compiled with.
    pub runtime: Runtime,
    /// The bearer token; `None` refuses every call that needs it ([`start`] takes it
    /// from the config or `SLUICE_ADMIN_TOKEN`).
    pub token: Option<Token>,
    /// Asks the daemon to reload its config.
    pub reload: ReloadHandle,
    /// Redis, for readiness and dead letters.
    pub broker: Broker,
    /// The daemon-wide warnings, shown with every pipeline.
    pub warnings: Arc<Warnings>,
}

/// The API's routes, for `config`, answering on a listener at `listen`.
pub fn router(state: Arc<AdminState>, config: &AdminConfig, listen: std::net::IpAddr) -> Router {
    let token = from_fn_with_state(state.clone(), auth::require_token);
    let guarded = |route: MethodRouter<Arc<AdminState>>| route.route_layer(token.clone());
    let uploads = guard::Uploads::new(config.max_uploads);
    let shadow_uploads = uploads.clone();
    let upload = put(plugins::deploy).route_layer(from_fn_with_state(uploads, guard::one_upload));
    let hosts = host::HostRule::new(listen, &config.allowed_hosts);
    let clock = body::BodyClock {
        stall: config.request_timeout,
        whole: config.body_timeout,
    };
    let max_body = usize::try_from(config.max_body.as_u64()).unwrap_or(usize::MAX);
    Router::new()
        .route("/", get(|| async { Html(DASHBOARD) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/v1/openapi.json", get(|| async { axum::Json(openapi()) }))
        .route("/v1/plugins", get(plugins::list))
        .route(
            "/v1/plugins/{pipeline}",
            get(plugins::show).merge(guarded(upload)),
        )
        .route("/v1/reload", guarded(post(plugins::reload)))
        .route("/v1/pipelines", get(pipelines::list))
        .route("/v1/pipelines/{name}", get(pipelines::show))
        .route(
            "/v1/pipelines/{name}/pause",
            guarded(post(pipelines::pause)),
        )
        .route(
            "/v1/pipelines/{name}/resume",
            guarded(post(pipelines::resume)),
        )
        .route(
            "/v1/pipelines/{name}/dead",
            guarded(get(letters::page).merge(delete(dead::purge))),
        )
        .route(
            "/v1/pipelines/{name}/dead/replay",
            guarded(post(dead::replay)),
        )
        .merge(shadow_routes(&state, shadow_uploads))
        .route(
            "/v1/pipelines/{name}/state/{key}",
            guarded(get(pipelines::state_key)),
        )
        .layer(DefaultBodyLimit::max(max_body))
        .layer(from_fn_with_state(clock, body::timed_body))
        .layer(from_fn(error::json_errors))
        .layer(map_response(no_store))
        .layer(from_fn_with_state(hosts, host::check_host))
        .with_state(state)
}

/// The shadow-run paths, every one behind the token (an upload also behind a permit).
fn shadow_routes(state: &Arc<AdminState>, uploads: guard::Uploads) -> Router<Arc<AdminState>> {
    let attach = put(shadow::attach).route_layer(from_fn_with_state(uploads, guard::one_upload));
    Router::new()
        .route(
            "/v1/pipelines/{name}/shadow",
            attach
                .merge(get(shadow::show))
                .merge(delete(shadow::detach)),
        )
        .route("/v1/pipelines/{name}/shadow/promote", post(shadow::promote))
        .route("/v1/pipelines/{name}/shadow/revert", post(shadow::revert))
        .route_layer(from_fn_with_state(state.clone(), auth::require_token))
}

/// Answers about the daemon's current state are never cached.
async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

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
    let token = config
        .token
        .clone()
        .or_else(|| std::env::var("SLUICE_ADMIN_TOKEN").ok())
        .filter(|t| !t.is_empty());
    state.token = token.as_deref().map(Token::new);
    if state.token.is_none() {
        tracing::warn!(
            "SLUICE_ADMIN_TOKEN is not set: the admin API refuses the calls that need it"
        );
    }
    let router = router(Arc::new(state), config, addr.ip());
    let server = serve::Server::new(
        listener,
        router,
        config.request_timeout,
        config.max_connections,
    );
    tasks.spawn(server.run(tasks.clone(), shutdown));
    tracing::info!(%addr, "admin API listening");
    Ok(addr)
}
