//! The servers under test: Wharf with the benches' routes, and the bare
//! async-tungstenite baseline.
//!
//! Both run on async-std's global executor (see [`crate::pin`] for which
//! core that is), set `TCP_NODELAY` on accepted sockets, echo text and
//! binary messages on any path, and answer the text `kick` by closing with
//! 1008 "Session expired". Both let the server close TCP first once the
//! closing handshake is done, so TIME_WAIT lands on the server's side.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use async_std::channel::{self, Receiver, Sender};
use async_std::net::{TcpListener, TcpStream};
use async_std::task;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use wharf::{CloseCode, Conn, Handle, Handler, Message, Registry};

use crate::BenchResult;

/// The path the echo benches use. Any path echoes (Wharf's fallback route,
/// and the bare server ignores the path); this one is just the name used.
pub const ECHO_PATH: &str = "/echo";

/// Wharf route whose connections are handed to [`WharfServer::next_handle`]
/// as they connect (the `close` bench).
pub const CLOSE_PATH: &str = "/close";

/// Wharf route whose handler ignores every message; the `broadcast` bench
/// fans messages out to it with [`Registry::route`]'s selector.
pub const BROADCAST_PATH: &str = "/broadcast";

/// The text message that makes either server close the connection with
/// 1008 "Session expired".
pub const KICK: &str = "kick";

/// The reason both servers send with the 1008 close after [`KICK`].
pub const KICK_REASON: &str = "Session expired";

/// Echoes every message; [`KICK`] ends the session from the server side
/// (the same handler as `examples/echo.rs`).
#[derive(Debug)]
struct Echo;

impl Handler for Echo {
    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        if msg.as_text() == Some(KICK) {
            conn.close(CloseCode::POLICY_VIOLATION, KICK_REASON).await?;
            return Ok(());
        }
        conn.send(msg).await
    }
}

/// Hands each new connection's handle to the bench.
#[derive(Debug)]
struct Announce(Sender<Handle>);

impl Handler for Announce {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        // The receiver lives as long as the server; a failed send only
        // means the bench is shutting down.
        let _ = self.0.send(conn.handle()).await;
        Ok(())
    }
}

/// Accepts connections and ignores their messages.
#[derive(Debug)]
struct Silent;

impl Handler for Silent {}

/// A Wharf server running in this process on 127.0.0.1 with default
/// settings and the benches' routes: an echo fallback, [`CLOSE_PATH`] and
/// [`BROADCAST_PATH`].
///
/// The server runs until the process exits.
#[derive(Debug)]
pub struct WharfServer {
    addr: SocketAddr,
    registry: Registry,
    handles: Receiver<Handle>,
}

impl WharfServer {
    /// Binds 127.0.0.1 on a free port and spawns the accept loop.
    pub async fn start() -> wharf::Result<Self> {
        Self::start_with(|server| server).await
    }

    /// [`start`](Self::start) over TLS with `tls` (`wss://`).
    pub async fn start_tls(tls: wharf::TlsConfig) -> wharf::Result<Self> {
        Self::start_with(|server| server.tls(tls)).await
    }

    /// [`start`](Self::start) with the builder changed by `configure`
    /// first (`read_buffer_size`, say).
    pub async fn start_with(
        configure: impl FnOnce(wharf::Server) -> wharf::Server,
    ) -> wharf::Result<Self> {
        let (sender, handles) = channel::unbounded();
        let server = wharf::Server::new()
            .fallback(Echo)
            .route(CLOSE_PATH, Announce(sender))
            .route(BROADCAST_PATH, Silent);
        let listening = configure(server).bind("127.0.0.1:0").await?;
        let addr = listening.local_addr();
        let registry = listening.registry();
        task::spawn(listening.run());
        Ok(WharfServer {
            addr,
            registry,
            handles,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's registry of live connections.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The handle of the next connection to [`CLOSE_PATH`], in connect
    /// order; waits at most `limit`.
    pub async fn next_handle(&self, limit: Duration) -> BenchResult<Handle> {
        match async_std::future::timeout(limit, self.handles.recv()).await {
            Ok(Ok(handle)) => Ok(handle),
            Ok(Err(err)) => Err(err.into()),
            Err(_) => Err("no connection reached the close route in time".into()),
        }
    }

    /// Waits until the registry holds exactly `count` connections, checking
    /// every millisecond for at most `limit`.
    pub async fn wait_for_count(&self, count: usize, limit: Duration) -> BenchResult<()> {
        wait_for_count(&self.registry, count, limit).await
    }
}

/// Waits until `registry` holds exactly `count` connections, checking every
/// millisecond for at most `limit`.
pub async fn wait_for_count(registry: &Registry, count: usize, limit: Duration) -> BenchResult<()> {
    let start = std::time::Instant::now();
    loop {
        let now = registry.count();
        if now == count {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(format!("the server holds {now} connections, expected {count}").into());
        }
        task::sleep(Duration::from_millis(1)).await;
    }
}

/// The baseline's configuration: tungstenite's defaults but the read
/// buffer, which is Wharf's default, [`wharf::DEFAULT_READ_BUFFER_SIZE`]
/// (read from the constant, so the two stay alike when it changes).
/// tungstenite's own default of 128 KiB costs the bare server page faults
/// and zero-filling on every read that Wharf does not pay, which hid
/// Wharf's overhead in earlier comparisons.
pub fn bare_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(wharf::DEFAULT_READ_BUFFER_SIZE)
}

/// Starts the baseline: an echo server written directly on
/// async-tungstenite (`accept_async_with_config` with [`bare_config`]),
/// bound to 127.0.0.1 on a free port. It runs until the process exits.
///
/// It behaves as [`WharfServer`]'s echo route does, minus everything Wharf
/// adds (registry, send queue, handler dispatch, close bookkeeping, logs).
pub async fn start_bare() -> io::Result<SocketAddr> {
    start_bare_with(bare_config()).await
}

/// [`start_bare`] with another tungstenite configuration.
pub async fn start_bare_with(config: WebSocketConfig) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    task::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    task::spawn(bare_connection(stream, config));
                }
                // Out of descriptors, say: pause rather than spin.
                Err(_) => task::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    Ok(addr)
}

/// One baseline connection: upgrade, echo, close.
async fn bare_connection(stream: TcpStream, config: WebSocketConfig) {
    // Wharf sets it too: small frames must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = async_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    // tungstenite answers the peer's Close by itself; once the handshake is
    // complete (either way) the stream ends and dropping `ws` closes TCP.
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match msg {
            WsMessage::Text(ref text) if text.as_str() == KICK => {
                let frame = CloseFrame {
                    code: WsCloseCode::Policy,
                    reason: KICK_REASON.into(),
                };
                if ws.close(Some(frame)).await.is_err() {
                    return;
                }
                continue;
            }
            WsMessage::Text(_) | WsMessage::Binary(_) => msg,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
}
