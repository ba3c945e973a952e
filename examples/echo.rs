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
//! cargo run --example echo -- --help
//! ```
//!
//! `--addr` defaults to 127.0.0.1:9001. Each policy flag sets one server
//! policy (see `--help`, and the policies table in the README); without
//! flags the server keeps the library's defaults, except a 64 MiB message
//! and frame limit so that the Autobahn test suite's large cases pass. The
//! server logs its address when it is ready. Set `RUST_LOG=debug` for a line
//! per connection and per refused request.

use std::time::Duration;

use wharf as ws;
use wharf_examples::{Args, Cli, CliError, Flag};
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

/// The command line.
const CLI: Cli = Cli {
    program: "echo",
    about: "A WebSocket echo server on every path; the message `kick` closes with 1008.",
    flags: &[
        Flag { name: "--addr", value: "HOST:PORT", help: "listen address (default 127.0.0.1:9001)" },
        Flag { name: "--idle-timeout-ms", value: "N", help: "close with 1001 \"Idle timeout\" after N ms in which the peer sent nothing (default: none)" },
        Flag { name: "--ping-interval-ms", value: "N", help: "ping a quiet peer after N ms (default 30000)" },
        Flag { name: "--pong-timeout-ms", value: "N", help: "drop a peer that has not answered a ping in N ms (default 20000)" },
        Flag { name: "--session-ttl-ms", value: "N", help: "close with 1008 \"Session expired\" N ms after connect (default: none)" },
        Flag { name: "--max-message", value: "BYTES", help: "largest message and frame; bigger ones close with 1009 (default 64 MiB)" },
        Flag { name: "--max-conns", value: "N", help: "most open connections; more get HTTP 503 (default: none)" },
        Flag { name: "--max-conns-per-ip", value: "N", help: "most open connections per IP; more get HTTP 429 (default: none)" },
        Flag { name: "--connect-rate", value: "N", help: "new connections per second per IP, bursts of N; more get HTTP 429 (default: none)" },
        Flag { name: "--origin", value: "URL", help: "allowed Origin, e.g. http://localhost:8000; repeatable; others get HTTP 403 (default: all)" },
        Flag { name: "--drain-ms", value: "N", help: "graceful shutdown waits N ms for closing handshakes (default 10000)" },
        Flag { name: "--metrics", value: "PATH", help: "serve Prometheus counters on GET PATH, e.g. /metrics (default: off)" },
    ],
};

/// What the command line asked for. `None` keeps the server's default.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Where to listen.
    pub addr: String,
    /// `--idle-timeout-ms`.
    pub idle_timeout: Option<Duration>,
    /// `--ping-interval-ms`.
    pub ping_interval: Option<Duration>,
    /// `--pong-timeout-ms`.
    pub pong_timeout: Option<Duration>,
    /// `--session-ttl-ms`.
    pub session_ttl: Option<Duration>,
    /// `--max-message`: message and frame limit, in bytes.
    pub max_message: usize,
    /// `--max-conns`.
    pub max_conns: Option<usize>,
    /// `--max-conns-per-ip`.
    pub max_conns_per_ip: Option<usize>,
    /// `--connect-rate`.
    pub connect_rate: Option<u32>,
    /// `--origin`, every one given.
    pub origins: Vec<String>,
    /// `--drain-ms`.
    pub drain: Option<Duration>,
    /// `--metrics`.
    pub metrics: Option<String>,
}

impl Options {
    /// Parses a command line (without the program name).
    pub fn parse<I, S>(args: I) -> Result<Options, CliError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Options::from_args(&CLI.parse(args)?)
    }

    /// Reads and checks the flags' values.
    fn from_args(args: &Args) -> Result<Options, CliError> {
        let origins: Vec<String> = args.all("--origin").map(str::to_owned).collect();
        if let Some(bad) = origins.iter().find(|origin| !origin.contains("://")) {
            return Err(CliError::BadValue {
                flag: "--origin",
                value: bad.clone(),
                expected: "an origin like http://localhost:8000",
            });
        }
        let metrics = args.get("--metrics").map(str::to_owned);
        if let Some(path) = metrics.as_ref().filter(|path| !path.starts_with('/')) {
            return Err(CliError::BadValue {
                flag: "--metrics",
                value: path.clone(),
                expected: "a path starting with '/'",
            });
        }
        Ok(Options {
            addr: args.get_or("--addr", "127.0.0.1:9001"),
            idle_timeout: args.millis("--idle-timeout-ms")?,
            ping_interval: args.millis("--ping-interval-ms")?,
            pong_timeout: args.millis("--pong-timeout-ms")?,
            session_ttl: args.millis("--session-ttl-ms")?,
            max_message: args.positive("--max-message")?.unwrap_or(MAX_MESSAGE),
            max_conns: args.positive("--max-conns")?,
            max_conns_per_ip: args.positive("--max-conns-per-ip")?,
            connect_rate: args.positive("--connect-rate")?,
            origins,
            drain: args.millis("--drain-ms")?,
            metrics,
        })
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
    server
}

#[async_std::main]
async fn main() -> ws::Result<()> {
    let options = CLI.parse_env_or_exit(Options::from_args);
    wharf_examples::init_logging();
    // The server logs the shutdown's summary itself ("shutdown complete").
    app(&options)
        .bind(options.addr.as_str())
        .await?
        .shutdown_on_signals()
        .run()
        .await?;
    Ok(())
}
