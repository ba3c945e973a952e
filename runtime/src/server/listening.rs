//! A bound server: the accept loop with its admission limits, the handle
//! that reaches the server from other tasks, and graceful shutdown.
//!
//! Each accepted socket is admitted or refused here from its address alone
//! (before a byte of its request is read), then handed to `serve.rs`; a
//! socket from a trusted proxy is admitted under the overall limit only,
//! its per-IP checks left to `serve.rs` once its client is known. The
//! metrics listener, when there is one, runs beside the accept loop
//! (`scrape.rs`). This module never parses a request or touches WebSocket
//! frames.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{self, Either};

use super::metrics::Stats;
use super::scrape;
use super::serve::serve;
use super::shutdown;
use super::state::Inner;
use crate::connection::close;
use crate::connection::close::CloseSummary;
use crate::connection::registry::Registry;
use crate::error::Result;
use crate::http::{self, RejectReason, Rejection};
use crate::net::Stream;
use crate::rt::{self, TcpListener, TcpStream};

/// A bound server, ready to [`run`](Self::run).
#[derive(Debug)]
pub struct Listening {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// The metrics listener and its address, with `Server::metrics_addr`.
    metrics: Option<(TcpListener, SocketAddr)>,
    inner: Arc<Inner>,
}

impl Listening {
    pub(crate) fn new(
        listener: TcpListener,
        local_addr: SocketAddr,
        metrics: Option<(TcpListener, SocketAddr)>,
        inner: Arc<Inner>,
    ) -> Self {
        Listening {
            listener,
            local_addr,
            metrics,
            inner,
        }
    }

    /// The address of the metrics listener (see
    /// [`Server::metrics_addr`](crate::Server::metrics_addr)), with the
    /// real port when bound to port 0; `None` without one.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let listening = wharf::Server::new().metrics_addr("127.0.0.1:0").bind("127.0.0.1:0").await?;
    /// let scrape_at = listening.metrics_addr().expect("a metrics listener");
    /// # let _ = scrape_at;
    /// # Ok(()) }
    /// ```
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The address the listener is bound to (with the real port when bound
    /// to port 0).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let listening = wharf::Server::new().bind("127.0.0.1:0").await?;
    /// let port = listening.local_addr().port(); // the port picked for :0
    /// # let _ = port;
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The registry of live connections; clones stay valid while the server
    /// runs.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let listening = wharf::Server::new().bind("127.0.0.1:0").await?;
    /// let registry = listening.registry();
    /// async_std::task::spawn(listening.run());
    /// // later, from an admin task:
    /// let online = registry.count();
    /// # let _ = online;
    /// # Ok(()) }
    /// ```
    pub fn registry(&self) -> Registry {
        self.inner.registry.clone()
    }

    /// A clonable handle to the running server: counters, registry and the
    /// shutdown trigger.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let listening = wharf::Server::new().bind("127.0.0.1:0").await?;
    /// let server = listening.handle();
    /// async_std::task::spawn(listening.run());
    /// server.shutdown(); // a deploy: close everything with 1001 and return
    /// # Ok(()) }
    /// ```
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            inner: Arc::clone(&self.inner),
            local_addr: self.local_addr,
            metrics_addr: self.metrics_addr(),
        }
    }

    /// Starts a graceful shutdown when the process receives SIGINT (Ctrl-C)
    /// or SIGTERM. Call before [`run`](Self::run); a second signal during
    /// the drain does not cut it short (the drain is bounded anyway).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let summary = wharf::Server::new()
    ///     .bind("127.0.0.1:8080")
    ///     .await?
    ///     .shutdown_on_signals()
    ///     .run()
    ///     .await?;
    /// tracing::info!(clean = summary.clean, dropped = summary.dropped, "bye");
    /// # Ok(()) }
    /// ```
    pub fn shutdown_on_signals(self) -> Self {
        let handle = self.handle();
        rt::spawn(async move {
            match rt::termination_signal().await {
                Ok(()) => {
                    tracing::info!("termination signal received; shutting down");
                    handle.shutdown();
                }
                Err(err) => tracing::error!(error = %err, "cannot listen for termination signals"),
            }
        });
        self
    }

    /// Accepts connections until a graceful shutdown is triggered (see
    /// [`ServerHandle::shutdown`] and [`shutdown_on_signals`](Self::shutdown_on_signals)),
    /// then drains and returns how the connections ended.
    ///
    /// The shutdown stops accepting at once (the listener is closed, and
    /// requests already being read are answered with 503), closes every
    /// connection with the [`shutdown_close`](crate::Server::shutdown_close)
    /// code and reason (1001 "Going away" by default) after what was queued
    /// before it, waits for the closing handshakes up to the
    /// [`drain_timeout`](crate::Server::drain_timeout), then drops the
    /// connections still open.
    ///
    /// Admission limits are applied here, per accepted socket, before its
    /// request is read: [`max_connections`](crate::Server::max_connections)
    /// (503), [`max_connections_per_ip`](crate::Server::max_connections_per_ip)
    /// and [`connect_rate`](crate::Server::connect_rate) (429); for a socket
    /// from a [trusted proxy](crate::Server::trusted_proxies), the per-IP
    /// two once its client is known. Over TLS these refusals drop the
    /// socket without a response. The metrics listener, if any, serves
    /// until this returns.
    /// A failed `accept` (for example too many open files) is logged and
    /// retried after a short pause rather than ending the server.
    ///
    /// Dropping this future stops accepting without closing anything; each
    /// connection still finishes its own life.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let summary = wharf::Server::new()
    ///     .bind("127.0.0.1:9001")
    ///     .await?
    ///     .shutdown_on_signals()
    ///     .run()
    ///     .await?;
    /// tracing::info!(clean = summary.clean, dropped = summary.dropped, "stopped");
    /// # Ok(()) }
    /// ```
    pub async fn run(self) -> Result<CloseSummary> {
        let Listening {
            listener,
            local_addr,
            metrics,
            inner,
        } = self;
        let serving = serve_until_drained(listener, local_addr, &inner);
        match metrics {
            None => serving.await,
            Some((listener, _)) => {
                let scraping = scrape::serve(listener, Arc::clone(&inner));
                match future::select(Box::pin(serving), Box::pin(scraping)).await {
                    Either::Left((summary, _)) => summary,
                    Either::Right(((), serving)) => serving.await,
                }
            }
        }
    }
}

/// The accept loop, then the drain: [`Listening::run`] without the
/// metrics listener.
async fn serve_until_drained(
    listener: TcpListener,
    local_addr: SocketAddr,
    inner: &Arc<Inner>,
) -> Result<CloseSummary> {
    {
        let mut stop = Box::pin(inner.trigger.fired());
        loop {
            let accepted = match future::select(stop.as_mut(), Box::pin(listener.accept())).await {
                Either::Left(((), _)) => break,
                Either::Right((accepted, _)) => accepted,
            };
            match accepted {
                Ok((stream, peer)) => admit(inner, stream, peer),
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed; retrying");
                    rt::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    drop(listener);
    tracing::info!(addr = %local_addr, "stopped accepting; draining");
    // A cluster node leaves the counts at once; it still relays while its
    // connections close, then leaves for good.
    #[cfg(feature = "cluster")]
    if let Some(node) = &inner.cluster {
        node.leave();
    }
    let config = &inner.config;
    let (code, reason) = close::validate(config.shutdown_code, &config.shutdown_reason)?;
    let summary = shutdown::drain(
        &inner.live,
        &inner.tally,
        code,
        &reason,
        config.drain_timeout,
    )
    .await;
    #[cfg(feature = "cluster")]
    if let Some(node) = &inner.cluster {
        node.shutdown(Duration::from_secs(2)).await;
    }
    Ok(summary)
}

/// A clonable handle to a bound server, valid while it runs: its counters,
/// its registry, and the graceful-shutdown trigger.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> wharf::Result<()> {
/// let listening = wharf::Server::new().bind("127.0.0.1:0").await?;
/// let handle = listening.handle();
/// let server = async_std::task::spawn(listening.run());
/// // ... later, for a deploy:
/// handle.shutdown();
/// let summary = server.await?;
/// assert_eq!(summary.dropped, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ServerHandle {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
}

impl ServerHandle {
    /// Starts a graceful shutdown; see [`Listening::run`]. Idempotent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let listening = wharf::Server::new().bind("127.0.0.1:0").await?;
    /// let server = listening.handle();
    /// let running = async_std::task::spawn(listening.run());
    /// server.shutdown();
    /// let summary = running.await?;
    /// assert_eq!(summary.total(), 0);
    /// # Ok(()) }
    /// ```
    pub fn shutdown(&self) {
        self.inner.trigger.fire();
    }

    /// Whether a shutdown has been triggered.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let listening = wharf::Server::new().bind("127.0.0.1:0").await?;
    /// let server = listening.handle();
    /// assert!(!server.is_shutting_down());
    /// server.shutdown();
    /// assert!(server.is_shutting_down());
    /// # Ok(()) }
    /// ```
    pub fn is_shutting_down(&self) -> bool {
        self.inner.trigger.is_fired()
    }

    /// A snapshot of the server's counters.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let listening = wharf::Server::new().bind("127.0.0.1:0").await?;
    /// let stats = listening.handle().stats();
    /// assert_eq!(stats.active, 0);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// The registry of live connections.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let listening = wharf::Server::new().bind("127.0.0.1:0").await?;
    /// let server = listening.handle();
    /// assert_eq!(server.registry().count(), 0);
    /// # Ok(()) }
    /// ```
    pub fn registry(&self) -> Registry {
        self.inner.registry.clone()
    }

    /// The address the server listens on.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let listening = wharf::Server::new().bind("127.0.0.1:0").await?;
    /// let server = listening.handle();
    /// assert_eq!(server.local_addr(), listening.local_addr());
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's state, for the test kit (`wharf::test`): its clock
    /// and its configuration.
    #[cfg(feature = "test-util")]
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The address of the metrics listener, if the server has one (see
    /// [`Server::metrics_addr`](crate::Server::metrics_addr)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let listening = wharf::Server::new().bind("127.0.0.1:0").await?;
    /// assert_eq!(listening.handle().metrics_addr(), None);
    /// # Ok(()) }
    /// ```
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }
}

/// Rejections written at accept time at once; beyond this, rejected
/// sockets are closed without a response so a flood cannot pile up tasks.
const MAX_REJECTING: usize = 256;

/// Applies the accept-time limits to a new socket and starts serving it.
/// A trusted proxy's socket takes the overall limit here and the per-IP
/// ones under its client's address later (`serve.rs`).
fn admit(inner: &Arc<Inner>, stream: TcpStream, peer: SocketAddr) {
    inner.metrics.accepted();
    let admitted = if inner.proxies.contains(peer.ip()) {
        inner.admission.admit_deferred()
    } else {
        inner.admission.admit(peer.ip())
    };
    match admitted {
        Ok(permit) => rt::spawn(serve(Arc::clone(inner), stream, peer, permit)),
        Err(reason) => {
            inner.metrics.rejected(reason);
            tracing::debug!(%peer, %reason, "rejected at accept");
            reject_early(inner, stream, reason);
        }
    }
}

/// Answers a socket rejected at accept time, without reading its request.
/// Over TLS it is dropped instead: a TLS handshake would cost more than the
/// refusal saves.
fn reject_early(inner: &Arc<Inner>, stream: TcpStream, reason: RejectReason) {
    if inner.is_tls() {
        return; // dropping the stream closes it
    }
    if inner.rejecting.fetch_add(1, Ordering::Relaxed) >= MAX_REJECTING {
        inner.rejecting.fetch_sub(1, Ordering::Relaxed);
        return; // dropping the stream closes it
    }
    let rejection = match reason {
        RejectReason::MaxConnections => Rejection::full(),
        _ => Rejection::busy(reason),
    };
    let inner = Arc::clone(inner);
    rt::spawn(async move {
        http::reject(Stream::Plain(stream), &rejection).await;
        inner.rejecting.fetch_sub(1, Ordering::Relaxed);
    });
}
