//! Peers that break RFC 6455. Each violation is answered with one Close frame
//! carrying the code for it (1002 protocol error, 1007 invalid UTF-8, 1009
//! too big), then the server ends the TCP stream; the close handler sees that
//! code as a server-initiated end, and the server goes on serving other
//! clients.

use std::time::Duration;

use async_std::channel::{unbounded, Receiver, Sender};
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use wharf::{CloseCode, Closed, Conn, Handler, Initiator, Message, Server};
use wharf_test_support::*;

/// Echoes messages and reports every close.
struct Echo {
    closed: Sender<Closed>,
}

impl Handler for Echo {
    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        conn.send(msg).await
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        let _ = self.closed.send(closed.clone()).await;
    }
}

/// A running echo server on `/` and the close handler's records.
struct Fixture {
    server: TestServer,
    closed: Receiver<Closed>,
}

/// What the server did about one violation: the code of its Close frame on
/// the wire (`None` for a Close without a code), and what the close handler
/// was told.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    wire: Option<u16>,
    code: u16,
    initiator: Initiator,
}

/// The answer to a peer's Close with an invalid code: tungstenite answers
/// it with 1002 itself, and the peer did send the first Close, so the record
/// says `Client` with the 1002 that went on the wire.
fn refused_close() -> Answer {
    Answer {
        wire: Some(1002),
        code: 1002,
        initiator: Initiator::Client,
    }
}

/// The answer to a violation the server must fail the connection for.
fn failed_with(code: u16) -> Answer {
    Answer {
        wire: Some(code),
        code,
        initiator: Initiator::Server,
    }
}

/// Starts `server` with an echo route on `/`. The close timeout is short:
/// the peers here do not answer the server's Close.
async fn fixture(server: Server) -> Fixture {
    let (tx, rx) = unbounded();
    let server = start(
        server
            .close_timeout(Duration::from_millis(500))
            .route("/", Echo { closed: tx }),
    )
    .await;
    Fixture { server, closed: rx }
}

impl Fixture {
    async fn closed_record(&self) -> Closed {
        within("close handler", self.closed.recv())
            .await
            .expect("the server dropped its handler")
    }

    /// Sends `bytes` from a fresh raw peer and reads the server's answer:
    /// one Close frame and nothing before it, then the end of the stream.
    async fn provoke(&self, bytes: &[u8]) -> Answer {
        let wire = close_code_for(&self.server, "/", bytes).await;
        let closed = self.closed_record().await;
        Answer {
            wire,
            code: closed.code.as_u16(),
            initiator: closed.initiator,
        }
    }

    /// A well-behaved client still gets its echo, and leaves cleanly.
    async fn assert_still_serves(&self) {
        let mut client = connect(&self.server, "/").await;
        assert_echo(&mut client, "still there?").await;
        within("client close", client.close(None))
            .await
            .expect("send the Close");
        let msg = within("echo of the Close", client.next()).await;
        assert!(matches!(msg, Some(Ok(WsMessage::Close(None)))), "{msg:?}");
        assert!(within("end of stream", client.next()).await.is_none());
        let closed = self.closed_record().await;
        assert_eq!(closed.code, CloseCode::NO_STATUS);
        assert_eq!(closed.initiator, Initiator::Client);
        assert!(closed.clean);
        eventually("registry empty", || self.server.registry.count() == 0).await;
    }
}

/// Sends `bytes` from a raw peer to a fresh echo server built from `server`,
/// checks the server answers with `expected`, and that it still serves a
/// well-behaved client afterwards.
async fn assert_answered(server: Server, bytes: &[u8], expected: Answer) {
    let f = fixture(server).await;
    assert_eq!(f.provoke(bytes).await, expected);
    f.assert_still_serves().await;
}

/// Like [`assert_answered`] for several violations on one server: sends
/// `bytes_for(case)` from a fresh raw peer for each case, checks every case
/// was answered with `expected`, then that the server still serves.
async fn assert_each_answered<T: Copy + std::fmt::Debug + PartialEq>(
    server: Server,
    cases: &[T],
    bytes_for: impl Fn(T) -> Vec<u8>,
    expected: Answer,
) {
    let f = fixture(server).await;
    let mut got = Vec::new();
    for &case in cases {
        got.push((case, f.provoke(&bytes_for(case)).await));
    }
    let want: Vec<_> = cases.iter().map(|&c| (c, expected.clone())).collect();
    assert_eq!(got, want);
    f.assert_still_serves().await;
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

// ---- Close frames ----

#[async_std::test]
async fn invalid_peer_close_codes_get_1002() {
    let codes = [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ];
    let close_with = |code| frame(OP_CLOSE, true, &close_payload(code, b""), true);
    assert_each_answered(Server::new(), &codes, close_with, refused_close()).await;
}

#[async_std::test]
async fn invalid_peer_close_code_with_a_reason_gets_1002() {
    let bytes = frame(OP_CLOSE, true, &close_payload(1006, b"abnormal?"), true);
    assert_answered(Server::new(), &bytes, refused_close()).await;
}

#[async_std::test]
async fn close_reason_with_invalid_utf8_gets_1007() {
    let bytes = frame(
        OP_CLOSE,
        true,
        &close_payload(1000, b"bad \xff\xfe reason"),
        true,
    );
    assert_answered(Server::new(), &bytes, failed_with(1007)).await;
}

#[async_std::test]
async fn close_payload_of_one_byte_gets_1002() {
    let bytes = frame(OP_CLOSE, true, &[0x03], true);
    assert_answered(Server::new(), &bytes, failed_with(1002)).await;
}

// ---- invalid UTF-8 in text messages (1007) ----

#[async_std::test]
async fn text_with_invalid_utf8_gets_1007() {
    let bytes = frame(OP_TEXT, true, b"hello \xff world", true);
    assert_answered(Server::new(), &bytes, failed_with(1007)).await;
}

#[async_std::test]
async fn text_with_an_encoded_surrogate_gets_1007() {
    // U+D800 encoded as UTF-8 (ED A0 80) is not valid UTF-8.
    let bytes = frame(OP_TEXT, true, b"\xce\xba\xe1\xbd\xb9\xed\xa0\x80", true);
    assert_answered(Server::new(), &bytes, failed_with(1007)).await;
}

#[async_std::test]
async fn fragmented_text_with_invalid_utf8_gets_1007() {
    let mut bytes = frame(OP_TEXT, false, b"valid start ", true);
    bytes.extend(frame(OP_CONT, false, b"then \xc3\x28 bad", true));
    bytes.extend(frame(OP_CONT, true, b" end", true));
    assert_answered(Server::new(), &bytes, failed_with(1007)).await;
}

#[async_std::test]
async fn fragmented_text_ending_inside_a_character_gets_1007() {
    // Each fragment is fine on its own; the message ends with the first
    // byte of a two-byte character.
    let mut bytes = frame(OP_TEXT, false, b"caf", true);
    bytes.extend(frame(OP_CONT, true, b"\xc3", true));
    assert_answered(Server::new(), &bytes, failed_with(1007)).await;
}

// ---- sizes (1009) ----

#[async_std::test]
async fn message_over_max_message_size_gets_1009() {
    let bytes = frame(OP_BINARY, true, &[7u8; 1025], true);
    let server = Server::new().max_message_size(1024);
    assert_answered(server, &bytes, failed_with(1009)).await;
}

#[async_std::test]
async fn fragments_adding_up_over_max_message_size_get_1009() {
    let mut bytes = frame(OP_TEXT, false, &[b'a'; 400], true);
    bytes.extend(frame(OP_CONT, false, &[b'b'; 400], true));
    bytes.extend(frame(OP_CONT, true, &[b'c'; 400], true));
    let server = Server::new().max_message_size(1024);
    assert_answered(server, &bytes, failed_with(1009)).await;
}

#[async_std::test]
async fn message_of_exactly_max_message_size_is_accepted() {
    let f = fixture(Server::new().max_message_size(1024)).await;
    let mut peer = RawPeer::connect(&f.server, "/").await;
    let mut bytes = frame(OP_BINARY, false, &[1u8; 512], true);
    bytes.extend(frame(OP_CONT, true, &[2u8; 512], true));
    peer.send_raw(&bytes).await;
    let echo = peer.read_frame().await.expect("the echo");
    assert_eq!((echo.opcode, echo.fin), (OP_BINARY, true));
    assert_eq!(echo.payload.len(), 1024);
    assert!(echo.payload[..512].iter().all(|&b| b == 1));
    assert!(echo.payload[512..].iter().all(|&b| b == 2));
    peer.close_cleanly().await;
    let closed = f.closed_record().await;
    assert_eq!(closed.code, CloseCode::NORMAL);
    assert_eq!(closed.messages_in, 1);
}

#[async_std::test]
async fn frame_over_max_frame_size_gets_1009() {
    let bytes = frame(OP_BINARY, true, &[7u8; 1025], true);
    let server = Server::new().max_frame_size(1024);
    assert_answered(server, &bytes, failed_with(1009)).await;
}

// ---- framing (1002) ----

#[async_std::test]
async fn control_frames_over_125_bytes_get_1002() {
    let oversized = |opcode| {
        let payload = if opcode == OP_CLOSE {
            close_payload(1000, &[b'r'; 124])
        } else {
            vec![b'p'; 126]
        };
        assert_eq!(payload.len(), 126);
        frame(opcode, true, &payload, true)
    };
    let opcodes = [OP_PING, OP_PONG, OP_CLOSE];
    assert_each_answered(Server::new(), &opcodes, oversized, failed_with(1002)).await;
}

#[async_std::test]
async fn fragmented_control_frames_get_1002() {
    let fragmented = |opcode| {
        let mut bytes = frame(opcode, false, b"", true);
        bytes.extend(frame(OP_CONT, true, b"", true));
        bytes
    };
    let opcodes = [OP_PING, OP_PONG, OP_CLOSE];
    assert_each_answered(Server::new(), &opcodes, fragmented, failed_with(1002)).await;
}

#[async_std::test]
async fn continuation_without_a_start_gets_1002() {
    let bytes = frame(OP_CONT, true, b"orphan", true);
    assert_answered(Server::new(), &bytes, failed_with(1002)).await;
}

#[async_std::test]
async fn new_message_inside_a_fragmented_one_gets_1002() {
    let mut bytes = frame(OP_TEXT, false, b"first half", true);
    bytes.extend(frame(OP_TEXT, true, b"not a continuation", true));
    assert_answered(Server::new(), &bytes, failed_with(1002)).await;
}

#[async_std::test]
async fn reserved_opcodes_get_1002() {
    let opcodes = [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF];
    let with_opcode = |opcode| frame(opcode, true, b"x", true);
    assert_each_answered(Server::new(), &opcodes, with_opcode, failed_with(1002)).await;
}

#[async_std::test]
async fn nonzero_rsv_bits_get_1002() {
    // No extension is negotiated, so every RSV bit must be 0.
    let bits = [0x40u8, 0x20, 0x10, 0x70];
    let with_bit = |bit| {
        let mut bytes = frame(OP_TEXT, true, b"reserved", true);
        bytes[0] |= bit;
        bytes
    };
    assert_each_answered(Server::new(), &bits, with_bit, failed_with(1002)).await;
}

#[async_std::test]
async fn unmasked_client_frames_get_1002() {
    let opcodes = [OP_TEXT, OP_BINARY, OP_PING];
    let unmasked = |opcode| frame(opcode, true, b"bare", false);
    assert_each_answered(Server::new(), &opcodes, unmasked, failed_with(1002)).await;
}

/// A violation after valid traffic: the messages already received were
/// answered, then the Close comes, and nothing after it.
#[async_std::test]
async fn violation_after_valid_messages_gets_1002_after_their_echoes() {
    let f = fixture(Server::new()).await;
    let mut peer = RawPeer::connect(&f.server, "/").await;
    peer.send_frame(OP_TEXT, true, b"fine").await;
    let echo = peer.read_frame().await.expect("the echo");
    assert_eq!(
        (echo.opcode, echo.payload.as_slice()),
        (OP_TEXT, &b"fine"[..])
    );
    peer.send_raw(&frame(OP_CONT, true, b"orphan", true)).await;
    let seen = peer.read_lone_close().await;
    assert_eq!(seen.code, Some(1002));
    peer.expect_eof().await;
    drop(peer);
    let closed = f.closed_record().await;
    assert_eq!(closed.code, CloseCode::PROTOCOL_ERROR);
    assert_eq!(closed.initiator, Initiator::Server);
    assert_eq!((closed.messages_in, closed.messages_out), (1, 1));
    f.assert_still_serves().await;
}

#[async_std::test]
async fn protocol_error_reason_names_the_violation() {
    let f = fixture(Server::new()).await;
    let mut peer = RawPeer::connect(&f.server, "/").await;
    peer.send_frame(OP_CONT, true, b"orphan").await;
    let seen = peer.read_until_close().await;
    assert_eq!(seen.code, Some(1002));
    assert_eq!(seen.reason, "Continue frame but nothing to continue");
    peer.expect_eof().await;
    // Closing our side ends the server's drain without waiting for its deadline.
    drop(peer);
    let closed = f.closed_record().await;
    assert_eq!(closed.reason, "Continue frame but nothing to continue");
}
