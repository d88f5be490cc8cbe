//! Dead-letter replay and purge. (The dead-letter pages are in `letters`.)

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;

use super::pipelines::slot;
use super::{AdminState, ApiError, authorize};
use crate::message::dead_letter_fields;

/// Body of a replay: the ids to replay; all when absent or empty.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ReplayRequest {
    #[serde(default)]
    ids: Vec<String>,
}

/// `POST /v1/pipelines/{name}/dead/replay`: back to the input with the original fields,
/// removed from the dead-letter stream, atomically.
#[utoipa::path(post, path = "/v1/pipelines/{name}/dead/replay", tag = "dead letters", params(("name" = String, Path, description = "pipeline")), request_body(content = Option<ReplayRequest>, description = "ids to replay; all when absent"), security(("bearer" = [])), responses((status = 200, description = "{\"replayed\": n, \"kept\": [ids of letters without a copy of their entry, left in place]}"), (status = 401), (status = 403), (status = 404)))]
pub async fn replay(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Option<Json<ReplayRequest>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&state, &headers)?;
    let slot = slot(&state, &name)?;
    let ids = body.map(|Json(b)| b.ids).unwrap_or_default();
    let streams = slot.streams();
    let replayed = state
        .broker
        .replay_dead(
            &streams.dead_letter,
            &streams.input,
            dead_letter_fields::COUNT,
            &ids,
        )
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        serde_json::json!({ "replayed": replayed.replayed, "kept": replayed.kept }),
    ))
}

/// `DELETE /v1/pipelines/{name}/dead`: drops every dead letter.
#[utoipa::path(delete, path = "/v1/pipelines/{name}/dead", tag = "dead letters", params(("name" = String, Path, description = "pipeline")), security(("bearer" = [])), responses((status = 200, description = "{\"purged\": n}"), (status = 401), (status = 403), (status = 404)))]
pub async fn purge(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&state, &headers)?;
    let slot = slot(&state, &name)?;
    let purged = state
        .broker
        .purge_dead(&slot.streams().dead_letter)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "purged": purged })))
}
