//! The reference echo server that benchmarks and conformance tools run, and
//! a place to try every server policy from the command line.
//!
//! It echoes text and binary messages on any path; the text message `kick`
//! makes the server close the connection with 1008 "Session expired".
//! Ctrl-C (SIGINT) or SIGTERM starts a graceful shutdown: every connection
//! gets 1001 "Going away", and the server logs how they ended.
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:9001
//! cargo run --example echo -- --idle-timeout-ms 5000 --max-message 1024 --metrics /metrics
//! cargo run --example echo -- --tls-cert cert.pem --tls-key key.pem
//! cargo run --example echo -- --trusted-proxy 127.0.0.1 --max-conns-per-ip 2
//! cargo run --example echo -- --metrics /metrics --metrics-addr 127.0.0.1:9100
//! cargo run --example echo -- --help
//! ```
//!
//! `--addr` defaults to 127.0.0.1:9001. Each policy flag sets one server
//! policy (see `--help`, and the policies table in the README); without
//! flags the server keeps the library's defaults, except a 64 MiB message
//! and frame limit so that the Autobahn test suite's large cases pass. The
//! server logs its address when it is ready. Set `RUST_LOG=debug` for a line
//! per connection and per refused request.
//!
//! The deployment flags: `--tls-cert PEM --tls-key PEM` serve `wss://`;
//! `--trusted-proxy CIDR` (repeatable) believes those proxies'
//! `Forwarded` / `X-Forwarded-For` headers about their clients, and
//! `--proxy-protocol` their PROXY protocol header (required first on every
//! connection); `--metrics-addr ADDR` moves the `--metrics` counters (or,
//! without `--metrics`, serves them on every path) to a listener of their
//! own, off the public port.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use wharf as ws;
use wharf_examples::{millis, positive};
use ws::{CloseCode, Conn, ConnectRate, Message};

/// Echoes every message back; `kick` ends the session from the server side.
#[ws::on("message")]
async fn echo(conn: &Conn, msg: Message) -> ws::Result<Option<Message>> {
    if msg.as_text() == Some("kick") {
        conn.close(CloseCode::POLICY_VIOLATION, "Session expired")
            .await?;
        return Ok(None);
    }
    Ok(Some(msg))
}

/// The default message and frame limit: big enough for Autobahn's cases.
const MAX_MESSAGE: usize = 64 << 20;

/// What the command line asked for. `None` keeps the server's default.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    name = "echo",
    about = "A WebSocket echo server on every path; the message `kick` closes with 1008.",
    // `--idle-timeout-ms -1` is a bad value, not a flag called "-1".
    allow_negative_numbers = true
)]
pub struct Options {
    /// Listen address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9001")]
    pub addr: String,
    /// Close with 1001 "Idle timeout" after N ms in which the peer sent
    /// nothing [default: none].
    #[arg(long = "idle-timeout-ms", value_name = "N", value_parser = millis)]
    pub idle_timeout: Option<Duration>,
    /// Ping a quiet peer after N ms [default: 30000].
    #[arg(long = "ping-interval-ms", value_name = "N", value_parser = millis)]
    pub ping_interval: Option<Duration>,
    /// Drop a peer that has not answered a ping in N ms [default: 20000].
    #[arg(long = "pong-timeout-ms", value_name = "N", value_parser = millis)]
    pub pong_timeout: Option<Duration>,
    /// Close with 1008 "Session expired" N ms after connect [default: none].
    #[arg(long = "session-ttl-ms", value_name = "N", value_parser = millis)]
    pub session_ttl: Option<Duration>,
    /// Largest message and frame; bigger ones close with 1009.
    #[arg(long = "max-message", value_name = "BYTES", default_value_t = MAX_MESSAGE, value_parser = positive::<usize>)]
    pub max_message: usize,
    /// Most open connections; more get HTTP 503 [default: none].
    #[arg(long = "max-conns", value_name = "N", value_parser = positive::<usize>)]
    pub max_conns: Option<usize>,
    /// Most open connections per IP; more get HTTP 429 [default: none].
    #[arg(long = "max-conns-per-ip", value_name = "N", value_parser = positive::<usize>)]
    pub max_conns_per_ip: Option<usize>,
    /// New connections per second per IP, bursts of N; more get HTTP 429
    /// [default: none].
    #[arg(long = "connect-rate", value_name = "N", value_parser = positive::<u32>)]
    pub connect_rate: Option<u32>,
    /// Allowed Origin, e.g. http://localhost:8000; repeatable; others get
    /// HTTP 403 [default: all].
    #[arg(long = "origin", value_name = "URL", value_parser = origin)]
    pub origins: Vec<String>,
    /// Graceful shutdown waits N ms for closing handshakes [default: 10000].
    #[arg(long = "drain-ms", value_name = "N", value_parser = millis)]
    pub drain: Option<Duration>,
    /// Serve Prometheus counters on GET PATH, e.g. /metrics [default: off].
    #[arg(long, value_name = "PATH", value_parser = path)]
    pub metrics: Option<String>,
    /// Serve the counters on their own listener at ADDR, e.g.
    /// 127.0.0.1:9100, and not on the public port [default: the public
    /// port, with --metrics].
    #[arg(long = "metrics-addr", value_name = "HOST:PORT", value_parser = socket_addr)]
    pub metrics_addr: Option<String>,
    /// Serve TLS (wss://) with this PEM certificate chain; needs --tls-key.
    #[arg(long = "tls-cert", value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long = "tls-key", value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Trust this proxy (an address or CIDR range, e.g. 10.0.0.0/8) to
    /// name its clients; repeatable [default: none].
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<String>,
    /// Expect a PROXY protocol header (v1 or v2) first on every
    /// connection; needs --trusted-proxy.
    #[arg(long = "proxy-protocol", requires = "trusted_proxies")]
    pub proxy_protocol: bool,
}

/// A numeric socket address (`127.0.0.1:9100`, `[::1]:9100`).
fn socket_addr(value: &str) -> Result<String, String> {
    value
        .parse::<std::net::SocketAddr>()
        .map(|_| value.to_owned())
        .map_err(|_| "expected HOST:PORT, e.g. 127.0.0.1:9100".into())
}

/// An origin: a scheme, then `://` and a host (the server checks the rest).
fn origin(value: &str) -> Result<String, String> {
    match value.split_once("://") {
        Some((scheme, host)) if !scheme.is_empty() && !host.is_empty() => Ok(value.to_owned()),
        _ => Err("expected an origin like http://localhost:8000".into()),
    }
}

/// A path served by the server: it starts with '/'.
fn path(value: &str) -> Result<String, String> {
    if value.starts_with('/') {
        Ok(value.to_owned())
    } else {
        Err("expected a path starting with '/'".into())
    }
}

/// The echo server with the policies `options` asks for.
pub fn app(options: &Options) -> ws::Server {
    // Any path echoes: the fallback route answers every WebSocket request.
    let mut server = ws::Server::new()
        .fallback(ws::handlers![echo])
        .max_message_size(options.max_message)
        .max_frame_size(options.max_message);
    if let Some(limit) = options.idle_timeout {
        server = server.idle_timeout(limit);
    }
    if let Some(interval) = options.ping_interval {
        server = server.ping_interval(interval);
    }
    if let Some(limit) = options.pong_timeout {
        server = server.pong_timeout(limit);
    }
    if let Some(ttl) = options.session_ttl {
        server = server.session_ttl(ttl);
    }
    if let Some(max) = options.max_conns {
        server = server.max_connections(max);
    }
    if let Some(max) = options.max_conns_per_ip {
        server = server.max_connections_per_ip(max);
    }
    if let Some(rate) = options.connect_rate {
        server = server.connect_rate(ConnectRate::new(f64::from(rate), rate));
    }
    for origin in &options.origins {
        server = server.allow_origin(origin.as_str());
    }
    if let Some(drain) = options.drain {
        server = server.drain_timeout(drain);
    }
    if let Some(path) = &options.metrics {
        server = server.metrics(path.as_str());
    }
    if let Some(addr) = &options.metrics_addr {
        server = server.metrics_addr(addr.as_str());
    }
    if !options.trusted_proxies.is_empty() {
        server = server.trusted_proxies(options.trusted_proxies.iter().cloned());
    }
    if options.proxy_protocol {
        server = server.proxy_protocol(true);
    }
    server
}

/// `server` with the TLS of `--tls-cert` and `--tls-key`, if given: a
/// step of its own, since reading the files can fail.
pub fn with_tls(server: ws::Server, options: &Options) -> ws::Result<ws::Server> {
    match (&options.tls_cert, &options.tls_key) {
        (Some(cert), Some(key)) => Ok(server.tls(ws::TlsConfig::from_pem_files(cert, key)?)),
        _ => Ok(server),
    }
}

#[async_std::main]
async fn main() -> ws::Result<()> {
    let options = Options::parse();
    wharf_examples::init_logging();
    // The server logs the shutdown's summary itself ("shutdown complete").
    with_tls(app(&options), &options)?
        .bind(options.addr.as_str())
        .await?
        .shutdown_on_signals()
        .run()
        .await?;
    Ok(())
}
