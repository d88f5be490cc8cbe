//! Waiting on observable state: [`eventually`] for what must happen, [`stays`] for what
//! must not happen within a window. A test never sleeps for "it has happened by now".

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] and [`stays`] look again: every 20 ms, or, after a check
/// that took longer (a tally of thousands of entries), as long again as it took, so that
/// a wait never keeps Redis busier than the daemon it waits on.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns `Some`, failing after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let checked = Instant::now();
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL.max(checked.elapsed())).await;
    }
}

/// Polls `check` until it returns `Ok`, failing after `timeout` with `what` and the last
/// `Err`: what the state was when the wait gave up.
pub async fn eventually_ok<T, E, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let checked = Instant::now();
        match check().await {
            Ok(value) => return value,
            Err(state) => assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for: {what}; last: {state}"
            ),
        }
        tokio::time::sleep(POLL.max(checked.elapsed())).await;
    }
}

/// Checks `holds` through `window`, failing with `what` as soon as it does not: the one
/// way a test asserts that something does *not* happen (within that window).
pub async fn stays<F, Fut>(what: &str, window: Duration, mut holds: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        assert!(
            holds().await,
            "stopped holding after {:?} of {window:?}: {what}",
            start.elapsed()
        );
        if start.elapsed() >= window {
            return;
        }
        tokio::time::sleep(
            POLL.max(window / 20)
                .min(window.saturating_sub(start.elapsed())),
        )
        .await;
    }
}
