//! What `close()` promises about order and validity: queued messages go out
//! before the one Close frame and nothing follows it, sends fail once a
//! close has begun, reasons are cut to fit, unsendable codes are refused
//! without touching the connection, and a full send queue says so.

use async_std::channel::{unbounded, Receiver, Sender};
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::future::join;
use futures_util::StreamExt;
use wharf::{CloseCode, CloseOutcome, Closed, Conn, Error, Handle, Handler, Message, Server};
use wharf_test_support::*;

#[derive(Debug)]
enum Event {
    Connected(Handle),
    /// What a close() inside a handler returned.
    Outcome(wharf::Result<CloseOutcome>),
    /// send, try_send and text called after a close() began, inside a
    /// handler.
    SendsDuringClose(Vec<wharf::Result<()>>),
    /// Two close() calls in sequence inside a handler.
    Twice(wharf::Result<CloseOutcome>, wharf::Result<CloseOutcome>),
    Closed(Closed),
}

/// On connect with `?burst=N`: sends N numbered messages, then closes.
/// On the message "close-and-send": starts a close and tries to send while
/// it runs. On "twice": closes twice in a row. Anything else is echoed.
struct Script {
    events: Sender<Event>,
}

impl Handler for Script {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let _ = self.events.send(Event::Connected(conn.handle())).await;
        if let Some(n) = conn.query("burst") {
            let n: usize = n.parse().expect("burst count");
            for i in 0..n {
                conn.text(i.to_string()).await?;
            }
            let outcome = conn.close(CloseCode::NORMAL, "done").await;
            let _ = self.events.send(Event::Outcome(outcome)).await;
        }
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        match msg.as_text() {
            Some("close-and-send") => {
                // `join` polls the close first: its first poll starts the
                // close, so every send below runs after it began.
                let (outcome, sends) = join(conn.close(4000, "closing"), async {
                    vec![
                        conn.send(Message::text("send")).await,
                        conn.try_send(Message::text("try_send")),
                        conn.text("text").await,
                        conn.binary(vec![1u8]).await,
                    ]
                })
                .await;
                let _ = self.events.send(Event::SendsDuringClose(sends)).await;
                let _ = self.events.send(Event::Outcome(outcome)).await;
                Ok(())
            }
            Some("twice") => {
                let first = conn.close(4000, "one").await;
                let second = conn.close(4001, "two").await;
                let _ = self.events.send(Event::Twice(first, second)).await;
                Ok(())
            }
            _ => conn.send(msg).await,
        }
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        let _ = self.events.send(Event::Closed(closed.clone())).await;
    }
}

async fn start_script(server: Server) -> (TestServer, Receiver<Event>) {
    let (events, rx) = unbounded();
    let server = start(server.route("/", Script { events })).await;
    (server, rx)
}

async fn connected(events: &Receiver<Event>) -> Handle {
    expect_event!(events, Event::Connected(handle) => handle)
}

async fn outcome_event(events: &Receiver<Event>) -> wharf::Result<CloseOutcome> {
    expect_event!(events, Event::Outcome(outcome) => outcome)
}

async fn closed_event(events: &Receiver<Event>) -> Closed {
    expect_event!(events, Event::Closed(closed) => closed)
}

/// Answers the server's Close with `code`, then reads to the end of the
/// stream: no frame of any kind may follow the server's Close.
async fn answer_and_expect_eof(peer: &mut RawPeer, code: u16) {
    peer.send_close(code, b"").await;
    peer.expect_eof().await;
}

/// Reads the next frame, which must be the server's Close; returns its raw
/// payload.
async fn raw_close_payload(peer: &mut RawPeer) -> Vec<u8> {
    let frame = peer.read_frame().await.expect("a Close frame");
    assert_eq!(frame.opcode, OP_CLOSE, "expected Close, got {frame:?}");
    frame.payload
}

#[async_std::test]
async fn messages_sent_before_close_arrive_in_order_before_the_close_frame() {
    let (server, events) = start_script(Server::new()).await;
    let mut client = connect(&server, "/?burst=50").await;
    let _ = connected(&events).await;

    for i in 0..50 {
        let msg = within("numbered message", client.next()).await;
        assert_eq!(
            msg.and_then(Result::ok),
            Some(WsMessage::text(i.to_string())),
            "message {i}"
        );
    }
    let msg = within("close frame", client.next()).await;
    let Some(Ok(WsMessage::Close(Some(frame)))) = msg else {
        panic!("expected the Close frame after 50 messages, got {msg:?}");
    };
    assert_eq!(u16::from(frame.code), 1000);
    assert_eq!(frame.reason.as_str(), "done");
    assert!(within("end of stream", client.next()).await.is_none());

    assert_eq!(outcome_event(&events).await.unwrap(), CloseOutcome::Clean);
    let closed = closed_event(&events).await;
    assert!(closed.clean);
    assert_eq!(closed.messages_out, 50);
}

#[async_std::test]
async fn large_queued_messages_flush_before_the_close_and_nothing_follows_it() {
    let (server, events) = start_script(Server::new()).await;
    let mut peer = RawPeer::connect(&server, "/").await;
    let handle = connected(&events).await;

    // 50 messages of 64 KiB: the queue is still being written when close()
    // is called from this task.
    const N: u32 = 50;
    for i in 0..N {
        let mut payload = i.to_be_bytes().to_vec();
        payload.resize(64 << 10, b'.');
        within("queue", handle.binary(payload)).await.unwrap();
    }
    let closer = handle.clone();
    let closing = async_std::task::spawn(async move { closer.close(4000, "flushed").await });

    let seen = peer.read_until_close().await;
    let order: Vec<u32> = seen
        .before
        .iter()
        .map(|f| {
            assert!(f.fin && f.opcode == OP_BINARY, "unexpected frame {f:?}");
            assert_eq!(f.payload.len(), 64 << 10);
            u32::from_be_bytes(f.payload[..4].try_into().unwrap())
        })
        .collect();
    assert_eq!(order, (0..N).collect::<Vec<_>>());
    assert_eq!(seen.code, Some(4000));
    assert_eq!(seen.reason, "flushed");
    answer_and_expect_eof(&mut peer, 4000).await;

    assert_eq!(
        within("close()", closing).await.unwrap(),
        CloseOutcome::Clean
    );
    let closed = closed_event(&events).await;
    assert_eq!(closed.messages_out, u64::from(N));
}

#[async_std::test]
async fn sends_fail_with_closed_once_close_has_begun() {
    let (server, events) = start_script(Server::new()).await;
    let mut peer = RawPeer::connect(&server, "/").await;
    let handle = connected(&events).await;

    // The peer does not answer yet, so the close stays in progress.
    let closer = handle.clone();
    let closing = async_std::task::spawn(async move { closer.close(4000, "closing").await });
    eventually("close began", || !handle.is_open()).await;

    assert!(matches!(
        within("send", handle.send(Message::text("a"))).await,
        Err(Error::ConnectionClosed)
    ));
    assert!(matches!(
        handle.try_send(Message::text("b")),
        Err(Error::ConnectionClosed)
    ));
    assert!(matches!(
        within("text", handle.text("c")).await,
        Err(Error::ConnectionClosed)
    ));
    assert!(matches!(
        within("binary", handle.binary(vec![1u8])).await,
        Err(Error::ConnectionClosed)
    ));

    // Nothing of the refused messages reached the wire.
    peer.read_lone_close().await;
    answer_and_expect_eof(&mut peer, 4000).await;
    assert_eq!(
        within("close()", closing).await.unwrap(),
        CloseOutcome::Clean
    );
    // Still refused after the end.
    assert!(matches!(
        within("send after the end", handle.send(Message::text("d"))).await,
        Err(Error::ConnectionClosed)
    ));
    assert_eq!(closed_event(&events).await.messages_out, 0);
}

#[async_std::test]
async fn sends_inside_a_handler_fail_once_its_close_has_begun() {
    let (server, events) = start_script(Server::new()).await;
    let mut peer = RawPeer::connect(&server, "/").await;
    let _ = connected(&events).await;

    peer.send_frame(OP_TEXT, true, b"close-and-send").await;
    let seen = peer.read_lone_close().await;
    assert_eq!(seen.code, Some(4000));
    answer_and_expect_eof(&mut peer, 4000).await;

    let sends = expect_event!(&events, Event::SendsDuringClose(sends) => sends);
    assert_eq!(sends.len(), 4);
    for (i, sent) in sends.iter().enumerate() {
        assert!(
            matches!(sent, Err(Error::ConnectionClosed)),
            "send {i}: {sent:?}"
        );
    }
    assert_eq!(outcome_event(&events).await.unwrap(), CloseOutcome::Clean);
    assert_eq!(closed_event(&events).await.messages_out, 0);
}

/// Closes a fresh connection with `reason` and returns the reason bytes
/// the peer received, after checking the frame fits a control frame and
/// the close record agrees.
async fn reason_on_the_wire(server: &TestServer, events: &Receiver<Event>, reason: &str) -> String {
    let mut peer = RawPeer::connect(server, "/").await;
    let handle = connected(events).await;
    let reason = reason.to_owned();
    let closing = async_std::task::spawn(async move { handle.close(4000, &reason).await });

    let payload = raw_close_payload(&mut peer).await;
    assert!(
        payload.len() <= 125,
        "Close payload of {} bytes",
        payload.len()
    );
    assert_eq!(&payload[..2], &4000u16.to_be_bytes());
    let received = String::from_utf8(payload[2..].to_vec()).expect("reason is valid UTF-8");
    assert!(received.len() <= wharf::MAX_REASON_BYTES);
    answer_and_expect_eof(&mut peer, 4000).await;

    assert_eq!(
        within("close()", closing).await.unwrap(),
        CloseOutcome::Clean
    );
    assert_eq!(closed_event(events).await.reason, received);
    received
}

#[async_std::test]
async fn long_reasons_are_cut_on_a_char_boundary() {
    let (server, events) = start_script(Server::new()).await;
    let a = |n: usize| "a".repeat(n);
    let cases = [
        // (reason asked for, reason expected on the wire)
        (a(123), a(123)),
        (a(124), a(123)),
        (a(200), a(123)),
        // A 2-byte char at bytes 122..124.
        (format!("{}é", a(122)), a(122)),
        // A 3-byte char at bytes 121..124.
        (format!("{}€", a(121)), a(121)),
        // A 3-byte char ending exactly at 123 is kept.
        (format!("{}€b", a(120)), format!("{}€", a(120))),
        // A 4-byte char at bytes 122..126.
        (format!("{}🦀", a(122)), a(122)),
        ("🦀".repeat(40), "🦀".repeat(30)),
        ("é".repeat(70), "é".repeat(61)),
    ];
    for (asked, expected) in cases {
        let got = reason_on_the_wire(&server, &events, &asked).await;
        assert_eq!(got, expected, "reason of {} bytes", asked.len());
    }
}

#[async_std::test]
async fn a_truncated_reason_is_accepted_by_a_real_client() {
    let (server, events) = start_script(Server::new()).await;
    let mut client = connect(&server, "/").await;
    let handle = connected(&events).await;
    let reason = format!("{}é", "a".repeat(122));
    let closing = async_std::task::spawn(async move { handle.close(4000, &reason).await });

    let msg = within("close frame", client.next()).await;
    let Some(Ok(WsMessage::Close(Some(frame)))) = msg else {
        panic!("expected a Close frame, got {msg:?}");
    };
    assert_eq!(u16::from(frame.code), 4000);
    assert_eq!(frame.reason.as_str(), "a".repeat(122));
    assert!(within("end of stream", client.next()).await.is_none());
    assert_eq!(
        within("close()", closing).await.unwrap(),
        CloseOutcome::Clean
    );
}

#[async_std::test]
async fn unsendable_codes_are_refused_and_the_connection_stays_open() {
    let (server, events) = start_script(Server::new()).await;
    let mut client = connect(&server, "/").await;
    let handle = connected(&events).await;

    for code in [
        0,
        999,
        1004,
        1005,
        1006,
        1015,
        1016,
        2000,
        2999,
        5000,
        u16::MAX,
    ] {
        let result = within("close()", handle.close(code, "nope")).await;
        assert!(
            matches!(result, Err(Error::InvalidCloseCode(c)) if c == code),
            "close({code}) returned {result:?}"
        );
        assert!(handle.is_open(), "close({code}) started closing");
    }
    // Named constants that may not be sent are refused the same way.
    for code in [CloseCode::NO_STATUS, CloseCode::ABNORMAL] {
        let result = within("close()", handle.close(code, "")).await;
        assert!(matches!(result, Err(Error::InvalidCloseCode(_))));
    }

    // Nothing was sent: the next frame the client sees is the echo.
    within("send", client.send(WsMessage::text("still here")))
        .await
        .unwrap();
    let echo = within("echo", client.next()).await.unwrap().unwrap();
    assert_eq!(echo, WsMessage::text("still here"));

    // And a valid close still works afterwards.
    let closer = handle.clone();
    let closing =
        async_std::task::spawn(async move { closer.close(CloseCode::NORMAL, "bye").await });
    let msg = within("close frame", client.next()).await;
    let Some(Ok(WsMessage::Close(Some(frame)))) = msg else {
        panic!("expected a Close frame, got {msg:?}");
    };
    assert_eq!(u16::from(frame.code), 1000);
    assert!(within("end of stream", client.next()).await.is_none());
    assert_eq!(
        within("close()", closing).await.unwrap(),
        CloseOutcome::Clean
    );
}

#[async_std::test]
async fn close_twice_from_a_handle_sends_one_frame_and_repeats_the_outcome() {
    let (server, events) = start_script(Server::new()).await;
    let mut peer = RawPeer::connect(&server, "/").await;
    let handle = connected(&events).await;

    let closer = handle.clone();
    let first = async_std::task::spawn(async move { closer.close(4000, "one").await });
    let seen = peer.read_until_close().await;
    assert_eq!((seen.code, seen.reason.as_str()), (Some(4000), "one"));

    // A second call while the first is still waiting for our answer:
    // `join` polls the call before the answer is written.
    let (second, ()) = within(
        "second close() and the answer",
        join(
            handle.close(4001, "two"),
            answer_and_expect_eof(&mut peer, 4000),
        ),
    )
    .await;
    let second = second.unwrap();
    let first = within("first close()", first).await.unwrap();
    assert_eq!(first, CloseOutcome::Clean);
    assert_eq!(second, first);
    // A third, after the end.
    let third = within("third close()", handle.close(4002, "three"))
        .await
        .unwrap();
    assert_eq!(third, first);

    let closed = closed_event(&events).await;
    assert_eq!(
        (closed.code.as_u16(), closed.reason.as_str()),
        (4000, "one")
    );
}

#[async_std::test]
async fn close_twice_inside_a_handler_sends_one_frame_and_repeats_the_outcome() {
    let (server, events) = start_script(Server::new()).await;
    let mut peer = RawPeer::connect(&server, "/").await;
    let _ = connected(&events).await;

    peer.send_frame(OP_TEXT, true, b"twice").await;
    let seen = peer.read_lone_close().await;
    assert_eq!((seen.code, seen.reason.as_str()), (Some(4000), "one"));
    answer_and_expect_eof(&mut peer, 4000).await;

    let (first, second) = expect_event!(&events, Event::Twice(first, second) => (first, second));
    let first = first.unwrap();
    assert_eq!(first, CloseOutcome::Clean);
    assert_eq!(second.unwrap(), first);
    let closed = closed_event(&events).await;
    assert_eq!(
        (closed.code.as_u16(), closed.reason.as_str()),
        (4000, "one")
    );
}

#[async_std::test]
async fn try_send_on_a_full_queue_returns_queue_full() {
    let (server, events) = start_script(Server::new().send_queue(2)).await;
    let mut peer = RawPeer::connect(&server, "/").await;
    let handle = connected(&events).await;

    // The peer reads nothing. Large messages fill the kernel's socket
    // buffers, then the two queue slots; bounded so a queue that never
    // fills fails the test instead of eating memory.
    const LIMIT: u32 = 4_000;
    let mut accepted = 0u32;
    let full = loop {
        assert!(accepted < LIMIT, "no QueueFull after {LIMIT} messages");
        let mut payload = accepted.to_be_bytes().to_vec();
        payload.resize(64 << 10, b'.');
        match handle.try_send(Message::binary(payload)) {
            Ok(()) => accepted += 1,
            Err(err) => break err,
        }
    };
    assert!(matches!(full, Error::QueueFull), "got {full:?}");
    // A full queue does not close the connection.
    assert!(handle.is_open());

    // Once the peer reads, everything accepted arrives, in order.
    let mut next = 0u32;
    while next < accepted {
        let frame = peer.read_frame().await.expect("a queued message");
        assert_eq!(frame.opcode, OP_BINARY);
        assert_eq!(
            u32::from_be_bytes(frame.payload[..4].try_into().unwrap()),
            next
        );
        next += 1;
    }
    // Room again: the waiting send goes through.
    within("send", handle.text("after")).await.unwrap();
    let frame = peer.read_frame().await.expect("the last message");
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (OP_TEXT, &b"after"[..])
    );

    let closer = handle.clone();
    let closing = async_std::task::spawn(async move { closer.close(1000, "").await });
    peer.read_lone_close().await;
    answer_and_expect_eof(&mut peer, 1000).await;
    assert_eq!(
        within("close()", closing).await.unwrap(),
        CloseOutcome::Clean
    );
}
