//! Shared helpers for the integration tests: a real server on 127.0.0.1,
//! real clients (async-tungstenite's, and a raw TCP peer that speaks frames
//! by hand), and a timeout around every await.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::WebSocketStream;
use wharf::{Registry, Server};

/// The longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it takes longer than
/// [`STEP`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    within_for(STEP, what, future).await
}

/// Awaits `future` for at most `limit`.
pub async fn within_for<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match async_std::future::timeout(limit, future).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Waits until `cond` holds, re-checking every millisecond, failing the test
/// after [`STEP`]. For state that has no event to await (a counter read
/// from another task).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > STEP {
            panic!("condition never held within {STEP:?}: {what}");
        }
        async_std::task::sleep(Duration::from_millis(1)).await;
    }
}

/// The next event a handler reported on `events`, failing the test after
/// [`STEP`] or if the server dropped the handler.
pub async fn next_event<T>(events: &async_std::channel::Receiver<T>) -> T {
    within("handler event", events.recv())
        .await
        .expect("the server dropped its handler")
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A server running in the background on 127.0.0.1 with a free port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub registry: Registry,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }
}

/// Binds `server` to 127.0.0.1:0 and runs it in a background task.
pub async fn start(server: Server) -> TestServer {
    init_tracing();
    let listening = within("bind", server.bind("127.0.0.1:0"))
        .await
        .expect("bind");
    let addr = listening.local_addr();
    let registry = listening.registry();
    async_std::task::spawn(async move {
        let _ = listening.run().await;
    });
    TestServer { addr, registry }
}

pub type Client = WebSocketStream<TcpStream>;

/// Connects async-tungstenite's client to `path`.
pub async fn connect(server: &TestServer, path: &str) -> Client {
    within("connect", async {
        let tcp = TcpStream::connect(server.addr).await.expect("tcp connect");
        let (ws, _response) = async_tungstenite::client_async(server.url(path), tcp)
            .await
            .expect("websocket handshake");
        ws
    })
    .await
}

/// Connects with a client configuration (for example a large max message).
pub async fn connect_with(server: &TestServer, path: &str, config: WebSocketConfig) -> Client {
    within("connect", async {
        let tcp = TcpStream::connect(server.addr).await.expect("tcp connect");
        let (ws, _response) =
            async_tungstenite::client_async_with_config(server.url(path), tcp, Some(config))
                .await
                .expect("websocket handshake");
        ws
    })
    .await
}

// ---- a raw peer, for bytes no well-behaved client would send ----

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// One frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// A Close frame from the server and the frames that preceded it.
#[derive(Debug)]
pub struct CloseSeen {
    pub before: Vec<RawFrame>,
    /// `None` for a Close frame without a code.
    pub code: Option<u16>,
    pub reason: String,
}

/// A raw TCP peer that has completed the HTTP upgrade.
pub struct RawPeer {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// Sends an HTTP request and returns the whole response (the server closes
/// after every non-101 answer), as text.
pub async fn http_request(addr: SocketAddr, request: &str) -> String {
    within("http request", async {
        let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.expect("read response");
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

/// A well-formed upgrade request for `path`.
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

impl RawPeer {
    /// Opens a TCP connection and performs the upgrade by hand.
    pub async fn connect(server: &TestServer, path: &str) -> RawPeer {
        within("raw upgrade", async {
            let mut stream = TcpStream::connect(server.addr).await.expect("tcp connect");
            stream
                .write_all(upgrade_request(path).as_bytes())
                .await
                .expect("write upgrade");
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            let end = loop {
                let n = stream.read(&mut chunk).await.expect("read 101");
                assert!(n > 0, "server closed during the upgrade");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break pos + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            assert!(head.starts_with("HTTP/1.1 101"), "expected 101, got {head}");
            assert!(
                head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                "bad accept key in {head}"
            );
            buf.drain(..end);
            RawPeer { stream, buf }
        })
        .await
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        within("raw write", self.stream.write_all(bytes))
            .await
            .expect("raw write");
    }

    /// Writes one masked client frame.
    pub async fn send_frame(&mut self, opcode: u8, fin: bool, payload: &[u8]) {
        let bytes = frame(opcode, fin, payload, true);
        self.send_raw(&bytes).await;
    }

    /// Writes a masked Close frame with `code` and `reason`.
    pub async fn send_close(&mut self, code: u16, reason: &[u8]) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        self.send_frame(OP_CLOSE, true, &payload).await;
    }

    /// Reads one frame from the server, or `None` at end of stream (EOF or
    /// reset). Asserts server frames are unmasked.
    pub async fn read_frame(&mut self) -> Option<RawFrame> {
        within("read frame", async {
            loop {
                if let Some((frame, used)) = parse_frame(&self.buf) {
                    self.buf.drain(..used);
                    return Some(frame);
                }
                // A heap chunk: a stack array here would sit in every
                // caller's future and overflow test stacks. Reading into a
                // separate chunk keeps this cancel-safe (a timeout around it
                // loses nothing).
                let mut chunk = vec![0u8; 4096];
                let n = self.stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    assert!(self.buf.is_empty(), "stream ended inside a frame");
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
    }

    /// Reads frames until a Close frame; returns it with the frames that
    /// came before it.
    pub async fn read_until_close(&mut self) -> CloseSeen {
        let mut before = Vec::new();
        loop {
            let frame = self
                .read_frame()
                .await
                .expect("stream ended before a Close frame");
            if frame.opcode == OP_CLOSE {
                let p = &frame.payload;
                return CloseSeen {
                    before,
                    code: (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]])),
                    reason: String::from_utf8_lossy(p.get(2..).unwrap_or_default()).into_owned(),
                };
            }
            before.push(frame);
        }
    }

    /// Waits for the server to close the TCP stream (EOF or reset), failing
    /// if any frame arrives first.
    pub async fn expect_eof(&mut self) {
        if let Some(frame) = self.read_frame().await {
            panic!(
                "expected end of stream, got a frame with opcode {:#x}",
                frame.opcode
            );
        }
    }
}

/// Encodes one frame. Client frames must be masked (`mask = true`).
pub fn frame(opcode: u8, fin: bool, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if mask {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Parses one unmasked server frame from the front of `buf`.
fn parse_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
    let (len, header) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    if buf.len() < header + len {
        return None;
    }
    let payload = buf[header..header + len].to_vec();
    Some((
        RawFrame {
            fin,
            opcode,
            payload,
        },
        header + len,
    ))
}
