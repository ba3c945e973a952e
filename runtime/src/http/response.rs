//! Answers other than `101`: a [`Rejection`] (the server's own, or an
//! upgrade handler's) and the reason it is counted under, fixed pages and
//! the metrics text, and how a final response is written and the socket let
//! go.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use ::http::header::{self, HeaderName, HeaderValue};
use ::http::StatusCode;
use futures_util::{AsyncReadExt, AsyncWriteExt};

use crate::net::Stream;
use crate::rt;

/// How long an error response waits for the client to close after it, so
/// that unread request bytes do not turn our close into a reset that wipes
/// the response from the client's buffer.
const LINGER: Duration = Duration::from_secs(1);
/// Bytes read and discarded while lingering.
const LINGER_BYTES: usize = 64 << 10;

/// Why a socket got an HTTP error instead of an upgrade: the label it is
/// counted under in [`Stats::rejected`](crate::Stats::rejected) and in the
/// Prometheus output (`wharf_connections_rejected_total{reason}`).
///
/// # Examples
///
/// ```
/// use wharf::RejectReason;
///
/// assert_eq!(RejectReason::RateLimited.as_str(), "rate_limited");
/// assert_eq!(RejectReason::Handler.to_string(), "handler");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RejectReason {
    /// Over [`Server::max_connections`](crate::Server::max_connections): 503.
    MaxConnections,
    /// Over [`Server::max_connections_per_ip`](crate::Server::max_connections_per_ip): 429.
    PerIpLimit,
    /// Over [`Server::connect_rate`](crate::Server::connect_rate): 429.
    RateLimited,
    /// An `Origin` not allowed by [`Server::allow_origin`](crate::Server::allow_origin): 403.
    Origin,
    /// The route's upgrade handler rejected the request (its status).
    Handler,
    /// The server is shutting down: 503.
    ShuttingDown,
    /// No route for the path: 404.
    NotFound,
    /// Not a valid WebSocket upgrade (400, 405, 426) or not HTTP at all.
    BadRequest,
    /// Request head over [`Server::max_request_bytes`](crate::Server::max_request_bytes): 431.
    TooLarge,
    /// The request did not arrive (or was not accepted) within
    /// [`Server::upgrade_timeout`](crate::Server::upgrade_timeout): dropped,
    /// no response.
    UpgradeTimeout,
    /// On a TLS listener ([`Server::tls`](crate::Server::tls)): the TLS
    /// handshake failed (plaintext HTTP, garbage, no cipher in common):
    /// dropped, no response.
    Tls,
    /// With [`Server::proxy_protocol`](crate::Server::proxy_protocol) on:
    /// the connection did not start with a valid PROXY protocol header
    /// (missing, malformed, truncated or too long): dropped, no response.
    ProxyProtocol,
}

impl RejectReason {
    /// Every reason, in the order the counters list them.
    pub(crate) const ALL: [RejectReason; 12] = [
        RejectReason::MaxConnections,
        RejectReason::PerIpLimit,
        RejectReason::RateLimited,
        RejectReason::Origin,
        RejectReason::Handler,
        RejectReason::ShuttingDown,
        RejectReason::NotFound,
        RejectReason::BadRequest,
        RejectReason::TooLarge,
        RejectReason::UpgradeTimeout,
        RejectReason::Tls,
        RejectReason::ProxyProtocol,
    ];

    /// The label used in logs and in the Prometheus output.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wharf::RejectReason::UpgradeTimeout.as_str(), "upgrade_timeout");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MaxConnections => "max_connections",
            RejectReason::PerIpLimit => "per_ip_limit",
            RejectReason::RateLimited => "rate_limited",
            RejectReason::Origin => "origin",
            RejectReason::Handler => "handler",
            RejectReason::ShuttingDown => "shutting_down",
            RejectReason::NotFound => "not_found",
            RejectReason::BadRequest => "bad_request",
            RejectReason::TooLarge => "too_large",
            RejectReason::UpgradeTimeout => "upgrade_timeout",
            RejectReason::Tls => "tls",
            RejectReason::ProxyProtocol => "proxy_protocol",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HTTP answer instead of an upgrade: a status, a plain-text body and
/// optional extra headers. The socket is closed after it is sent.
///
/// An `upgrade` handler returns one to refuse a request; the server uses
/// the same type for its own refusals (404, 426, 429, ...), each counted
/// under its [`RejectReason`].
///
/// # Examples
///
/// ```
/// use wharf::Rejection;
///
/// let busy = Rejection::too_many_requests("slow down\n").header("Retry-After", "5");
/// assert_eq!(busy.status(), 429);
/// let custom = Rejection::new(451, "unavailable here\n");
/// assert_eq!(custom.status(), 451);
/// ```
#[derive(Debug, Clone)]
pub struct Rejection {
    status: u16,
    body: Cow<'static, str>,
    headers: Vec<(HeaderName, HeaderValue)>,
    reason: RejectReason,
}

impl Rejection {
    /// A rejection with `status` and `body`.
    ///
    /// A rejection must be an error: a status outside 400-599 is answered as
    /// 500, and logged, because a `2xx` or `101` here would tell the client
    /// the upgrade went ahead.
    ///
    /// # Examples
    ///
    /// ```
    /// let gone = wharf::Rejection::new(410, "this room was closed\n");
    /// assert_eq!(gone.status(), 410);
    /// assert_eq!(wharf::Rejection::new(200, "no").status(), 500);
    /// ```
    pub fn new(status: u16, body: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            status,
            body: body.into(),
            headers: Vec::new(),
            reason: RejectReason::Handler,
        }
    }

    /// 400 Bad Request.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wharf::Rejection::bad_request("missing ?room=\n").status(), 400);
    /// ```
    pub fn bad_request(body: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, body)
    }

    /// 401 Unauthorized.
    ///
    /// # Examples
    ///
    /// ```
    /// let no = wharf::Rejection::unauthorized("log in first\n").header("WWW-Authenticate", "Bearer");
    /// assert_eq!(no.status(), 401);
    /// ```
    pub fn unauthorized(body: impl Into<Cow<'static, str>>) -> Self {
        Self::new(401, body)
    }

    /// 403 Forbidden.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wharf::Rejection::forbidden("banned\n").status(), 403);
    /// ```
    pub fn forbidden(body: impl Into<Cow<'static, str>>) -> Self {
        Self::new(403, body)
    }

    /// 429 Too Many Requests.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wharf::Rejection::too_many_requests("slow down\n").status(), 429);
    /// ```
    pub fn too_many_requests(body: impl Into<Cow<'static, str>>) -> Self {
        Self::new(429, body)
    }

    /// 503 Service Unavailable.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wharf::Rejection::unavailable("maintenance\n").status(), 503);
    /// ```
    pub fn unavailable(body: impl Into<Cow<'static, str>>) -> Self {
        Self::new(503, body)
    }

    /// Adds a response header (`WWW-Authenticate`, `Retry-After`, ...).
    /// A name or value that is not valid HTTP is dropped and logged, so the
    /// response is never malformed.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = wharf::Rejection::unavailable("later\n").header("Retry-After", "30");
    /// assert_eq!(r.status(), 503);
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => self.headers.push((name, value)),
            _ => tracing::warn!(name, "invalid rejection header dropped"),
        }
        self
    }

    /// The status that will be sent (500 for one outside 400-599).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wharf::Rejection::forbidden("no\n").status(), 403);
    /// ```
    pub fn status(&self) -> u16 {
        if (400..=599).contains(&self.status) {
            self.status
        } else {
            500
        }
    }

    /// The body.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wharf::Rejection::forbidden("no\n").body(), "no\n");
    /// ```
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The status the handler asked for, before the 400-599 check.
    pub(crate) fn requested_status(&self) -> u16 {
        self.status
    }

    /// What the rejection is counted under.
    pub(crate) fn reason(&self) -> RejectReason {
        self.reason
    }

    /// The server's own rejection: counted under `reason`.
    fn server(status: u16, body: &'static str, reason: RejectReason) -> Self {
        Rejection {
            reason,
            ..Rejection::new(status, body)
        }
    }

    fn with_static(mut self, name: HeaderName, value: &'static str) -> Self {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }

    /// 400 for a request that is not a valid WebSocket upgrade.
    pub(crate) fn malformed(body: &'static str) -> Self {
        Self::server(400, body, RejectReason::BadRequest)
    }

    /// 404: no route for the path.
    pub(crate) fn not_found() -> Self {
        Self::server(404, "Not found\n", RejectReason::NotFound)
    }

    /// 405: a WebSocket route or page asked with another method than GET.
    pub(crate) fn method_not_allowed() -> Self {
        Self::server(405, "Use GET\n", RejectReason::BadRequest).with_static(header::ALLOW, "GET")
    }

    /// 426: a plain HTTP request (or another WebSocket version) on a
    /// WebSocket route.
    pub(crate) fn upgrade_required() -> Self {
        Self::server(
            426,
            "This endpoint speaks WebSocket: connect with a WebSocket client.\n",
            RejectReason::BadRequest,
        )
        .with_static(header::UPGRADE, "websocket")
        .with_static(header::SEC_WEBSOCKET_VERSION, "13")
    }

    /// 431: the request head is over the limit.
    pub(crate) fn too_large() -> Self {
        Self::server(431, "Request headers too large\n", RejectReason::TooLarge)
    }

    /// 403: an `Origin` that is not allowed.
    pub(crate) fn origin() -> Self {
        Self::server(403, "Origin not allowed\n", RejectReason::Origin)
    }

    /// 429 at accept time, for `reason` (a per-IP limit).
    pub(crate) fn busy(reason: RejectReason) -> Self {
        Self::server(429, "Too many connections\n", reason).with_static(header::RETRY_AFTER, "1")
    }

    /// 503: the server is full.
    pub(crate) fn full() -> Self {
        Self::server(503, "Server full\n", RejectReason::MaxConnections)
            .with_static(header::RETRY_AFTER, "1")
    }

    /// 503: the server is shutting down.
    pub(crate) fn shutting_down() -> Self {
        Self::server(503, "Server shutting down\n", RejectReason::ShuttingDown)
            .with_static(header::RETRY_AFTER, "1")
    }

    /// The whole response, ready to write.
    pub(crate) fn to_response(&self) -> Vec<u8> {
        let status = self.status();
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Rejected");
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .collect();
        response(
            status,
            reason,
            &headers,
            self.body.as_bytes(),
            "text/plain; charset=utf-8",
        )
    }
}

/// A complete `Connection: close` response. When `headers` offer an
/// `Upgrade` (the 426), `Connection` lists `Upgrade` too, as RFC 7230
/// section 6.7 requires.
pub(crate) fn response(
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    content_type: &str,
) -> Vec<u8> {
    let offers_upgrade = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("upgrade"));
    let connection = if offers_upgrade {
        "Upgrade, close"
    } else {
        "close"
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends a rejection and closes the socket.
pub(crate) async fn reject(stream: Stream, rejection: &Rejection) {
    send_and_close(stream, &rejection.to_response()).await;
}

/// Writes a final response, half-closes (over TLS, `close_notify` first),
/// and lingers briefly so the client reads the response before the socket
/// goes away.
pub(crate) async fn send_and_close(mut stream: Stream, bytes: &[u8]) {
    if rt::timeout(LINGER, stream.write_all(bytes)).await.is_none() {
        return;
    }
    if rt::timeout(LINGER, stream.close()).await.is_none() {
        return;
    }
    let _ = rt::timeout(LINGER, async {
        let mut scratch = [0u8; 512];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}
