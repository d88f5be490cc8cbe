//! Span IDs, and the client spans of the HTTP requests a handler call makes.

use std::time::SystemTime;

use super::SpanContext;

/// A new span ID: random, never all zeros.
pub fn random_span_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            break id;
        }
    }
}

/// A child span's ID: derived from its parent's and its name, so that the IDs of one
/// delivery's spans differ and cost no random draw.
pub fn child_span_id(parent: [u8; 8], name: &str) -> [u8; 8] {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    parent.hash(&mut hasher);
    name.hash(&mut hasher);
    let id = hasher.finish().to_be_bytes();
    if id == [0; 8] {
        [1, 0, 0, 0, 0, 0, 0, 0]
    } else {
        id
    }
}

/// An outgoing HTTP request made by a handler call: a client span under the call's
/// `handle` span, whose ID the request carried in `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpan {
    /// The request's span (its trace is the entry's).
    pub span: SpanContext,
    /// The `handle` span it ran under.
    pub parent: [u8; 8],
    /// When the request started, and when its response head arrived (or it failed).
    pub start: SystemTime,
    pub end: SystemTime,
    /// `http.request.method`.
    pub method: String,
    /// `url.full` without query or credentials: scheme, host, port and path.
    pub url: String,
    /// `scheme://host:port`.
    pub origin: String,
    /// `http.response.status_code`, when a response came.
    pub status: Option<u16>,
    /// `error.type`, when it failed.
    pub error: Option<String>,
}
