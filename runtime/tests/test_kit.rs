//! The test kit itself (`wharf::test`, the `test-util` feature): what its
//! server and client do, and what its failure messages say when an
//! expectation is not met.
#![cfg(feature = "test-util")]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_std::channel::{unbounded, Sender};
use futures_util::FutureExt;
use wharf as ws;
use wharf_test_support::within;
use ws::test::{CloseFrame, Received, TestServer};
use ws::{CloseCode, Closed, Conn, Handler, Message, Rejection, Request, Route, Server};

#[ws::on("message")]
async fn echo(_conn: &Conn, msg: Message) -> Message {
    msg
}

#[ws::on("upgrade")]
async fn require_token(req: &Request) -> Result<(), Rejection> {
    match req.query("token") {
        Some("secret") => Ok(()),
        _ => Err(Rejection::unauthorized("missing or wrong token\n")
            .header("WWW-Authenticate", "Bearer")),
    }
}

/// Says hello, then closes with 1008.
#[ws::on("connect")]
async fn hello_then_close(conn: &Conn) -> ws::Result<()> {
    conn.send("hello").await?;
    conn.close(CloseCode::POLICY_VIOLATION, "Invalid authentication")
        .await?;
    Ok(())
}

/// Closes with 1008 at once.
#[ws::on("connect")]
async fn refuse(conn: &Conn) -> ws::Result<()> {
    conn.close(CloseCode::POLICY_VIOLATION, "Invalid authentication")
        .await?;
    Ok(())
}

fn app() -> Server {
    Server::new()
        .route("/strict", ws::handlers![require_token, echo])
        .route("/hello", ws::handlers![hello_then_close])
        .route("/refuse", ws::handlers![refuse])
        .page("/page", "text/plain; charset=utf-8", "a page")
        .mount(Route::new("/proto", ws::handlers![echo]).subprotocols(["chat.v2"]))
        .fallback(ws::handlers![echo])
}

/// Runs `step`, which must panic, and returns its message.
async fn failure<F: Future>(step: F) -> String {
    match within("the failing step", AssertUnwindSafe(step).catch_unwind()).await {
        Ok(_) => panic!("the step did not fail"),
        Err(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .expect("a panic message"),
    }
}

/// Asserts `message` is the kit's failure for `op`, from this file, and
/// ends with `tail`.
fn assert_failure(message: &str, op: &str, tail: &str) {
    let from_here = format!("{op} at {}:", file!());
    assert!(
        message.starts_with(&from_here),
        "{message:?} does not start with {from_here:?}"
    );
    assert!(
        message.ends_with(tail),
        "{message:?} does not end with {tail:?}"
    );
}

// ---- the happy path ----

#[async_std::test]
async fn a_client_sends_receives_and_closes_cleanly() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/echo?x=1").await.expect("upgrade");
    assert_eq!(client.path(), "/echo?x=1");
    assert_eq!(server.stats().active, 1);
    client.send_text("hi").await;
    client.expect_text("hi").await;
    client.send_binary([0u8, 1, 2]).await;
    client.expect_binary([0u8, 1, 2]).await;
    client.send(Message::text("again")).await;
    assert_eq!(client.recv().await, Received::Text("again".into()));
    client.send_text("text").await;
    assert_eq!(client.recv_text().await, "text");
    client.send_binary(vec![9u8; 3]).await;
    assert_eq!(&client.recv_binary().await[..], [9, 9, 9]);
    let report = client.close(1000, "bye").await;
    assert_eq!(report.answer, Some(CloseFrame::new(1000, "bye")));
    assert!(report.received.is_empty(), "{report:?}");
    assert!(report.tcp_closed && report.is_clean(), "{report:?}");
    // The connection's task may still be finishing: the drain counts it
    // clean, or not at all.
    let summary = server.shutdown().await;
    assert_eq!(summary.total(), summary.clean, "{summary:?}");
}

#[async_std::test]
async fn what_the_server_sends_first_waits_in_the_client() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/hello").await.expect("upgrade");
    client.expect_text("hello").await;
    client.expect_close(1008, "Invalid authentication").await;
    // The handshake is over: the stream has ended.
    assert_eq!(client.recv().await, Received::Eof);
}

#[async_std::test]
async fn recv_text_until_skips_what_comes_before() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/").await.expect("upgrade");
    for line in ["* ann joined", "* bob joined", "ann: hi"] {
        client.send_text(line).await;
    }
    let wanted = "ann:";
    let line = client.recv_text_until(|t| t.starts_with(wanted)).await;
    assert_eq!(line, "ann: hi");
}

#[async_std::test]
async fn the_upgrade_carries_headers_an_origin_and_subprotocols() {
    let app = app().allow_origin("http://good.test");
    let server = TestServer::start(app).await;
    let client = server
        .client("/proto")
        .origin("http://good.test")
        .header("X-Request-Id", "42")
        .subprotocol("chat.v1")
        .subprotocol("chat.v2")
        .connect()
        .await
        .expect("upgrade");
    assert_eq!(client.subprotocol(), Some("chat.v2"));
    assert_eq!(
        client.response_headers()["sec-websocket-protocol"],
        "chat.v2"
    );
    let refusal = server
        .client("/proto")
        .origin("http://evil.test")
        .expect_rejected(403)
        .await;
    assert_eq!(refusal.status(), 403);
}

#[async_std::test]
async fn a_refused_upgrade_carries_its_status_headers_and_body() {
    let server = TestServer::start(app()).await;
    let err = server.connect("/strict?token=nope").await.unwrap_err();
    assert_eq!(err.status(), 401);
    assert_eq!(err.reason(), "Unauthorized");
    assert_eq!(err.header("www-authenticate"), Some("Bearer"));
    assert_eq!(err.body(), "missing or wrong token\n");
    assert_eq!(
        err.to_string(),
        "the upgrade was rejected: HTTP 401 Unauthorized with the body \"missing or wrong token\\n\""
    );
    let mut client = server
        .connect("/strict?token=secret")
        .await
        .expect("upgrade");
    client.send_text("in").await;
    client.expect_text("in").await;
    // Nothing was upgraded for the refusal.
    assert_eq!(server.stats().closes.len(), 0);
}

#[async_std::test]
async fn get_reads_a_whole_http_answer() {
    let server = TestServer::start(app()).await;
    let page = server.get("/page").await;
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(page.body(), "a page");
    // A WebSocket route asked for plain HTTP.
    assert_eq!(server.get("/strict").await.status(), 426);
}

// ---- the server's side ----

/// Reports every connection's end.
struct Ends(Sender<Closed>);

impl Handler for Ends {
    async fn on_message(&self, conn: &Conn, msg: Message) -> ws::Result<()> {
        conn.send(msg).await
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        let _ = self.0.send(closed.clone()).await;
    }
}

#[async_std::test]
async fn the_handle_reaches_the_clients_connection() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/").await.expect("upgrade");
    let handle = client.handle();
    assert_eq!(handle.peer_addr(), client.local_addr());
    assert!(server.registry().get(handle.id()).is_some());
    async_std::task::spawn(async move { handle.close(4000, "Kicked").await });
    client.expect_close(4000, "Kicked").await;
}

#[async_std::test]
async fn dropping_the_server_closes_its_connections_with_1001() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/").await.expect("upgrade");
    drop(server);
    client.expect_close(1001, "Going away").await;
}

#[async_std::test]
async fn dropping_a_client_is_a_connection_cut_without_a_close() {
    let (ends, closed) = unbounded();
    let server = TestServer::start(Server::new().route("/", Ends(ends))).await;
    let client = server.connect("/").await.expect("upgrade");
    drop(client);
    let end = within("the close handler", closed.recv()).await.unwrap();
    assert_eq!(end.code, CloseCode::ABNORMAL);
}

// ---- the clock ----

#[async_std::test]
async fn advance_expires_a_30_minute_session_at_once() {
    let app = app().session_ttl(Duration::from_secs(30 * 60));
    let server = TestServer::start(app).await;
    let mut client = server.connect("/").await.expect("upgrade");
    server.advance(Duration::from_secs(29 * 60));
    client.send_text("still in").await;
    client.expect_text("still in").await;
    server.advance(Duration::from_secs(60));
    client.expect_close(1008, "Session expired").await;
}

#[async_std::test]
async fn advance_runs_the_idle_timeout_and_each_server_has_its_own_clock() {
    let app = || app().idle_timeout(Duration::from_secs(300));
    let idle = TestServer::start(app()).await;
    let other = TestServer::start(app()).await;
    let mut quiet = idle.connect("/").await.expect("upgrade");
    let mut elsewhere = other.connect("/").await.expect("upgrade");
    idle.advance(Duration::from_secs(300));
    quiet.expect_close(1001, "Idle timeout").await;
    elsewhere.send_text("unaffected").await;
    elsewhere.expect_text("unaffected").await;
}

// ---- failure messages ----

#[async_std::test]
async fn expect_close_getting_a_text_names_both() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/hello").await.expect("upgrade");
    let message = failure(client.expect_close(1008, "Invalid authentication")).await;
    assert_failure(
        &message,
        "expect_close",
        ", on /hello: expected Close 1008 \"Invalid authentication\", got the text \"hello\"",
    );
}

#[async_std::test]
async fn expect_text_getting_a_close_names_its_code_and_reason() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/refuse").await.expect("upgrade");
    let message = failure(client.expect_text("welcome")).await;
    assert_failure(
        &message,
        "expect_text",
        "expected the text \"welcome\", got Close 1008 \"Invalid authentication\"",
    );
}

#[async_std::test]
async fn a_receive_that_gets_nothing_says_how_long_it_waited() {
    let server = TestServer::start(app()).await;
    let mut client = server
        .client("/")
        .timeout(Duration::from_millis(100))
        .connect()
        .await
        .expect("upgrade");
    let message = failure(client.expect_text("never sent")).await;
    assert_failure(
        &message,
        "expect_text",
        "expected the text \"never sent\", got nothing within 100ms",
    );
    // The client is still usable after a timeout.
    client.send_text("after").await;
    client.expect_text("after").await;
}

#[async_std::test]
async fn a_receive_that_gets_eof_without_a_close_says_so() {
    // The heartbeat drops a peer that does not answer its ping: this
    // client reads nothing, so it never answers.
    let (ends, closed) = unbounded();
    let app = Server::new()
        .route("/", Ends(ends))
        .heartbeat(Duration::from_millis(20), Duration::from_millis(20));
    let server = TestServer::start(app).await;
    let mut client = server.connect("/").await.expect("upgrade");
    let end = within("the heartbeat's drop", closed.recv()).await.unwrap();
    assert_eq!(end.reason, "Heartbeat timeout");
    let message = failure(client.expect_close(1000, "")).await;
    assert_failure(
        &message,
        "expect_close",
        "expected Close 1000 \"\", got EOF without a Close",
    );
}

#[async_std::test]
async fn expect_close_names_the_close_it_got_instead() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/refuse").await.expect("upgrade");
    let message = failure(client.expect_close(4000, "Kicked")).await;
    assert_failure(
        &message,
        "expect_close",
        "expected Close 4000 \"Kicked\", got Close 1008 \"Invalid authentication\"",
    );
    // After the Close, the end of the stream is told as such.
    let message = failure(client.recv_text()).await;
    assert_failure(
        &message,
        "recv_text",
        "expected a text message, got EOF (the connection had ended with Close 1008 \"Invalid authentication\")",
    );
}

#[async_std::test]
async fn expect_text_getting_another_text_or_a_binary_names_it() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/").await.expect("upgrade");
    client.send_text("ho").await;
    let message = failure(client.expect_text("hi")).await;
    assert_failure(
        &message,
        "expect_text",
        "expected the text \"hi\", got the text \"ho\"",
    );
    client.send_binary([1u8, 2, 3]).await;
    let message = failure(client.expect_text("hi")).await;
    assert_failure(
        &message,
        "expect_text",
        "expected the text \"hi\", got a binary message of 3 bytes [01 02 03]",
    );
}

#[async_std::test]
async fn expect_no_message_names_what_arrived() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/").await.expect("upgrade");
    client.send_text("echo me").await;
    let message = failure(client.expect_no_message(Duration::from_secs(2))).await;
    assert!(
        message.contains("expected nothing for 2s, got the text \"echo me\" after "),
        "{message}"
    );
}

#[async_std::test]
async fn recv_text_until_lists_what_it_skipped() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/hello").await.expect("upgrade");
    let message = failure(client.recv_text_until(|t| t == "never")).await;
    assert_failure(
        &message,
        "recv_text_until",
        "expected a text message matching the condition, got Close 1008 \"Invalid authentication\", after skipping 1 messages (the last: the text \"hello\")",
    );
}

#[async_std::test]
async fn expect_rejected_names_the_status_it_got() {
    let server = TestServer::start(app()).await;
    let message = failure(server.client("/strict").expect_rejected(403)).await;
    assert_failure(
        &message,
        "expect_rejected",
        "on /strict: expected a 403 answer to the upgrade, got HTTP 401 Unauthorized with the body \"missing or wrong token\\n\"",
    );
    let message = failure(server.client("/").expect_rejected(401)).await;
    assert_failure(
        &message,
        "expect_rejected",
        "expected a 401 answer to the upgrade, got 101 Switching Protocols",
    );
}

#[async_std::test]
async fn sending_after_the_server_closed_says_so() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/refuse").await.expect("upgrade");
    client.expect_close(1008, "Invalid authentication").await;
    let message = failure(client.send_text("too late")).await;
    assert!(
        message.starts_with(&format!("send_text at {}:", file!()))
            && message.contains("the text \"too late\" could not be sent"),
        "{message}"
    );
}

#[cfg(feature = "json")]
#[async_std::test]
async fn json_that_is_not_the_type_asked_for_is_named() {
    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Move {
        x: i32,
    }
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/").await.expect("upgrade");
    client.send_json(&serde_json::json!({ "x": 1 })).await;
    assert_eq!(client.recv_json::<Move>().await, Move { x: 1 });
    client.send_json(&serde_json::json!({ "x": 2 })).await;
    client.expect_json(&Move { x: 2 }).await;
    client.send_text("{oops").await;
    let message = failure(client.recv_json::<Move>()).await;
    assert!(
        message.contains("expected JSON for test_kit::")
            && message.contains("Move, got the text \"{oops\", which is not: key must be a string"),
        "{message}"
    );
    client.send_json(&serde_json::json!({ "x": 3 })).await;
    let message = failure(client.expect_json(&Move { x: 4 })).await;
    assert!(
        message.ends_with(
            "expected the JSON Move { x: 4 }, got Move { x: 3 } (the text \"{\\\"x\\\":3}\")"
        ),
        "{message}"
    );
}

#[async_std::test]
async fn a_server_that_does_not_bind_is_named_at_start() {
    let bad = Server::new().route("no-slash", ws::handlers![echo]);
    let message = failure(TestServer::start(bad)).await;
    assert!(
        message.starts_with(&format!("TestServer::start at {}:", file!()))
            && message.contains("route"),
        "{message}"
    );
}

/// Sends every message to the sender's groups, but not to the sender.
#[ws::on("message")]
async fn to_my_groups(conn: &Conn, msg: Message) {
    for group in conn.groups() {
        conn.registry()
            .group(&group)
            .except(conn.id())
            .send(msg.clone());
    }
}

#[async_std::test]
async fn clients_join_groups_and_a_group_send_reaches_its_members_only() {
    let server = TestServer::start(Server::new().route("/", ws::handlers![to_my_groups])).await;
    let mut ann = server.connect("/").await.expect("upgrade");
    let mut bob = server.connect("/").await.expect("upgrade");
    let mut eve = server.connect("/").await.expect("upgrade");
    ann.join("room:lobby");
    bob.join("room:lobby");
    eve.join("room:other");
    assert_eq!(ann.groups(), ["room:lobby"]);
    let lobby = server.registry().group("room:lobby");
    assert_eq!(lobby.count().await.unwrap(), 2);

    // From the test, through the registry.
    assert_eq!(lobby.send("from the test"), 2);
    ann.expect_text("from the test").await;
    bob.expect_text("from the test").await;
    // From a member's handler: the others of its group, not itself.
    ann.send_text("hi lobby").await;
    bob.expect_text("hi lobby").await;
    ann.expect_no_message(Duration::from_millis(30)).await;
    eve.expect_no_message(Duration::from_millis(30)).await;

    // Leaving ends the membership; so does the end of the connection.
    assert!(bob.leave("room:lobby"));
    assert!(!bob.leave("room:lobby"));
    assert_eq!(lobby.count().await.unwrap(), 1);
    ann.close(1000, "bye").await;
    assert!(ann.groups().is_empty());
    assert_eq!(lobby.count().await.unwrap(), 0);
}

#[async_std::test]
async fn a_refused_group_names_the_group_and_why() {
    let server = TestServer::start(app()).await;
    let client = server
        .connect("/strict?token=secret")
        .await
        .expect("upgrade");
    let message = failure(async { client.join("") }).await;
    let from_here = format!("join at {}:", file!());
    assert!(message.starts_with(&from_here), "{message}");
    assert!(
        message.contains("the server refused to join \"\": "),
        "{message}"
    );
}
