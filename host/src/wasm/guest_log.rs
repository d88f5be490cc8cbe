//! Where a guest's words go: host `log` calls and WASI stdout/stderr become `tracing`
//! events attributed to plugin digest and message id, and to the message's `trace_id`
//! and `span_id` when it is traced (in the pipeline's span), rate-limited per instance
//! so that a chatty or hostile plugin cannot flood the daemon's log.

use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::io::AsyncWrite;
use tracing::field::display;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::trace_context::SpanContext;

/// Which plugin version is running: attached to every log line of the guest (the
/// pipeline is named by the `pipeline` span the call runs in).
#[derive(Debug, Clone)]
pub struct Identity {
    /// The plugin's content digest.
    pub digest: Arc<str>,
    /// Its bundle's source map: stack frames in its lines name the original sources.
    pub source_map: Option<Arc<super::source_map::SourceMap>>,
}

/// The message being handled, and its trace and span IDs if it is traced.
#[derive(Debug, Clone, Default)]
struct Current {
    id: String,
    trace: Option<(String, String)>,
}

/// Lines per second a single instance may log, and the burst it may save up.
const LINES_PER_SECOND: u32 = 100;
const BURST: u32 = 200;
/// Longer lines are cut.
const MAX_LINE: usize = 4096;

/// Severity of a guest log line (the WIT `level`, or `info`/`warn` for stdout/stderr).
#[derive(Debug, Clone, Copy)]
pub enum Severity {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Severity {
    /// Whether the log filter lets lines of this level through (for this module, where
    /// the guest's lines are logged from).
    fn enabled(self) -> bool {
        match self {
            Severity::Trace => tracing::enabled!(tracing::Level::TRACE),
            Severity::Debug => tracing::enabled!(tracing::Level::DEBUG),
            Severity::Info => tracing::enabled!(tracing::Level::INFO),
            Severity::Warn => tracing::enabled!(tracing::Level::WARN),
            Severity::Error => tracing::enabled!(tracing::Level::ERROR),
        }
    }
}

/// One instance's log: attribution and its rate limit.
pub struct GuestLog {
    identity: Identity,
    /// The span the instance was created in (the pipeline's): WASI stdout and stderr are
    /// written from tasks of their own, outside it.
    span: tracing::Span,
    message: Mutex<Current>,
    limiter: DefaultDirectRateLimiter,
    dropped: AtomicU64,
}

impl GuestLog {
    /// A log for one instance of `identity`'s plugin, in the current span.
    pub fn new(identity: Identity) -> Arc<Self> {
        let rate = NonZeroU32::new(LINES_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(BURST).unwrap_or(NonZeroU32::MIN);
        Arc::new(Self {
            identity,
            span: tracing::Span::current(),
            message: Mutex::new(Current::default()),
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            dropped: AtomicU64::new(0),
        })
    }

    /// Attributes the following lines to message `id` and, when it is traced, to its
    /// trace and span (`trace_id`, `span_id`: W3C hex, as trace backends show them).
    pub fn set_message(&self, id: &str, trace: Option<&SpanContext>) {
        let mut current = crate::lock::lock(&self.message);
        current.id.clear();
        current.id.push_str(id);
        current.trace = trace.map(|t| (t.trace_id_hex(), t.span_id_hex()));
    }

    /// Logs one line, unless the instance is over its rate. A line of a level the log
    /// filter drops (a handler's `debug` under the default `info`) is not counted against
    /// the rate: it costs nothing and never reports lines as dropped.
    pub fn line(&self, severity: Severity, source: &'static str, text: &str) {
        if !severity.enabled() {
            return;
        }
        let text = truncate(text.trim_end(), MAX_LINE);
        if text.is_empty() {
            return;
        }
        if self.limiter.check().is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let _span = self.span.enter();
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        let Identity { digest, source_map } = &self.identity;
        let mapped;
        let text = match source_map {
            Some(map) => {
                mapped = map.rewrite(text);
                mapped.as_str()
            }
            None => text,
        };
        let Current { id, trace } = crate::lock::lock(&self.message).clone();
        let (trace_id, span_id) = match &trace {
            Some((t, s)) => (Some(display(t)), Some(display(s))),
            None => (None, None),
        };
        if dropped > 0 {
            tracing::warn!(plugin = %digest, dropped, "plugin log over {LINES_PER_SECOND} lines/s: lines were dropped");
        }
        match severity {
            Severity::Trace => {
                tracing::trace!(plugin = %digest, message_id = %id, trace_id, span_id, source, "{text}")
            }
            Severity::Debug => {
                tracing::debug!(plugin = %digest, message_id = %id, trace_id, span_id, source, "{text}")
            }
            Severity::Info => {
                tracing::info!(plugin = %digest, message_id = %id, trace_id, span_id, source, "{text}")
            }
            Severity::Warn => {
                tracing::warn!(plugin = %digest, message_id = %id, trace_id, span_id, source, "{text}")
            }
            Severity::Error => {
                tracing::error!(plugin = %digest, message_id = %id, trace_id, span_id, source, "{text}")
            }
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A guest's stdout or stderr, split into lines for the log.
pub struct GuestOutput {
    log: Arc<GuestLog>,
    source: &'static str,
    severity: Severity,
}

impl GuestOutput {
    /// The guest's stdout (logged at info).
    pub fn stdout(log: Arc<GuestLog>) -> Self {
        Self {
            log,
            source: "stdout",
            severity: Severity::Info,
        }
    }

    /// The guest's stderr (logged at warn: it is where Rust panics go).
    pub fn stderr(log: Arc<GuestLog>) -> Self {
        Self {
            log,
            source: "stderr",
            severity: Severity::Warn,
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.log.clone(),
            source: self.source,
            severity: self.severity,
            pending: Vec::new(),
        })
    }
}

struct LineWriter {
    log: Arc<GuestLog>,
    source: &'static str,
    severity: Severity,
    pending: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self, line: &[u8]) {
        self.log
            .line(self.severity, self.source, &String::from_utf8_lossy(line));
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut rest = buf;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(newline);
            if self.pending.is_empty() {
                self.emit(line);
            } else {
                let mut full = std::mem::take(&mut self.pending);
                full.extend_from_slice(line);
                self.emit(&full);
            }
            rest = &tail[1..];
        }
        // Keep a partial line for the next write, within bounds.
        let room = MAX_LINE.saturating_sub(self.pending.len());
        self.pending
            .extend_from_slice(&rest[..rest.len().min(room)]);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler that logs at debug for every entry, under an info filter, uses none of
    /// its rate: the info line after 1,000 of them is logged and nothing is dropped.
    #[test]
    fn filtered_lines_do_not_count_against_the_rate() {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let log = GuestLog::new(Identity {
                digest: Arc::from("sha256:test"),
                source_map: None,
            });
            for i in 0..1000 {
                log.line(Severity::Debug, "log", &format!("handling {i}"));
            }
            assert_eq!(log.dropped.load(Ordering::Relaxed), 0);
            for _ in 0..BURST + 10 {
                log.line(Severity::Info, "log", "counted");
            }
            assert!(
                log.dropped.load(Ordering::Relaxed) >= 10,
                "info lines still count"
            );
        });
    }
}
