//! The metrics listener (`Server::metrics_addr`): a plain HTTP/1.1 port of
//! its own that answers `GET` with the counters in the Prometheus text
//! format, so they need not be served on the public port.
//!
//! Each scrape reads one request head (within the upgrade timeout and the
//! request size limit), answers it and closes; at most [`MAX_SCRAPES`] are
//! served at once, and sockets beyond that are closed at accept. Nothing
//! here is counted in the server's own metrics or goes through admission:
//! this port is for the operator's scraper. This module never touches a
//! WebSocket.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::state::Inner;
use crate::http::{self, Head, Rejection};
use crate::net::Stream;
use crate::rt::{self, TcpListener, TcpStream};

/// Scrapes served at once; more are closed at accept.
const MAX_SCRAPES: usize = 64;

/// The content type of the Prometheus text format.
pub(crate) const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Accepts scrapes until the future is dropped (when `run` returns).
pub(crate) async fn serve(listener: TcpListener, inner: Arc<Inner>) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "metrics accept failed; retrying");
                rt::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_SCRAPES {
            in_flight.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(%peer, "too many scrapes at once; closing");
            continue;
        }
        let inner = Arc::clone(&inner);
        let in_flight = Arc::clone(&in_flight);
        rt::spawn(async move {
            answer(&inner, stream).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Reads one request and answers it: the metrics for a `GET` on the
/// metrics path (any path when none is set), 404 for another path, 405
/// for another method.
async fn answer(inner: &Inner, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let mut stream = Stream::Plain(tcp);
    let config = &inner.config;
    let head = inner
        .timers
        .timeout(
            config.upgrade_timeout,
            http::read_head(&mut stream, config.max_request_bytes),
        )
        .await;
    let request = match head {
        Some(Ok(Head::Complete(request, _))) => request,
        Some(Ok(Head::TooLarge)) => {
            return http::reject(stream, &Rejection::too_large()).await;
        }
        Some(Ok(Head::Malformed)) => {
            return http::reject(stream, &Rejection::malformed("Bad request\n")).await;
        }
        Some(Ok(Head::Eof) | Err(_)) | None => return,
    };
    let path_matches = config
        .metrics_path
        .as_deref()
        .is_none_or(|path| path == request.path);
    if !path_matches {
        return http::reject(stream, &Rejection::not_found()).await;
    }
    if request.method != "GET" {
        return http::reject(stream, &Rejection::method_not_allowed()).await;
    }
    http::send_and_close(stream, &metrics_response(inner)).await;
}

/// The `200` with the counters.
pub(crate) fn metrics_response(inner: &Inner) -> Vec<u8> {
    let body = inner.stats().to_prometheus();
    http::response(200, "OK", &[], body.as_bytes(), PROMETHEUS)
}
