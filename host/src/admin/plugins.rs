//! Plugins over HTTP: their status (open; file paths only with the token), deploys of
//! new versions, and config reloads.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};

use super::auth::has_token;
use super::error::without_internals;
use super::{AdminState, ApiError};
use crate::control::ReloadReport;
use crate::registry::{Origin, PluginStatus, Slot};
use crate::wasm::write_atomically;

/// `text` with the slot's plugin path replaced by the file's name: what callers without
/// the token may see of a reason.
pub(crate) fn without_path(slot: &Slot, text: &str) -> String {
    let path = slot.path();
    let name = path
        .file_name()
        .map_or_else(|| "the plugin file".into(), |n| n.to_string_lossy());
    text.replace(&*path.to_string_lossy(), &name)
}

/// A version `slot`'s pipeline cannot run: 422 with why (the file's name, not its path).
pub(crate) fn refused(slot: &Slot, error: &anyhow::Error) -> ApiError {
    let reason = without_path(slot, &format!("{error:#}"));
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, reason)
}

/// What `state`'s caller with `headers` may see of `slot`.
fn status(state: &AdminState, headers: &HeaderMap, slot: &Slot) -> PluginStatus {
    let mut status = slot.status();
    if !has_token(state, headers) {
        status.path = None;
        status.last_error = status
            .last_error
            .map(|e| without_internals(&state.broker, &without_path(slot, &e)));
    }
    status
}

/// `GET /v1/plugins`: every pipeline's plugin; the file paths only with the token.
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", responses((status = 200, body = [PluginStatus])))]
pub async fn list(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Json<Vec<PluginStatus>> {
    let slots = state.registry.slots();
    Json(slots.iter().map(|s| status(&state, &headers, s)).collect())
}

/// `GET /v1/plugins/{pipeline}`: the file path only with the token.
#[utoipa::path(get, path = "/v1/plugins/{pipeline}", tag = "plugins", params(("pipeline" = String, Path, description = "pipeline")), responses((status = 200, body = PluginStatus), (status = 404)))]
pub async fn show(
    State(state): State<Arc<AdminState>>,
    Path(pipeline): Path<String>,
    headers: HeaderMap,
) -> Result<Json<PluginStatus>, ApiError> {
    let slot = super::pipelines::slot(&state, &pipeline)?;
    Ok(Json(status(&state, &headers, &slot)))
}

/// The answer to a deploy.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Deployed {
    pipeline: String,
    digest: String,
    /// False when the upload was the version already running.
    changed: bool,
    compile_ms: u64,
}

/// `PUT /v1/plugins/{pipeline}` with the `.wasm` file as the body: compiles and checks it
/// off the hot path, swaps it in, and stores it over the pipeline's plugin file (so that
/// a restart runs it too; the file keeps its mode). A bad component answers 422 with the
/// reason and changes nothing. The token is checked before the body is read.
#[utoipa::path(put, path = "/v1/plugins/{pipeline}", tag = "plugins", params(("pipeline" = String, Path, description = "pipeline")), request_body(content = Vec<u8>, content_type = "application/wasm", description = "the component"), security(("bearer" = [])), responses((status = 200, description = "deployed"), (status = 400), (status = 401), (status = 403), (status = 404), (status = 408, description = "the body stalled longer than [admin] request_timeout, or took longer than [admin] body_timeout"), (status = 413), (status = 422), (status = 429, description = "[admin] max_uploads uploads are in progress")))]
pub async fn deploy(
    State(state): State<Arc<AdminState>>,
    Path(pipeline): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<Deployed>), ApiError> {
    let slot = super::pipelines::slot(&state, &pipeline)?;
    let body = component_body(&state, request).await?;
    // Not while a promotion or a revert runs (whose version checks this would race).
    let _one = state.registry.plugin_change().await;
    let (plugin, changed) = slot
        .deploy(&state.runtime, body.to_vec(), Origin::Upload)
        .await
        .map_err(|e| refused(&slot, &e))?;
    let path = slot.path().to_owned();
    let stored = tokio::task::spawn_blocking(move || write_atomically(&path, &body))
        .await
        .map_err(|e| anyhow::anyhow!("the store task failed: {e}"))
        .and_then(|stored| stored);
    if let Err(e) = stored {
        let what = "the new version serves, but storing it over the plugin file failed (a restart would run the old one)";
        return Err(ApiError::failed(what, e));
    }
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

/// A request's body, which must be a component (checked later): refused when too
/// large, too slow or empty.
pub(crate) async fn component_body(
    state: &Arc<AdminState>,
    request: Request,
) -> Result<Bytes, ApiError> {
    let body = Bytes::from_request(request, state)
        .await
        .map_err(|refused| match refused.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the plugin is larger than [admin] max_body",
            ),
            _ => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time: it stalled longer than [admin] request_timeout, took longer than [admin] body_timeout, or the client went away",
            ),
        })?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is empty: send the plugin's .wasm file as the request body",
        ));
    }
    Ok(body)
}

/// `POST /v1/reload`: re-reads the config file, as SIGHUP does. An invalid config
/// answers 422 with its error; the running config stays.
#[utoipa::path(post, path = "/v1/reload", tag = "operate", security(("bearer" = [])), responses((status = 200, body = ReloadReport), (status = 401), (status = 403), (status = 422)))]
pub async fn reload(State(state): State<Arc<AdminState>>) -> Result<Json<ReloadReport>, ApiError> {
    state
        .reload
        .reload()
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))
}
