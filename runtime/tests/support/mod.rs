//! Shared helpers for the integration tests: a real server on 127.0.0.1,
//! real clients (async-tungstenite's, and a raw TCP peer that speaks frames
//! by hand), and a timeout around every await.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::Message as WsMessage;
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt;
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

/// Awaits the next event on `events` (see [`next_event`]), which must match
/// `$pattern`, and yields `$out`; any other event fails the test, showing it.
/// For the event enums of test handlers:
/// `expect_event!(events, Event::Connected(handle) => handle)`.
#[allow(unused_macros)]
macro_rules! expect_event {
    ($events:expr, $pattern:pat => $out:expr) => {
        match $crate::support::next_event($events).await {
            $pattern => $out,
            other => panic!("expected {}, got {other:?}", stringify!($pattern)),
        }
    };
}
// Unused in the test binaries whose handlers report no events.
#[allow(unused_imports)]
pub(crate) use expect_event;

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

/// Sends `text` and checks the next message is its echo.
pub async fn assert_echo(client: &mut Client, text: &str) {
    within("send", client.send(WsMessage::text(text)))
        .await
        .expect("send");
    let echo = within("echo", client.next()).await;
    assert!(
        matches!(echo, Some(Ok(WsMessage::Text(ref t))) if t.as_str() == text),
        "expected the echo, got {echo:?}"
    );
}

/// Sends a Close with code 1000 (normal) and `reason`; reading its echo is
/// the caller's.
pub async fn send_normal_close(client: &mut Client, reason: &str) {
    let bye = CloseFrame {
        code: WsCloseCode::Normal,
        reason: reason.into(),
    };
    within("client close", client.close(Some(bye)))
        .await
        .expect("send the Close");
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

    /// Like [`connect`](Self::connect), on a socket that holds little: a
    /// 2 KiB receive buffer and a 536-byte MSS, so the server's kernel
    /// buffers for this peer hold some tens of KiB instead of megabytes
    /// (Linux sizes a send buffer from the peer's segment size). While this
    /// peer does not read, a message of about 100 KiB then blocks the
    /// server's writes yet fits in tungstenite's write buffer (128 KiB), so
    /// the server can hand its Close frame to tungstenite behind it.
    pub async fn connect_small_window(server: &TestServer, path: &str) -> RawPeer {
        use socket2::{Domain, Protocol, Socket, Type};
        let addr = server.addr;
        let connect = move || -> std::io::Result<std::net::TcpStream> {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_recv_buffer_size(2048)?;
            socket.set_mss(536)?;
            socket.connect(&addr.into())?;
            let stream: std::net::TcpStream = socket.into();
            stream.set_nonblocking(true)?;
            Ok(stream)
        };
        let stream = within("tcp connect", async_std::task::spawn_blocking(connect))
            .await
            .expect("tcp connect");
        let mut stream = TcpStream::from(stream);
        within(
            "write upgrade",
            stream.write_all(upgrade_request(path).as_bytes()),
        )
        .await
        .expect("write upgrade");
        let head = read_response_head(&mut stream)
            .await
            .expect("a response to the upgrade");
        assert!(head.starts_with("HTTP/1.1 101"), "expected 101, got {head}");
        RawPeer::upgraded(stream)
    }

    /// Reads frames until the server ends the stream; every frame it sent.
    pub async fn read_to_eof(&mut self) -> Vec<RawFrame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.read_frame().await {
            frames.push(frame);
        }
        frames
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

    /// Reads the server's Close, checking nothing came before it and the
    /// server then ended the stream; returns its code (`None` for a Close
    /// without one).
    pub async fn expect_lone_close(&mut self) -> Option<u16> {
        let code = self.read_lone_close().await.code;
        self.expect_eof().await;
        code
    }

    /// Reads the server's Close, checking no frame came before it.
    pub async fn read_lone_close(&mut self) -> CloseSeen {
        let seen = self.read_until_close().await;
        assert!(
            seen.before.is_empty(),
            "frames before the Close: {:?}",
            seen.before
        );
        seen
    }

    /// Closes with 1000, checks the server echoes it, and waits for the end
    /// of the stream.
    pub async fn close_cleanly(mut self) {
        self.send_close(1000, b"").await;
        assert_eq!(self.read_until_close().await.code, Some(1000));
        self.expect_eof().await;
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

// ---- hostile input: helpers for hostile.rs and fuzz.rs (and the violation
// checks of limits.rs and protocol_errors.rs) ----

// Unused in the test binaries that need none of them.
#[allow(unused_imports)]
pub use hostile_input::*;

mod hostile_input {
    use std::io::ErrorKind;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, Once};
    use std::time::{Duration, Instant};

    use async_std::channel::{unbounded, Receiver, Sender};
    use async_std::io::{ReadExt, WriteExt};
    use async_std::net::TcpStream;
    use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
    use async_tungstenite::tungstenite::Message as WsMessage;
    use futures_util::StreamExt;
    use wharf::{Closed, Conn, ConnId, Handler, Message};

    use super::{assert_echo, connect, send_normal_close, within, within_for, RawPeer, TestServer};

    /// Connections a [`RecordingEcho`] has seen start and end.
    #[derive(Debug, Clone, Default)]
    pub struct Tally {
        connects: Arc<AtomicUsize>,
        closes: Arc<AtomicUsize>,
    }

    impl Tally {
        /// Connect handlers run so far.
        pub fn connects(&self) -> usize {
            self.connects.load(Ordering::SeqCst)
        }

        /// Close handlers run so far.
        pub fn closes(&self) -> usize {
            self.closes.load(Ordering::SeqCst)
        }
    }

    /// Echoes every message; counts connects and closes and reports each
    /// connection's start and end, with its id, on channels.
    pub struct RecordingEcho {
        tally: Tally,
        opened: Sender<ConnId>,
        closed: Sender<(ConnId, Closed)>,
    }

    impl Handler for RecordingEcho {
        async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
            self.tally.connects.fetch_add(1, Ordering::SeqCst);
            let _ = self.opened.send(conn.id()).await;
            Ok(())
        }

        async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
            conn.send(msg).await
        }

        async fn on_close(&self, conn: &Conn, closed: &Closed) {
            self.tally.closes.fetch_add(1, Ordering::SeqCst);
            let _ = self.closed.send((conn.id(), closed.clone())).await;
        }
    }

    /// What a [`RecordingEcho`] reports.
    pub struct Recorded {
        pub tally: Tally,
        opened: Receiver<ConnId>,
        closed: Receiver<(ConnId, Closed)>,
    }

    impl Recorded {
        /// The id of the next connection that ran its connect handler.
        pub async fn next_opened(&self) -> ConnId {
            within("connect handler", self.opened.recv())
                .await
                .expect("the server dropped its handler")
        }

        /// How connection `id` ended; ends of other connections reported
        /// before it are skipped.
        pub async fn closed_of(&self, id: ConnId) -> Closed {
            loop {
                let (got, closed) = self.next_closed().await;
                if got == id {
                    return closed;
                }
            }
        }

        /// The next connection end, in the order the close handlers ran.
        pub async fn next_closed(&self) -> (ConnId, Closed) {
            within("close handler", self.closed.recv())
                .await
                .expect("the server dropped its handler")
        }

        /// Waits until every connection that ran its connect handler has
        /// run its close handler too (a panic in a connection task would
        /// skip it), and checks no close handler ran without a connect.
        pub async fn assert_all_closed(&self) {
            let tally = &self.tally;
            super::eventually("every connect has its close", || {
                tally.closes() >= tally.connects()
            })
            .await;
            assert_eq!(
                tally.closes(),
                tally.connects(),
                "close handlers vs connects"
            );
        }
    }

    /// An echo handler and what it reports.
    pub fn recording_echo() -> (RecordingEcho, Recorded) {
        let (opened_tx, opened) = unbounded();
        let (closed_tx, closed) = unbounded();
        let tally = Tally::default();
        let echo = RecordingEcho {
            tally: tally.clone(),
            opened: opened_tx,
            closed: closed_tx,
        };
        (
            echo,
            Recorded {
                tally,
                opened,
                closed,
            },
        )
    }

    impl RawPeer {
        /// A raw peer on a socket whose upgrade the caller has completed
        /// (the 101 head read, nothing after it).
        pub fn upgraded(stream: TcpStream) -> RawPeer {
            RawPeer {
                stream,
                buf: Vec::new(),
            }
        }
    }

    /// A fresh, well-behaved client on `path` is served: it connects, gets
    /// its echo, closes with 1000 and gets the echo of its Close, then the
    /// server ends the stream.
    pub async fn assert_serves_fresh_client(server: &TestServer, path: &str) {
        let mut client = connect(server, path).await;
        assert_echo(&mut client, "still there?").await;
        send_normal_close(&mut client, "done").await;
        let msg = within("echo of the Close", client.next()).await;
        assert!(
            matches!(msg, Some(Ok(WsMessage::Close(Some(ref f)))) if f.code == WsCloseCode::Normal),
            "expected the echo of the Close, got {msg:?}"
        );
        assert!(within("end of stream", client.next()).await.is_none());
    }

    /// Sends raw `bytes` (which need not be text) and returns everything the
    /// server answers until it ends the stream, as text.
    pub async fn http_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
        within("http exchange", async {
            let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
            stream.write_all(bytes).await.expect("write request");
            let mut out = Vec::new();
            stream.read_to_end(&mut out).await.expect("read response");
            String::from_utf8_lossy(&out).into_owned()
        })
        .await
    }

    /// The status code of an HTTP/1.1 response, if `response` starts with a
    /// well-formed status line.
    pub fn http_status(response: &str) -> Option<u16> {
        let rest = response.strip_prefix("HTTP/1.1 ")?;
        let code = rest.get(..3)?;
        if rest.as_bytes().get(3) != Some(&b' ') || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        code.parse().ok()
    }

    /// Reads a response head (up to the blank line) one byte at a time, so
    /// nothing after it is consumed. `None` when the stream ends first (the
    /// bytes read so far are then in `partial` of the panic message, never
    /// silently dropped: a server that answers must answer whole).
    pub async fn read_response_head(stream: &mut TcpStream) -> Option<String> {
        within("response head", async {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte).await {
                    Ok(1) => head.push(byte[0]),
                    _ => {
                        assert!(
                            head.is_empty(),
                            "the stream ended inside a response head: {:?}",
                            String::from_utf8_lossy(&head)
                        );
                        return None;
                    }
                }
                assert!(head.len() < 64 << 10, "endless response head");
            }
            Some(String::from_utf8_lossy(&head).into_owned())
        })
        .await
    }

    /// Reads and discards until the server ends the stream (EOF or reset),
    /// failing after `limit`; returns how many bytes arrived before the end.
    pub async fn wait_until_dropped(stream: &mut TcpStream, limit: Duration) -> usize {
        within_for(limit, "the server to drop the socket", async {
            let mut total = 0;
            let mut chunk = vec![0u8; 4096];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) => return total,
                    Ok(n) => total += n,
                    Err(err) => {
                        assert!(
                            matches!(
                                err.kind(),
                                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                            ),
                            "unexpected read error: {err}"
                        );
                        return total;
                    }
                }
            }
        })
        .await
    }

    /// Writes `bytes` one at a time, `pace` apart, until done or the server
    /// drops the socket; returns how many were written. The pace is the
    /// client's, not a wait for an event: the loop is bounded by `bytes`.
    pub async fn trickle(mut stream: TcpStream, bytes: Vec<u8>, pace: Duration) -> usize {
        for (i, byte) in bytes.iter().enumerate() {
            if stream.write_all(&[*byte]).await.is_err() {
                return i;
            }
            async_std::task::sleep(pace).await;
        }
        bytes.len()
    }

    /// Sends `bytes` after the upgrade from a fresh raw peer and returns the
    /// code of the server's Close frame (`None` for a Close without one).
    /// Checks nothing came before the Close and the server then ended the
    /// stream.
    pub async fn close_code_for(server: &TestServer, path: &str, bytes: &[u8]) -> Option<u16> {
        let mut peer = RawPeer::connect(server, path).await;
        peer.send_raw(bytes).await;
        peer.expect_lone_close().await
    }

    /// Connects `n` TCP sockets to `addr`, `batch` at a time, and returns
    /// them with the instant each connect started.
    pub async fn connect_many(
        addr: SocketAddr,
        n: usize,
        batch: usize,
    ) -> Vec<(TcpStream, Instant)> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let take = batch.min(n - out.len());
            let started = Instant::now();
            let streams = within(
                "tcp connects",
                futures_util::future::join_all((0..take).map(|_| TcpStream::connect(addr))),
            )
            .await;
            for stream in streams {
                out.push((stream.expect("tcp connect"), started));
            }
        }
        out
    }

    // ---- panics outside the test code ----

    static HOOK: Once = Once::new();
    static SERVER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// Records every panic raised outside `tests/` (in Wharf or a
    /// dependency, on any thread), while still printing it as usual. A
    /// panic in a connection task does not fail a test by itself (the task
    /// is detached), so tests check [`server_panics`].
    pub fn install_panic_detector() {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let location = info.location().map(|l| l.file().to_owned());
                let in_tests = location
                    .as_deref()
                    .is_some_and(|file| file.contains("tests/") || file.contains("tests\\"));
                if !in_tests {
                    let what = format!("{info}");
                    SERVER_PANICS
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(what);
                }
                previous(info);
            }));
        });
    }

    /// Panics recorded by [`install_panic_detector`] so far.
    pub fn server_panics() -> Vec<String> {
        SERVER_PANICS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fails the test if anything outside the tests panicked.
    pub fn assert_no_server_panic() {
        let panics = server_panics();
        assert!(panics.is_empty(), "the server panicked: {panics:#?}");
    }
}

// ---- a handler that blocks: reading paused behind it (backpressure.rs,
// limits.rs) ----

// Unused in the test binaries that need none of them.
#[allow(unused_imports)]
pub use gate::*;

mod gate {
    use async_std::channel::{unbounded, Receiver, Sender};
    use wharf::{Closed, Conn, Handler, Message, Registry, Server};

    use super::{next_event, start, RawPeer, OP_TEXT};

    /// Blocks its message handler on the text "block" until the test
    /// releases it; echoes everything else; reports every close.
    pub struct Gate {
        entered: Sender<()>,
        release: Receiver<()>,
        closed: Sender<Closed>,
    }

    impl Handler for Gate {
        async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
            if msg.as_text() == Some("block") {
                let _ = self.entered.send(()).await;
                let _ = self.release.recv().await;
                return Ok(());
            }
            conn.send(msg).await
        }

        async fn on_close(&self, _conn: &Conn, closed: &Closed) {
            let _ = self.closed.send(closed.clone()).await;
        }
    }

    /// The test's side of a [`Gate`].
    pub struct Gated {
        /// Send `()` to let the blocked handler return.
        pub release: Sender<()>,
        /// How each connection ended.
        pub closed: Receiver<Closed>,
        /// The server's registry.
        pub registry: Registry,
    }

    /// Starts `server` with a [`Gate`] on `/`, connects a raw peer, and
    /// blocks its message handler with "block" (returning once it has
    /// blocked).
    pub async fn blocked_peer(server: Server) -> (RawPeer, Gated) {
        let (entered_tx, entered) = unbounded();
        let (release, release_rx) = unbounded();
        let (closed_tx, closed) = unbounded();
        let server = start(server.route(
            "/",
            Gate {
                entered: entered_tx,
                release: release_rx,
                closed: closed_tx,
            },
        ))
        .await;
        let mut peer = RawPeer::connect(&server, "/").await;
        peer.send_frame(OP_TEXT, true, b"block").await;
        next_event(&entered).await;
        let registry = server.registry.clone();
        (
            peer,
            Gated {
                release,
                closed,
                registry,
            },
        )
    }
}

// ---- a server with its handle: shutdown, stats (limits.rs, admission.rs,
// graceful_shutdown.rs, metrics.rs) ----

/// A server started by [`start_with_handle`].
pub struct Running {
    /// Its address and registry.
    pub server: TestServer,
    /// Its handle: `shutdown()`, `stats()`.
    pub handle: wharf::ServerHandle,
    /// The task running `Listening::run`: resolves with the shutdown
    /// summary once a graceful shutdown has drained.
    pub run: async_std::task::JoinHandle<wharf::Result<wharf::CloseSummary>>,
}

/// Binds `server` to 127.0.0.1:0, takes its handle, and runs it in a
/// background task whose result the test can await.
pub async fn start_with_handle(server: Server) -> Running {
    init_tracing();
    let listening = within("bind", server.bind("127.0.0.1:0"))
        .await
        .expect("bind");
    let handle = listening.handle();
    let server = TestServer {
        addr: listening.local_addr(),
        registry: listening.registry(),
    };
    let run = async_std::task::spawn(listening.run());
    Running {
        server,
        handle,
        run,
    }
}
