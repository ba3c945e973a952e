//! Inbound backpressure: while a connection's message handler is busy, the
//! server reads only a bounded amount from that peer (by count and by bytes),
//! then stops reading until the handler catches up.

use std::time::Duration;

use wharf::Server;
use wharf_test_support::*;

/// Sends "block" to a [`Gate`], then `count` binary messages of `size` bytes,
/// then a Ping; checks the Ping is not answered while the handler is blocked
/// (reading has paused), and is answered once it is released.
async fn reading_pauses(server: Server, count: usize, size: usize) {
    let (mut peer, gate) = blocked_peer(server).await;
    for _ in 0..count {
        peer.send_frame(OP_BINARY, true, &vec![7u8; size]).await;
    }
    peer.send_frame(OP_PING, true, b"are you reading?").await;

    // Nothing can come back while reading is paused: not the pong, and no
    // echo (the handler is blocked). A missing pause shows up as a pong here.
    let early = async_std::future::timeout(Duration::from_millis(300), peer.read_frame()).await;
    assert!(early.is_err(), "the server kept reading: got {early:?}");

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
