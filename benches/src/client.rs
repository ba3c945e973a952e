//! The client side of the benches: async-tungstenite clients over async-std
//! sockets, the same for Wharf and the baseline.
//!
//! The futures here never spawn: a bench drives them from one thread with
//! `async_std::task::block_on`, concurrency coming from joining futures, so
//! all client work stays on that thread (see [`crate::pin`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_std::net::TcpStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_util::future::try_join_all;
use futures_util::StreamExt;

use crate::servers::KICK;
use crate::BenchResult;

/// A connected client.
pub type Client = WebSocketStream<TcpStream>;

/// The 16-byte text message of a churn cycle.
pub const CYCLE_MESSAGE: &str = "0123456789abcdef";

/// Who starts the closing handshake of a churn cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseBy {
    /// The client sends Close (1000); the server echoes it.
    Client,
    /// The client sends `kick`; the server closes with 1008 and the client
    /// answers.
    Server,
}

impl CloseBy {
    /// A short name for bench ids: `client_close` or `server_close`.
    pub fn name(self) -> &'static str {
        match self {
            CloseBy::Client => "client_close",
            CloseBy::Server => "server_close",
        }
    }
}

/// Read buffer of the bench clients: 4 KiB.
///
/// tungstenite zero-fills up to its read buffer size before every read
/// (128 KiB by default), which on the clients' single thread costs more than
/// the server under test spends on a cycle; with the default the clients,
/// not the server, would set the pace of every comparison. Both servers get
/// the same clients.
pub const CLIENT_READ_BUFFER: usize = 4 << 10;

/// The configuration of the bench clients: tungstenite's defaults but a
/// [`CLIENT_READ_BUFFER`] read buffer.
pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER)
}

/// Connects to `addr`, upgrades on `path` with [`client_config`], and sets
/// `TCP_NODELAY`.
pub async fn connect(addr: SocketAddr, path: &str) -> BenchResult<Client> {
    connect_with_config(addr, path, Some(client_config())).await
}

/// [`connect`] with another client `WebSocketConfig` (`None`: tungstenite's
/// defaults).
pub async fn connect_with_config(
    addr: SocketAddr,
    path: &str,
    config: Option<WebSocketConfig>,
) -> BenchResult<Client> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}{path}");
    let (ws, _) = async_tungstenite::client_async_with_config(url, stream, config).await?;
    Ok(ws)
}

/// Sends `msg` and waits for the same message back.
pub async fn echo(client: &mut Client, msg: Message) -> BenchResult<()> {
    client.send(msg.clone()).await?;
    match client.next().await {
        Some(Ok(reply)) if reply == msg => Ok(()),
        Some(Ok(other)) => Err(format!("expected the echo, got {other:?}").into()),
        Some(Err(err)) => Err(err.into()),
        None => Err("the connection ended before the echo".into()),
    }
}

/// Reads until the server closes the stream: the Close frame (which
/// tungstenite answers by itself when the server started the close), then
/// the end of the TCP stream. Fails unless a Close with `expected` came.
pub async fn finish(client: &mut Client, expected: CloseCode) -> BenchResult<()> {
    let mut code = None;
    while let Some(msg) = client.next().await {
        if let Message::Close(frame) = msg? {
            code = frame.map(|f| f.code);
        }
    }
    match code {
        Some(code) if code == expected => Ok(()),
        other => Err(format!("expected a Close with {expected}, got {other:?}").into()),
    }
}

/// One churn cycle: connect, upgrade, one echo of [`CYCLE_MESSAGE`], the
/// closing handshake started by `close_by`, and the server's end of the TCP
/// stream.
pub async fn cycle(addr: SocketAddr, close_by: CloseBy) -> BenchResult<()> {
    cycle_on(addr, crate::ECHO_PATH, close_by).await
}

/// [`cycle`] on `path`.
pub async fn cycle_on(addr: SocketAddr, path: &str, close_by: CloseBy) -> BenchResult<()> {
    let mut client = connect(addr, path).await?;
    echo(&mut client, Message::text(CYCLE_MESSAGE)).await?;
    let expected = match close_by {
        CloseBy::Client => {
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            client.close(Some(frame)).await?;
            CloseCode::Normal
        }
        CloseBy::Server => {
            client.send(Message::text(KICK)).await?;
            CloseCode::Policy
        }
    };
    finish(&mut client, expected).await
}

/// Runs `cycles` churn cycles with `concurrency` clients at a time and
/// returns the elapsed time. The first failed cycle fails the whole run.
pub async fn churn(
    addr: SocketAddr,
    close_by: CloseBy,
    concurrency: usize,
    cycles: u64,
) -> BenchResult<Duration> {
    churn_on(addr, crate::ECHO_PATH, close_by, concurrency, cycles).await
}

/// [`churn`] on `path`.
pub async fn churn_on(
    addr: SocketAddr,
    path: &str,
    close_by: CloseBy,
    concurrency: usize,
    cycles: u64,
) -> BenchResult<Duration> {
    run_cycles(concurrency, cycles, || cycle_on(addr, path, close_by)).await
}

/// Runs `cycle` `cycles` times, `concurrency` at a time (each of that many
/// workers takes the next cycle when its last one is done), and returns
/// the elapsed time. The first failed cycle fails the whole run.
pub async fn run_cycles<F, Fut>(concurrency: usize, cycles: u64, cycle: F) -> BenchResult<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = BenchResult<()>>,
{
    let next = AtomicU64::new(0);
    let worker = || async {
        while next.fetch_add(1, Ordering::Relaxed) < cycles {
            cycle().await?;
        }
        BenchResult::Ok(())
    };
    let start = Instant::now();
    try_join_all((0..concurrency.max(1)).map(|_| worker())).await?;
    Ok(start.elapsed())
}

/// Opens `count` connections to `path`, `at_once` handshakes at a time.
pub async fn connect_many(
    addr: SocketAddr,
    path: &str,
    count: usize,
    at_once: usize,
    config: Option<WebSocketConfig>,
) -> BenchResult<Vec<Client>> {
    let mut clients = Vec::with_capacity(count);
    while clients.len() < count {
        let batch = at_once.max(1).min(count - clients.len());
        let opened =
            try_join_all((0..batch).map(|_| connect_with_config(addr, path, config))).await?;
        clients.extend(opened);
    }
    Ok(clients)
}

/// Every client does `rounds` round trips of `msg` in a row, all clients at
/// once; returns the elapsed time.
pub async fn echo_rounds(
    clients: &mut [Client],
    rounds: u64,
    msg: &Message,
) -> BenchResult<Duration> {
    let start = Instant::now();
    try_join_all(clients.iter_mut().map(|client| async move {
        for _ in 0..rounds {
            echo(client, msg.clone()).await?;
        }
        BenchResult::Ok(())
    }))
    .await?;
    Ok(start.elapsed())
}

/// Closes every client from the client side (1000) and waits for each
/// server to end its stream, all at once.
pub async fn close_all(clients: Vec<Client>) -> BenchResult<()> {
    try_join_all(clients.into_iter().map(|mut client| async move {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        client.close(Some(frame)).await?;
        finish(&mut client, CloseCode::Normal).await
    }))
    .await?;
    Ok(())
}
