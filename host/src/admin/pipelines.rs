//! Pipelines over HTTP: their views (open: names, streams, state, counts, errors and
//! incidents without internals), pause and resume, and their handler state (token: it
//! reads data).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::without_internals;
use super::{AdminState, ApiError};
use crate::broker::StateValue;
use crate::registry::Slot;
use crate::status::BoardView;

/// A pipeline as `GET /v1/pipelines` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PipelineView {
    /// The pipeline's name.
    pub name: String,
    /// The input stream, as configured (a partitioned pipeline reads `INPUT:{p}`).
    pub input: String,
    /// The dead-letter streams: one, or one per partition (`INPUT:dead:{0}` ..), in the
    /// order the dead-letter pages read them.
    pub dead_letters: Vec<String>,
    /// The running plugin version.
    pub plugin: String,
    /// What the operator should know that puts the pipeline's data at risk without an
    /// error (a Redis that may evict keys on its own); daemon-wide, so the same for
    /// every pipeline; empty when there is none. Readiness does not depend on it.
    pub warnings: Vec<String>,
    /// State, backlog, recent rates, last error.
    #[serde(flatten)]
    pub status: BoardView,
}

/// `slot` as an open answer shows it: its errors and incidents without internals.
fn view(state: &AdminState, slot: &Slot) -> PipelineView {
    let open = |text: String| without_internals(&state.broker, &text);
    let mut status = slot.board().view();
    status.error = status.error.map(open);
    status.last_error = status.last_error.map(open);
    for incident in &mut status.incidents {
        incident.message = open(std::mem::take(&mut incident.message));
    }
    PipelineView {
        name: slot.pipeline().to_owned(),
        input: slot.streams().input.clone(),
        dead_letters: slot
            .streams()
            .dead_letters
            .iter()
            .map(|d| d.stream.clone())
            .collect(),
        plugin: slot.current().digest().to_string(),
        warnings: state.warnings.get(),
        status,
    }
}

/// The slot of pipeline `name`, or 404.
pub(crate) fn slot(state: &AdminState, name: &str) -> Result<Arc<Slot>, ApiError> {
    state
        .registry
        .get(name)
        .ok_or_else(|| ApiError::no_pipeline(name))
}

/// `GET /v1/pipelines`.
#[utoipa::path(get, path = "/v1/pipelines", tag = "pipelines", responses((status = 200, body = [PipelineView])))]
pub async fn list(State(state): State<Arc<AdminState>>) -> Json<Vec<PipelineView>> {
    Json(
        state
            .registry
            .slots()
            .iter()
            .map(|s| view(&state, s))
            .collect(),
    )
}

/// `GET /v1/pipelines/{name}`.
#[utoipa::path(get, path = "/v1/pipelines/{name}", tag = "pipelines", params(("name" = String, Path, description = "pipeline")), responses((status = 200, body = PipelineView), (status = 404)))]
pub async fn show(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<PipelineView>, ApiError> {
    let slot = slot(&state, &name)?;
    Ok(Json(view(&state, &slot)))
}

/// `POST /v1/pipelines/{name}/pause`: from the moment it answers, nothing more is handled;
/// work in flight finishes (state `pausing`, then `paused`).
#[utoipa::path(post, path = "/v1/pipelines/{name}/pause", tag = "pipelines", params(("name" = String, Path, description = "pipeline")), security(("bearer" = [])), responses((status = 200, body = PipelineView), (status = 401), (status = 403), (status = 404)))]
pub async fn pause(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<PipelineView>, ApiError> {
    let slot = slot(&state, &name)?;
    slot.board().set_paused(true);
    Ok(Json(view(&state, &slot)))
}

/// `POST /v1/pipelines/{name}/resume`: read again from where it stopped.
#[utoipa::path(post, path = "/v1/pipelines/{name}/resume", tag = "pipelines", params(("name" = String, Path, description = "pipeline")), security(("bearer" = [])), responses((status = 200, body = PipelineView), (status = 401), (status = 403), (status = 404)))]
pub async fn resume(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<PipelineView>, ApiError> {
    let slot = slot(&state, &name)?;
    slot.board().set_paused(false);
    Ok(Json(view(&state, &slot)))
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
) -> Result<Json<StateView>, ApiError> {
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
