//! Server-initiated closes: from the connect handler, from a message
//! handler, and from another task through a handle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_std::channel::{unbounded, Receiver, Sender};
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use wharf::{
    CloseCode, CloseOutcome, Closed, Conn, ConnId, Error, Handle, Handler, Initiator, Message,
    Server,
};
use wharf_test_support::*;

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

// ---- closing through a handle, from tasks other than the connection's ----

/// What [`Keeper`] reports to the test.
#[derive(Debug)]
enum Event {
    /// The connect handler ran; here is a handle to the connection.
    Connected(Handle),
    /// A message handler started (and, for "wait", is now blocked).
    Entered(String),
    /// What `send` returned inside a message handler released after the
    /// close began.
    SentAfterClose(wharf::Result<()>),
    /// The close handler ran: the connection's id, its record, and what a
    /// `close()` called from inside the close handler returned.
    Closed(ConnId, Closed, wharf::Result<CloseOutcome>),
}

/// Hands a handle of every connection to the test, echoes messages, blocks
/// on the message "wait" until the test opens `gate`, and reports every close.
struct Keeper {
    events: Sender<Event>,
    gate: Receiver<()>,
    close_handler_runs: Arc<AtomicUsize>,
}

impl Keeper {
    fn new() -> (Self, Receiver<Event>, Sender<()>, Arc<AtomicUsize>) {
        let (events, rx) = unbounded();
        let (open, gate) = unbounded();
        let runs = Arc::new(AtomicUsize::new(0));
        let keeper = Keeper {
            events,
            gate,
            close_handler_runs: Arc::clone(&runs),
        };
        (keeper, rx, open, runs)
    }
}

impl Handler for Keeper {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let _ = self.events.send(Event::Connected(conn.handle())).await;
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        let text = msg.as_text().unwrap_or_default().to_owned();
        let _ = self.events.send(Event::Entered(text.clone())).await;
        if text == "wait" {
            let _ = self.gate.recv().await;
            let sent = conn.send(Message::text("after the close")).await;
            let _ = self.events.send(Event::SentAfterClose(sent)).await;
            return Ok(());
        }
        conn.send(msg).await
    }

    async fn on_close(&self, conn: &Conn, closed: &Closed) {
        self.close_handler_runs.fetch_add(1, Ordering::SeqCst);
        // Calling close() once the connection has ended must not deadlock:
        // it returns the outcome the connection ended with.
        let again = conn
            .close(CloseCode::NORMAL, "from the close handler")
            .await;
        let _ = self
            .events
            .send(Event::Closed(conn.id(), closed.clone(), again))
            .await;
    }
}

async fn connected(events: &Receiver<Event>) -> Handle {
    expect_event!(events, Event::Connected(handle) => handle)
}

async fn closed_event(events: &Receiver<Event>) -> (ConnId, Closed, wharf::Result<CloseOutcome>) {
    expect_event!(events, Event::Closed(id, closed, again) => (id, closed, again))
}

/// Reads from the client until the server's Close frame; returns its code
/// and reason. Fails on any other message.
async fn expect_close_frame(client: &mut Client) -> (u16, String) {
    let msg = within("close frame", client.next()).await;
    let Some(Ok(WsMessage::Close(Some(frame)))) = msg else {
        panic!("expected a Close frame, got {msg:?}");
    };
    (u16::from(frame.code), frame.reason.as_str().to_owned())
}

#[async_std::test]
async fn close_from_another_task_via_a_handle_completes_the_handshake() {
    let (keeper, events, _gate, _) = Keeper::new();
    let server = start(Server::new().route("/", keeper)).await;
    let mut client = connect(&server, "/").await;
    let handle = connected(&events).await;
    assert!(handle.is_open());
    assert_eq!(handle.path(), "/");
    let id = handle.id();
    assert!(server.registry.get(id).is_some());

    let closer = handle.clone();
    let closing = async_std::task::spawn(async move { closer.close(4001, "admin").await });

    assert_eq!(
        expect_close_frame(&mut client).await,
        (4001, "admin".to_owned())
    );
    // The client answers while reading on; then the server closes TCP.
    assert!(within("end of stream", client.next()).await.is_none());
    let outcome = within("close() from another task", closing).await;
    assert_eq!(outcome.unwrap(), CloseOutcome::Clean);

    let (closed_id, closed, again) = closed_event(&events).await;
    assert_eq!(closed_id, id);
    assert_eq!(closed.code.as_u16(), 4001);
    assert_eq!(closed.reason, "admin");
    assert_eq!(closed.initiator, Initiator::Server);
    assert!(closed.clean);
    assert_eq!(closed.outcome, CloseOutcome::Clean);
    assert_eq!(again.unwrap(), CloseOutcome::Clean);

    // The handle outlives the connection but can no longer reach it.
    assert!(!handle.is_open());
    assert!(matches!(
        within(
            "send on a closed handle",
            handle.send(Message::text("late"))
        )
        .await,
        Err(Error::ConnectionClosed)
    ));
    assert!(matches!(
        handle.try_send(Message::text("late")),
        Err(Error::ConnectionClosed)
    ));
    eventually("registry forgets the connection", || {
        server.registry.get(id).is_none()
    })
    .await;
}

#[async_std::test]
async fn concurrent_closes_from_two_tasks_send_one_close_frame() {
    let (keeper, events, _gate, runs) = Keeper::new();
    let server = start(Server::new().route("/", keeper)).await;
    let mut peer = RawPeer::connect(&server, "/").await;
    let handle = connected(&events).await;

    // Both tasks wait on the same channel; dropping its sender releases
    // them together.
    let (go, start_line) = unbounded::<()>();
    let spawn_close = |code: u16, reason: &'static str| {
        let handle = handle.clone();
        let start_line = start_line.clone();
        async_std::task::spawn(async move {
            let _ = start_line.recv().await;
            handle.close(code, reason).await
        })
    };
    let first = spawn_close(4001, "first");
    let second = spawn_close(4002, "second");
    drop(go);

    let seen = peer.read_lone_close().await;
    let code = seen.code.expect("Close frame with a code");
    let expected_reason = match code {
        4001 => "first",
        4002 => "second",
        other => panic!("unexpected close code {other}"),
    };
    assert_eq!(seen.reason, expected_reason);

    // Answer, then read to the end: no second Close, no frame at all.
    peer.send_close(code, b"").await;
    let mut after = Vec::new();
    while let Some(frame) = peer.read_frame().await {
        after.push(frame);
    }
    let extra_closes = after.iter().filter(|f| f.opcode == OP_CLOSE).count();
    assert_eq!(extra_closes, 0, "a second Close frame was sent: {after:?}");
    assert!(after.is_empty(), "frames after the Close: {after:?}");

    let first = within("first close()", first).await.unwrap();
    let second = within("second close()", second).await.unwrap();
    assert_eq!(first, CloseOutcome::Clean);
    assert_eq!(second, first, "both callers get the same outcome");

    let (closed_id, closed, _) = closed_event(&events).await;
    assert_eq!(closed_id, handle.id());
    assert_eq!(closed.code.as_u16(), code);
    assert_eq!(closed.reason, expected_reason);
    assert!(closed.clean);

    // A whole second connection lifecycle later, the first connection's
    // close handler has still run exactly once.
    let mut client = connect(&server, "/").await;
    let other = connected(&events).await;
    within("client close", client.close(None)).await.unwrap();
    while within("drain", client.next()).await.is_some() {}
    let (other_id, _, _) = closed_event(&events).await;
    assert_eq!(other_id, other.id());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(events.try_recv().is_err(), "unexpected extra event");
}

#[async_std::test]
async fn close_from_a_handle_while_a_handler_is_blocked_completes() {
    let (keeper, events, gate, _) = Keeper::new();
    let server = start(Server::new().route("/", keeper)).await;
    let mut client = connect(&server, "/").await;
    let handle = connected(&events).await;

    within("send", client.send(WsMessage::text("wait")))
        .await
        .unwrap();
    let text = expect_event!(&events, Event::Entered(text) => text);
    assert_eq!(text, "wait");

    // The message handler is stuck; the driver still runs the handshake.
    let closer = handle.clone();
    let closing = async_std::task::spawn(async move { closer.close(4002, "admin").await });
    assert_eq!(
        expect_close_frame(&mut client).await,
        (4002, "admin".to_owned())
    );
    assert!(within("end of stream", client.next()).await.is_none());
    assert_eq!(
        within("close()", closing).await.unwrap(),
        CloseOutcome::Clean
    );
    // The close handler runs after the blocked message handler, never
    // concurrently with it.
    assert!(events.try_recv().is_err(), "close handler ran too early");

    gate.send(()).await.unwrap();
    let result = expect_event!(&events, Event::SentAfterClose(result) => result);
    assert!(
        matches!(result, Err(Error::ConnectionClosed)),
        "send after close: {result:?}"
    );
    let (_, closed, _) = closed_event(&events).await;
    assert_eq!(closed.code.as_u16(), 4002);
    assert_eq!(closed.initiator, Initiator::Server);
    assert!(closed.clean);
}

#[async_std::test]
async fn close_after_the_peer_closed_returns_the_ended_outcome() {
    let (keeper, events, _gate, _) = Keeper::new();
    let server = start(Server::new().route("/", keeper)).await;
    let mut client = connect(&server, "/").await;
    let handle = connected(&events).await;

    within("client close", client.close(None)).await.unwrap();
    // Our Close had no code; the server answers with an empty Close too.
    let msg = within("echo", client.next()).await;
    assert!(
        matches!(msg, Some(Ok(WsMessage::Close(None)))),
        "expected an empty Close echo, got {msg:?}"
    );
    assert!(within("end of stream", client.next()).await.is_none());

    let (_, closed, again) = closed_event(&events).await;
    assert_eq!(closed.initiator, Initiator::Client);
    assert_eq!(closed.code, CloseCode::NO_STATUS);
    assert!(closed.clean);
    assert_eq!(again.unwrap(), CloseOutcome::Clean);

    let late = within("close() after the end", handle.close(4000, "late")).await;
    assert_eq!(late.unwrap(), CloseOutcome::Clean);
}

/// What the tests of a blocked flush queue: a small message, one that
/// blocks the server's writes to a small-window peer (see
/// `RawPeer::connect_small_window`), and another small one. Together they
/// fit in tungstenite's write buffer, so our Close is handed over behind
/// them while the bytes are still waiting for the peer to read.
fn blocking_batch() -> Vec<Message> {
    vec![
        Message::text("first"),
        Message::binary(vec![b'x'; 100 << 10]),
        Message::text("last"),
    ]
}

#[async_std::test]
async fn a_close_answered_while_our_writes_are_blocked_ends_once_flushed() {
    let (keeper, events, _gate, _) = Keeper::new();
    let server = start(Server::new().route("/", keeper)).await;
    let mut peer = RawPeer::connect_small_window(&server, "/").await;
    let handle = connected(&events).await;

    // The peer reads nothing: the server's writes block behind the batch.
    for msg in blocking_batch() {
        within("queue", handle.send(msg)).await.unwrap();
    }
    let closer = handle.clone();
    let closing = async_std::task::spawn(async move { closer.close(4000, "flushed").await });
    eventually("the close began", || !handle.is_open()).await;
    // The peer answers the Close it has not read yet; only then does it
    // read. Everything queued and our Close must still reach it, in order.
    peer.send_close(1000, b"").await;
    let frames = peer.read_to_eof().await;

    let (close, data) = frames.split_last().expect("frames before the end");
    let got: Vec<Message> = data
        .iter()
        .map(|f| match f.opcode {
            OP_TEXT => Message::text(String::from_utf8(f.payload.clone()).unwrap()),
            OP_BINARY => Message::binary(f.payload.clone()),
            other => panic!("unexpected frame with opcode {other:#x}"),
        })
        .collect();
    assert!(
        got == blocking_batch(),
        "the queued messages did not all arrive ({} frames)",
        got.len()
    );
    assert_eq!(close.opcode, OP_CLOSE, "the last frame is our Close");
    assert_eq!(
        close.payload,
        [&4000u16.to_be_bytes()[..], b"flushed"].concat()
    );

    assert_eq!(
        within("close()", closing).await.unwrap(),
        CloseOutcome::Clean
    );
    let (_, closed, _) = closed_event(&events).await;
    assert_eq!(closed.code.as_u16(), 4000);
    assert_eq!(closed.initiator, Initiator::Server);
    assert!(closed.clean);
    assert_eq!(closed.outcome, CloseOutcome::Clean);
    assert_eq!(closed.messages_out, 3);
    eventually("registry empty", || server.registry.count() == 0).await;
}
