//! One call of `handle` for one entry: the entry's fields are lent to the guest and given
//! back, whatever the outcome.

use std::time::Duration;

use super::{DeadlineExceeded, Instance, Live};
use crate::message::{Entry, HandlerError, Output};
use crate::state::EntryState;
use crate::wasm::bindings::{Failure, Message};
use crate::wasm::limits::Limits;

impl Instance {
    /// Calls `handle` for `entry` of input stream `stream`, with its handler state (if
    /// any) lent to the call in `state` and given back after it.
    pub(super) async fn call(
        &mut self,
        stream: &str,
        entry: &mut Entry,
        state: &mut Option<EntryState>,
    ) -> Result<Vec<Output>, HandlerError> {
        self.throttled = false;
        refuse_raw_names(entry)?;
        self.follow_reload();
        self.ensure_live(1).await?;
        let limits = self.limits;
        let Some(live) = self.live.as_mut() else {
            unreachable!("made live just above");
        };
        live.arm(&limits, limits.timeout, 1, entry, state.take());
        live.entry(stream, entry);
        let message = Message {
            source: stream.to_owned(),
            id: std::mem::take(&mut entry.id),
            fields: std::mem::take(&mut entry.fields),
            attempt: entry.attempt,
        };
        // The epoch deadline stops a guest running Wasm; this stops one blocked in a host
        // call (a WASI sleep or poll) that no epoch tick can interrupt.
        let call = live.handler.call_handle(&mut live.store, &message);
        let result = within(limits.timeout, call).await;
        live.end_requests();
        self.throttled = live.store.data().throttled;
        *state = live.store.data_mut().state.take();
        let requests = live.requests();
        if let Some(trace) = &mut entry.trace {
            trace.requests.extend(requests);
        }
        entry.id = message.id;
        entry.fields = message.fields;
        match result {
            Ok(Ok(outputs)) => self.checked(outputs.into_iter().map(Output::from).collect()),
            Ok(Err(failure)) => Err(failed(failure)),
            Err(error) => Err(self.trapped(error)),
        }
    }

    /// `outputs` if within the limits; an instance that produced too much may be in a
    /// bad way, and is replaced.
    pub(super) fn checked(&mut self, outputs: Vec<Output>) -> Result<Vec<Output>, HandlerError> {
        match self.check_outputs(&outputs) {
            Ok(()) => Ok(outputs),
            Err(breach) => {
                self.live = None;
                Err(HandlerError::Limit(breach))
            }
        }
    }

    /// The call failed as a whole (a trap, a limit, the deadline): a trapped instance may
    /// hold broken state and is never called again.
    pub(super) fn trapped(&mut self, error: wasmtime::Error) -> HandlerError {
        let breach = self
            .live
            .take()
            .and_then(|mut l| l.store.data_mut().limiter.breach.take());
        self.classify(error, breach)
    }
}

impl Live {
    /// Sets the store up for a call of `entries` entries, logged under `first`: the
    /// deadline, throttling, fuel (per entry, times `entries`) and the handler state.
    pub(super) fn arm(
        &mut self,
        limits: &Limits,
        timeout: Duration,
        entries: u64,
        first: &Entry,
        state: Option<EntryState>,
    ) {
        self.handled += entries;
        let data = self.store.data_mut();
        let now = std::time::Instant::now();
        data.deadline = now + timeout;
        // Throttling is about one long call, whatever it handles.
        data.ran_ticks = 0;
        data.throttled = false;
        data.log
            .set_message(&first.id, first.trace.as_ref().map(|t| &t.span));
        data.state = state;
        if let Some(fuel) = limits.fuel {
            // Cannot fail: fuel is on in the engine whenever a pipeline sets a budget.
            let _ = self.store.set_fuel(fuel.saturating_mul(entries));
        }
    }
}

impl Live {
    /// What the call of `entry` of `stream` gives its requests and its
    /// `idempotency-key`: the stream, the entry's key, and its `handle` span when traced.
    pub(super) fn entry(&mut self, stream: &str, entry: &Entry) {
        let data = self.store.data_mut();
        if data.keys.stream != stream {
            data.keys.stream = stream.to_owned();
        }
        if data.hooks.outbound.is_none() {
            return;
        }
        data.hooks.call.ended = tokio_util::sync::CancellationToken::new();
        let spans = data.hooks.call.spans.get_or_insert_with(Default::default);
        crate::lock::lock(spans).clear();
        data.hooks.call.idempotency_key = Some(data.keys.key(&entry.id));
        data.hooks.call.parent = entry.trace.as_ref().filter(|t| t.span.sampled()).map(|t| {
            crate::trace_context::SpanContext {
                span_id: crate::trace_context::child_span_id(t.span.span_id, "handle"),
                ..t.span
            }
        });
    }

    /// Ends the call's requests: those still waiting are abandoned, and responses it did
    /// not read let go of their connections (see `outbound::body`).
    pub(super) fn end_requests(&self) {
        self.store.data().hooks.call.ended.cancel();
    }

    /// The client spans of the requests the last call made.
    pub(super) fn requests(&mut self) -> Vec<crate::trace_context::ClientSpan> {
        let spans = &self.store.data().hooks.call.spans;
        spans
            .as_ref()
            .map(|s| std::mem::take(&mut *crate::lock::lock(s)))
            .unwrap_or_default()
    }
}

/// The handler's own failure, as the pipeline knows it.
pub(super) fn failed(failure: Failure) -> HandlerError {
    match failure {
        Failure::Retry(reason) => HandlerError::Retry(reason),
        Failure::Reject(reason) => HandlerError::Reject(reason),
    }
}

/// WIT field names are strings: two different names could reach the handler as one. Such
/// an entry is refused whole; its dead letter keeps every byte.
fn refuse_raw_names(entry: &Entry) -> Result<(), HandlerError> {
    let Some(raw) = &entry.raw_names else {
        return Ok(());
    };
    let (index, name) = raw
        .iter()
        .enumerate()
        .find(|(_, n)| std::str::from_utf8(n).is_err())
        .map(|(i, n)| (i, n.iter().map(|b| format!("{b:02x}")).collect::<String>()))
        .unwrap_or_default();
    Err(HandlerError::Reject(format!(
        "field name #{} (hex {name}) is not UTF-8: handlers see names as strings, so the entry is not handed to one; its bytes are kept in the dead letter",
        index + 1
    )))
}

/// `call`, failed with [`DeadlineExceeded`] if it runs past `timeout`.
pub(super) async fn within<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(wasmtime::Error::new(DeadlineExceeded)))
}

// The generated output type carries the same data as the domain type.
impl From<crate::wasm::bindings::Output> for Output {
    fn from(o: crate::wasm::bindings::Output) -> Self {
        Output {
            stream: o.target,
            fields: o.fields,
            raw_names: None,
        }
    }
}
