//! Dead-letter pages: whole entries (customer data), so only with the token, and
//! bounded: at most `count` letters and about [`PAGE_BYTES`] of names and values per
//! answer, each name or value cut at [`VALUE_BYTES`] (the letter is then marked
//! `truncated`). Redis cuts them (`broker::dead_page`): a 50 MB letter costs the daemon
//! a page, not 50 MB.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::pipelines::slot;
use super::{AdminState, ApiError};
use crate::broker::PageLimits;
use crate::message::dead_letter_fields;

/// The most bytes of names and values in one answer (the first letter is always
/// answered, cut to fit).
pub const PAGE_BYTES: usize = 1 << 20;

/// The most bytes of one field name or value in an answer.
pub const VALUE_BYTES: usize = 64 << 10;

/// Paging of `GET /v1/pipelines/{name}/dead`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// Entries after this ID (exclusive); from the start without it.
    after: Option<String>,
    /// Page size (default 50, at most 1,000); a page also stops at about 1 MiB.
    count: Option<usize>,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Its ID in the dead-letter stream.
    pub id: String,
    /// Why it was dead-lettered.
    pub error: String,
    /// Every field, values as text (invalid UTF-8 replaced), in order; cut as
    /// `truncated` says.
    pub fields: Vec<(String, String)>,
    /// A name or value was cut at 64 KiB, or fields were left out to keep the answer
    /// within 1 MiB: the letter in Redis is whole (replay moves it whole).
    #[serde(default)]
    pub truncated: bool,
}

/// A page of dead letters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DeadPage {
    /// The entries, oldest first.
    pub entries: Vec<DeadLetter>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<String>,
}

/// `GET /v1/pipelines/{name}/dead?after=ID&count=N`: needs the token (whole entries).
#[utoipa::path(get, path = "/v1/pipelines/{name}/dead", tag = "dead letters", params(("name" = String, Path, description = "pipeline"), PageQuery), security(("bearer" = [])), responses((status = 200, body = DeadPage), (status = 401), (status = 403), (status = 404), (status = 503, description = "Redis unavailable")))]
pub async fn page(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<DeadPage>, ApiError> {
    let slot = slot(&state, &name)?;
    let limits = PageLimits {
        count: query.count.unwrap_or(50).clamp(1, 1_000),
        value_bytes: VALUE_BYTES,
        page_bytes: PAGE_BYTES,
    };
    let page = state
        .broker
        .dead_page(&slot.streams().dead_letter, query.after.as_deref(), limits)
        .await
        .map_err(ApiError::internal)?;
    let next = page
        .more
        .then(|| page.entries.last().map(|e| e.id.clone()))
        .flatten();
    let entries = page
        .entries
        .into_iter()
        .map(|entry| {
            let fields: Vec<(String, String)> = entry
                .fields
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect();
            let error = fields
                .iter()
                .find(|(k, _)| k == dead_letter_fields::ERROR)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            DeadLetter {
                id: entry.id,
                error,
                fields,
                truncated: entry.cut,
            }
        })
        .collect();
    Ok(Json(DeadPage { entries, next }))
}
