//! Shadow runs over HTTP (every path needs the token): attach a candidate beside a
//! pipeline's running plugin, read how it compares, promote it (the existing atomic
//! swap, and the plugin file), detach it, or take a promotion back. Each change is an
//! incident of the pipeline, with the counts at that moment.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;

use super::plugins::{component_body, refused};
use super::{AdminState, ApiError};
use crate::registry::{Origin, Slot};
use crate::shadow::{DEFAULT_SHARE, Shadow, ShadowStatus};
use crate::wasm::write_atomically;

/// How a candidate is attached.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttachQuery {
    /// The share of the pipeline's handler time the candidate may spend, in (0, 4]
    /// (default 0.5); past it, batches are skipped (sampled down).
    pub share: Option<f64>,
}

/// `PUT /v1/pipelines/{name}/shadow[?share=S]` with the candidate's `.wasm` file as the
/// body: compiles and checks it as a deploy would, and attaches it (replacing any
/// earlier candidate). The running plugin is untouched.
#[utoipa::path(put, path = "/v1/pipelines/{name}/shadow", tag = "shadow", params(("name" = String, Path, description = "pipeline"), AttachQuery), request_body(content = Vec<u8>, content_type = "application/wasm", description = "the candidate component"), security(("bearer" = [])), responses((status = 200, body = ShadowStatus), (status = 400), (status = 401), (status = 403), (status = 404), (status = 413), (status = 422)))]
pub async fn attach(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    query: Result<Query<AttachQuery>, QueryRejection>,
    request: Request,
) -> Result<Json<ShadowStatus>, ApiError> {
    let slot = super::pipelines::slot(&state, &name)?;
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{}: the one query parameter is share, a number in (0, 4], e.g. ?share=0.25",
                e.body_text()
            ),
        )
    })?;
    let share = query.share.unwrap_or(DEFAULT_SHARE);
    if !(share > 0.0 && share <= 4.0) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "share={share} is outside (0, 4]: the share of the pipeline's handler time the candidate may spend, e.g. share=0.25"
            ),
        ));
    }
    let body = component_body(&state, request).await?.to_vec();
    let compiled = slot
        .compile(&state.runtime, body.clone())
        .await
        .map_err(|e| refused(&slot, &e))?;
    let shadow = Arc::new(Shadow::new(&name, Arc::new(compiled), body, share));
    let _one = state.registry.plugin_change().await;
    let status = shadow.status();
    let running = slot.current().digest().to_string();
    if let Some(earlier) = slot.shadow().swap(Some(shadow)) {
        slot.board().incident(format!(
            "shadow replaced: candidate {}; {}",
            earlier.plugin().digest(),
            earlier.summary()
        ));
    }
    tracing::info!(pipeline = %name, candidate = %status.candidate, %running, share, "shadow attached");
    slot.board().incident(format!(
        "shadow attached: candidate {} beside {running} (share {share})",
        status.candidate
    ));
    Ok(Json(status))
}

/// `GET /v1/pipelines/{name}/shadow`: the candidate, the counts of agreements and
/// differences by kind, whether it is sampled down, and the last differences.
#[utoipa::path(get, path = "/v1/pipelines/{name}/shadow", tag = "shadow", params(("name" = String, Path, description = "pipeline")), security(("bearer" = [])), responses((status = 200, body = ShadowStatus), (status = 401), (status = 403), (status = 404, description = "no such pipeline, or no candidate attached")))]
pub async fn show(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<ShadowStatus>, ApiError> {
    let slot = super::pipelines::slot(&state, &name)?;
    Ok(Json(attached(&slot)?.status()))
}

/// `DELETE /v1/pipelines/{name}/shadow`: detaches the candidate (a rollback: the
/// running plugin was never changed); recorded with the counts.
#[utoipa::path(delete, path = "/v1/pipelines/{name}/shadow", tag = "shadow", params(("name" = String, Path, description = "pipeline")), security(("bearer" = [])), responses((status = 200, body = ShadowStatus), (status = 401), (status = 403), (status = 404)))]
pub async fn detach(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<ShadowStatus>, ApiError> {
    let _one = state.registry.plugin_change().await;
    let slot = super::pipelines::slot(&state, &name)?;
    let shadow = attached(&slot)?;
    slot.shadow().store(None);
    tracing::info!(pipeline = %name, candidate = %shadow.plugin().digest(), counts = %shadow.summary(), "shadow detached");
    slot.board().incident(format!(
        "shadow detached (rolled back): candidate {}; {}",
        shadow.plugin().digest(),
        shadow.summary()
    ));
    Ok(Json(shadow.status()))
}

/// What a promotion or a revert did.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Swapped {
    /// The version that serves now.
    pub digest: String,
    /// The version it replaced (kept for one call back after a promotion).
    pub replaced: String,
}

/// `POST /v1/pipelines/{name}/shadow/promote`: the candidate becomes the running plugin
/// (the atomic swap of a deploy: calls in flight finish on the old version) and is
/// stored over the plugin file; the shadow is detached; the replaced version is kept
/// beside the file (`PLUGIN.previous`, with the promoted digest in `PLUGIN.promoted`)
/// for `POST .../shadow/revert`, across reloads and restarts. Recorded with the counts.
#[utoipa::path(post, path = "/v1/pipelines/{name}/shadow/promote", tag = "shadow", params(("name" = String, Path, description = "pipeline")), security(("bearer" = [])), responses((status = 200, body = Swapped), (status = 401), (status = 403), (status = 404), (status = 422), (status = 500)))]
pub async fn promote(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<Swapped>, ApiError> {
    let _one = state.registry.plugin_change().await;
    let slot = super::pipelines::slot(&state, &name)?;
    let shadow = attached(&slot)?;
    let old = running_file(&slot).await?;
    let replaced = slot.current().digest().to_string();
    let promoted = shadow.plugin().digest().to_string();
    keep_previous(&slot, &promoted, &old).await?;
    let digest = match swap_in(&state, &slot, shadow.bytes().to_vec(), old).await {
        Ok(digest) => digest,
        Err(refused) => {
            let (promoted_file, previous_file) = sidecars(&slot);
            let _ = std::fs::remove_file(promoted_file);
            let _ = std::fs::remove_file(previous_file);
            return Err(refused);
        }
    };
    slot.shadow().store(None);
    tracing::info!(pipeline = %name, from = %replaced, to = %digest, counts = %shadow.summary(), "shadow promoted");
    slot.board().incident(format!(
        "shadow promoted: {digest} replaces {replaced}; {}",
        shadow.summary()
    ));
    Ok(Json(Swapped { digest, replaced }))
}

/// `POST /v1/pipelines/{name}/shadow/revert`: takes the last promotion back — the
/// version it replaced serves again (and is stored over the plugin file). Once, and
/// only while the promoted version is the one running: 409 otherwise (a later deploy is
/// never undone by it).
#[utoipa::path(post, path = "/v1/pipelines/{name}/shadow/revert", tag = "shadow", params(("name" = String, Path, description = "pipeline")), security(("bearer" = [])), responses((status = 200, body = Swapped), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422), (status = 500)))]
pub async fn revert(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<Swapped>, ApiError> {
    let _one = state.registry.plugin_change().await;
    let slot = super::pipelines::slot(&state, &name)?;
    let (promoted_file, previous_file) = sidecars(&slot);
    let conflict = |why: String| ApiError::new(StatusCode::CONFLICT, why);
    let promoted = std::fs::read_to_string(&promoted_file).map_err(|_| {
        conflict("no promotion to take back: POST .../shadow/promote keeps the version it replaces for one revert".into())
    })?;
    let replaced = slot.current().digest().to_string();
    if replaced != promoted.trim() {
        return Err(conflict(format!(
            "the running version {replaced} is not the promoted one ({}): a later deploy replaced it, and a revert would undo that deploy instead; nothing was changed",
            promoted.trim()
        )));
    }
    let previous = std::fs::read(&previous_file).map_err(|e| {
        ApiError::failed(
            "reading the version the promotion replaced failed",
            e.into(),
        )
    })?;
    let current = running_file(&slot).await?;
    let digest = swap_in(&state, &slot, previous, current).await?;
    let _ = std::fs::remove_file(&promoted_file);
    let _ = std::fs::remove_file(&previous_file);
    tracing::info!(pipeline = %name, from = %replaced, to = %digest, "promotion reverted");
    slot.board()
        .incident(format!("promotion reverted: {digest} replaces {replaced}"));
    Ok(Json(Swapped { digest, replaced }))
}

/// Where a promotion keeps what it replaced: `PLUGIN.promoted` (the promoted digest) and
/// `PLUGIN.previous` (the replaced file's bytes), beside the plugin file.
fn sidecars(slot: &Slot) -> (std::path::PathBuf, std::path::PathBuf) {
    let with = |suffix: &str| {
        let mut name = slot.path().as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    (with(".promoted"), with(".previous"))
}

/// Keeps `old` (the running plugin's file) for a revert of the promotion of `promoted`.
async fn keep_previous(slot: &Slot, promoted: &str, old: &[u8]) -> Result<(), ApiError> {
    let (promoted_file, previous_file) = sidecars(slot);
    let (promoted, old) = (promoted.to_owned(), old.to_vec());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        write_atomically(&previous_file, &old)?;
        write_atomically(&promoted_file, promoted.as_bytes())
    })
    .await
    .map_err(|e| anyhow::anyhow!("the store task failed: {e}"))
    .and_then(|kept| kept)
    .map_err(|e| {
        ApiError::failed(
            "keeping the running version beside the plugin file (for a revert) failed; nothing was promoted",
            e,
        )
    })
}

/// The attached candidate; 404 when there is none.
fn attached(slot: &Slot) -> Result<Arc<Shadow>, ApiError> {
    slot.shadow().load_full().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no candidate is attached: PUT the candidate's .wasm file to /v1/pipelines/{name}/shadow",
        )
    })
}

/// Makes `bytes` the running plugin: stored over its file first (so that a reload or a
/// restart from now on loads them), then swapped in (the deploy's swap); if the swap is
/// refused, the file gets `old` back. A config reload that replaced the slot meanwhile
/// gets the new version too.
async fn swap_in(
    state: &AdminState,
    slot: &Arc<Slot>,
    bytes: Vec<u8>,
    old: Vec<u8>,
) -> Result<String, ApiError> {
    store(slot, bytes.clone()).await.map_err(|e| {
        ApiError::failed(
            "storing the new version over the plugin file failed; nothing was changed",
            e,
        )
    })?;
    let deployed = slot
        .deploy(&state.runtime, bytes.clone(), Origin::Upload)
        .await;
    let plugin = match deployed {
        Ok((plugin, _)) => plugin,
        Err(e) => {
            let _ = store(slot, old).await;
            return Err(refused(slot, &e));
        }
    };
    if let Some(now) = state.registry.get(slot.pipeline())
        && !Arc::ptr_eq(&now, slot)
    {
        let _ = now.deploy(&state.runtime, bytes, Origin::Upload).await;
    }
    Ok(plugin.digest().to_string())
}

/// Writes `bytes` over the slot's plugin file (atomically, off the async runtime).
async fn store(slot: &Slot, bytes: Vec<u8>) -> anyhow::Result<()> {
    let path = slot.path().to_owned();
    tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
        .await
        .map_err(|e| anyhow::anyhow!("the store task failed: {e}"))?
}

/// The running plugin's file, which must hold the running version (a file changed on
/// disk and not reloaded would be what a revert puts back).
async fn running_file(slot: &Slot) -> Result<Vec<u8>, ApiError> {
    let path = slot.path().to_owned();
    let read = tokio::task::spawn_blocking(move || std::fs::read(&path))
        .await
        .map_err(|e| anyhow::anyhow!("the read task failed: {e}"))
        .and_then(|read| read.map_err(anyhow::Error::from))
        .map_err(|e| ApiError::failed("reading the running plugin's file failed", e))?;
    let running = slot.current().digest().to_string();
    if *crate::wasm::digest_of(&read) != *running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the plugin file no longer holds the running version {running} (it changed on disk and was not reloaded): reload or deploy it first, so that a revert would put back what ran"
            ),
        ));
    }
    Ok(read)
}
