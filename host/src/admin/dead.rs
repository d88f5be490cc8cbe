//! Dead-letter replay and purge. (The dead-letter pages are in `letters`.)

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::pipelines::slot;
use super::{AdminState, ApiError, authorize};
use crate::broker::{LetterIds, Purged};
use crate::message::dead_letter_fields;

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
