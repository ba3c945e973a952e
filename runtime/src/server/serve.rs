//! One accepted socket, from its first byte to its close handler: the
//! PROXY header and the TLS handshake when the listener has them, reading
//! the request, the client's address behind trusted proxies and its per-IP
//! checks, deciding between a refusal, a page, the metrics and an
//! upgrade, then running the connection in a task of its own. Every step
//! before the `101` runs within the upgrade timeout.
//!
//! This module never writes a WebSocket frame; once the 101 is written the
//! socket belongs to the driver.
//!
//! # What an idle connection costs
//!
//! Heap per upgraded connection that sends nothing, from heaptrack's peak
//! over 10,000 of them (the `memory` bench's idle phase, 5 request
//! headers, `cargo bench -p wharf-benches --bench memory`); "before" is
//! the code before the idle-memory work of issue 14, when the RSS per
//! idle connection was 7.30 KiB; after it, 3.11 KiB.
//!
//! | part | before (B) | after (B) | what it is |
//! | --- | ---: | ---: | --- |
//! | read buffer | 4096 | 1024 | tungstenite's, `read_buffer_size` bytes, kept for the connection's life ([`DEFAULT_READ_BUFFER_SIZE`](crate::DEFAULT_READ_BUFFER_SIZE)) |
//! | the task | 1352 | 935 | async-task's header, async-std's task locals, and the future of `connection_task`: the driver (416 B), the socket's `WebSocketStream` (296 B, held once: the driver borrows it) and the task's own state |
//! | shared connection state | 384 | 317 | `Shared` in its `Arc`: the request's facts, the send queue (empty: no allocation), the close state, the driver's waker, two events |
//! | request headers | 713 | 125 | a `HeaderMap` (index, entries, a `Bytes` per value), now packed in one allocation and rebuilt as a map on the first `Conn::headers` (`http/packed.rs`) |
//! | reactor registration | 216 | 216 | async-io's `Source` for the socket |
//! | async-tungstenite's waker proxies | 128 | 128 | two `Arc`s for the read and write wakers |
//! | registry and drain entries | 151 | 110 | amortised hash-table slots: the registry's entry and route set, the drain's seat, (before) the timers' index by key |
//! | deadline | 78 | 77 | the policy clocks' one entry in the timers' sorted map |
//! | socket, path, executor and reactor slabs, other | 132 | 132 | async-std's `Arc` around the socket, the path's `Arc<str>`, a slot in each slab |
//! | write buffer | 0 | 0 | tungstenite allocates it on the first write, then keeps the capacity of the largest burst written |
//! | extensions | 0 | 0 | an empty map allocates nothing |
//!
//! The RSS figure adds the allocator's own overhead (about 0.1 KiB). What
//! went: three quarters of the read buffer (see its default for the cost
//! in large messages), the header map, the copy of the server's limits
//! each driver held (it borrows them), the socket held twice by the task
//! (once among the future's captured variables, once in the driver), and
//! the timers' hash index (each owner names the deadline it replaces).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::WebSocketStream;
use futures_util::AsyncWriteExt;

use super::admission::Permit;
use super::routes::{Endpoint, Page, Route};
use super::scrape;
use super::shutdown::Seat;
use super::state::Inner;
use crate::connection::close::{self, CloseOutcome};
use crate::connection::conn::Conn;
use crate::connection::driver::Driver;
use crate::connection::handle::{ConnInfo, Shared};
use crate::extensions::Extensions;
use crate::http::request::{Reply, Request};
use crate::http::{self, forwarded, Head, PackedHeaders, Query, RejectReason, Rejection};
use crate::net::proxy_protocol::{self, ProxyError};
use crate::net::Stream;
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

/// A socket's two addresses: its TCP peer, and its client (the same, or
/// the one a trusted proxy names).
#[derive(Debug, Clone, Copy)]
struct Peers {
    tcp: SocketAddr,
    client: SocketAddr,
}

/// How the steps before the upgrade ended.
enum Upgrading<'a> {
    /// Nothing to answer; the socket is dropped (the peer left, or a bad
    /// PROXY header or TLS handshake, counted where it was seen).
    Drop,
    /// An answer to write on the stream; for an upgrade, with its seat in
    /// the drain.
    Answer(Stream, Decision<'a>, Option<Seat<'a>>),
}

fn decide(inner: &Inner, head: Head, peers: Peers) -> Option<Decision<'_>> {
    let (request, rest) = match head {
        Head::Complete(request, rest) => (request, rest),
        Head::TooLarge => return Some(Decision::Reject(Rejection::too_large())),
        Head::Malformed => return Some(Decision::Reject(Rejection::malformed("Bad request\n"))),
        Head::Eof => return None,
    };
    // With a metrics listener of their own, the metrics are not served here.
    if inner.config.metrics_addr.is_none()
        && inner.config.metrics_path.as_deref() == Some(request.path.as_str())
    {
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
    let mut upgrade = match http::check_upgrade(&request, &route.subprotocols) {
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
        peer: peers.client,
        tcp_peer: peers.tcp,
        query: request
            .query
            .as_deref()
            .map(Query::parse)
            .unwrap_or_default(),
        path: request.path,
        headers: request.headers,
        extensions: Default::default(),
        state: Arc::clone(&inner.state),
        reply: Mutex::new(Reply {
            headers: Vec::new(),
            subprotocol: upgrade.subprotocol.take(),
        }),
    });
    Some(Decision::Upgrade(route, request, upgrade, rest))
}

/// The per-IP checks of a socket from a trusted proxy, under its client's
/// address once that is known. Nothing to do for a socket admitted at
/// accept, or while the client is itself a trusted proxy (a proxy is never
/// limited as one client).
fn admit_client(
    inner: &Inner,
    permit: &mut Permit,
    client: SocketAddr,
) -> Result<(), RejectReason> {
    if !permit.is_deferred() || inner.proxies.contains(client.ip()) {
        return Ok(());
    }
    permit.admit_client(client.ip())
}

/// What reading the PROXY header decided.
enum ProxyStep {
    Continue,
    Drop,
    /// The client it names is over a per-IP limit.
    Refuse(RejectReason),
}

/// Reads the PROXY header (with `Server::proxy_protocol`), believes the
/// client it names from a trusted proxy, and runs the client's per-IP
/// checks when its address is final, before the TLS handshake.
async fn read_proxy_header(
    inner: &Inner,
    tcp: &mut TcpStream,
    peers: &mut Peers,
    permit: &mut Permit,
) -> ProxyStep {
    match proxy_protocol::read_header(tcp).await {
        Ok(Some(source)) if inner.proxies.contains(peers.tcp.ip()) => {
            peers.client = SocketAddr::new(source.ip().to_canonical(), source.port());
        }
        Ok(Some(source)) => {
            tracing::debug!(peer = %peers.tcp, claimed = %source, "PROXY header from a peer that is not a trusted proxy; ignored");
        }
        Ok(None) => {}
        Err(ProxyError::Closed) => return ProxyStep::Drop,
        Err(err) => {
            inner.metrics.rejected(RejectReason::ProxyProtocol);
            tracing::debug!(peer = %peers.tcp, error = %err, reason = %RejectReason::ProxyProtocol, "PROXY header refused; dropping the socket");
            return ProxyStep::Drop;
        }
    }
    match admit_client(inner, permit, peers.client) {
        Ok(()) => ProxyStep::Continue,
        Err(reason) => ProxyStep::Refuse(reason),
    }
}

/// The TLS handshake on a TLS listener; the plain stream otherwise.
async fn accept_transport(inner: &Inner, tcp: TcpStream, peers: Peers) -> Option<Stream> {
    #[cfg(feature = "tls")]
    if let Some(tls) = &inner.config.tls {
        return match tls.accept(tcp).await {
            Ok(stream) => Some(stream),
            Err(err) => {
                // A peer that left mid-handshake is not refused, as one
                // that leaves before its request is not.
                if err.kind() != std::io::ErrorKind::UnexpectedEof {
                    inner.metrics.rejected(RejectReason::Tls);
                }
                tracing::debug!(peer = %peers.client, error = %err, reason = %RejectReason::Tls, "TLS handshake failed; dropping the socket");
                None
            }
        };
    }
    let _ = (inner, peers);
    Some(Stream::Plain(tcp))
}

/// One accepted socket, from the first byte to the close handler.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    mut permit: Permit,
) {
    // Small frames (echoes, Close frames) must not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    let mut peers = Peers {
        tcp: peer,
        client: peer,
    };
    let upgrading = async {
        if inner.config.proxy_protocol {
            match read_proxy_header(&inner, &mut tcp, &mut peers, &mut permit).await {
                ProxyStep::Continue => {}
                ProxyStep::Drop => return Upgrading::Drop,
                ProxyStep::Refuse(reason) if inner.is_tls() => {
                    inner.metrics.rejected(reason);
                    tracing::debug!(peer = %peers.client, tcp_peer = %peers.tcp, %reason, "rejected after the PROXY header; dropping the socket");
                    return Upgrading::Drop;
                }
                ProxyStep::Refuse(reason) => {
                    let busy = Decision::Reject(Rejection::busy(reason));
                    return Upgrading::Answer(Stream::Plain(tcp), busy, None);
                }
            }
        }
        let Some(mut stream) = accept_transport(&inner, tcp, peers).await else {
            return Upgrading::Drop;
        };
        let Ok(head) = http::read_head(&mut stream, inner.config.max_request_bytes).await else {
            return Upgrading::Drop;
        };
        if let Head::Complete(request, _) = &head {
            if inner.proxies.contains(peers.client.ip()) {
                peers.client =
                    forwarded::client_addr(&request.headers, peers.client, &inner.proxies);
            }
        }
        // Before anything else is done for the request: the per-IP checks
        // of a client behind a trusted proxy.
        if let Err(reason) = admit_client(&inner, &mut permit, peers.client) {
            return Upgrading::Answer(stream, Decision::Reject(Rejection::busy(reason)), None);
        }
        let Some(decision) = decide(&inner, head, peers) else {
            return Upgrading::Drop;
        };
        let Decision::Upgrade(route, request, upgrade, _) = &decision else {
            return Upgrading::Answer(stream, decision, None);
        };
        if let Err(rejection) = route.handler.upgrade(request).await {
            return Upgrading::Answer(stream, Decision::Reject(rejection), None);
        }
        // The shutdown may have begun while the upgrade handler ran. Take a
        // place in the drain's list first, then look again: a drain that
        // started before this look waits for the place (see `Live`).
        let seat = inner.live.reserve();
        if inner.trigger.is_fired() {
            return Upgrading::Answer(stream, Decision::Reject(Rejection::shutting_down()), None);
        }
        let response = {
            let reply = request.reply.lock().unwrap_or_else(|p| p.into_inner());
            http::switching_protocols(upgrade, &reply)
        };
        if stream.write_all(&response).await.is_err() {
            return Upgrading::Drop;
        }
        Upgrading::Answer(stream, decision, Some(seat))
    };
    let (stream, decision, seat) = match inner
        .timers
        .timeout(inner.config.upgrade_timeout, upgrading)
        .await
    {
        Some(Upgrading::Answer(stream, decision, seat)) => (stream, decision, seat),
        Some(Upgrading::Drop) => return,
        None => {
            inner.metrics.rejected(RejectReason::UpgradeTimeout);
            tracing::debug!(peer = %peers.client, "upgrade timed out; dropping the socket");
            return;
        }
    };
    let peer = peers.client;
    match decision {
        Decision::Metrics => {
            http::send_and_close(stream, &scrape::metrics_response(&inner)).await;
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
        Decision::Upgrade(route, request, _, rest) => {
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
                reply,
                ..
            } = *request;
            let info = ConnInfo {
                id: inner.next_conn_id(),
                peer,
                tcp_peer: peers.tcp,
                path: Arc::from(path),
                query,
                headers: PackedHeaders::new(&headers),
                subprotocol: reply
                    .into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .subprotocol,
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
    ws: WebSocketStream<Stream>,
    info: ConnInfo,
    extensions: Extensions,
    permit: Permit,
    seat: Seat<'_>,
) -> impl Future<Output = ()> + Send + 'static + use<> {
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
    tracing::debug!(id = %conn.id(), peer = %conn.peer_addr(), tcp_peer = %conn.tcp_peer_addr(), path = %conn.path(), "connection open");
    // The driver borrows the socket from this slot, which the future
    // holds once (a socket moved into the driver inside the future would
    // also keep its place among the captured variables).
    let mut ws = Some(ws);
    async move {
        // The permit holds the socket's place in the limits until the end.
        let _permit = permit;
        let guard = Release(&inner, &conn);
        let (closed, dropped) = Driver::new(
            &conn,
            route.handler.events(),
            &*inner,
            &mut ws,
            &inner.limits,
        )
        .await;
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
