//! One call of a batch export (`handle-batch` or `handle-packed`) for a share of entries.

use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::Func;

use super::Instance;
use super::call::{failed, within};
use crate::message::{Entry, HandlerError, Output};
use crate::wasm::bindings::{self, Failure, Message};
use crate::wasm::host::HostState;
use crate::wasm::{BatchExport, packed};

/// At most this many per-entry timeouts for one `handle-batch` call.
const BATCH_TIMEOUT_FACTOR: u32 = 2;

pub(super) type ListsParams<'a> = (&'a [Message],);
pub(super) type ListsResults = (Vec<Result<Vec<bindings::Output>, Failure>>,);
pub(super) type PackedParams<'a> = (&'a [u8],);
pub(super) type PackedResults = (Vec<u8>,);

/// A batch call's results: `Err` when the call failed (a trap, the deadline), `Ok(Err)`
/// when it returned something that is not one result per entry (the reason).
type BatchCall = wasmtime::Result<Result<Vec<Result<Vec<Output>, Failure>>, String>>;

impl Instance {
    /// The batch call behind [`Instance::handle_batch`].
    pub(super) async fn call_batch(
        &mut self,
        stream: &str,
        entries: &mut [Entry],
    ) -> Result<Vec<Result<Vec<Output>, HandlerError>>, HandlerError> {
        self.throttled = false;
        let n = entries.len();
        let limits = self.limits;
        // The share must fit in what is left of the instance's `instance_reuse`.
        self.ensure_live(n as u64).await?;
        let Some(live) = self.live.as_mut() else {
            unreachable!("made live just above");
        };
        let Some((kind, func)) = live.batch else {
            return Err(HandlerError::Trap("no batch export".into()));
        };
        let scale = u32::try_from(n)
            .unwrap_or(u32::MAX)
            .min(BATCH_TIMEOUT_FACTOR);
        let timeout = limits.timeout.saturating_mul(scale);
        // Log lines of the call go to its first entry (and its trace).
        live.arm(&limits, timeout, n as u64, &entries[0], None);
        live.entry(stream, &entries[0]);
        let called = match kind {
            BatchExport::Lists => call_lists(func, &mut live.store, stream, entries, timeout).await,
            BatchExport::Packed => {
                call_packed(func, &mut live.store, stream, entries, timeout).await
            }
        };
        self.throttled = live.store.data().throttled;
        match called {
            Ok(Ok(results)) => Ok(self.checked_all(results)),
            Ok(Err(malformed)) => {
                self.live = None;
                Err(HandlerError::Trap(malformed))
            }
            Err(error) => Err(match self.trapped(error) {
                // The call's own budget, not the per-entry one.
                HandlerError::Timeout(_) => HandlerError::Timeout(timeout),
                other => other,
            }),
        }
    }

    /// Each entry's result, its outputs checked against the limits; an instance that
    /// produced too much for any entry is replaced after the batch.
    fn checked_all(
        &mut self,
        results: Vec<Result<Vec<Output>, Failure>>,
    ) -> Vec<Result<Vec<Output>, HandlerError>> {
        let mut replace = false;
        let results = results
            .into_iter()
            .map(|result| match result {
                Ok(outputs) => self
                    .check_outputs(&outputs)
                    .map(|()| outputs)
                    .map_err(|breach| {
                        replace = true;
                        HandlerError::Limit(breach)
                    }),
                Err(failure) => Err(failed(failure)),
            })
            .collect();
        if replace {
            self.live = None;
        }
        results
    }
}

/// Calls `handle-batch` (world `batch-handler`): the entries' IDs and fields are lent to
/// the call and given back after it.
async fn call_lists(
    func: Func,
    store: &mut Store<HostState>,
    stream: &str,
    entries: &mut [Entry],
    timeout: Duration,
) -> BatchCall {
    let n = entries.len();
    // Checked at instantiation: cannot fail.
    let typed = func.typed::<ListsParams<'_>, ListsResults>(&*store)?;
    let messages: Vec<Message> = entries
        .iter_mut()
        .map(|entry| Message {
            source: stream.to_owned(),
            id: std::mem::take(&mut entry.id),
            fields: std::mem::take(&mut entry.fields),
            attempt: entry.attempt,
        })
        .collect();
    let result = within(timeout, typed.call_async(&mut *store, (&messages,))).await;
    for (entry, message) in entries.iter_mut().zip(messages) {
        entry.id = message.id;
        entry.fields = message.fields;
    }
    let (results,) = result?;
    if results.len() != n {
        return Ok(Err(format!(
            "handle-batch returned {} results for {n} messages",
            results.len()
        )));
    }
    Ok(Ok(results
        .into_iter()
        .map(|r| r.map(|outputs| outputs.into_iter().map(Output::from).collect()))
        .collect()))
}

/// Calls `handle-packed` (world `packed-batch-handler`): the entries go encoded.
async fn call_packed(
    func: Func,
    store: &mut Store<HostState>,
    stream: &str,
    entries: &mut [Entry],
    timeout: Duration,
) -> BatchCall {
    let typed = func.typed::<PackedParams<'_>, PackedResults>(&*store)?;
    let messages = packed::encode(stream, entries);
    let (results,) = within(timeout, typed.call_async(&mut *store, (&messages,))).await?;
    Ok(packed::decode(&results, entries.len()).map_err(|e| e.to_string()))
}
