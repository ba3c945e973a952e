//! The `chat` example: joining, sending to the room, the name check and
//! the `/quit` and `/kick` commands, with the test kit's clients; and the
//! same room on two nodes sharing a real `redis-server`.

#[allow(dead_code, unreachable_pub)]
#[path = "../chat.rs"]
mod chat;

use wharf::test::{TestClient, TestServer};
use wharf_test_support::{until_count, RedisServer};

/// Joins as `name` and reads the welcome line.
async fn join(server: &TestServer, name: &str) -> TestClient {
    let path = format!("/chat?name={name}");
    let mut client = server.connect(&path).await.expect("upgrade");
    let welcome = client.recv_text().await;
    assert!(
        welcome.starts_with(&format!("* welcome, {name}.")),
        "{welcome}"
    );
    client
}

#[async_std::test]
async fn the_page_is_served_at_the_root() {
    let server = TestServer::start(chat::app(None)).await;
    let page = server.get("/").await;
    assert_eq!(page.status(), 200, "{page}");
    let content_type = page.header("content-type").unwrap_or_default();
    assert!(content_type.contains("text/html"), "{page:?}");
    assert!(page.body().contains("<title>Wharf chat</title>"), "{page}");
}

#[async_std::test]
async fn members_join_and_lines_reach_everyone() {
    let server = TestServer::start(chat::app(None)).await;
    let mut ann = join(&server, "ann").await;
    let mut bob = server.connect("/chat?name=bob").await.expect("upgrade");
    bob.expect_text("* welcome, bob. In the room: ann, bob. Commands: /quit, /kick NAME")
        .await;
    let joined = ann.recv_text_until(|t| t.starts_with("* bob")).await;
    assert_eq!(joined, "* bob joined");

    bob.send_text("  hello all  ").await;
    for client in [&mut ann, &mut bob] {
        let line = client.recv_text_until(|t| !t.starts_with('*')).await;
        assert_eq!(line, "bob: hello all");
    }

    // Too long: a note to the sender only, nothing to the room.
    ann.send_text("é".repeat(501)).await;
    ann.expect_text("* not sent: 501 characters, the limit is 500")
        .await;
    ann.send_text("/dance").await;
    ann.expect_text("* unknown command \"/dance\"; try /quit or /kick NAME")
        .await;
    ann.send_text("short").await;
    bob.expect_text("ann: short").await;
}

#[async_std::test]
async fn a_name_in_use_is_refused_with_4001() {
    let server = TestServer::start(chat::app(None)).await;
    let mut ann = join(&server, "ann").await;
    let mut again = server.connect("/chat?name=ann").await.expect("upgrade");
    again.expect_close(4001, "Name taken").await;
    // The first ann is still in, and the room heard of one ann only: her
    // own join, then her line.
    ann.send_text("still me").await;
    ann.expect_text("* ann joined").await;
    ann.expect_text("ann: still me").await;
}

#[async_std::test]
async fn quit_closes_with_1000_goodbye_and_the_room_is_told() {
    let server = TestServer::start(chat::app(None)).await;
    let mut ann = join(&server, "ann").await;
    let mut bob = join(&server, "bob").await;
    bob.send_text("/quit").await;
    bob.expect_text("* bob joined").await;
    bob.expect_close(1000, "Goodbye").await;
    let left = ann.recv_text_until(|t| t.contains("left")).await;
    assert_eq!(left, "* bob left (1000 Goodbye)");
    // The name is free again.
    let _bob = join(&server, "bob").await;
}

#[async_std::test]
async fn kick_closes_the_target_with_4000() {
    let server = TestServer::start(chat::app(None)).await;
    let mut ann = join(&server, "ann").await;
    let mut bob = join(&server, "bob").await;
    ann.send_text("/kick nobody").await;
    let note = ann.recv_text_until(|t| t.contains("nobody")).await;
    assert_eq!(note, "* nobody named \"nobody\"");
    ann.send_text("/kick bob").await;
    bob.expect_text("* bob joined").await;
    bob.expect_close(4000, "Kicked by ann").await;
    let left = ann.recv_text_until(|t| t.contains("left")).await;
    assert_eq!(left, "* bob left (4000 Kicked by ann)");
}

#[async_std::test]
async fn a_message_over_64_kib_closes_with_1009() {
    let server = TestServer::start(chat::app(None)).await;
    let mut ann = join(&server, "ann").await;
    ann.send_text("x".repeat((64 << 10) + 1)).await;
    ann.expect_text("* ann joined").await;
    ann.expect_close(1009, "Message too big").await;
}

#[async_std::test]
async fn two_nodes_on_one_redis_make_one_room() {
    let redis = RedisServer::start();
    let one = TestServer::start(chat::app(Some(&redis.url()))).await;
    let two = TestServer::start(chat::app(Some(&redis.url()))).await;
    let mut ann = join(&one, "ann").await;
    // Counts reach Redis a moment after a join (see the race in the docs).
    until_count(&one.registry().group("user:ann"), 1).await;
    until_count(&two.registry().group("user:ann"), 1).await;
    let mut bob = two.connect("/chat?name=bob").await.expect("upgrade");
    bob.expect_text(
        "* welcome, bob. In the room: bob, and 1 on other nodes. Commands: /quit, /kick NAME",
    )
    .await;
    let joined = ann.recv_text_until(|t| t.starts_with("* bob")).await;
    assert_eq!(joined, "* bob joined");

    // A line said on one node appears on the other.
    bob.send_text("hello from two").await;
    for client in [&mut ann, &mut bob] {
        let line = client.recv_text_until(|t| !t.starts_with('*')).await;
        assert_eq!(line, "bob: hello from two");
    }
    // A name in use on the other node is refused with 4001.
    until_count(&one.registry().group("user:bob"), 1).await;
    let mut again = one.connect("/chat?name=bob").await.expect("upgrade");
    again.expect_close(4001, "Name taken").await;
    // /kick reaches the member on the other node; the room hears why.
    ann.send_text("/kick bob").await;
    bob.expect_close(4000, "Kicked by ann").await;
    let left = ann.recv_text_until(|t| t.contains("left")).await;
    assert_eq!(left, "* bob left (4000 Kicked by ann)");
    ann.send_text("/kick bob").await;
    let note = ann.recv_text_until(|t| t.contains("nobody")).await;
    assert_eq!(note, "* nobody named \"bob\"");
}

#[async_std::test]
async fn over_tls_the_page_is_https_and_the_room_wss() {
    use wharf_test_support::{connect_wss, start, status, tls_http_exchange, within, TestCert};

    // The kit's client speaks plain TCP: this one uses Wharf's TLS test
    // client.
    let cert = TestCert::new();
    let server = start(chat::app(None).tls(cert.server_config())).await;
    let page = tls_http_exchange(
        server.addr,
        &cert,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(status(&page), 200, "{page}");
    // The page connects with wss:// when it was loaded over https.
    assert!(
        page.contains(r#"location.protocol === "https:" ? "wss" : "ws""#),
        "{page}"
    );
    let mut ann = connect_wss(&server, "/chat?name=ann", &cert).await;
    match within("welcome", futures_util::StreamExt::next(&mut ann)).await {
        Some(Ok(msg)) => assert!(
            msg.to_text().unwrap().starts_with("* welcome, ann."),
            "{msg:?}"
        ),
        other => panic!("expected the welcome, got {other:?}"),
    }
}
