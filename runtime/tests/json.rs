//! Typed JSON messages (the `json` feature): reading a message as a type,
//! sending a value, the `Json` reply, and what bad JSON from a peer does.
#![cfg(feature = "json")]

use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use wharf as ws;
use wharf_test_support::*;
use ws::{Conn, Error, Json, Message, Server};

#[derive(Debug, Deserialize)]
struct Move {
    x: i32,
    y: i32,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Position {
    x: i32,
    y: i32,
    moves: u32,
}

/// Reads a `Move` with `?`: bad JSON ends the connection (1007).
#[ws::on("message")]
async fn strict(conn: &Conn, msg: Message) -> ws::Result<()> {
    let m: Move = msg.json()?;
    conn.send_json(&Position {
        x: m.x,
        y: m.y,
        moves: 1,
    })
    .await
}

/// Answers bad JSON itself, and replies with `Json`.
#[ws::on("message")]
async fn lenient(_conn: &Conn, msg: Message) -> Json<serde_json::Value> {
    match msg.json::<Move>() {
        Ok(m) => Json(serde_json::json!({ "x": m.x, "y": m.y })),
        Err(Error::InvalidJson(err)) => Json(serde_json::json!({
            "error": err.to_string(),
            "line": err.line(),
            "column": err.column(),
            "syntax": err.is_syntax(),
            "data": err.is_data(),
        })),
        Err(other) => panic!("unexpected {other:?}"),
    }
}

async fn server() -> TestServer {
    start(
        Server::new()
            .route("/strict", ws::handlers![strict])
            .route("/lenient", ws::handlers![lenient]),
    )
    .await
}

async fn next_json(client: &mut Client) -> serde_json::Value {
    match within("a reply", client.next()).await {
        Some(Ok(WsMessage::Text(text))) => serde_json::from_str(&text).expect("the reply is JSON"),
        other => panic!("expected a JSON text, got {other:?}"),
    }
}

async fn send(client: &mut Client, text: &str) {
    within("send", client.send(WsMessage::text(text)))
        .await
        .expect("send");
}

#[async_std::test]
async fn a_message_is_read_as_a_type_and_a_value_sent_back_as_json() {
    let server = server().await;
    let mut client = connect(&server, "/strict").await;
    send(&mut client, r#"{"x": 3, "y": -4}"#).await;
    let reply = next_json(&mut client).await;
    assert_eq!(reply, serde_json::json!({"x": 3, "y": -4, "moves": 1}));
    // Binary messages are read the same way.
    within(
        "send binary",
        client.send(WsMessage::binary(br#"{"x": 1, "y": 2}"#.to_vec())),
    )
    .await
    .unwrap();
    assert_eq!(next_json(&mut client).await["moves"], 1);
    send_normal_close(&mut client, "bye").await;
}

#[async_std::test]
async fn bad_json_returned_with_question_mark_closes_with_1007() {
    let server = server().await;
    for bad in [
        "{not json",
        r#"{"x": "three", "y": 4}"#,
        r#"{"x": 3}"#,
        "",
        "null",
    ] {
        let mut peer = RawPeer::connect(&server, "/strict").await;
        peer.send_frame(OP_TEXT, true, bad.as_bytes()).await;
        let seen = peer.read_until_close().await;
        assert_eq!(seen.code, Some(1007), "{bad:?}: {seen:?}");
        assert_eq!(seen.reason, "Invalid JSON", "{bad:?}");
        peer.send_close(1007, b"").await;
        peer.expect_eof().await;
    }
    // The server still serves.
    let mut client = connect(&server, "/strict").await;
    send(&mut client, r#"{"x": 0, "y": 0}"#).await;
    assert_eq!(next_json(&mut client).await["moves"], 1);
}

#[async_std::test]
async fn a_handler_may_answer_bad_json_itself() {
    let server = server().await;
    let mut client = connect(&server, "/lenient").await;
    send(&mut client, "{\n  \"x\": oops").await;
    let reply = next_json(&mut client).await;
    assert_eq!(reply["line"], 2, "{reply}");
    assert_eq!(reply["syntax"], true, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("line 2"),
        "{reply}"
    );
    send(&mut client, r#"{"x": true, "y": 1}"#).await;
    let reply = next_json(&mut client).await;
    assert_eq!(reply["data"], true, "{reply}");
    // The connection is still open and well.
    send(&mut client, r#"{"x": 5, "y": 6}"#).await;
    assert_eq!(
        next_json(&mut client).await,
        serde_json::json!({"x": 5, "y": 6})
    );
    send_normal_close(&mut client, "bye").await;
}

#[test]
fn values_that_are_not_json_are_a_handler_error_not_a_panic() {
    use std::collections::HashMap;
    // A map with non-string keys cannot be JSON.
    let mut map = HashMap::new();
    map.insert((1, 2), "pair");
    assert!(matches!(Message::from_json(&map), Err(Error::Handler(_))));
}
