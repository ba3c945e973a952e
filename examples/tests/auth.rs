//! The `auth` example: a token checked at the upgrade (`/strict`, HTTP 401)
//! and at connect (`/`, Close 1008), with the test kit's clients.

#[allow(dead_code, unreachable_pub)]
#[path = "../auth.rs"]
mod auth;

use wharf::test::TestServer;

#[async_std::test]
async fn strict_refuses_a_missing_or_wrong_token_with_401_and_no_upgrade() {
    let server = TestServer::start(auth::app()).await;
    for path in ["/strict", "/strict?token=wrong", "/strict?token=secret2"] {
        let refusal = server.client(path).expect_rejected(401).await;
        assert!(
            !refusal.headers().contains_key("sec-websocket-accept"),
            "{path}: {refusal}"
        );
        let challenge = refusal.header("www-authenticate");
        assert_eq!(challenge, Some("Bearer realm=\"wharf auth example\""));
        assert_eq!(refusal.body(), "missing or wrong token\n", "{path}");
    }
    // Nothing was upgraded, so nothing was counted as open or closed.
    let stats = server.stats();
    assert_eq!(stats.active, 0);
    assert!(stats.closes.is_empty(), "{stats:?}");
}

#[async_std::test]
async fn strict_upgrades_with_the_token_and_echoes() {
    let server = TestServer::start(auth::app()).await;
    let mut client = server
        .connect("/strict?token=secret")
        .await
        .expect("upgrade");
    client.send_text("hello").await;
    client.expect_text("hello").await;
}

#[async_std::test]
async fn root_closes_a_missing_or_wrong_token_with_1008() {
    let server = TestServer::start(auth::app()).await;
    for path in ["/", "/?token=wrong", "/?other=secret"] {
        let mut client = server.connect(path).await.expect("upgrade");
        client.expect_close(1008, "Invalid authentication").await;
    }
}

#[async_std::test]
async fn root_accepts_the_token_and_echoes() {
    let server = TestServer::start(auth::app()).await;
    let mut client = server.connect("/?token=secret").await.expect("upgrade");
    for text in ["hello", "again"] {
        client.send_text(text).await;
        client.expect_text(text).await;
    }
}
