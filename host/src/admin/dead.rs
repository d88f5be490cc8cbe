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
    /// Dead-letter IDs, `ms-seq` or `ms` (meaning `ms-0`), at least one and at most
    /// 10,000 distinct ones; duplicates count once. A partitioned pipeline's letters are
    /// looked for in every partition's stream.
    ids: Option<Vec<String>>,
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

/// How to ask for every letter or for some, for the 400 answers.
const HOW_TO_ASK: &str =
    "send no body (zero bytes) for every dead letter, or {\"ids\": [...]} with at least one ID";

/// The IDs a replay or purge names, checked before anything is done: `None` (every
/// letter) only for a body of zero bytes; 400 for a body of whitespace, one that is not
/// an [`IdsRequest`], one without IDs (`{}`, an empty list), an ID that is not one
/// (named), or more than the cap. The body is read as JSON whatever its `Content-Type`
/// says: a list sent without one must not be taken for no list, which means every letter.
fn requested_ids(body: &Bytes) -> Result<Option<LetterIds>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    let bad = |e: String| ApiError::new(StatusCode::BAD_REQUEST, e);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(format!("the body is only whitespace: {HOW_TO_ASK}")));
    }
    let request: IdsRequest = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the body is not {{\"ids\": [...]}}: {e}")))?;
    let Some(ids) = request.ids.filter(|ids| !ids.is_empty()) else {
        return Err(bad(format!("the body names no IDs: {HOW_TO_ASK}")));
    };
    LetterIds::parse(&ids)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

/// `POST /v1/pipelines/{name}/dead/replay`: back to the input with the original fields,
/// removed from the dead-letter stream, atomically per 1,000 letters, in every stream
/// of the pipeline (one per partition, each to its partition's input). Without a body,
/// the letters there when the call reaches each stream (not the ones that fail again
/// meanwhile). A replay cut short by Redis answers how many letters had moved.
#[utoipa::path(post, path = "/v1/pipelines/{name}/dead/replay", tag = "dead letters", params(("name" = String, Path, description = "pipeline")), request_body(content = Option<IdsRequest>, description = "IDs to replay; every letter without a body (zero bytes)"), security(("bearer" = [])), responses((status = 200, body = ReplayAnswer), (status = 400, description = "a body that is whitespace, not {\"ids\": [...]}, or without IDs; an ID that is not one (named); more than 10,000"), (status = 401), (status = 403), (status = 404), (status = 503, description = "Redis failed; the answer says how many letters were replayed before")))]
pub async fn replay(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ReplayAnswer>, ApiError> {
    authorize(&state, &headers)?;
    let slot = slot(&state, &name)?;
    let dead = &slot.streams().dead_letters;
    let meta = dead_letter_fields::COUNT;
    let done = match requested_ids(&body)? {
        None => state.broker.replay_every(dead, meta).await,
        Some(ids) => state.broker.replay_ids_every(dead, meta, &ids).await,
    }
    .map_err(ApiError::internal)?;
    Ok(Json(ReplayAnswer {
        replayed: done.replayed,
        kept: done.kept,
        not_found: done.not_found,
    }))
}

/// `DELETE /v1/pipelines/{name}/dead`: drops every dead letter there when the call
/// begins (in every stream of the pipeline; later ones stay), or only the IDs of the body.
#[utoipa::path(delete, path = "/v1/pipelines/{name}/dead", tag = "dead letters", params(("name" = String, Path, description = "pipeline")), request_body(content = Option<IdsRequest>, description = "IDs to delete; every letter without a body (zero bytes)"), security(("bearer" = [])), responses((status = 200, body = PurgeAnswer), (status = 400, description = "a body that is whitespace, not {\"ids\": [...]}, or without IDs; an ID that is not one (named); more than 10,000"), (status = 401), (status = 403), (status = 404)))]
pub async fn purge(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PurgeAnswer>, ApiError> {
    authorize(&state, &headers)?;
    let slot = slot(&state, &name)?;
    let dead = &slot.streams().dead_letters;
    let done = match requested_ids(&body)? {
        None => state.broker.purge_every(dead).await.map(|purged| Purged {
            purged,
            not_found: Vec::new(),
        }),
        Some(ids) => state.broker.purge_ids_every(dead, &ids).await,
    }
    .map_err(ApiError::internal)?;
    Ok(Json(PurgeAnswer {
        purged: done.purged,
        not_found: done.not_found,
    }))
}
