//! Dead-letter pages: whole entries (customer data), so only with the token, and
//! bounded: at most `count` letters and about [`PAGE_BYTES`] of names and values per
//! answer, each name or value cut at [`VALUE_BYTES`] (the letter is then marked
//! `truncated`). Redis cuts them (`broker::dead_page`): a 50 MB letter costs the daemon
//! a page, not 50 MB.
//!
//! A partitioned pipeline has a dead-letter stream per partition: a page reads them in
//! partition order, and its `next` names the stream it stopped in (`INDEX/ID`); a
//! pipeline with one stream keeps plain IDs.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::pipelines::slot;
use super::{AdminState, ApiError};
use crate::broker::{PageEntry, PageLimits};
use crate::message::{StreamId, dead_letter_fields};

/// The most bytes of names and values in one answer (the first letter is always
/// answered, cut to fit).
pub const PAGE_BYTES: usize = 1 << 20;

/// The most bytes of one field name or value in an answer.
pub const VALUE_BYTES: usize = 64 << 10;

/// Paging of `GET /v1/pipelines/{name}/dead`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// Where to go on: a page's `next`, as it is (`INDEX/ID`: after entry `ID` of the
    /// pipeline's dead-letter stream number `INDEX`; a pipeline with one stream also
    /// takes a plain entry ID); from the start without it.
    after: Option<String>,
    /// Page size (default 50, at most 1,000); a page also stops at about 1 MiB.
    count: Option<usize>,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Its ID in its dead-letter stream.
    pub id: String,
    /// The dead-letter stream that holds it (one per partition of a partitioned
    /// pipeline).
    pub stream: String,
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
    /// The entries, oldest first, stream by stream (partition 0 first).
    pub entries: Vec<DeadLetter>,
    /// Pass as `after` for the next page; absent on the last. `INDEX/ID` for a
    /// pipeline with several dead-letter streams, the last entry's ID for one with one.
    pub next: Option<String>,
}

/// `GET /v1/pipelines/{name}/dead?after=CURSOR&count=N`: needs the token (whole entries).
#[utoipa::path(get, path = "/v1/pipelines/{name}/dead", tag = "dead letters", params(("name" = String, Path, description = "pipeline"), PageQuery), security(("bearer" = [])), responses((status = 200, body = DeadPage), (status = 400, description = "`after` is not a page's `next`"), (status = 401), (status = 403), (status = 404), (status = 503, description = "Redis unavailable")))]
pub async fn page(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<DeadPage>, ApiError> {
    let slot = slot(&state, &name)?;
    let streams = &slot.streams().dead_letters;
    let start = match query.after.as_deref() {
        None => Cursor::default(),
        Some(text) => Cursor::parse(text, streams.len())
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?,
    };
    let count = query.count.unwrap_or(50).clamp(1, 1_000);
    let (mut entries, mut next, mut used) = (Vec::new(), None, 0);
    for (index, dead) in streams.iter().enumerate().skip(start.stream) {
        let after = (index == start.stream).then_some(start.after).flatten();
        let limits = PageLimits {
            count: count - entries.len(),
            value_bytes: VALUE_BYTES,
            page_bytes: PAGE_BYTES.saturating_sub(used),
            cut_first: entries.is_empty(),
        };
        let after_text = after.map(|id| id.to_string());
        let page = state
            .broker
            .dead_page(&dead.stream, after_text.as_deref(), limits)
            .await
            .map_err(ApiError::internal)?;
        let last = page
            .entries
            .last()
            .and_then(|e| e.id.parse().ok())
            .or(after);
        for entry in page.entries {
            used += entry
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
            entries.push(letter(entry, &dead.stream));
        }
        if page.more {
            let cursor = Cursor {
                stream: index,
                after: last,
            };
            next = Some(cursor.text(streams.len()));
            break;
        }
    }
    Ok(Json(DeadPage { entries, next }))
}

/// A letter as the page shows it.
fn letter(entry: PageEntry, stream: &str) -> DeadLetter {
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
        stream: stream.to_owned(),
        error,
        fields,
        truncated: entry.cut,
    }
}

/// Where a page starts: a dead-letter stream (its index in the pipeline's list) and the
/// entry to go on after (`None`: the stream's start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cursor {
    stream: usize,
    after: Option<StreamId>,
}

impl Cursor {
    /// Reads `INDEX/ID`, or a plain `ID` when the pipeline has one stream of `streams`.
    fn parse(text: &str, streams: usize) -> Result<Self, String> {
        let refused = |why: String| {
            format!("`after` {text:?} is not a page's `next`: {why}; pass `next` as it is")
        };
        let (stream, id) = match text.split_once('/') {
            Some((index, id)) => {
                let index: usize =
                    index.parse().ok().filter(|i| *i < streams).ok_or_else(|| {
                        refused(format!(
                            "the pipeline has dead-letter streams 0 to {}",
                            streams.saturating_sub(1)
                        ))
                    })?;
                (index, id)
            }
            None if streams == 1 => (0, text),
            None => {
                return Err(refused(format!(
                    "the pipeline has {streams} dead-letter streams (one per partition), so a cursor is INDEX/ID"
                )));
            }
        };
        let after = id.parse::<StreamId>().map_err(|e| refused(e.to_string()))?;
        Ok(Self {
            stream,
            after: Some(after),
        })
    }

    /// The cursor as `next` gives it: `INDEX/ID`, or the plain ID for one stream.
    fn text(self, streams: usize) -> String {
        // `0-0` is before every entry (Redis gives no entry that ID).
        let id = self.after.unwrap_or_default();
        if streams == 1 {
            id.to_string()
        } else {
            format!("{}/{id}", self.stream)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stream: usize, ms: u64, seq: u64) -> Cursor {
        Cursor {
            stream,
            after: Some(StreamId { ms, seq }),
        }
    }

    #[test]
    fn cursors_name_the_stream_when_there_are_several() {
        assert_eq!(Cursor::parse("2/17-3", 4), Ok(at(2, 17, 3)));
        assert_eq!(at(2, 17, 3).text(4), "2/17-3");
        assert_eq!(Cursor::parse("17-3", 1), Ok(at(0, 17, 3)));
        assert_eq!(Cursor::parse("0/17", 1), Ok(at(0, 17, 0)));
        assert_eq!(at(0, 17, 3).text(1), "17-3");
        let start = Cursor {
            stream: 3,
            after: None,
        };
        assert_eq!(Cursor::parse(&start.text(4), 4), Ok(at(3, 0, 0)));
        for bad in ["4/1-0", "x/1-0", "-1/1-0", "1/", "1/x", "17-3", "/1-0"] {
            let refused = Cursor::parse(bad, 4).expect_err(bad);
            assert!(refused.contains("pass `next` as it is"), "{bad}: {refused}");
        }
        assert!(Cursor::parse("x", 1).is_err());
    }
}
