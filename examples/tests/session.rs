//! The `session` example: messages are echoed until the session's TTL, and
//! the first one after it is answered by Close 1008 "Session expired".

#[allow(dead_code, unreachable_pub)]
#[path = "../session.rs"]
mod session;

use std::time::Duration;

use wharf::test::TestServer;

#[async_std::test]
async fn messages_before_expiry_are_echoed() {
    let server = TestServer::start(session::app(Duration::from_secs(60))).await;
    let mut client = server.connect("/").await.expect("upgrade");
    for text in ["one", "two", "three"] {
        client.send_text(text).await;
        client.expect_text(text).await;
    }
}

#[async_std::test]
async fn the_first_message_after_the_ttl_gets_1008_session_expired() {
    // The example times sessions in its handlers (`Instant::now()`), which
    // `TestServer::advance` does not move: a TTL of zero has passed by the
    // time the first message arrives.
    let server = TestServer::start(session::app(Duration::ZERO)).await;
    let mut client = server.connect("/").await.expect("upgrade");
    // The check runs only when a message arrives: the connection stays
    // open past the TTL.
    client.expect_no_message(Duration::from_millis(50)).await;
    assert_eq!(server.stats().active, 1);
    client.send_text("too late").await;
    client.expect_close(1008, "Session expired").await;
}
