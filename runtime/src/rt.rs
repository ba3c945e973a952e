//! The async runtime, in one place.
//!
//! Every call Wharf makes into its executor, timers and sockets goes through
//! this module: spawning tasks, sleeping, deadlines, the TCP listener and
//! stream types. Today that runtime is async-std (whose reactor and timers are
//! async-io's). async-std is discontinued upstream in favour of smol, so this
//! module is the one file to change when the runtime moves; no other module may
//! name `async_std` or `async_io`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

pub(crate) use async_std::net::{TcpListener, TcpStream};

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
