//! A raw peer, for bytes no well-behaved client would send and for peers
//! that do not answer: frames encoded and parsed by hand.

use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;

use crate::{upgrade_request, within, TestServer};

/// Opcode of a continuation frame.
pub const OP_CONT: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a Ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a Pong frame.
pub const OP_PONG: u8 = 0xA;

/// One frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The FIN bit: the last frame of its message.
    pub fin: bool,
    /// One of the `OP_*` opcodes (or whatever the server sent).
    pub opcode: u8,
    /// The unmasked payload.
    pub payload: Vec<u8>,
}

/// A Close frame from the server and the frames that preceded it.
#[derive(Debug)]
pub struct CloseSeen {
    /// The frames read before the Close.
    pub before: Vec<RawFrame>,
    /// `None` for a Close frame without a code.
    pub code: Option<u16>,
    /// The Close frame's reason, lossily decoded.
    pub reason: String,
}

/// A raw TCP peer that has completed the HTTP upgrade.
#[derive(Debug)]
pub struct RawPeer {
    /// The socket, for writes and shutdowns of the test's own.
    pub stream: TcpStream,
    /// Bytes read but not yet parsed into a frame.
    buf: Vec<u8>,
}

impl RawPeer {
    /// Opens a TCP connection to `server` and performs the upgrade of
    /// `path` by hand, checking the `101` and its accept key.
    pub async fn connect(server: &TestServer, path: &str) -> RawPeer {
        RawPeer::connect_to(server.addr, path).await
    }

    /// [`connect`](Self::connect) to a server at `addr` (one started by
    /// `wharf::test::TestServer`, say).
    pub async fn connect_to(addr: std::net::SocketAddr, path: &str) -> RawPeer {
        within("raw upgrade", async {
            let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
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

    /// A raw peer on a socket whose upgrade the caller has completed
    /// (the 101 head read, nothing after it).
    pub fn upgraded(stream: TcpStream) -> RawPeer {
        RawPeer {
            stream,
            buf: Vec::new(),
        }
    }

    /// Like [`connect`](Self::connect), on a socket that holds little: a
    /// 2 KiB receive buffer and a 536-byte MSS, so the server's kernel
    /// buffers for this peer hold some tens of KiB instead of megabytes
    /// (Linux sizes a send buffer from the peer's segment size). While this
    /// peer does not read, a message of about 100 KiB then blocks the
    /// server's writes yet fits in tungstenite's write buffer (128 KiB), so
    /// the server can hand its Close frame to tungstenite behind it.
    pub async fn connect_small_window(server: &TestServer, path: &str) -> RawPeer {
        let mut stream = crate::tcp::connect_configured(server.addr, |socket| {
            socket.set_recv_buffer_size(2048)?;
            socket.set_mss(536)
        })
        .await;
        within(
            "write upgrade",
            stream.write_all(upgrade_request(path).as_bytes()),
        )
        .await
        .expect("write upgrade");
        let head = crate::read_response_head(&mut stream)
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

/// Sends `bytes` after the upgrade from a fresh raw peer and returns the
/// code of the server's Close frame (`None` for a Close without one).
/// Checks nothing came before the Close and the server then ended the
/// stream.
pub async fn close_code_for(server: &TestServer, path: &str, bytes: &[u8]) -> Option<u16> {
    let mut peer = RawPeer::connect(server, path).await;
    peer.send_raw(bytes).await;
    peer.expect_lone_close().await
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
