//! Inbound backpressure: while a connection's message handler is busy, the
//! server reads only a bounded amount from that peer (by count and by bytes),
//! then stops reading until the handler catches up.

use std::time::Duration;

use wharf::{CloseCode, CloseOutcome, Server};
use wharf_test_support::*;

/// Sends "block" to a [`Gate`], then `count` binary messages of `size` bytes,
/// then a Ping; checks the server reports reading paused and the Ping is not
/// answered while the handler is blocked, and that it is answered (and
/// reading resumes) once the handler is released.
async fn reading_pauses(server: Server, count: usize, size: usize) {
    let (mut peer, gate) = blocked_peer(server).await;
    let paused = || gate.server.stats().reads_paused;
    assert_eq!(paused(), 0, "reading paused before the inbox filled");
    for _ in 0..count {
        peer.send_frame(OP_BINARY, true, &vec![7u8; size]).await;
    }
    peer.send_frame(OP_PING, true, b"are you reading?").await;

    // The server says so: reading is paused, the inbox is full.
    eventually("the server to pause reading", || paused() == 1).await;
    // And nothing comes back while it is: not the pong (the Ping waits unread
    // behind the messages), and no echo (the handler is blocked).
    let early = async_std::future::timeout(Duration::from_millis(300), peer.read_frame()).await;
    assert!(early.is_err(), "the server kept reading: got {early:?}");
    assert_eq!(paused(), 1, "reading resumed while the handler was blocked");

    within("release", gate.release.send(())).await.unwrap();
    let mut echoes = 0;
    loop {
        let frame = peer.read_frame().await.expect("frames after the release");
        match frame.opcode {
            OP_PONG => {
                assert_eq!(frame.payload, b"are you reading?");
                break;
            }
            OP_BINARY => echoes += 1,
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    // Every message is delivered in the end: backpressure loses nothing.
    while echoes < count {
        let frame = peer.read_frame().await.expect("the remaining echoes");
        assert_eq!(frame.opcode, OP_BINARY);
        echoes += 1;
    }
    // Reading has resumed, and stays so to the connection's end.
    eventually("the server to resume reading", || paused() == 0).await;
    peer.close_cleanly().await;
    let closed = next_event(&gate.closed).await;
    assert_eq!(closed.code, CloseCode::NORMAL, "{closed:?}");
    assert_eq!(paused(), 0);
}

#[async_std::test]
async fn reading_pauses_when_the_inbox_is_full_by_count() {
    // 16 messages fit (the default inbound_queue); 40 do not.
    reading_pauses(Server::new(), 40, 8).await;
}

#[async_std::test]
async fn reading_pauses_when_the_inbox_is_full_by_bytes() {
    // Three 400-byte messages reach the 1,000-byte limit long before the
    // count limit of 16.
    reading_pauses(Server::new().max_message_size(1000), 6, 400).await;
}

#[async_std::test]
async fn a_connection_closed_while_reading_is_paused_leaves_the_gauge() {
    let (mut peer, gate) = blocked_peer(Server::new()).await;
    let paused = || gate.server.stats().reads_paused;
    for _ in 0..40 {
        peer.send_frame(OP_BINARY, true, &[7u8; 8]).await;
    }
    eventually("the server to pause reading", || paused() == 1).await;

    // The server closes the connection from another task (as an admin
    // endpoint would): the waiting messages are dropped, and reading resumes
    // for the closing handshake while the handler is still blocked.
    let handle = gate
        .server
        .registry
        .handles()
        .pop()
        .expect("the connection");
    let closing = async_std::task::spawn(async move { handle.close(1000, "bye").await });
    let seen = peer.read_lone_close().await;
    assert_eq!((seen.code, seen.reason.as_str()), (Some(1000), "bye"));
    peer.send_close(1000, b"").await;
    peer.expect_eof().await;
    let outcome = within("close()", closing).await.expect("close");
    assert_eq!(outcome, CloseOutcome::Clean);
    eventually("the gauge to drop the closed connection", || paused() == 0).await;

    // The handler returns; the close handler runs; nothing is left paused.
    within("release", gate.release.send(())).await.unwrap();
    let closed = next_event(&gate.closed).await;
    assert_eq!(closed.code, CloseCode::NORMAL, "{closed:?}");
    eventually("registry empty", || gate.server.registry.count() == 0).await;
    assert_eq!(paused(), 0);
}
