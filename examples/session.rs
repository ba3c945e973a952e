//! Sessions that expire: a message handler that checks the session's age
//! and closes with 1008 "Session expired" once it has passed.
//!
//! ```text
//! cargo run --example session -- --addr 127.0.0.1:8082 --ttl-ms 10000
//! ```
//!
//! `--addr` defaults to 127.0.0.1:8082 and `--ttl-ms` to 10000. Connect to
//! `ws://HOST:PORT/` (any path) and send messages: they are echoed until
//! the session is `--ttl-ms` milliseconds old; the first message after that
//! is answered by a close with 1008 "Session expired".
//!
//! The check lives in the application: the connect handler stores when the
//! session started in the connection's extensions, and the message handler
//! compares. An idle client therefore stays connected past its expiry and
//! learns about it on its next message. That is different from the server's
//! own `session_ttl` policy (`Server::session_ttl`, or `--session-ttl-ms` on
//! the echo example), which closes with the same code and reason at the
//! deadline, without waiting for a message. Use the policy when the limit is
//! the server's; check in a handler, as here, when the rule is the
//! application's (it can depend on the user, be extended, or be answered
//! with a message first).

use std::time::{Duration, Instant};

use clap::Parser;
use wharf as ws;
use wharf_examples::millis;
use ws::{CloseCode, Conn, Message};

/// How long a session lasts; one value for the server, registered with
/// `Server::state`.
#[derive(Debug, Clone, Copy)]
pub struct SessionTtl(pub Duration);

/// When a session started; kept in its connection's extensions.
struct StartedAt(Instant);

/// Notes when the session started.
#[ws::on("connect")]
async fn start(conn: &Conn) {
    conn.extensions().insert(StartedAt(Instant::now()));
}

/// Echoes messages while the session lasts, and ends it on the first
/// message after it has expired.
#[ws::on("message")]
async fn echo_until_expired(conn: &Conn, msg: Message) -> ws::Result<Option<Message>> {
    let ttl = conn
        .state::<SessionTtl>()
        .ok_or_else(|| ws::Error::handler("the server has no SessionTtl state"))?
        .0;
    let age = conn
        .extensions()
        .get::<StartedAt>()
        .map(|started| started.0.elapsed());
    if age.is_some_and(|age| age >= ttl) {
        tracing::info!(id = %conn.id(), ?age, "session expired");
        conn.close(CloseCode::POLICY_VIOLATION, "Session expired")
            .await?;
        return Ok(None);
    }
    Ok(Some(msg))
}

/// The server: sessions of `ttl` on every path.
pub fn app(ttl: Duration) -> ws::Server {
    ws::Server::new()
        .state(SessionTtl(ttl))
        .fallback(ws::handlers![start, echo_until_expired])
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "session",
    about = "An echo server whose sessions expire: the first message after the TTL gets 1008."
)]
struct Options {
    /// Listen address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8082")]
    addr: String,
    /// Session lifetime in milliseconds.
    #[arg(long = "ttl-ms", value_name = "N", default_value = "10000", value_parser = millis)]
    ttl: Duration,
}

#[async_std::main]
async fn main() -> ws::Result<()> {
    let Options { addr, ttl } = Options::parse();
    wharf_examples::init_logging();
    tracing::info!(
        ttl_ms = ttl.as_millis() as u64,
        "sessions expire after the TTL"
    );
    app(ttl)
        .bind(addr.as_str())
        .await?
        .shutdown_on_signals()
        .run()
        .await?;
    Ok(())
}
