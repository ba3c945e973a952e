//! The async runtime, in one place.
//!
//! Every call Wharf makes into its executor, timers and sockets goes through
//! this module: spawning tasks, sleeping, deadlines, the clock deadlines are
//! read against, the TCP listener and stream types. Today that runtime is async-std (whose reactor and timers are
//! async-io's). async-std is discontinued upstream in favour of smol, so this
//! module is the one file to change when the runtime moves; no other module may
//! name `async_std` or `async_io`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub(crate) use async_std::net::{TcpListener, TcpStream};

/// The clock a server's deadlines are read against: the upgrade and close
/// timeouts, the policy clocks (idle, heartbeat, session, slow consumer)
/// and the handler grace. One per server, shared by its connections.
///
/// It is `Instant::now()`. With the `test-util` feature it also holds an
/// offset that `wharf::test::TestServer::advance` moves forward, so a test
/// can pass 30 minutes of a session's lifetime in no time; without the
/// feature it is a zero-sized value and `now` is `Instant::now()` itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock {
    /// Nanoseconds added to `Instant::now()`.
    #[cfg(feature = "test-util")]
    offset: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Clock {
    /// The current instant, by this clock.
    #[cfg(not(feature = "test-util"))]
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        Instant::now()
    }

    /// The current instant, by this clock: `Instant::now()` plus how far
    /// the clock was advanced.
    #[cfg(feature = "test-util")]
    pub(crate) fn now(&self) -> Instant {
        let now = Instant::now();
        let offset = self.offset.load(std::sync::atomic::Ordering::Acquire);
        now.checked_add(Duration::from_nanos(offset)).unwrap_or(now)
    }

    /// Moves this clock forward by `by` (saturating at about 584 years).
    #[cfg(feature = "test-util")]
    pub(crate) fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self.offset.fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |offset| Some(offset.saturating_add(nanos)),
        );
    }
}

/// A spawned task whose output can be awaited; dropping it detaches the
/// task, which runs on.
#[cfg(feature = "test-util")]
pub(crate) type JoinHandle<T> = async_std::task::JoinHandle<T>;

/// Runs `future` on the executor in the background and returns a handle
/// to its output.
#[cfg(feature = "test-util")]
pub(crate) fn spawn_joinable<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    async_std::task::spawn(future)
}

/// Bounded channels between tasks (the cluster's publisher queue and the
/// answers to its requests).
#[cfg(feature = "cluster")]
pub(crate) use async_std::channel::{bounded, Receiver, Sender};

/// Runs `future` on the executor in the background; it is detached.
pub(crate) fn spawn<F>(future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    drop(async_std::task::spawn(future));
}

/// Binds a TCP listener to the first address that works.
pub(crate) async fn bind(addrs: Vec<SocketAddr>) -> io::Result<TcpListener> {
    TcpListener::bind(&addrs[..]).await
}

/// Runs `future` for at most `limit`; `None` when the limit ran out first.
pub(crate) async fn timeout<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    async_std::future::timeout(limit, future).await.ok()
}

/// Waits for `duration`.
pub(crate) async fn sleep(duration: Duration) {
    async_std::task::sleep(duration).await;
}

/// Resolves when the process receives SIGINT or SIGTERM (Ctrl-C and
/// `kill`, what service managers send to stop a program). Fails when signal
/// handlers cannot be installed.
pub(crate) async fn termination_signal() -> io::Result<()> {
    use async_signal::{Signal, Signals};
    use futures_util::StreamExt;

    let mut signals = Signals::new([Signal::Int, Signal::Term])?;
    match signals.next().await {
        Some(result) => result.map(drop),
        None => Ok(()),
    }
}
