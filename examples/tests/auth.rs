//! The `auth` example: a token checked at the upgrade (`/strict`, HTTP 401)
//! and at connect (`/`, Close 1008), with real clients.

#[allow(dead_code, unreachable_pub)]
#[path = "../auth.rs"]
mod auth;

use wharf_test_support::*;

#[async_std::test]
async fn strict_refuses_a_missing_or_wrong_token_with_401_and_no_upgrade() {
    let server = start(auth::app()).await;
    for path in ["/strict", "/strict?token=wrong", "/strict?token=secret2"] {
        let response = http_exchange_allowing_reset(server.addr, &upgrade_request(path)).await;
        assert_eq!(status(&response), 401, "{path}: {response}");
        assert!(
            !response.contains("Sec-WebSocket-Accept"),
            "{path}: {response}"
        );
        assert!(
            // Header names are case-insensitive; the server sends them lower case.
            response
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{path}: {response}"
        );
        assert!(
            response.ends_with("missing or wrong token\n"),
            "{path}: {response}"
        );
    }
    // Nothing was upgraded, so nothing was counted as open or closed.
    let stats = server.handle.stats();
    assert_eq!(stats.active, 0);
    assert!(stats.closes.is_empty(), "{stats:?}");
}

#[async_std::test]
async fn strict_upgrades_with_the_token_and_echoes() {
    let server = start(auth::app()).await;
    let mut client = connect(&server, "/strict?token=secret").await;
    send_text(&mut client, "hello").await;
    assert_eq!(next_text(&mut client).await, "hello");
}

#[async_std::test]
async fn root_closes_a_missing_or_wrong_token_with_1008() {
    let server = start(auth::app()).await;
    for path in ["/", "/?token=wrong", "/?other=secret"] {
        let mut client = connect(&server, path).await;
        expect_close(&mut client, 1008, "Invalid authentication").await;
    }
}

#[async_std::test]
async fn root_accepts_the_token_and_echoes() {
    let server = start(auth::app()).await;
    let mut client = connect(&server, "/?token=secret").await;
    send_text(&mut client, "hello").await;
    assert_eq!(next_text(&mut client).await, "hello");
    send_text(&mut client, "again").await;
    assert_eq!(next_text(&mut client).await, "again");
}
