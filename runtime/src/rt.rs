//! The async runtime, in one place.
//!
//! Every call Wharf makes into its executor, timers and sockets goes through
//! this module: spawning tasks, sleeping, deadlines, the clock deadlines are
//! read against, the TCP listener and stream types. Today that runtime is async-std (whose reactor and timers are
//! async-io's). async-std is discontinued upstream in favour of smol, so this
//! module is the one file to change when the runtime moves; no other module may
//! name `async_std` or `async_io`.
//!
//! # The execution model, and why it stays async-std's
//!
//! Connections run as tasks on async-std's global executor (its worker
//! threads, `ASYNC_STD_THREAD_COUNT`), and their sockets and timers are
//! async-io's: a worker with nothing to run drives the reactor itself
//! (`block_on`) when async-io's own reactor thread does not hold it, and
//! the hand-over between the two shows as `futex`, `epoll_pwait`,
//! `timerfd_settime` and eventfd `read` calls. uWebSockets avoids them
//! with one thread per core that polls epoll and runs its connections.
//!
//! A mode like it was considered for issue 14 (each worker an
//! async-executor `LocalExecutor` inside async-io's `block_on`, accepting
//! from a shared listener) but not built, because what it would remove
//! is not Wharf's: with the driver's own wake-ups and failed reads gone
//! (see `connection/driver.rs`), Wharf makes as many of these calls as a
//! bare async-tungstenite server on the same runtime. Counted with
//! `strace -c -f` on a server with one executor thread pinned to one core,
//! clients on the other (strace slows the server, so the counts depend on
//! the load; the two columns of a row are from one sitting):
//!
//! | per | Wharf | bare async-tungstenite, same 1 KiB buffer |
//! | --- | --- | --- |
//! | echoed message (64 connections, 64 B) | `futex` 0.11, `epoll_pwait` 0.10, `timerfd_settime` 0.10, eventfd `read` 0.10 | 0.12, 0.11, 0.11, 0.11 |
//! | churn cycle (32 clients, client close) | `futex` 1.68, the other three 0.50 each | 1.97, 0.64 each |
//! | churn cycle (server close) | `futex` 2.01, the other three 0.65 each | 2.43, 0.86 each |
//!
//! A thread-per-core mode would have to beat both, and it changes what
//! handlers may assume: a task a handler spawns with `async_std::task`
//! would still run on async-std's threads, so its sends to the connection
//! (through a `Handle`) would cross threads as they do now, while futures
//! of the handler itself would run on the connection's worker, and a
//! handler that blocks would stall every connection of that worker, not
//! one executor thread among several. Until it is built and measured
//! against this table, the runtime stays async-std's.

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
