//! The `session` example: messages are echoed until the session's TTL, and
//! the first one after it is answered by Close 1008 "Session expired".

#[allow(dead_code, unreachable_pub)]
#[path = "../session.rs"]
mod session;

use std::time::{Duration, Instant};

use wharf_test_support::*;

#[async_std::test]
async fn messages_before_expiry_are_echoed() {
    let server = start(session::app(Duration::from_secs(60))).await;
    let mut client = connect(&server, "/").await;
    for text in ["one", "two", "three"] {
        send_text(&mut client, text).await;
        assert_eq!(next_text(&mut client).await, text);
    }
}

#[async_std::test]
async fn the_first_message_after_the_ttl_gets_1008_session_expired() {
    let ttl = Duration::from_millis(150);
    let server = start(session::app(ttl)).await;
    // Taken before connecting, so no earlier than the server's own clock
    // for the session.
    let started = Instant::now();
    let mut client = connect(&server, "/").await;

    // Let the session expire. The check runs only when a message arrives:
    // the connection is still open after the TTL.
    async_std::task::sleep(ttl).await;
    assert_eq!(server.handle.stats().active, 1);

    // The server's clock started a little after ours, so the first message
    // may still be in time; keep sending until the close comes.
    let mut sent = 0;
    let closed = within("the expiry close", async {
        loop {
            send_text(&mut client, &format!("message {sent}")).await;
            sent += 1;
            match next_message(&mut client).await {
                Reply::Echo(text) => assert_eq!(text, format!("message {}", sent - 1)),
                Reply::Closed(closed) => break closed,
            }
        }
    })
    .await;
    assert_eq!(
        closed.close,
        Some((1008, "Session expired".into())),
        "{closed:?}"
    );
    assert!(started.elapsed() >= ttl);
    assert!(
        sent < 100,
        "the session never expired: {sent} messages echoed"
    );
}

/// What the server answered a message with.
enum Reply {
    Echo(String),
    Closed(ClosedBy),
}

/// Reads the echo of the last message, or the close that replaced it.
async fn next_message(client: &mut Client) -> Reply {
    use async_tungstenite::tungstenite::Message as WsMessage;
    use futures_util::StreamExt;

    match within("reply", client.next()).await {
        Some(Ok(WsMessage::Text(text))) => Reply::Echo(text.as_str().to_owned()),
        Some(Ok(WsMessage::Close(frame))) => {
            // The rest of the handshake: let the client answer, then EOF.
            let mut rest = closed_by_server(client).await;
            rest.close =
                frame.map(|frame| (u16::from(frame.code), frame.reason.as_str().to_owned()));
            Reply::Closed(rest)
        }
        other => panic!("expected an echo or a Close, got {other:?}"),
    }
}
