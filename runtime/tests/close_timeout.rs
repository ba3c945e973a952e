//! The close timeout: a peer that never answers the server's Close frame
//! cannot hold the connection open. `close()` returns `TimedOut` once the
//! configured timeout has passed, and the socket is shut down anyway.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::channel::{unbounded, Receiver, Sender};
use async_std::io::{ReadExt, WriteExt};
use async_std::task::JoinHandle;
use wharf::{CloseCode, CloseOutcome, Closed, Conn, Handle, Handler, Initiator, Message, Server};
use wharf_test_support::*;

/// The close timeout every test here configures.
const TIMEOUT: Duration = Duration::from_millis(300);

/// How far past the timeout `close()` may return: a functional bound (the
/// timeout was honoured, nothing waited for a second default timeout), not
/// a performance assertion.
const MARGIN: Duration = Duration::from_secs(3);

#[derive(Debug)]
enum Event {
    Connected(Handle),
    Message(String),
    Closed(Closed),
}

/// Hands out a handle per connection, records every message the message
/// handler is given, and every close.
struct Probe {
    events: Sender<Event>,
}

impl Handler for Probe {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let _ = self.events.send(Event::Connected(conn.handle())).await;
        Ok(())
    }

    async fn on_message(&self, _conn: &Conn, msg: Message) -> wharf::Result<()> {
        let text = msg.as_text().unwrap_or("<binary>").to_owned();
        let _ = self.events.send(Event::Message(text)).await;
        Ok(())
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        let _ = self.events.send(Event::Closed(closed.clone())).await;
    }
}

async fn start_probe(close_timeout: Duration) -> (TestServer, Receiver<Event>) {
    let (events, rx) = unbounded();
    let server = start(
        Server::new()
            .close_timeout(close_timeout)
            .route("/", Probe { events }),
    )
    .await;
    (server, rx)
}

async fn connected(events: &Receiver<Event>) -> Handle {
    expect_event!(events, Event::Connected(handle) => handle)
}

/// A probe server with `close_timeout`, and a raw peer on it whose connect
/// handler has run, with that connection's handle.
async fn probe_with_peer(
    close_timeout: Duration,
) -> (TestServer, Receiver<Event>, RawPeer, Handle) {
    let (server, events) = start_probe(close_timeout).await;
    let peer = RawPeer::connect(&server, "/").await;
    let handle = connected(&events).await;
    (server, events, peer, handle)
}

/// Skips recorded messages (returning them) until the close record.
async fn closed_event(events: &Receiver<Event>) -> (Closed, Vec<String>) {
    let mut messages = Vec::new();
    loop {
        match next_event(events).await {
            Event::Closed(closed) => return (closed, messages),
            Event::Message(text) => messages.push(text),
            other => panic!("expected Closed, got {other:?}"),
        }
    }
}

/// Checks what a `close()` returned and how long it took: `TimedOut`, no
/// sooner than the close timeout and not long after it.
fn assert_timed_out_in_time((outcome, elapsed): (wharf::Result<CloseOutcome>, Duration)) {
    assert_eq!(outcome.unwrap(), CloseOutcome::TimedOut);
    assert!(
        elapsed >= TIMEOUT,
        "close() gave up after {elapsed:?}, before the {TIMEOUT:?} close timeout"
    );
    assert!(
        elapsed < TIMEOUT + MARGIN,
        "close() took {elapsed:?} with a {TIMEOUT:?} close timeout"
    );
}

fn assert_timed_out_record(closed: &Closed, code: u16, reason: &str) {
    assert_eq!(closed.code.as_u16(), code);
    assert_eq!(closed.reason, reason);
    assert_eq!(closed.initiator, Initiator::Server);
    assert!(
        !closed.clean,
        "a close without the peer's answer is not clean"
    );
    assert_eq!(closed.outcome, CloseOutcome::TimedOut);
}

#[async_std::test]
async fn silent_peer_times_out_and_the_socket_is_closed() {
    let (server, events, mut peer, handle) = probe_with_peer(TIMEOUT).await;

    // The peer reads nothing while the server closes.
    assert_timed_out_in_time(within("close()", timed_close(&handle, 4000, "no answer")).await);

    // Our Close was on the wire; after it the stream simply ends.
    let seen = peer.read_lone_close().await;
    assert_eq!(seen.code, Some(4000));
    assert_eq!(seen.reason, "no answer");
    peer.expect_eof().await;

    let (closed, messages) = closed_event(&events).await;
    assert!(messages.is_empty());
    assert_timed_out_record(&closed, 4000, "no answer");
    // Every later caller gets the same outcome.
    assert_eq!(
        within("second close()", handle.close(CloseCode::NORMAL, ""))
            .await
            .unwrap(),
        CloseOutcome::TimedOut
    );
    eventually("registry empty", || server.registry.count() == 0).await;
}

#[async_std::test]
async fn peer_sending_data_but_no_close_still_times_out() {
    let (_server, events, mut peer, handle) = probe_with_peer(TIMEOUT).await;

    // One message before the close is delivered normally.
    peer.send_frame(OP_TEXT, true, b"before").await;
    let text = expect_event!(&events, Event::Message(text) => text);
    assert_eq!(text, "before");

    let (closing, done) = close_in_background(&handle, &mut peer, 4001, "stop talking").await;

    // Keep talking, never answer the Close, until close() has given up or
    // the server hangs up. The pause only paces the writer; nothing waits
    // on it.
    let mut sent_after = 0u32;
    while !done.load(Ordering::SeqCst) && sent_after < 2_000 {
        let payload = format!("after {sent_after}");
        if write_frame(&mut peer, OP_TEXT, payload.as_bytes())
            .await
            .is_err()
        {
            break;
        }
        sent_after += 1;
        async_std::task::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        sent_after > 0,
        "the server hung up before any data was sent"
    );

    assert_timed_out_in_time(within("close()", closing).await);
    read_to_the_end(&mut peer).await;

    let (closed, messages) = closed_event(&events).await;
    assert!(
        messages.is_empty(),
        "data after our Close reached the message handler: {messages:?}"
    );
    assert_timed_out_record(&closed, 4001, "stop talking");
    assert_eq!(closed.messages_in, 1, "only the message before the close");
}

/// Runs `handle.close(code, reason)`; returns its outcome and how long it
/// took.
async fn timed_close(
    handle: &Handle,
    code: u16,
    reason: &str,
) -> (wharf::Result<CloseOutcome>, Duration) {
    let started = Instant::now();
    let outcome = handle.close(code, reason).await;
    (outcome, started.elapsed())
}

/// Runs [`timed_close`] in its own task, and reads the server's Close on
/// `peer`, checking its code. Returns the task and a flag set when
/// `close()` returns.
async fn close_in_background(
    handle: &Handle,
    peer: &mut RawPeer,
    code: u16,
    reason: &'static str,
) -> (
    JoinHandle<(wharf::Result<CloseOutcome>, Duration)>,
    Arc<AtomicBool>,
) {
    let done = Arc::new(AtomicBool::new(false));
    let handle = handle.clone();
    let set_done = Arc::clone(&done);
    let closing = async_std::task::spawn(async move {
        let out = timed_close(&handle, code, reason).await;
        set_done.store(true, Ordering::SeqCst);
        out
    });
    let seen = peer.read_until_close().await;
    assert_eq!(seen.code, Some(code));
    (closing, done)
}

/// Reads until the server has closed the socket (EOF, or a reset: frames
/// the peer sent may arrive after the server stopped reading); returns what
/// made it out.
async fn read_to_the_end(peer: &mut RawPeer) -> Vec<u8> {
    let mut rest = Vec::new();
    let _ = within("end of stream", peer.stream.read_to_end(&mut rest)).await;
    rest
}

/// Writes one masked frame, reporting a failed write (the server hung up)
/// instead of panicking.
async fn write_frame(peer: &mut RawPeer, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
    let bytes = frame(opcode, true, payload, true);
    within("raw write", peer.stream.write_all(&bytes)).await
}

#[async_std::test]
async fn peer_flooding_data_after_our_close_still_times_out() {
    let (server, events, mut peer, handle) = probe_with_peer(TIMEOUT).await;
    let (closing, done) = close_in_background(&handle, &mut peer, 4004, "flood").await;

    // Write data frames back to back, as fast as the socket takes them
    // (one frame, masked once, so writing costs the peer far less than
    // parsing costs the server), until close() has returned or the
    // server hangs up; bounded so a server that never gives up fails
    // below instead of hanging here.
    let chunk = frame(OP_BINARY, true, &vec![b'z'; 256 << 10], true);
    let flood_started = Instant::now();
    while !done.load(Ordering::SeqCst) && flood_started.elapsed() < TIMEOUT + MARGIN {
        if within("raw write", peer.stream.write_all(&chunk))
            .await
            .is_err()
        {
            break;
        }
    }

    assert_timed_out_in_time(within("close()", closing).await);
    read_to_the_end(&mut peer).await;

    let (closed, messages) = closed_event(&events).await;
    assert!(
        messages.is_empty(),
        "data after our Close reached the message handler"
    );
    assert_timed_out_record(&closed, 4004, "flood");
    eventually("registry empty", || server.registry.count() == 0).await;
}

#[async_std::test]
async fn peer_that_reads_nothing_while_the_queue_cannot_flush_times_out() {
    let (server, events, mut peer, handle) = probe_with_peer(TIMEOUT).await;

    // More than the kernel's loopback buffers can hold, so the flush before
    // our Close cannot finish while the peer does not read.
    let big = vec![b'x'; 1 << 20];
    for _ in 0..24 {
        within("queue", handle.binary(big.clone())).await.unwrap();
    }
    assert_timed_out_in_time(within("close()", timed_close(&handle, 4002, "stuck")).await);

    // The socket was shut down: the peer reads what made it out, then the
    // end of the stream.
    let rest = read_to_the_end(&mut peer).await;
    assert!(
        rest.len() < 24 << 20,
        "all the data made it out, so the test did not block the flush"
    );

    let (closed, _) = closed_event(&events).await;
    assert_timed_out_record(&closed, 4002, "stuck");
    eventually("registry empty", || server.registry.count() == 0).await;
}

#[async_std::test]
async fn peer_that_hangs_up_instead_of_answering_is_gone_before_the_timeout() {
    // A long timeout: a peer that disconnects must not make close() wait it out.
    let (server, events, mut peer, handle) = probe_with_peer(Duration::from_secs(8)).await;
    let (closing, _) = close_in_background(&handle, &mut peer, 4003, "bye").await;
    drop(peer);

    let (outcome, elapsed) = within("close()", closing).await;
    assert_eq!(outcome.unwrap(), CloseOutcome::PeerGone);
    assert!(
        elapsed < Duration::from_secs(8),
        "close() waited out the timeout ({elapsed:?}) for a peer that hung up"
    );

    let (closed, _) = closed_event(&events).await;
    assert_eq!(closed.code.as_u16(), 4003);
    assert_eq!(closed.initiator, Initiator::Server);
    assert!(!closed.clean);
    assert_eq!(closed.outcome, CloseOutcome::PeerGone);
    eventually("registry empty", || server.registry.count() == 0).await;
}

#[async_std::test]
async fn a_close_answered_while_ours_cannot_be_written_times_out() {
    let (server, events) = start_probe(TIMEOUT).await;
    let mut peer = RawPeer::connect_small_window(&server, "/").await;
    let handle = connected(&events).await;

    // More than this peer's socket buffers hold, while it reads nothing:
    // the message and, behind it, our Close wait in the server.
    within("queue", handle.binary(vec![b'x'; 100 << 10]))
        .await
        .unwrap();
    let closer = handle.clone();
    let closing = async_std::task::spawn(async move { timed_close(&closer, 4005, "unread").await });
    eventually("the close began", || !handle.is_open()).await;
    // The peer answers, but never reads until close() has returned: our
    // Close was never written, so the close did not complete.
    peer.send_close(1000, b"").await;
    assert_timed_out_in_time(within("close()", closing).await);

    let rest = read_to_the_end(&mut peer).await;
    assert!(
        rest.len() < 100 << 10,
        "all the data made it out, so the test did not block the flush"
    );
    let (closed, _) = closed_event(&events).await;
    assert_timed_out_record(&closed, 4005, "unread");
    eventually("registry empty", || server.registry.count() == 0).await;
}
