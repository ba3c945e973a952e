//! Helpers for the examples' tests: run an example's server on 127.0.0.1,
//! talk to it with async-tungstenite's client or over raw TCP, and put a
//! timeout around every await.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use async_std::task::JoinHandle;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::Message as WsMessage;
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt;
use wharf as ws;

/// The longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it takes longer than
/// [`STEP`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match async_std::future::timeout(STEP, future).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// An example's server running in the background on 127.0.0.1.
pub struct Running {
    pub addr: SocketAddr,
    pub handle: ws::ServerHandle,
    /// The server's `run()`: resolves after a graceful shutdown.
    pub task: JoinHandle<ws::Result<ws::CloseSummary>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Triggers a graceful shutdown and waits for the summary.
    pub async fn shutdown(self) -> ws::CloseSummary {
        self.handle.shutdown();
        within("graceful shutdown", self.task)
            .await
            .expect("run() failed")
    }
}

/// Binds `server` to a free port on 127.0.0.1 and runs it in a task.
pub async fn start(server: ws::Server) -> Running {
    let listening = within("bind", server.bind("127.0.0.1:0"))
        .await
        .expect("bind");
    let addr = listening.local_addr();
    let handle = listening.handle();
    let task = async_std::task::spawn(listening.run());
    Running { addr, handle, task }
}

pub type Client = WebSocketStream<TcpStream>;

/// Opens a WebSocket to `path` (with its query string) with
/// async-tungstenite's client.
pub async fn connect(server: &Running, path: &str) -> Client {
    connect_with_headers(server, path, &[]).await
}

/// Opens a WebSocket with extra request headers (an `Origin`, ...).
pub async fn connect_with_headers(
    server: &Running,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Client {
    within("connect", async {
        let mut request = server.url(path).into_client_request().expect("request");
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        let tcp = TcpStream::connect(server.addr).await.expect("tcp connect");
        let (ws, _response) = async_tungstenite::client_async(request, tcp)
            .await
            .expect("websocket handshake");
        ws
    })
    .await
}

/// Sends a text message.
pub async fn send_text(client: &mut Client, text: &str) {
    within("send", client.send(WsMessage::text(text)))
        .await
        .expect("send");
}

/// The next text message, failing on anything else.
pub async fn next_text(client: &mut Client) -> String {
    match within("next message", client.next()).await {
        Some(Ok(WsMessage::Text(text))) => text.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Reads text messages until one satisfies `wanted` and returns it
/// (broadcasts from other members may come first).
pub async fn text_matching(client: &mut Client, wanted: impl Fn(&str) -> bool) -> String {
    loop {
        let text = next_text(client).await;
        if wanted(&text) {
            return text;
        }
    }
}

/// How the server closed a connection, as the client saw it.
#[derive(Debug)]
pub struct ClosedBy {
    /// The server's Close frame: code and reason; `None` when the stream
    /// ended without one.
    pub close: Option<(u16, String)>,
    /// Data messages that arrived before it.
    pub before: Vec<WsMessage>,
}

/// Reads until the server's Close frame, lets the client answer it, and
/// reads on until the server closes the stream.
pub async fn closed_by_server(client: &mut Client) -> ClosedBy {
    within("server close", async {
        let mut before = Vec::new();
        let mut close = None;
        while let Some(item) = client.next().await {
            match item {
                Ok(WsMessage::Close(frame)) => {
                    close = Some(frame.map_or((1005, String::new()), |frame| {
                        (u16::from(frame.code), frame.reason.as_str().to_owned())
                    }));
                }
                Ok(msg @ (WsMessage::Text(_) | WsMessage::Binary(_))) => before.push(msg),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        ClosedBy { close, before }
    })
    .await
}

/// Asserts the server closed `client` with `code` and `reason`.
pub async fn expect_close(client: &mut Client, code: u16, reason: &str) {
    let closed = closed_by_server(client).await;
    assert_eq!(
        closed.close,
        Some((code, reason.to_owned())),
        "messages before: {:?}",
        closed.before
    );
}

/// A well-formed upgrade request for `path` with extra header lines
/// (`"Origin: http://x"`).
pub fn upgrade_request(path: &str, extra: &[&str]) -> String {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

/// Sends `request` over raw TCP and returns everything the server sent
/// until it closed the socket (the server closes after every non-101
/// answer).
pub async fn http_exchange(addr: SocketAddr, request: &str) -> String {
    within("http exchange", async {
        let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut out = Vec::new();
        // A reset after the response still leaves the response read.
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

/// The status code of an HTTP response.
pub fn status(response: &str) -> u16 {
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// A raw TCP peer that has completed the upgrade and then reads frames by
/// hand: for peers that do not answer pings or Close frames.
pub struct RawPeer {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A frame as the server sent it.
#[derive(Debug, PartialEq, Eq)]
pub struct RawFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;

impl RawPeer {
    /// Upgrades `path` and checks the `101`.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawPeer {
        within("raw upgrade", async {
            let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
            stream
                .write_all(upgrade_request(path, &[]).as_bytes())
                .await
                .expect("write upgrade");
            let mut buf = Vec::new();
            let end = loop {
                let mut chunk = vec![0u8; 1024];
                let n = stream.read(&mut chunk).await.expect("read 101");
                assert!(n > 0, "server closed during the upgrade");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break pos + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            assert_eq!(status(&head), 101, "{head}");
            buf.drain(..end);
            RawPeer { stream, buf }
        })
        .await
    }

    /// The next frame, or `None` when the server closed the stream.
    pub async fn read_frame(&mut self) -> Option<RawFrame> {
        within("raw frame", async {
            loop {
                if let Some((frame, used)) = parse_frame(&self.buf) {
                    self.buf.drain(..used);
                    return Some(frame);
                }
                let mut chunk = vec![0u8; 4096];
                let n = self.stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
    }
}

/// One unmasked server frame from the front of `buf`, and its length.
fn parse_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    let (&first, &second) = (buf.first()?, buf.get(1)?);
    let (len, header) = match second & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = buf.get(header..header + len)?.to_vec();
    let frame = RawFrame {
        opcode: first & 0x0f,
        payload,
    };
    Some((frame, header + len))
}
