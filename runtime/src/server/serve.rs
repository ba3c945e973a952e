//! One accepted socket, from its first byte to its close handler: reading
//! the request, deciding between a refusal, a page, the metrics and an
//! upgrade, then running the connection in a task of its own.
//!
//! This module never writes a WebSocket frame; once the 101 is written the
//! socket belongs to the driver.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::WebSocketStream;
use futures_util::AsyncWriteExt;

use super::admission::Permit;
use super::routes::{Endpoint, Page, Route};
use super::shutdown::Seat;
use super::state::Inner;
use crate::connection::close::{self, CloseOutcome};
use crate::connection::conn::Conn;
use crate::connection::driver::Driver;
use crate::connection::handle::{ConnInfo, Shared};
use crate::extensions::Extensions;
use crate::http::request::Request;
use crate::http::{self, Head, Query, RejectReason, Rejection};
use crate::rt::{self, TcpStream};

/// What to do with a socket once its request head is read.
enum Decision<'a> {
    /// A valid upgrade for a route. Leaves the upgrade step only once the
    /// route's upgrade handler accepted it and the 101 is written.
    Upgrade(&'a Arc<Route>, Box<Request>, http::Upgrade, Vec<u8>),
    Page(&'a Page, bool),
    Metrics,
    Reject(Rejection),
}

fn decide(inner: &Inner, head: Head, peer: SocketAddr) -> Option<Decision<'_>> {
    let (request, rest) = match head {
        Head::Complete(request, rest) => (request, rest),
        Head::TooLarge => return Some(Decision::Reject(Rejection::too_large())),
        Head::Malformed => return Some(Decision::Reject(Rejection::malformed("Bad request\n"))),
        Head::Eof => return None,
    };
    if inner.config.metrics_path.as_deref() == Some(request.path.as_str()) {
        return Some(match request.method.as_str() {
            "GET" => Decision::Metrics,
            _ => Decision::Reject(Rejection::method_not_allowed()),
        });
    }
    let route = match inner.endpoints.get(&request.path) {
        Some(Endpoint::Ws(route)) => route,
        Some(Endpoint::Page(page)) => {
            return Some(match request.method.as_str() {
                "GET" => Decision::Page(page, true),
                "HEAD" => Decision::Page(page, false),
                _ => Decision::Reject(Rejection::method_not_allowed()),
            })
        }
        None => match &inner.fallback {
            Some(route) => route,
            None => return Some(Decision::Reject(Rejection::not_found())),
        },
    };
    let upgrade = match http::check_upgrade(&request, &route.subprotocols) {
        Ok(upgrade) => upgrade,
        Err(rejection) => return Some(Decision::Reject(rejection)),
    };
    if !http::origin_allowed(&inner.origins, &request.headers) {
        return Some(Decision::Reject(Rejection::origin()));
    }
    if inner.trigger.is_fired() {
        return Some(Decision::Reject(Rejection::shutting_down()));
    }
    let request = Box::new(Request {
        peer,
        query: request
            .query
            .as_deref()
            .map(Query::parse)
            .unwrap_or_default(),
        path: request.path,
        headers: request.headers,
        extensions: Default::default(),
        state: Arc::clone(&inner.state),
    });
    Some(Decision::Upgrade(route, request, upgrade, rest))
}

/// One accepted socket, from the first byte to the close handler.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    mut stream: TcpStream,
    peer: SocketAddr,
    permit: Permit,
) {
    // Small frames (echoes, Close frames) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let upgrading = async {
        let head = http::read_head(&mut stream, inner.config.max_request_bytes).await;
        let decision = decide(&inner, head.ok()?, peer)?;
        let Decision::Upgrade(route, request, upgrade, _) = &decision else {
            return Some((decision, None));
        };
        if let Err(rejection) = route.handler.upgrade(request).await {
            return Some((Decision::Reject(rejection), None));
        }
        // The shutdown may have begun while the upgrade handler ran. Take a
        // place in the drain's list first, then look again: a drain that
        // started before this look waits for the place (see `Live`).
        let seat = inner.live.reserve();
        if inner.trigger.is_fired() {
            return Some((Decision::Reject(Rejection::shutting_down()), None));
        }
        stream
            .write_all(&http::switching_protocols(upgrade))
            .await
            .ok()?;
        Some((decision, Some(seat)))
    };
    let (decision, seat) = match inner
        .timers
        .timeout(inner.config.upgrade_timeout, upgrading)
        .await
    {
        Some(Some(decided)) => decided,
        Some(None) => return,
        None => {
            inner.metrics.rejected(RejectReason::UpgradeTimeout);
            tracing::debug!(%peer, "upgrade timed out; dropping the socket");
            return;
        }
    };
    match decision {
        Decision::Metrics => {
            let body = inner.stats().to_prometheus();
            let response = http::response(
                200,
                "OK",
                &[],
                body.as_bytes(),
                "text/plain; version=0.0.4; charset=utf-8",
            );
            http::send_and_close(stream, &response).await;
        }
        Decision::Reject(rejection) => {
            let reason = rejection.reason();
            inner.metrics.rejected(reason);
            if rejection.status() != rejection.requested_status() {
                tracing::warn!(%peer, status = rejection.requested_status(), "upgrade handler rejected with a status outside 400-599; sending 500");
            }
            tracing::debug!(%peer, status = rejection.status(), %reason, "rejected before upgrade");
            http::reject(stream, &rejection).await;
        }
        Decision::Page(page, with_body) => {
            let mut response = http::response(200, "OK", &[], &page.body, &page.content_type);
            if !with_body {
                // HEAD: the head GET would send, Content-Length included.
                response.truncate(response.len() - page.body.len());
            }
            http::send_and_close(stream, &response).await;
        }
        Decision::Upgrade(route, request, upgrade, rest) => {
            // The upgrade step wrote the 101 holding a seat; never without.
            let Some(seat) = seat else {
                return;
            };
            let ws = WebSocketStream::from_partially_read(
                stream,
                rest,
                Role::Server,
                Some(inner.ws_config),
            )
            .await;
            let Request {
                path,
                query,
                headers,
                extensions,
                ..
            } = *request;
            let info = ConnInfo {
                id: inner.next_conn_id(),
                peer,
                path: Arc::from(path),
                query,
                headers,
                subprotocol: upgrade.subprotocol,
            };
            let extensions = extensions.into_inner().unwrap_or_else(|p| p.into_inner());
            // The connection gets a task of its own, sized for the
            // connection alone: this task's state machine also holds the
            // upgrade step's, and an idle connection would carry both.
            rt::spawn(connection_task(
                Arc::clone(&inner),
                Arc::clone(route),
                ws,
                info,
                extensions,
                permit,
                seat,
            ));
        }
    }
}

/// The task of one upgraded connection: from the registry to the close
/// handler.
///
/// The connection is set up before the task's future exists, so that the
/// future holds it once (an `async fn` would also keep its arguments):
/// after the read buffer, the task is most of an idle connection's memory.
fn connection_task(
    inner: Arc<Inner>,
    route: Arc<Route>,
    ws: WebSocketStream<TcpStream>,
    info: ConnInfo,
    extensions: Extensions,
    permit: Permit,
    seat: Seat<'_>,
) -> impl Future<Output = ()> + Send + 'static {
    let shared = Arc::new(Shared::new(info, inner.config.send_queue, extensions));
    let conn = Conn::new(shared, inner.registry.clone(), Arc::clone(&inner.state));
    seat.fill(conn.handle());
    inner.registry.insert(conn.handle());
    inner.metrics.opened();
    if inner.trigger.is_fired() {
        // Upgraded while the drain began: it may have missed this one.
        let config = &inner.config;
        if let Ok((code, reason)) = close::validate(config.shutdown_code, &config.shutdown_reason) {
            conn.shared.request_close(code, reason);
        }
    }
    tracing::debug!(id = %conn.id(), peer = %conn.peer_addr(), path = %conn.path(), "connection open");
    async move {
        // The permit holds the socket's place in the limits until the end.
        let _permit = permit;
        let guard = Release(&inner, &conn);
        let (closed, dropped) =
            Driver::new(&conn, route.handler.events(), &*inner, ws, inner.limits).await;
        if inner.trigger.is_fired() {
            inner.tally.record(closed.outcome, dropped);
        }
        // The close handler gets the handler grace too: a stuck one must not
        // keep the connection's data and its place in a drain forever.
        let grace = inner.config.handler_grace;
        let close = route.handler.close(&conn, &closed);
        if inner.timers.timeout(grace, close).await.is_none() {
            tracing::warn!(
                id = %conn.id(),
                path = %conn.path(),
                grace_ms = grace.as_millis() as u64,
                "close handler still running after the handler grace; dropping it"
            );
            inner.metrics.handler_abandoned();
        }
        drop(guard);
    }
}

/// Releases a connection's server-side state when its task ends, including
/// when a handler panics or the task is dropped mid-way: `close()` callers
/// are released, the registry entry and per-connection data are dropped,
/// and a drain waiting for the task is told.
struct Release<'a>(&'a Inner, &'a Conn);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let Release(inner, conn) = *self;
        // The driver normally ended the connection (and left the registry)
        // already; only a task cut short still has both to do.
        conn.registry().remove(conn.id());
        let _ = conn.shared.finish(CloseOutcome::PeerGone);
        conn.shared.clear_waker();
        let data = std::mem::take(&mut *conn.extensions());
        drop(data);
        inner.live.remove(conn.id());
    }
}
