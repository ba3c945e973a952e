//! Timeouts: every await of a test goes through one of these.

use std::future::Future;
use std::time::{Duration, Instant};

/// The longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it takes longer than
/// [`STEP`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    within_for(STEP, what, future).await
}

/// Awaits `future` for at most `limit`.
pub async fn within_for<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match async_std::future::timeout(limit, future).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Waits until `cond` holds, re-checking every millisecond, failing the test
/// after [`STEP`]. For state that has no event to await (a counter read
/// from another task).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > STEP {
            panic!("condition never held within {STEP:?}: {what}");
        }
        async_std::task::sleep(Duration::from_millis(1)).await;
    }
}

/// The next event a handler reported on `events`, failing the test after
/// [`STEP`] or if the server dropped the handler.
pub async fn next_event<T>(events: &async_std::channel::Receiver<T>) -> T {
    within("handler event", events.recv())
        .await
        .expect("the server dropped its handler")
}

/// Awaits the next event on `events` (see [`next_event`]), which must match
/// `$pattern`, and yields `$out`; any other event fails the test, showing it.
/// For the event enums of test handlers:
/// `expect_event!(events, Event::Connected(handle) => handle)`.
#[macro_export]
macro_rules! expect_event {
    ($events:expr, $pattern:pat => $out:expr) => {
        match $crate::next_event($events).await {
            $pattern => $out,
            other => panic!("expected {}, got {other:?}", stringify!($pattern)),
        }
    };
}
