//! The `chat` example: joining, broadcasting, the name check and the
//! `/quit` and `/kick` commands, with real clients.

#[allow(dead_code, unreachable_pub)]
#[path = "../chat.rs"]
mod chat;

use wharf_test_support::*;

/// Joins as `name` and reads the welcome line.
async fn join(server: &TestServer, name: &str) -> Client {
    let mut client = connect(server, &format!("/chat?name={name}")).await;
    let welcome = next_text(&mut client).await;
    assert!(
        welcome.starts_with(&format!("* welcome, {name}.")),
        "{welcome}"
    );
    client
}

#[async_std::test]
async fn the_page_is_served_at_the_root() {
    let server = start(chat::app()).await;
    let response =
        http_exchange_allowing_reset(server.addr, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await;
    assert_eq!(status(&response), 200, "{response}");
    assert!(response.contains("text/html"), "{response}");
    assert!(response.contains("<title>Wharf chat</title>"), "{response}");
}

#[async_std::test]
async fn members_join_and_lines_reach_everyone() {
    let server = start(chat::app()).await;
    let mut ann = join(&server, "ann").await;
    let mut bob = connect(&server, "/chat?name=bob").await;
    let welcome = next_text(&mut bob).await;
    assert_eq!(
        welcome,
        "* welcome, bob. In the room: ann, bob. Commands: /quit, /kick NAME"
    );
    assert_eq!(
        text_matching(&mut ann, |t| t.starts_with("* bob")).await,
        "* bob joined"
    );

    send_text(&mut bob, "  hello all  ").await;
    for client in [&mut ann, &mut bob] {
        assert_eq!(
            text_matching(client, |t| !t.starts_with('*')).await,
            "bob: hello all"
        );
    }

    // Too long: a note to the sender only, nothing to the room.
    send_text(&mut ann, &"é".repeat(501)).await;
    assert_eq!(
        next_text(&mut ann).await,
        "* not sent: 501 characters, the limit is 500"
    );
    send_text(&mut ann, "/dance").await;
    assert_eq!(
        next_text(&mut ann).await,
        "* unknown command \"/dance\"; try /quit or /kick NAME"
    );
    send_text(&mut ann, "short").await;
    assert_eq!(next_text(&mut bob).await, "ann: short");
}

#[async_std::test]
async fn a_name_in_use_is_refused_with_4001() {
    let server = start(chat::app()).await;
    let mut ann = join(&server, "ann").await;
    let mut again = connect(&server, "/chat?name=ann").await;
    expect_close(&mut again, 4001, "Name taken").await;
    // The first ann is still in, and the room heard of one ann only: her
    // own join, then her line.
    send_text(&mut ann, "still me").await;
    assert_eq!(next_text(&mut ann).await, "* ann joined");
    assert_eq!(next_text(&mut ann).await, "ann: still me");
}

#[async_std::test]
async fn quit_closes_with_1000_goodbye_and_the_room_is_told() {
    let server = start(chat::app()).await;
    let mut ann = join(&server, "ann").await;
    let mut bob = join(&server, "bob").await;
    send_text(&mut bob, "/quit").await;
    expect_close(&mut bob, 1000, "Goodbye").await;
    assert_eq!(
        text_matching(&mut ann, |t| t.contains("left")).await,
        "* bob left (1000 Goodbye)"
    );
    // The name is free again.
    let _bob = join(&server, "bob").await;
}

#[async_std::test]
async fn kick_closes_the_target_with_4000() {
    let server = start(chat::app()).await;
    let mut ann = join(&server, "ann").await;
    let mut bob = join(&server, "bob").await;
    send_text(&mut ann, "/kick nobody").await;
    assert_eq!(
        text_matching(&mut ann, |t| t.contains("nobody")).await,
        "* nobody named \"nobody\""
    );
    send_text(&mut ann, "/kick bob").await;
    expect_close(&mut bob, 4000, "Kicked by ann").await;
    assert_eq!(
        text_matching(&mut ann, |t| t.contains("left")).await,
        "* bob left (4000 Kicked by ann)"
    );
}

#[async_std::test]
async fn a_message_over_64_kib_closes_with_1009() {
    let server = start(chat::app()).await;
    let mut ann = join(&server, "ann").await;
    send_text(&mut ann, &"x".repeat((64 << 10) + 1)).await;
    let closed = closed_by_server(&mut ann).await;
    assert_eq!(closed.close.map(|(code, _)| code), Some(1009));
}

#[async_std::test]
async fn over_tls_the_page_is_https_and_the_room_wss() {
    let cert = TestCert::new();
    let server = start(chat::app().tls(cert.server_config())).await;
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
