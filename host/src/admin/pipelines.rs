//! Pipelines, dead letters, health and metrics over HTTP.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::{AdminState, ApiError, authorize};
use crate::broker::{LetterIds, Purged, StateValue};
use crate::message::dead_letter_fields;
use crate::registry::Slot;
use crate::status::BoardView;

/// A pipeline as `GET /v1/pipelines` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PipelineView {
    /// The pipeline's name.
    pub name: String,
    /// The input stream.
    pub input: String,
    /// The dead-letter stream.
    pub dead_letter: String,
    /// The running plugin version.
    pub plugin: String,
    /// State, backlog, recent rates, last error.
    #[serde(flatten)]
    pub status: BoardView,
}

fn view(slot: &Slot) -> PipelineView {
    PipelineView {
        name: slot.pipeline().to_owned(),
        input: slot.streams().input.clone(),
        dead_letter: slot.streams().dead_letter.clone(),
        plugin: slot.current().digest().to_string(),
        status: slot.board().view(),
    }
}

fn slot(state: &AdminState, name: &str) -> Result<Arc<Slot>, ApiError> {
    state
        .registry
        .get(name)
        .ok_or_else(|| ApiError::no_pipeline(name))
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operate", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::prometheus().render(),
    )
}

/// How long `/readyz` waits for Redis to answer.
const READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /readyz`: 200 when Redis answers a `PING` within a second, every pipeline can
/// reach and use Redis (none in state `error`) and every plugin is loaded; 503 otherwise,
/// with the reasons: `{"redis": bool, "redis_error": string?, "plugins": bool,
/// "pipelines": {name: reason}}` (`pipelines` lists only the ones in state `error`).
#[utoipa::path(get, path = "/readyz", tag = "operate", responses((status = 200, description = "Redis reachable, every pipeline able to use it, every plugin loaded"), (status = 503, description = "not ready; the body says why")))]
pub async fn ready(State(state): State<Arc<AdminState>>) -> (StatusCode, Json<serde_json::Value>) {
    let redis = state.broker.ping(READY_DEADLINE).await;
    let plugins = state
        .registry
        .slots()
        .iter()
        .all(|s| s.status().status == "ok");
    let failing: serde_json::Map<String, serde_json::Value> = state
        .registry
        .slots()
        .iter()
        .filter_map(|s| {
            s.board()
                .fault()
                .map(|reason| (s.pipeline().to_owned(), serde_json::Value::String(reason)))
        })
        .collect();
    let code = if redis.is_ok() && plugins && failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body =
        serde_json::json!({ "redis": redis.is_ok(), "plugins": plugins, "pipelines": failing });
    if let Err(e) = redis {
        body["redis_error"] = serde_json::Value::String(e);
    }
    (code, Json(body))
}

/// `GET /v1/pipelines`.
#[utoipa::path(get, path = "/v1/pipelines", tag = "pipelines", responses((status = 200, body = [PipelineView])))]
pub async fn list(State(state): State<Arc<AdminState>>) -> Json<Vec<PipelineView>> {
    Json(state.registry.slots().iter().map(|s| view(s)).collect())
}

/// `GET /v1/pipelines/{name}`.
#[utoipa::path(get, path = "/v1/pipelines/{name}", tag = "pipelines", params(("name" = String, Path, description = "pipeline")), responses((status = 200, body = PipelineView), (status = 404)))]
pub async fn show(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<PipelineView>, ApiError> {
    let slot = slot(&state, &name)?;
    Ok(Json(view(&slot)))
}

/// `POST /v1/pipelines/{name}/pause`: from the moment it answers, nothing more is handled;
/// work in flight finishes (state `pausing`, then `paused`).
#[utoipa::path(post, path = "/v1/pipelines/{name}/pause", tag = "pipelines", params(("name" = String, Path, description = "pipeline")), security(("bearer" = [])), responses((status = 200, body = PipelineView), (status = 401), (status = 403), (status = 404)))]
pub async fn pause(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<PipelineView>, ApiError> {
    authorize(&state, &headers)?;
    let slot = slot(&state, &name)?;
    slot.board().set_paused(true);
    Ok(Json(view(&slot)))
}

/// `POST /v1/pipelines/{name}/resume`: read again from where it stopped.
#[utoipa::path(post, path = "/v1/pipelines/{name}/resume", tag = "pipelines", params(("name" = String, Path, description = "pipeline")), security(("bearer" = [])), responses((status = 200, body = PipelineView), (status = 401), (status = 403), (status = 404)))]
pub async fn resume(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<PipelineView>, ApiError> {
    authorize(&state, &headers)?;
    let slot = slot(&state, &name)?;
    slot.board().set_paused(false);
    Ok(Json(view(&slot)))
}

/// Paging of `GET /v1/pipelines/{name}/dead`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Page {
    /// Entries after this ID (exclusive); from the start without it.
    after: Option<String>,
    /// Page size (default 50, at most 1,000).
    count: Option<usize>,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Its ID in the dead-letter stream.
    pub id: String,
    /// Why it was dead-lettered.
    pub error: String,
    /// Every field, values as text (invalid UTF-8 replaced), in order.
    pub fields: Vec<(String, String)>,
}

/// A page of dead letters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DeadPage {
    /// The entries, oldest first.
    pub entries: Vec<DeadLetter>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<String>,
}

/// `GET /v1/pipelines/{name}/dead?after=ID&count=N`.
#[utoipa::path(get, path = "/v1/pipelines/{name}/dead", tag = "dead letters", params(("name" = String, Path, description = "pipeline"), Page), responses((status = 200, body = DeadPage), (status = 404)))]
pub async fn dead(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<DeadPage>, ApiError> {
    let slot = slot(&state, &name)?;
    let count = page.count.unwrap_or(50).clamp(1, 1_000);
    let rows = state
        .broker
        .dead_letters(&slot.streams().dead_letter, page.after.as_deref(), count)
        .await
        .map_err(ApiError::internal)?;
    let next = (rows.len() == count).then(|| rows[rows.len() - 1].0.clone());
    let entries = rows
        .into_iter()
        .map(|(id, fields)| {
            let fields: Vec<(String, String)> = fields
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect();
            let error = fields
                .iter()
                .find(|(k, _)| k == dead_letter_fields::ERROR)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            DeadLetter { id, error, fields }
        })
        .collect();
    Ok(Json(DeadPage { entries, next }))
}

/// Body of a replay or a purge: the dead letters it is about.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdsRequest {
    /// Dead-letter IDs, `ms-seq` or `ms` (meaning `ms-0`), at most 10,000 distinct ones;
    /// duplicates count once.
    #[serde(default)]
    ids: Vec<String>,
}

/// What a replay did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ReplayAnswer {
    /// Letters written back to the input (and deleted from the dead-letter stream).
    pub replayed: usize,
    /// Letters left in place: they hold no copy of their entry (too wide to copy; their
    /// `sluice.error` names the original in the input).
    pub kept: Vec<String>,
    /// IDs asked for that are not dead letters of the pipeline (canonical form).
    pub not_found: Vec<String>,
}

/// What a purge did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PurgeAnswer {
    /// Letters deleted.
    pub purged: usize,
    /// IDs asked for that are not dead letters of the pipeline (canonical form).
    pub not_found: Vec<String>,
}

/// The IDs a replay or purge names, checked before anything is done: `None` without a
/// body; 400 for a body that is not an [`IdsRequest`], naming the first ID that is not
/// one, or past the cap. The body is read as JSON whatever its `Content-Type` says: a
/// list sent without one must not be taken for no list, which means every letter.
fn requested_ids(body: &Bytes) -> Result<Option<LetterIds>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let bad = |e: String| ApiError::new(StatusCode::BAD_REQUEST, e);
    let request: IdsRequest = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the body is not {{\"ids\": [...]}}: {e}")))?;
    LetterIds::parse(&request.ids)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

/// `POST /v1/pipelines/{name}/dead/replay`: back to the input with the original fields,
/// removed from the dead-letter stream, atomically per 1,000 letters. Without IDs, the
/// letters there when the call begins (not the ones that fail again meanwhile).
#[utoipa::path(post, path = "/v1/pipelines/{name}/dead/replay", tag = "dead letters", params(("name" = String, Path, description = "pipeline")), request_body(content = Option<IdsRequest>, description = "IDs to replay; all when absent or empty"), security(("bearer" = [])), responses((status = 200, body = ReplayAnswer), (status = 400, description = "a body that is not {\"ids\": [...]}, an ID that is not one (named), or more than 10,000"), (status = 401), (status = 403), (status = 404)))]
pub async fn replay(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ReplayAnswer>, ApiError> {
    authorize(&state, &headers)?;
    let slot = slot(&state, &name)?;
    let ids = requested_ids(&body)?.unwrap_or_default();
    let streams = slot.streams();
    let (dead, input) = (&streams.dead_letter, &streams.input);
    let meta = dead_letter_fields::COUNT;
    let done = if ids.is_empty() {
        state.broker.replay_all(dead, input, meta).await
    } else {
        state.broker.replay_ids(dead, input, meta, &ids).await
    }
    .map_err(ApiError::internal)?;
    Ok(Json(ReplayAnswer {
        replayed: done.replayed,
        kept: done.kept,
        not_found: done.not_found,
    }))
}

/// `DELETE /v1/pipelines/{name}/dead`: drops every dead letter, or only the IDs of the
/// body (an empty list is refused, not taken for every letter).
#[utoipa::path(delete, path = "/v1/pipelines/{name}/dead", tag = "dead letters", params(("name" = String, Path, description = "pipeline")), request_body(content = Option<IdsRequest>, description = "IDs to delete; every letter without a body"), security(("bearer" = [])), responses((status = 200, body = PurgeAnswer), (status = 400, description = "a body that is not {\"ids\": [...]}, an ID that is not one (named), an empty list, or more than 10,000"), (status = 401), (status = 403), (status = 404)))]
pub async fn purge(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PurgeAnswer>, ApiError> {
    authorize(&state, &headers)?;
    let slot = slot(&state, &name)?;
    let dead = &slot.streams().dead_letter;
    let done = match requested_ids(&body)? {
        None => state.broker.purge_dead(dead).await.map(|purged| Purged {
            purged,
            not_found: Vec::new(),
        }),
        Some(ids) if ids.is_empty() => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "\"ids\" is empty: send no body to purge every dead letter",
            ));
        }
        Some(ids) => state.broker.purge_ids(dead, &ids).await,
    }
    .map_err(ApiError::internal)?;
    Ok(Json(PurgeAnswer {
        purged: done.purged,
        not_found: done.not_found,
    }))
}

/// `GET /v1/pipelines/{name}/state/{key}`: a key of the pipeline's handler state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct StateView {
    /// The key.
    pub key: String,
    /// `string`, `hash` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A string's value, or a hash's fields (name to value), as text (bytes that are
    /// not UTF-8 replaced); absent for `none`.
    pub value: Option<serde_json::Value>,
}

/// `GET /v1/pipelines/{name}/state/{key}`: the value of a key the pipeline's `state`
/// prefixes cover, now. Needs the bearer token: it reads data.
#[utoipa::path(get, path = "/v1/pipelines/{name}/state/{key}", tag = "pipelines", params(("name" = String, Path, description = "pipeline"), ("key" = String, Path, description = "a key under one of the pipeline's state prefixes")), security(("bearer" = [])), responses((status = 200, body = StateView), (status = 401), (status = 403, description = "no token configured, or the key is outside the pipeline's state prefixes"), (status = 404)))]
pub async fn state_key(
    State(state): State<Arc<AdminState>>,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<StateView>, ApiError> {
    authorize(&state, &headers)?;
    let slot = slot(&state, &name)?;
    let prefixes = &slot.streams().state;
    if !prefixes.iter().any(|p| key.starts_with(p.as_str())) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("key {key:?} is not under pipeline {name:?}'s state prefixes {prefixes:?}"),
        ));
    }
    let text = |v: &[u8]| serde_json::Value::String(String::from_utf8_lossy(v).into_owned());
    let value = state
        .broker
        .state_value(&key)
        .await
        .map_err(ApiError::internal)?;
    let (kind, value) = match value {
        StateValue::Absent => ("none".to_owned(), None),
        StateValue::Str(v) => ("string".to_owned(), Some(text(&v))),
        StateValue::Hash(fields) => (
            "hash".to_owned(),
            Some(serde_json::Value::Object(
                fields.iter().map(|(f, v)| (f.clone(), text(v))).collect(),
            )),
        ),
        StateValue::Other(kind) => (kind, None),
    };
    Ok(Json(StateView { key, kind, value }))
}
