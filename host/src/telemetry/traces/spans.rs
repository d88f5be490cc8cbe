//! A pipeline's traces: each delivery's trace chosen when it is read, and its spans
//! (`process {stream}` with `read`, `handle` and `commit` children) written when it is
//! over.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::export::Sink;
use crate::config::TraceMode;
use crate::message::Entry;
use crate::trace_context::{self, ClientSpan, EntryTrace};

/// How a delivery ended, for its span's status and `sluice.outcome`.
#[derive(Debug, Clone)]
pub enum Ended {
    /// Outputs written and the entry acknowledged (or adopted).
    Committed,
    /// Written to the dead-letter stream, for this reason.
    DeadLettered(String),
    /// Left pending for a retry after this failure.
    Retry(String),
    /// Not committed by this delivery (`not owned`, `gone`, `undelivered`, drained...).
    NotCommitted(&'static str),
}

/// One pipeline's traces.
#[derive(Clone)]
pub struct Traces {
    pub(super) mode: TraceMode,
    pub(super) sample_ratio: f64,
    pub(super) sink: Option<Arc<Sink>>,
    pub(super) scope: InstrumentationScope,
    pub(super) name: Cow<'static, str>,
    pub(super) common: Arc<[KeyValue]>,
    /// `sluice_trace_context_invalid_total` of the pipeline.
    pub(super) invalid: metrics::Counter,
}

impl Traces {
    /// Gives each entry just delivered (by a read or claim that started at `read`) its
    /// trace, by the pipeline's mode. An entry that has one (handled again as the same
    /// delivery) keeps it.
    pub fn begin(&self, entries: &mut [Entry], read: SystemTime) {
        if self.mode == TraceMode::Off {
            return;
        }
        let now = SystemTime::now();
        for entry in entries.iter_mut().filter(|e| e.trace.is_none()) {
            let carried = trace_context::extract(&entry.fields);
            if carried.invalid {
                self.invalid.increment(1);
                tracing::debug!(id = %entry.id, "the entry's traceparent is not valid W3C Trace Context (lower-case hex, version 00, IDs not all zero, one field); it is ignored");
            }
            if carried.parent.is_none() && self.mode == TraceMode::WhenPresent {
                continue;
            }
            // A blocking read starts before the entry exists: its span starts no
            // earlier than the entry was added (its ID's time, by the server's clock),
            // unless that is ahead of this host's clock (an explicit ID, clock skew).
            let added = SystemTime::UNIX_EPOCH
                + Duration::from_millis(crate::message::StreamId::parse(&entry.id).ms);
            let start = if added <= now { read.max(added) } else { read };
            let sample = self.sample_ratio >= 1.0 || rand::random::<f64>() < self.sample_ratio;
            entry.trace = Some(EntryTrace::begin(
                carried.parent,
                carried.state,
                start,
                sample,
            ));
        }
    }

    /// Writes the spans of a delivery that is over: `commit` is when its commit ran (if
    /// one did), `digest` the plugin version that handled it.
    pub fn end(
        &self,
        entry: &Entry,
        digest: &str,
        commit: Option<(SystemTime, SystemTime)>,
        ended: &Ended,
    ) {
        let (Some(sink), Some(trace)) = (&self.sink, &entry.trace) else {
            return;
        };
        if !trace.span.sampled() {
            return;
        }
        let now = SystemTime::now();
        let handled = trace.handled.unwrap_or((now, now));
        let end = commit.map_or(handled.1, |c| c.1).max(handled.1);
        let spans = Spans::of(trace, self.scope.clone());
        let (status, outcome) = match ended {
            Ended::Committed => (Status::Unset, "committed"),
            Ended::DeadLettered(why) => (Status::error(why.clone()), "dead-lettered"),
            Ended::Retry(why) => (Status::error(why.clone()), "retry"),
            Ended::NotCommitted(why) => (Status::Unset, *why),
        };
        let handler_status = match ended {
            Ended::DeadLettered(why) | Ended::Retry(why) => Status::error(why.clone()),
            _ => Status::Unset,
        };
        let mut attributes = self.common.to_vec();
        attributes.extend([
            KeyValue::new("messaging.message.id", entry.id.clone()),
            KeyValue::new("sluice.attempt", i64::from(entry.attempt)),
            KeyValue::new("sluice.plugin.digest", digest.to_owned()),
            KeyValue::new("sluice.outcome", outcome),
        ]);
        let mut out = Vec::with_capacity(4);
        out.push(spans.child("read", (trace.read, handled.0), Vec::new(), Status::Unset));
        let handle = vec![
            KeyValue::new("sluice.plugin.digest", digest.to_owned()),
            KeyValue::new("sluice.attempt", i64::from(entry.attempt)),
        ];
        out.push(spans.child("handle", handled, handle, handler_status));
        out.extend(trace.requests.iter().map(|r| spans.client(r)));
        if let Some(commit) = commit {
            out.push(spans.child("commit", commit, Vec::new(), Status::Unset));
        }
        out.push(spans.process(self.name.clone(), (trace.read, end), attributes, status));
        sink.submit(out);
    }
}

/// Makes the spans of one delivery: its `process` span and the children under it.
struct Spans<'a> {
    trace: &'a EntryTrace,
    state: TraceState,
    scope: InstrumentationScope,
}

impl<'a> Spans<'a> {
    fn of(trace: &'a EntryTrace, scope: InstrumentationScope) -> Self {
        let state = trace
            .state
            .as_deref()
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        Self {
            trace,
            state,
            scope,
        }
    }

    /// The delivery's own span (kind consumer), under the trace's remote parent if any.
    fn process(
        &self,
        name: Cow<'static, str>,
        times: (SystemTime, SystemTime),
        attributes: Vec<KeyValue>,
        status: Status,
    ) -> SpanData {
        let parent = self.trace.parent;
        let parent_id = parent.map_or(SpanId::INVALID, |p| SpanId::from_bytes(p.span_id));
        let mut span = self.span(
            self.trace.span.span_id,
            parent_id,
            SpanKind::Consumer,
            name,
            times,
        );
        span.parent_span_is_remote = parent.is_some();
        span.attributes = attributes;
        span.status = status;
        span
    }

    /// A child of the delivery's span (kind internal).
    fn child(
        &self,
        name: &'static str,
        times: (SystemTime, SystemTime),
        attributes: Vec<KeyValue>,
        status: Status,
    ) -> SpanData {
        let process = self.trace.span.span_id;
        let id = crate::trace_context::child_span_id(process, name);
        let mut span = self.span(
            id,
            SpanId::from_bytes(process),
            SpanKind::Internal,
            name.into(),
            times,
        );
        span.attributes = attributes;
        span.status = status;
        span
    }

    /// An HTTP request the handler made (kind client, under `handle`), with the HTTP
    /// semantic conventions' attributes
    /// (<https://opentelemetry.io/docs/specs/semconv/http/http-spans/#http-client>).
    fn client(&self, request: &ClientSpan) -> SpanData {
        let name = Cow::Owned(request.method.clone());
        let parent = SpanId::from_bytes(request.parent);
        let times = (request.start, request.end);
        let mut span = self.span(request.span.span_id, parent, SpanKind::Client, name, times);
        let (address, port) = server_of(&request.origin);
        span.attributes = vec![
            KeyValue::new("http.request.method", request.method.clone()),
            KeyValue::new("url.full", request.url.clone()),
            KeyValue::new("server.address", address),
            KeyValue::new("server.port", port),
        ];
        if let Some(status) = request.status {
            span.attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if let Some(error) = &request.error {
            span.attributes
                .push(KeyValue::new("error.type", error.clone()));
            span.status = Status::error(error.clone());
        } else if request.status.is_some_and(|s| s >= 400) {
            let status = request.status.unwrap_or_default();
            span.attributes
                .push(KeyValue::new("error.type", status.to_string()));
            span.status = Status::error(status.to_string());
        }
        span
    }

    fn span(
        &self,
        id: [u8; 8],
        parent: SpanId,
        kind: SpanKind,
        name: Cow<'static, str>,
        (start_time, end_time): (SystemTime, SystemTime),
    ) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(self.trace.span.trace_id),
                SpanId::from_bytes(id),
                TraceFlags::new(self.trace.span.flags),
                false,
                self.state.clone(),
            ),
            parent_span_id: parent,
            parent_span_is_remote: false,
            span_kind: kind,
            name,
            start_time,
            end_time: end_time.max(start_time),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: self.scope.clone(),
        }
    }
}

/// `server.address` and `server.port` of `scheme://host:port`.
fn server_of(origin: &str) -> (String, i64) {
    let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
    match authority.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port.parse().unwrap_or_default(),
        ),
        None => (authority.to_owned(), 0),
    }
}
