//! Server-initiated closes: from the connect handler, from a message
//! handler, and from another task through a handle.

mod support;

use async_std::channel::{unbounded, Sender};
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use support::*;
use wharf::{CloseCode, CloseOutcome, Closed, Conn, Handler, Initiator, Message, Server};

/// Closes on connect when the query says so, and on the message "bye";
/// reports every close() outcome and every Closed record.
struct Closer {
    outcomes: Sender<wharf::Result<CloseOutcome>>,
    closed: Sender<Closed>,
}

impl Handler for Closer {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        if conn.query("close") == Some("now") {
            let outcome = conn
                .close(CloseCode::POLICY_VIOLATION, "Invalid authentication")
                .await;
            let _ = self.outcomes.send(outcome).await;
        }
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        if msg.as_text() == Some("bye") {
            let outcome = conn.close(4000, "done").await;
            let _ = self.outcomes.send(outcome).await;
            return Ok(());
        }
        conn.send(msg).await
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        let _ = self.closed.send(closed.clone()).await;
    }
}

#[async_std::test]
async fn close_from_connect_handler_completes_the_handshake() {
    let (otx, orx) = unbounded();
    let (ctx, crx) = unbounded();
    let server = start(Server::new().route(
        "/",
        Closer {
            outcomes: otx,
            closed: ctx,
        },
    ))
    .await;
    let mut client = connect(&server, "/?close=now").await;

    let msg = within("close frame", client.next()).await;
    let Some(Ok(WsMessage::Close(Some(frame)))) = msg else {
        panic!("expected a Close frame, got {msg:?}");
    };
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason.as_str(), "Invalid authentication");
    // tungstenite's client answers the Close while reading; the server then
    // closes the TCP stream, which ends the client's stream.
    assert!(within("end of stream", client.next()).await.is_none());

    let outcome = within("close outcome", orx.recv()).await.unwrap().unwrap();
    assert_eq!(outcome, CloseOutcome::Clean);
    let closed = within("close handler", crx.recv()).await.unwrap();
    assert_eq!(closed.code, CloseCode::POLICY_VIOLATION);
    assert_eq!(closed.initiator, Initiator::Server);
    assert!(closed.clean);
    eventually("registry empty", || server.registry.count() == 0).await;
}

#[async_std::test]
async fn close_from_message_handler_completes_the_handshake() {
    let (otx, orx) = unbounded();
    let (ctx, crx) = unbounded();
    let server = start(Server::new().route(
        "/",
        Closer {
            outcomes: otx,
            closed: ctx,
        },
    ))
    .await;
    let mut client = connect(&server, "/").await;
    within("send", client.send(WsMessage::text("hi")))
        .await
        .unwrap();
    let echo = within("echo", client.next()).await.unwrap().unwrap();
    assert_eq!(echo, WsMessage::text("hi"));
    within("send", client.send(WsMessage::text("bye")))
        .await
        .unwrap();
    let msg = within("close frame", client.next()).await;
    let Some(Ok(WsMessage::Close(Some(frame)))) = msg else {
        panic!("expected a Close frame, got {msg:?}");
    };
    assert_eq!(u16::from(frame.code), 4000);
    assert!(within("end of stream", client.next()).await.is_none());
    assert_eq!(
        within("outcome", orx.recv()).await.unwrap().unwrap(),
        CloseOutcome::Clean
    );
    let closed = within("close handler", crx.recv()).await.unwrap();
    assert_eq!(
        (closed.code.as_u16(), closed.reason.as_str()),
        (4000, "done")
    );
    assert_eq!(closed.messages_in, 2);
    assert_eq!(closed.messages_out, 1);
}
