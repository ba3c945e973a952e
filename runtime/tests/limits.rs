//! Per-connection policies: the idle timeout (1001 "Idle timeout"), the
//! heartbeat (pings; a dead peer is dropped and reported as 1006), the
//! session lifetime (1008 "Session expired"), the message and frame size
//! limits (1009), and the bounded send queue (a slow consumer is closed with
//! 1008 "Send queue full"; `send` waits for room, `try_send` does not).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::channel::{unbounded, Receiver, Sender};
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use wharf::{CloseOutcome, Closed, Conn, Error, Handle, Handler, Initiator, Message, Server};
use wharf_test_support::*;

/// How far past a policy's deadline its action may come: a functional bound
/// (the policy fired, nothing waited for a default 30 s timer), not a
/// performance assertion.
const MARGIN: Duration = Duration::from_secs(3);

#[derive(Debug)]
enum Event {
    Connected(Handle),
    Closed(Closed),
    /// The "flood" loop ended: how many sends succeeded and how the last
    /// one failed.
    Flooded {
        queued: usize,
        error: Error,
    },
}

/// Echoes messages, reports connects and closes; on the text "flood" keeps
/// queueing 64 KiB binary messages with the waiting `send` until it fails.
struct Probe {
    events: Sender<Event>,
}

/// Upper bound on the flood loop, so an unbounded queue fails the test
/// instead of eating the machine's memory.
const FLOOD_LIMIT: usize = 20_000;

impl Handler for Probe {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let _ = self.events.send(Event::Connected(conn.handle())).await;
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        if msg.as_text() != Some("flood") {
            return conn.send(msg).await;
        }
        let chunk = wharf::Bytes::from(vec![0x5a; 64 << 10]);
        let mut queued = 0;
        let error = loop {
            if queued == FLOOD_LIMIT {
                break Error::handler("the flood was never stopped");
            }
            match conn.binary(chunk.clone()).await {
                Ok(()) => queued += 1,
                Err(err) => break err,
            }
        };
        let _ = self.events.send(Event::Flooded { queued, error }).await;
        Ok(())
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        let _ = self.events.send(Event::Closed(closed.clone())).await;
    }
}

async fn start_probe(server: Server) -> (TestServer, Receiver<Event>) {
    let (events, rx) = unbounded();
    let server = start(server.route("/", Probe { events })).await;
    (server, rx)
}

async fn connected(events: &Receiver<Event>) -> Handle {
    expect_event!(events, Event::Connected(handle) => handle)
}

/// The next close record, skipping connects.
async fn closed_event(events: &Receiver<Event>) -> Closed {
    loop {
        match next_event(events).await {
            Event::Closed(closed) => return closed,
            Event::Connected(_) => {}
            other => panic!("expected Closed, got {other:?}"),
        }
    }
}

fn assert_record(closed: &Closed, code: u16, reason: &str, initiator: Initiator) {
    assert_eq!(
        (
            closed.code.as_u16(),
            closed.reason.as_str(),
            closed.initiator
        ),
        (code, reason, initiator),
        "close record: {closed:?}"
    );
}

/// Reads the server's Close frame from a tungstenite client (failing on any
/// other message except pings, which it counts) and then the end of the
/// stream. Returns the code, the reason and the pings seen.
async fn expect_server_close(client: &mut Client) -> (u16, String, usize) {
    let mut pings = 0;
    loop {
        match within("the server's Close", client.next()).await {
            Some(Ok(WsMessage::Ping(_))) => pings += 1,
            Some(Ok(WsMessage::Close(Some(frame)))) => {
                // tungstenite answers the Close by itself; the server then
                // ends the stream.
                let end = within("end of stream", client.next()).await;
                assert!(end.is_none(), "expected the end of the stream, got {end:?}");
                return (
                    u16::from(frame.code),
                    frame.reason.as_str().to_owned(),
                    pings,
                );
            }
            other => panic!("expected the server's Close, got {other:?}"),
        }
    }
}

/// Closes a tungstenite client with 1000 and waits for the echo and the end
/// of the stream.
async fn client_close(client: &mut Client) {
    send_normal_close(client, "done").await;
    loop {
        match within("echo of the Close", client.next()).await {
            Some(Ok(WsMessage::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1000);
                break;
            }
            // Pings already in flight before our Close.
            Some(Ok(WsMessage::Ping(_))) => {}
            other => panic!("expected the echo of our Close, got {other:?}"),
        }
    }
    assert!(within("end of stream", client.next()).await.is_none());
}

/// Sends `text` and waits for its echo, skipping the server's pings.
async fn round_trip(client: &mut Client, text: &str) {
    within("send", client.send(WsMessage::text(text)))
        .await
        .expect("send");
    loop {
        match within("echo", client.next()).await {
            Some(Ok(WsMessage::Text(echo))) => {
                assert_eq!(echo.as_str(), text);
                return;
            }
            Some(Ok(WsMessage::Ping(_))) => {}
            other => panic!("expected the echo of {text:?}, got {other:?}"),
        }
    }
}

// ---- idle timeout ----

/// Reads the server's Close (see [`expect_server_close`]), which must be
/// 1001 "Idle timeout" and come `idle` after `started`, within [`MARGIN`].
/// Returns the pings seen before it.
async fn expect_idle_close(client: &mut Client, started: Instant, idle: Duration) -> usize {
    let (code, reason, pings) = expect_server_close(client).await;
    let elapsed = started.elapsed();
    assert_eq!((code, reason.as_str()), (1001, "Idle timeout"));
    assert!(elapsed >= idle, "closed after {elapsed:?}, before {idle:?}");
    assert!(elapsed < idle + MARGIN, "closed only after {elapsed:?}");
    pings
}

#[async_std::test]
async fn idle_client_is_closed_with_1001_idle_timeout() {
    let idle = Duration::from_millis(300);
    let (server, events) = start_probe(Server::new().idle_timeout(idle)).await;
    let started = Instant::now();
    let mut client = connect(&server, "/").await;
    connected(&events).await;

    // The client sends nothing; it only reads (and would answer pings).
    expect_idle_close(&mut client, started, idle).await;

    let closed = closed_event(&events).await;
    assert_record(&closed, 1001, "Idle timeout", Initiator::Server);
    assert!(closed.clean);
    assert_eq!(closed.outcome, CloseOutcome::Clean);
    eventually("registry empty", || server.registry.count() == 0).await;
}

#[async_std::test]
async fn client_sending_within_the_idle_timeout_stays_open() {
    let idle = Duration::from_millis(450);
    let (server, events) = start_probe(Server::new().idle_timeout(idle)).await;
    let started = Instant::now();
    let mut client = connect(&server, "/").await;
    connected(&events).await;

    // A message every third of the idle time, for three idle periods. The
    // pause is the client's pace, not a wait for an event.
    for i in 0..7 {
        round_trip(&mut client, &format!("tick {i}")).await;
        async_std::task::sleep(idle / 3).await;
    }
    assert!(
        started.elapsed() > idle * 2,
        "the test did not outlast the timeout"
    );

    // The client ends it: had the server closed first, the record would say
    // so (and the round trips above would have failed).
    client_close(&mut client).await;
    let closed = closed_event(&events).await;
    assert_record(&closed, 1000, "done", Initiator::Client);
    assert_eq!(closed.messages_in, 7);
    assert_eq!(closed.outcome, CloseOutcome::Clean);
}

#[async_std::test]
async fn client_pings_count_as_activity() {
    let idle = Duration::from_millis(450);
    let (server, events) = start_probe(Server::new().idle_timeout(idle)).await;
    let mut client = connect(&server, "/").await;
    connected(&events).await;

    for i in 0..7u8 {
        within("ping", client.send(WsMessage::Ping(vec![i].into())))
            .await
            .expect("ping");
        match within("pong", client.next()).await {
            Some(Ok(WsMessage::Pong(payload))) => assert_eq!(&payload[..], &[i]),
            other => panic!("expected the pong, got {other:?}"),
        }
        async_std::task::sleep(idle / 3).await;
    }
    client_close(&mut client).await;
    let closed = closed_event(&events).await;
    assert_record(&closed, 1000, "done", Initiator::Client);
}

#[async_std::test]
async fn answering_heartbeat_pings_is_not_activity() {
    // Pings every 50 ms, which the reading client answers; the connection is
    // still idle: pongs do not count.
    let idle = Duration::from_millis(500);
    let (server, events) = start_probe(
        Server::new()
            .idle_timeout(idle)
            .heartbeat(Duration::from_millis(50), Duration::from_secs(2)),
    )
    .await;
    let started = Instant::now();
    let mut client = connect(&server, "/").await;
    connected(&events).await;

    let pings = expect_idle_close(&mut client, started, idle).await;
    assert!(pings >= 1, "the server never pinged");
    let closed = closed_event(&events).await;
    assert_record(&closed, 1001, "Idle timeout", Initiator::Server);
}

// ---- heartbeat ----

#[async_std::test]
async fn reading_client_stays_connected_across_ping_intervals() {
    let interval = Duration::from_millis(100);
    let (server, events) =
        start_probe(Server::new().heartbeat(interval, Duration::from_millis(250))).await;
    let mut client = connect(&server, "/").await;
    connected(&events).await;

    // Read for ten intervals: only pings may arrive (tungstenite answers
    // each on its next read); the connection must not end.
    let watch = interval * 10;
    let started = Instant::now();
    let mut pings = 0;
    while let Some(left) = watch.checked_sub(started.elapsed()) {
        match async_std::future::timeout(left, client.next()).await {
            Err(_) => break,
            Ok(Some(Ok(WsMessage::Ping(payload)))) => {
                assert!(payload.is_empty());
                pings += 1;
            }
            Ok(other) => panic!("expected only pings, got {other:?}"),
        }
    }
    assert!(pings >= 3, "only {pings} pings in {watch:?}");

    round_trip(&mut client, "still here").await;
    client_close(&mut client).await;
    let closed = closed_event(&events).await;
    assert_record(&closed, 1000, "done", Initiator::Client);
    assert_eq!(closed.outcome, CloseOutcome::Clean);
}

#[async_std::test]
async fn silent_peer_is_dropped_without_a_close_frame() {
    let (interval, pong_timeout) = (Duration::from_millis(100), Duration::from_millis(200));
    let (server, events) = start_probe(Server::new().heartbeat(interval, pong_timeout)).await;
    let started = Instant::now();
    // Completes the upgrade, then neither reads nor writes.
    let mut peer = RawPeer::connect(&server, "/").await;
    connected(&events).await;

    let closed = closed_event(&events).await;
    let elapsed = started.elapsed();
    assert_record(&closed, 1006, "Heartbeat timeout", Initiator::Abnormal);
    assert!(!closed.clean);
    assert_eq!(closed.outcome, CloseOutcome::PeerGone);
    assert!(
        elapsed >= interval + pong_timeout,
        "declared dead after {elapsed:?}"
    );
    assert!(
        elapsed < interval + pong_timeout + MARGIN,
        "dropped only after {elapsed:?}"
    );
    eventually("registry empty", || server.registry.count() == 0).await;

    // What reached the peer: pings, then the end of the stream; never a
    // Close frame (1006 is never sent on the wire).
    let mut pings = 0;
    while let Some(frame) = peer.read_frame().await {
        assert_eq!(frame.opcode, OP_PING, "unexpected frame {frame:?}");
        pings += 1;
    }
    assert!(pings >= 1, "the peer was declared dead without a ping");
}

#[async_std::test]
async fn raw_peer_sees_pings_and_its_pongs_keep_it_alive() {
    let (interval, pong_timeout) = (Duration::from_millis(100), Duration::from_millis(300));
    let (server, events) = start_probe(Server::new().heartbeat(interval, pong_timeout)).await;
    let started = Instant::now();
    let mut peer = RawPeer::connect(&server, "/").await;
    connected(&events).await;

    // Answer six pings: longer than interval + pong timeout in all.
    for _ in 0..6 {
        let frame = peer.read_frame().await.expect("a ping");
        assert_eq!((frame.opcode, frame.fin), (OP_PING, true), "{frame:?}");
        peer.send_frame(OP_PONG, true, &frame.payload).await;
    }
    assert!(started.elapsed() > interval + pong_timeout);

    peer.send_close(1000, b"bye").await;
    let seen = peer.read_until_close().await;
    assert!(
        seen.before.iter().all(|f| f.opcode == OP_PING),
        "{:?}",
        seen.before
    );
    assert_eq!(seen.code, Some(1000));
    peer.expect_eof().await;
    let closed = closed_event(&events).await;
    assert_record(&closed, 1000, "bye", Initiator::Client);
}

/// Reads one frame, which must be a ping, and answers it.
async fn answer_ping(peer: &mut RawPeer) {
    let frame = peer.read_frame().await.expect("a ping");
    assert_eq!(frame.opcode, OP_PING, "{frame:?}");
    peer.send_frame(OP_PONG, true, &frame.payload).await;
}

#[async_std::test]
async fn heartbeat_pings_every_interval_while_the_peer_answers() {
    // A pong timeout much longer than the interval: after each pong the
    // next ping is due `interval` later (nothing heard for that long), not
    // when the pong timeout of the previous ping would have run out.
    let (interval, pong_timeout) = (Duration::from_millis(100), Duration::from_secs(1));
    let (server, events) = start_probe(Server::new().heartbeat(interval, pong_timeout)).await;
    let mut peer = RawPeer::connect(&server, "/").await;
    connected(&events).await;

    answer_ping(&mut peer).await;
    let started = Instant::now();
    for _ in 0..3 {
        answer_ping(&mut peer).await;
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < pong_timeout,
        "3 pings after a pong took {elapsed:?} with a {interval:?} interval: \
         the pings follow the pong timeout ({pong_timeout:?}), not the interval"
    );
    peer.send_close(1000, b"").await;
    assert_eq!(peer.read_until_close().await.code, Some(1000));
}

#[async_std::test]
async fn peer_answering_pings_while_reading_is_paused_is_not_dead() {
    // The handler is busy and the inbox full, so the server stops reading
    // (backpressure). The peer is alive and answers every ping; its pongs
    // wait in the socket because the *server* is not reading. That must not
    // count as a dead peer.
    let (interval, pong_timeout) = (Duration::from_millis(100), Duration::from_millis(200));
    let (mut peer, gate) = blocked_peer(Server::new().heartbeat(interval, pong_timeout)).await;
    // More than the inbound queue (16 by default): reading pauses.
    for i in 0..20u8 {
        peer.send_frame(OP_BINARY, true, &[i]).await;
    }

    // Answer every ping for several pong timeouts.
    let watch = (interval + pong_timeout) * 4;
    let started = Instant::now();
    while let Some(left) = watch.checked_sub(started.elapsed()) {
        match async_std::future::timeout(left, peer.read_frame()).await {
            Err(_) => break,
            Ok(Some(frame)) if frame.opcode == OP_PING => {
                peer.send_frame(OP_PONG, true, &frame.payload).await;
            }
            Ok(Some(frame)) => panic!("unexpected frame while the handler is blocked: {frame:?}"),
            Ok(None) => {
                let after = started.elapsed();
                // The close handler runs once the blocked handler returns.
                within("release", gate.release.send(())).await.unwrap();
                let why = next_event(&gate.closed).await;
                panic!(
                    "the server dropped a peer that answered its pings, because the server \
                     itself had paused reading (after {after:?}): {why:?}"
                );
            }
        }
    }

    // The handler catches up: every message is echoed, the connection is
    // still open.
    within("release", gate.release.send(())).await.unwrap();
    let mut echoes = 0;
    while echoes < 20 {
        let frame = peer.read_frame().await.expect("the echoes");
        match frame.opcode {
            OP_BINARY => echoes += 1,
            OP_PING => peer.send_frame(OP_PONG, true, &frame.payload).await,
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    peer.send_close(1000, b"").await;
    assert_eq!(peer.read_until_close().await.code, Some(1000));
    let record = next_event(&gate.closed).await;
    assert_record(&record, 1000, "", Initiator::Client);
}

// ---- session lifetime ----

#[async_std::test]
async fn expired_session_is_closed_with_1008_even_while_active() {
    // The idle timeout is shorter than the lifetime: only a client that
    // keeps talking reaches the expiry, so the close is the TTL's.
    let (ttl, idle) = (Duration::from_millis(600), Duration::from_millis(300));
    let (server, events) = start_probe(Server::new().session_ttl(ttl).idle_timeout(idle)).await;
    let started = Instant::now();
    let mut client = connect(&server, "/").await;
    connected(&events).await;

    let mut echoes = 0;
    let (code, reason) = 'talk: loop {
        assert!(echoes < 400, "the session never expired");
        within("send", client.send(WsMessage::text("ping-pong")))
            .await
            .expect("send");
        match within("echo or Close", client.next()).await {
            Some(Ok(WsMessage::Text(_))) => echoes += 1,
            Some(Ok(WsMessage::Close(Some(frame)))) => {
                break 'talk (u16::from(frame.code), frame.reason.as_str().to_owned());
            }
            other => panic!("expected an echo or the Close, got {other:?}"),
        }
        async_std::task::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = started.elapsed();
    assert_eq!((code, reason.as_str()), (1008, "Session expired"));
    assert!(elapsed >= ttl, "expired after {elapsed:?}, before {ttl:?}");
    assert!(elapsed < ttl + MARGIN, "expired only after {elapsed:?}");
    assert!(echoes >= 5, "only {echoes} echoes before the expiry");
    assert!(within("end of stream", client.next()).await.is_none());

    let closed = closed_event(&events).await;
    assert_record(&closed, 1008, "Session expired", Initiator::Server);
    assert_eq!(closed.outcome, CloseOutcome::Clean);
}

// ---- message and frame size ----

/// The peer has just gone over a size limit: the server answers with a lone
/// Close with 1009 and ends the stream, and records a 1009 of its own.
/// Returns the record.
async fn assert_closed_with_1009(mut peer: RawPeer, events: &Receiver<Event>) -> Closed {
    assert_eq!(peer.expect_lone_close().await, Some(1009));
    // Hang up: the server discards input until our end of the stream.
    drop(peer);
    let closed = closed_event(events).await;
    assert_eq!(closed.code.as_u16(), 1009);
    assert_eq!(closed.initiator, Initiator::Server);
    closed
}

#[async_std::test]
async fn message_over_max_message_size_is_closed_with_1009() {
    let (server, events) = start_probe(Server::new().max_message_size(1000)).await;

    // Exactly the limit, in two fragments: accepted and echoed.
    let mut peer = RawPeer::connect(&server, "/").await;
    connected(&events).await;
    peer.send_frame(OP_BINARY, false, &[1; 600]).await;
    peer.send_frame(OP_CONT, true, &[2; 400]).await;
    let echo = peer.read_frame().await.expect("the echo");
    assert_eq!((echo.opcode, echo.payload.len()), (OP_BINARY, 1000));

    // One byte over, in two fragments each well under the frame limit.
    peer.send_frame(OP_BINARY, false, &[1; 600]).await;
    peer.send_frame(OP_CONT, true, &[2; 401]).await;
    let closed = assert_closed_with_1009(peer, &events).await;
    assert_eq!(closed.messages_in, 1);

    // One byte over in a single frame.
    let code = close_code_for(&server, "/", &frame(OP_TEXT, true, &[b'a'; 1001], true)).await;
    assert_eq!(code, Some(1009));
    let closed = closed_event(&events).await;
    assert_eq!(closed.code.as_u16(), 1009);
}

#[async_std::test]
async fn frame_over_max_frame_size_is_closed_with_1009() {
    let (server, events) = start_probe(Server::new().max_frame_size(100)).await;

    // Frames at the limit make up a bigger message: accepted.
    let mut peer = RawPeer::connect(&server, "/").await;
    connected(&events).await;
    peer.send_frame(OP_TEXT, false, &[b'a'; 100]).await;
    peer.send_frame(OP_CONT, false, &[b'b'; 100]).await;
    peer.send_frame(OP_CONT, true, &[b'c'; 100]).await;
    let echo = peer.read_frame().await.expect("the echo");
    assert_eq!((echo.opcode, echo.payload.len()), (OP_TEXT, 300));

    // A frame one byte over.
    peer.send_frame(OP_BINARY, true, &[0; 101]).await;
    assert_closed_with_1009(peer, &events).await;

    // A continuation frame over the limit, too.
    let mut bytes = frame(OP_TEXT, false, b"start", true);
    bytes.extend(frame(OP_CONT, true, &[b'x'; 101], true));
    assert_eq!(close_code_for(&server, "/", &bytes).await, Some(1009));
}

// ---- the send queue ----

#[async_std::test]
async fn slow_consumer_is_closed_with_1008_send_queue_full() {
    const QUEUE: usize = 4;
    let send_timeout = Duration::from_millis(200);
    let (server, events) = start_probe(
        Server::new()
            .send_queue(QUEUE)
            .send_timeout(send_timeout)
            .close_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut peer = RawPeer::connect(&server, "/").await;
    connected(&events).await;

    // Ask for the flood, then never read.
    peer.send_frame(OP_TEXT, true, b"flood").await;
    let (queued, error) =
        expect_event!(&events, Event::Flooded { queued, error } => (queued, error));
    assert!(
        matches!(error, Error::ConnectionClosed),
        "the flood ended with {error:?}"
    );
    let closed = closed_event(&events).await;
    assert_record(&closed, 1008, "Send queue full", Initiator::Server);
    // The Close frame waits behind a queue the peer never drains.
    assert!(
        matches!(closed.outcome, CloseOutcome::TimedOut | CloseOutcome::Clean),
        "outcome {:?}",
        closed.outcome
    );

    // Every successful send was written or was still queued at the end:
    // what was left never exceeded the bound.
    let written = closed.messages_out as usize;
    assert!(
        queued > QUEUE,
        "the flood never filled the queue ({queued} sent)"
    );
    assert!(
        queued <= written + QUEUE,
        "{queued} sends succeeded, {written} were written: more than {QUEUE} waited"
    );

    // The socket is gone; what made it out ends without hanging.
    wait_until_dropped(&mut peer.stream, STEP).await;
    eventually("registry empty", || server.registry.count() == 0).await;
    // Its queue was full when the close began; now that it has ended, it
    // no longer counts as full.
    assert_eq!(server.stats().send_queues_full, 0, "{:?}", server.stats());
}

#[async_std::test]
async fn try_send_fails_when_full_and_send_waits_for_room() {
    const QUEUE: usize = 2;
    let (server, events) = start_probe(
        // A send timeout far beyond the test: the queue may stay full.
        Server::new()
            .send_queue(QUEUE)
            .send_timeout(Duration::from_secs(60)),
    )
    .await;
    let mut peer = RawPeer::connect(&server, "/").await;
    let handle = connected(&events).await;

    // The peer does not read. Queue with try_send until the kernel buffers
    // and the queue are full: QueueFull, and still QueueFull after a while
    // (while the socket still drains into the kernel, room reappears).
    let chunk = wharf::Bytes::from(vec![0x42; 256 << 10]);
    let mut queued = 0usize;
    let mut last_ok = Instant::now();
    let filling = Instant::now();
    loop {
        assert!(filling.elapsed() < STEP, "the queue never stayed full");
        match handle.try_send(Message::Binary(chunk.clone())) {
            Ok(()) => {
                queued += 1;
                last_ok = Instant::now();
                assert!(queued < 10_000, "try_send never reported a full queue");
            }
            Err(Error::QueueFull) => {
                if last_ok.elapsed() > Duration::from_millis(300) {
                    break;
                }
                // Polling state that has no event, like `eventually`.
                async_std::task::sleep(Duration::from_millis(5)).await;
            }
            Err(other) => panic!("try_send failed with {other:?}"),
        }
    }
    assert!(queued >= QUEUE);

    // The server sees the queue full.
    let full = || server.stats().send_queues_full;
    eventually("the server to report the queue full", || full() == 1).await;

    // A waiting send does not complete while the queue stays full.
    let done = Arc::new(AtomicBool::new(false));
    let sending = {
        let (handle, done) = (handle.clone(), Arc::clone(&done));
        async_std::task::spawn(async move {
            let result = handle.text("last").await;
            done.store(true, Ordering::SeqCst);
            result
        })
    };
    let early = async_std::future::timeout(Duration::from_millis(200), async {
        while !done.load(Ordering::SeqCst) {
            async_std::task::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(early.is_err(), "send completed while the queue was full");
    assert_eq!(full(), 1, "the queue had room while the send waited");

    // Once the peer reads, room frees up: everything arrives in order and
    // the waiting send completes.
    let mut binaries = 0;
    loop {
        let frame = peer.read_frame().await.expect("the queued messages");
        match frame.opcode {
            OP_BINARY => {
                assert_eq!(frame.payload.len(), chunk.len());
                binaries += 1;
            }
            OP_TEXT => {
                assert_eq!(frame.payload, b"last");
                break;
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    assert_eq!(binaries, queued, "messages accepted by try_send were lost");
    within("the waiting send", sending)
        .await
        .expect("send after room freed up");

    // The queue has room again.
    eventually("the server to report room in the queue", || full() == 0).await;
    handle.try_send("again").expect("try_send with room");
    let frame = peer.read_frame().await.expect("the message");
    assert_eq!(frame.payload, b"again");

    peer.send_close(1000, b"").await;
    let seen = peer.read_until_close().await;
    assert_eq!(seen.code, Some(1000));
    peer.expect_eof().await;
    let closed = closed_event(&events).await;
    assert_eq!(closed.messages_out as usize, queued + 2);
    assert_eq!(full(), 0);

    // After the end both forms fail with Closed.
    assert!(matches!(
        handle.try_send("late"),
        Err(Error::ConnectionClosed)
    ));
    assert!(matches!(
        within("send after the end", handle.send("late")).await,
        Err(Error::ConnectionClosed)
    ));
}
