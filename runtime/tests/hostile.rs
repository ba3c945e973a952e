//! Hostile input: peers that do not speak HTTP, send too much, send too
//! slowly, open a thousand sockets and say nothing, flood messages without
//! reading, or break RFC 6455 framing. Each case ends in a clear HTTP status or close
//! code, and afterwards the server still serves a fresh client (connect,
//! echo, clean close). Some cases repeat `handshake.rs` and
//! `protocol_errors.rs` in that "and then it still serves" form. The ping
//! flood, whose check reads the process's memory, has a binary of its own:
//! `memory.rs`.

use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::io::WriteExt;
use futures_util::future::join_all;
use futures_util::{AsyncReadExt, FutureExt};
use wharf::{CloseCode, Error, Initiator, Message, Server};
use wharf_test_support::*;

/// Short, so the slow and silent clients are cut quickly.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);

/// An echo server on `/` and what its handler saw.
struct Fixture {
    server: TestServer,
    recorded: Recorded,
}

/// Starts `server` with a recording echo route on `/`. The close timeout is
/// short: the peers here do not answer the server's Close.
async fn fixture(server: Server) -> Fixture {
    install_panic_detector();
    let (echo, recorded) = recording_echo();
    let server = start(
        server
            .close_timeout(Duration::from_millis(500))
            .route("/", echo),
    )
    .await;
    Fixture { server, recorded }
}

impl Fixture {
    /// A fresh client is served, and its end is recorded as a clean close
    /// started by the client with 1000.
    async fn assert_still_serves(&self) {
        assert_serves_fresh_client(&self.server, "/").await;
        let (_, closed) = self.recorded.next_closed().await;
        assert_eq!(closed.code, CloseCode::NORMAL);
        assert_eq!(closed.initiator, Initiator::Client);
        assert!(closed.clean, "{closed:?}");
    }

    /// Nothing is left: the registry is empty, every connection that ran
    /// its connect handler ran its close handler, and nothing panicked.
    async fn assert_all_ended(&self) {
        eventually("registry empty", || self.server.registry.count() == 0).await;
        self.recorded.assert_all_closed().await;
        assert_no_server_panic();
    }

    /// Sends `bytes` after the upgrade and returns the close code on the
    /// wire, checking the close handler saw the same code as a
    /// server-initiated end.
    async fn violation(&self, bytes: &[u8]) -> Option<u16> {
        let wire = close_code_for(&self.server, "/", bytes).await;
        let (_, closed) = self.recorded.next_closed().await;
        assert_eq!(Some(closed.code.as_u16()), wire, "{closed:?}");
        assert_eq!(closed.initiator, Initiator::Server, "{closed:?}");
        wire
    }
}

// ---- before the handshake ----

#[async_std::test]
async fn bytes_that_are_not_http_get_400_and_the_server_still_serves() {
    let f = fixture(Server::new()).await;
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let inputs: [&[u8]; 6] = [
        &every_byte,
        // Other protocols on the wrong port.
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"{\"op\":\"subscribe\"}\n",
        // A WebSocket frame without any handshake.
        b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
        // A request with a header name that is not a token.
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\x01\x02: x\r\n\r\n",
    ];
    for input in inputs {
        let response = http_exchange(f.server.addr, input).await;
        assert_eq!(http_status(&response), Some(400), "{input:?}: {response:?}");
    }
    assert_eq!(f.recorded.tally.connects(), 0, "nothing was upgraded");
    f.assert_still_serves().await;
    f.assert_all_ended().await;
}

#[async_std::test]
async fn request_heads_over_the_limit_get_431_and_the_server_still_serves() {
    let f = fixture(Server::new()).await;
    let limit = 8 << 10; // the default of `Server::max_request_bytes`
    assert_eq!(limit, 8 << 10, "the documented default");
    let valid = upgrade_request("/");
    let head = valid.strip_suffix("\r\n").unwrap();

    // One header that alone is over the limit.
    let one_big = format!("{head}X-Pad: {}\r\n\r\n", "a".repeat(limit));
    // Fewer headers than the parser takes, each well under the limit,
    // adding up past it.
    let many: String = (0..40)
        .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(250)))
        .collect();
    let many_small = format!("{head}{many}\r\n");
    assert!(many_small.len() > limit);
    // A header line that never ends.
    let endless = format!("{head}X-Pad: {}", "b".repeat(2 * limit));
    // More header lines than the parser takes, in well under the byte limit.
    let lines: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let too_many = format!("{head}{lines}\r\n");
    assert!(too_many.len() < limit);

    for (what, request) in [
        ("one big header", one_big),
        ("headers adding up past the limit", many_small),
        ("an endless header line", endless),
        ("too many header lines", too_many),
    ] {
        let response = http_exchange(f.server.addr, &request).await;
        assert_eq!(http_status(&response), Some(431), "{what}: {response:?}");
    }
    assert_eq!(f.recorded.tally.connects(), 0, "nothing was upgraded");
    f.assert_still_serves().await;
    f.assert_all_ended().await;
}

#[async_std::test]
async fn a_client_sending_a_byte_at_a_time_is_cut_at_the_handshake_timeout() {
    let f = fixture(Server::new().upgrade_timeout(HANDSHAKE_TIMEOUT)).await;
    let request = upgrade_request("/").into_bytes();
    let pace = Duration::from_millis(50);
    // Sending it all would take several seconds; the timeout is total, not
    // per read, so the server must cut the client well before.
    assert!(pace * request.len() as u32 > HANDSHAKE_TIMEOUT * 10);

    let started = Instant::now();
    let mut stream = within(
        "tcp connect",
        async_std::net::TcpStream::connect(f.server.addr),
    )
    .await
    .expect("tcp connect");
    let writer = async_std::task::spawn(trickle(stream.clone(), request.clone(), pace));
    let answered = wait_until_dropped(&mut stream, HANDSHAKE_TIMEOUT + STEP).await;
    let elapsed = started.elapsed();
    assert_eq!(
        answered, 0,
        "the server must drop the socket without answering"
    );
    assert!(
        elapsed >= HANDSHAKE_TIMEOUT,
        "dropped after {elapsed:?}, before the {HANDSHAKE_TIMEOUT:?} timeout"
    );
    let written = within("the writer to notice", writer).await;
    assert!(
        written < request.len(),
        "the whole request went through: {written} bytes"
    );
    assert_eq!(f.recorded.tally.connects(), 0, "nothing was upgraded");
    f.assert_still_serves().await;
    f.assert_all_ended().await;
}

#[async_std::test]
async fn a_thousand_silent_connections_are_all_cut_and_others_are_served_meanwhile() {
    // Long enough that every silent socket is still open while the fresh
    // client is served, short enough to keep the test quick.
    const TIMEOUT: Duration = Duration::from_secs(3);
    const SILENT: usize = 1000;
    let f = fixture(Server::new().upgrade_timeout(TIMEOUT)).await;
    let silent = connect_many(f.server.addr, SILENT, 100).await;

    // Meanwhile, a fresh client gets in and out.
    f.assert_still_serves().await;
    // ... and it really was meanwhile: no silent socket has been cut yet.
    let mut silent = silent;
    let mut scratch = [0u8; 16];
    let mut already_cut = 0;
    for (stream, _) in &mut silent {
        // One poll: ready only if the server has ended the stream already.
        if stream.read(&mut scratch).now_or_never().is_some() {
            already_cut += 1;
        }
    }
    assert_eq!(
        already_cut, 0,
        "silent sockets were cut before the fresh client was served"
    );

    // Every silent socket is cut, none before the timeout, none answered.
    let cuts = join_all(silent.into_iter().map(|(mut stream, started)| async move {
        let answered = wait_until_dropped(&mut stream, TIMEOUT + STEP).await;
        (answered, started.elapsed())
    }))
    .await;
    for (i, (answered, elapsed)) in cuts.into_iter().enumerate() {
        assert_eq!(answered, 0, "silent socket {i} got an answer");
        assert!(
            elapsed >= TIMEOUT,
            "silent socket {i} cut after {elapsed:?}, before the {TIMEOUT:?} timeout"
        );
    }
    assert_eq!(
        f.recorded.tally.connects(),
        1,
        "only the fresh client was upgraded"
    );
    f.assert_still_serves().await;
    f.assert_all_ended().await;
}

// ---- after the handshake ----

/// A peer that floods messages and never reads: the server's send queue
/// fills to its bound and no further (`try_send` says `QueueFull`), the
/// server stops reading from that peer instead of buffering, other clients
/// are served meanwhile, and when the flooder goes away the connection ends
/// with what the server held bounded by its queues.
#[async_std::test]
async fn a_flooding_client_that_never_reads_is_held_back_and_the_server_stays_responsive() {
    const SEND_QUEUE: usize = 8;
    let inbound_queue = 16; // the default of `Server::inbound_queue`
    let f = fixture(Server::new().send_queue(SEND_QUEUE)).await;
    let peer = RawPeer::connect(&f.server, "/").await;
    eventually("the flooder is registered", || {
        f.server.registry.count() == 1
    })
    .await;
    let flooder = f.server.registry.handles().pop().unwrap();

    // 64 MiB in 1 KiB messages: far more than the socket buffers on both
    // sides hold, so the writer must block once the server stops reading.
    let one = frame(OP_BINARY, true, &[0x5a; 1024], true);
    let total: u64 = 64 << 10;
    let sent = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut stream = peer.stream.clone();
        let (sent, finished) = (Arc::clone(&sent), Arc::clone(&finished));
        async_std::task::spawn(async move {
            for _ in 0..total {
                if stream.write_all(&one).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
            finished.store(true, Ordering::SeqCst);
        })
    };

    // The send queue fills to its bound and no further. (A probe that finds
    // room is queued like any message.) The server stops reading once its writes block, so the echoes alone
    // may not fill the queue; 1 KiB probes do, once they have also filled
    // tungstenite's write buffer (128 KiB) behind the blocked socket.
    let probe = Message::binary(vec![0x70; 1024]);
    eventually("the flooder's send queue is full", || {
        (0..64).any(|_| match flooder.try_send(probe.clone()) {
            Ok(()) => false,
            Err(Error::QueueFull) => true,
            Err(other) => panic!("unexpected {other:?}"),
        })
    })
    .await;
    assert!(flooder.is_open());

    // Other clients do not notice.
    f.assert_still_serves().await;
    assert!(
        !finished.load(Ordering::SeqCst),
        "the flooder wrote all {total} messages: the server read without bound"
    );

    // The flooder goes away without reading: the connection ends.
    peer.stream.shutdown(Shutdown::Both).expect("shutdown");
    within("the writer to stop", writer).await;
    let sent = sent.load(Ordering::SeqCst);
    drop(peer);
    let (id, closed) = f.recorded.next_closed().await;
    assert_eq!(id, flooder.id());
    assert_eq!(closed.code, CloseCode::ABNORMAL, "{closed:?}");
    assert_eq!(closed.initiator, Initiator::Abnormal);
    // What the server took in but had not written out is bounded by its
    // queues: the messages waiting to be handled, the one being handled,
    // and the send queue.
    assert!(
        closed.messages_in <= closed.messages_out + (SEND_QUEUE + inbound_queue + 1) as u64,
        "the server held more than its queues: {closed:?}"
    );
    assert!(closed.messages_in <= sent, "{closed:?} vs {sent} sent");
    assert!(
        closed.messages_in < total,
        "the server read everything: {closed:?}"
    );
    f.assert_still_serves().await;
    f.assert_all_ended().await;
}

#[async_std::test]
async fn control_frames_over_125_bytes_get_1002_and_the_server_still_serves() {
    let f = fixture(Server::new()).await;
    for opcode in [OP_PING, OP_PONG, OP_CLOSE] {
        let mut payload = vec![b'p'; 126];
        if opcode == OP_CLOSE {
            payload[..2].copy_from_slice(&1000u16.to_be_bytes());
        }
        let bytes = frame(opcode, true, &payload, true);
        assert_eq!(f.violation(&bytes).await, Some(1002), "opcode {opcode:#x}");
        f.assert_still_serves().await;
    }
    f.assert_all_ended().await;
}

#[async_std::test]
async fn fragmented_control_frames_get_1002_and_the_server_still_serves() {
    let f = fixture(Server::new()).await;
    for opcode in [OP_PING, OP_PONG, OP_CLOSE] {
        let mut bytes = frame(opcode, false, b"", true);
        bytes.extend(frame(OP_CONT, true, b"", true));
        assert_eq!(f.violation(&bytes).await, Some(1002), "opcode {opcode:#x}");
        f.assert_still_serves().await;
    }
    f.assert_all_ended().await;
}

#[async_std::test]
async fn a_continuation_without_a_start_gets_1002_and_the_server_still_serves() {
    let f = fixture(Server::new()).await;
    for fin in [true, false] {
        let bytes = frame(OP_CONT, fin, b"orphan", true);
        assert_eq!(f.violation(&bytes).await, Some(1002), "fin {fin}");
        f.assert_still_serves().await;
    }
    f.assert_all_ended().await;
}

#[async_std::test]
async fn unmasked_client_frames_get_1002_and_the_server_still_serves() {
    let f = fixture(Server::new()).await;
    for opcode in [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE] {
        // A payload that is valid for each opcode: only the mask is wrong.
        let payload: &[u8] = if opcode == OP_CLOSE {
            b"\x03\xe8bare"
        } else {
            b"bare"
        };
        let bytes = frame(opcode, true, payload, false);
        assert_eq!(f.violation(&bytes).await, Some(1002), "opcode {opcode:#x}");
        f.assert_still_serves().await;
    }
    f.assert_all_ended().await;
}

#[async_std::test]
async fn a_fragmented_message_interleaved_with_pings_is_echoed_whole() {
    let f = fixture(Server::new()).await;
    let mut peer = RawPeer::connect(&f.server, "/").await;
    let mut bytes = frame(OP_TEXT, false, "Hel".as_bytes(), true);
    bytes.extend(frame(OP_PING, true, b"one", true));
    bytes.extend(frame(OP_CONT, false, "lo, wö".as_bytes(), true));
    bytes.extend(frame(OP_PING, true, b"two", true));
    bytes.extend(frame(OP_CONT, false, b"", true));
    bytes.extend(frame(OP_PING, true, b"", true));
    bytes.extend(frame(OP_CONT, true, "rld".as_bytes(), true));
    peer.send_raw(&bytes).await;
    // A last ping after the message: its pong comes after everything the
    // server has to say about the frames before it.
    peer.send_frame(OP_PING, true, b"last").await;

    let mut pongs = Vec::new();
    let mut echoes = Vec::new();
    while pongs.last().map(Vec::as_slice) != Some(&b"last"[..]) || echoes.is_empty() {
        let frame = peer.read_frame().await.expect("a pong or the echo");
        match frame.opcode {
            OP_PONG => pongs.push(frame.payload),
            OP_TEXT => {
                assert!(frame.fin, "the echo is one frame");
                echoes.push(String::from_utf8(frame.payload).expect("UTF-8 echo"));
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    assert_eq!(echoes, ["Hello, wörld"]);
    // A pong for each ping, in order (RFC 6455 5.5.3 lets an endpoint answer
    // only the latest of pings it has not answered yet, so some may merge).
    let expected: [&[u8]; 4] = [b"one", b"two", b"", b"last"];
    let mut rest = expected.iter();
    for pong in &pongs {
        assert!(
            rest.any(|p| *p == pong.as_slice()),
            "pongs out of order or unknown: {pongs:?}"
        );
    }

    peer.close_cleanly().await;
    let (_, closed) = f.recorded.next_closed().await;
    assert_eq!(closed.code, CloseCode::NORMAL);
    assert_eq!((closed.messages_in, closed.messages_out), (1, 1));
    assert!(closed.clean);
    f.assert_still_serves().await;
    f.assert_all_ended().await;
}
