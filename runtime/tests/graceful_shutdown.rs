//! Graceful shutdown: `ServerHandle::shutdown()` stops accepting, closes
//! every connection with the shutdown code (1001 "Going away" by default)
//! after what was queued, waits for the closing handshakes up to the drain
//! deadline, drops the rest, and `run()` returns a summary.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::channel::{unbounded, Receiver, Sender};
use async_std::io::WriteExt;
use async_std::net::TcpStream;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use wharf::{
    CloseOutcome, Closed, Conn, Handle, Handler, Initiator, Message, RejectReason, Server,
};
use wharf_test_support::*;

/// How far past the drain deadline `run()` may return: a correctness bound
/// (the deadline was honoured, nothing waited for a longer timeout), not a
/// benchmark.
const MARGIN: Duration = Duration::from_secs(3);

/// Echoes; counts connects and finished close handlers; hands out each
/// connection's handle and close record. The close handler can be made
/// slow, like one that saves the session somewhere. The message "stall"
/// never returns.
struct Counter {
    connects: Arc<AtomicUsize>,
    closes: Arc<AtomicUsize>,
    stalls: Arc<AtomicUsize>,
    close_work: Duration,
    handles: Sender<Handle>,
    records: Sender<Closed>,
}

struct Counted {
    connects: Arc<AtomicUsize>,
    closes: Arc<AtomicUsize>,
    /// Message handlers stuck on "stall".
    stalls: Arc<AtomicUsize>,
    handles: Receiver<Handle>,
    records: Receiver<Closed>,
}

impl Counted {
    fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }

    fn closes(&self) -> usize {
        self.closes.load(Ordering::SeqCst)
    }

    fn stalls(&self) -> usize {
        self.stalls.load(Ordering::SeqCst)
    }
}

/// Starts `server` with a [`Counter`] on `/` whose close handler takes
/// `close_work`.
async fn start_counted(server: Server, close_work: Duration) -> (TestServer, Counted) {
    let (connects, closes, stalls) = (
        Arc::default(),
        Arc::<AtomicUsize>::default(),
        Arc::<AtomicUsize>::default(),
    );
    let (handles_tx, handles) = unbounded();
    let (records_tx, records) = unbounded();
    let handler = Counter {
        connects: Arc::clone(&connects),
        closes: Arc::clone(&closes),
        stalls: Arc::clone(&stalls),
        close_work,
        handles: handles_tx,
        records: records_tx,
    };
    let counted = Counted {
        connects,
        closes,
        stalls,
        handles,
        records,
    };
    (start(server.route("/", handler)).await, counted)
}

/// Starts a [`Counter`] server with the default shutdown Close and a drain
/// deadline of `drain`, and a close timeout far longer: the drain deadline
/// is what cuts a peer that never answers the Close.
async fn start_draining(drain: Duration) -> (TestServer, Counted) {
    start_counted(
        Server::new()
            .close_timeout(Duration::from_secs(30))
            .shutdown_close(1001, "Going away")
            .drain_timeout(drain),
        Duration::ZERO,
    )
    .await
}

impl Handler for Counter {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        let _ = self.handles.send(conn.handle()).await;
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        if msg.as_text() == Some("stall") {
            self.stalls.fetch_add(1, Ordering::SeqCst);
            futures_util::future::pending::<()>().await;
        }
        conn.send(msg).await
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        if !self.close_work.is_zero() {
            async_std::task::sleep(self.close_work).await;
        }
        let _ = self.records.send(closed.clone()).await;
        self.closes.fetch_add(1, Ordering::SeqCst);
    }
}

/// What a client reading until the server's Close saw: the Close's code and
/// reason, or what went wrong.
type Report = Result<(u16, String), String>;

/// A tungstenite client with a small read buffer (a thousand of them are
/// open at once), reading in its own task until the server's Close and the
/// end of the stream; reports the Close's code and reason.
fn read_until_close(mut client: Client, report: Sender<Report>) {
    async_std::task::spawn(async move {
        let outcome = loop {
            match within("the server's Close", client.next()).await {
                Some(Ok(WsMessage::Close(Some(frame)))) => {
                    let end = within("end of stream", client.next()).await;
                    break match end {
                        None => Ok((u16::from(frame.code), frame.reason.as_str().to_owned())),
                        Some(other) => Err(format!("after the Close: {other:?}")),
                    };
                }
                Some(Ok(WsMessage::Ping(_))) => {}
                other => break Err(format!("expected the Close, got {other:?}")),
            }
        };
        let _ = report.send(outcome).await;
    });
}

async fn small_client(server: &TestServer) -> Client {
    connect_with(
        server,
        "/",
        WebSocketConfig::default().read_buffer_size(4 << 10),
    )
    .await
}

/// Connects `n` small clients, one after the other, each reading in its own
/// task until the server's Close; their reports arrive on the channel
/// returned.
async fn clients_awaiting_close(server: &TestServer, n: usize) -> Receiver<Report> {
    let (report, reports) = unbounded();
    for _ in 0..n {
        read_until_close(small_client(server).await, report.clone());
    }
    reports
}

/// The next client report is the default shutdown Close, 1001 "Going away".
async fn assert_going_away(reports: &Receiver<Report>) {
    assert_eq!(
        next_event(reports).await,
        Ok((1001, "Going away".to_owned()))
    );
}

/// Awaits `run()`'s result, which must come within `drain` + [`MARGIN`].
async fn summary_within(running: TestServer, drain: Duration) -> wharf::CloseSummary {
    within_for(
        drain + MARGIN,
        "run() to return after the drain",
        running.run,
    )
    .await
    .expect("run() failed")
}

#[async_std::test]
async fn a_thousand_connections_all_get_going_away() {
    const N: usize = 1000;
    let drain = Duration::from_secs(5);
    let (running, counted) = start_counted(
        Server::new()
            .shutdown_close(1001, "Going away")
            .drain_timeout(drain),
        Duration::ZERO,
    )
    .await;
    let server = &running;

    let (report, reports) = unbounded();
    for _ in 0..N / 50 {
        let batch = futures_util::future::join_all((0..50).map(|_| small_client(server))).await;
        for client in batch {
            read_until_close(client, report.clone());
        }
    }
    eventually("every connection registered and connected", || {
        server.registry.count() == N && counted.connects() == N
    })
    .await;

    let started = Instant::now();
    running.handle.shutdown();
    assert!(running.handle.is_shutting_down());
    let handle = running.handle.clone();
    let summary = summary_within(running, drain).await;
    assert!(started.elapsed() < drain + MARGIN);
    assert_eq!(
        (
            summary.clean,
            summary.timed_out,
            summary.peer_gone,
            summary.dropped
        ),
        (N, 0, 0, 0),
        "{summary:?}"
    );
    assert_eq!(summary.total(), N);

    for _ in 0..N {
        assert_going_away(&reports).await;
    }
    eventually("every close handler ran", || counted.closes() == N).await;
    for _ in 0..N {
        let closed = next_event(&counted.records).await;
        assert_eq!(closed.code.as_u16(), 1001);
        assert_eq!(closed.initiator, Initiator::Server);
        assert_eq!(closed.outcome, CloseOutcome::Clean);
    }
    let stats = handle.stats();
    assert_eq!(stats.closed(1001, Initiator::Server), N as u64);
    assert_eq!(stats.active, 0);
}

#[async_std::test]
async fn a_peer_that_ignores_the_close_is_cut_at_the_drain_deadline() {
    // The close timeout is longer than the drain: the drain deadline is what
    // cuts the silent peer.
    let drain = Duration::from_millis(500);
    let (running, counted) = start_draining(drain).await;
    let server = &running;
    let mut silent = RawPeer::connect(server, "/").await;
    let reports = clients_awaiting_close(server, 1).await;
    eventually("both registered", || server.registry.count() == 2).await;

    let started = Instant::now();
    running.handle.shutdown();
    let summary = summary_within(running, drain).await;
    let elapsed = started.elapsed();
    assert_eq!(
        (
            summary.clean,
            summary.timed_out,
            summary.peer_gone,
            summary.dropped
        ),
        (1, 0, 0, 1),
        "{summary:?}"
    );
    assert!(
        elapsed >= drain,
        "run() returned after {elapsed:?}, before the drain deadline"
    );
    assert!(
        elapsed < drain + MARGIN,
        "run() returned only after {elapsed:?}"
    );

    assert_going_away(&reports).await;
    // The silent peer was sent the Close, then the socket was dropped.
    let seen = silent.read_until_close().await;
    assert_eq!(seen.code, Some(1001));
    assert_eq!(seen.reason, "Going away");
    wait_until_dropped(&mut silent.stream, STEP).await;

    eventually("both close handlers ran", || counted.closes() == 2).await;
    let mut records = [
        next_event(&counted.records).await,
        next_event(&counted.records).await,
    ];
    records.sort_by_key(|r| !r.clean);
    assert_eq!(records[0].outcome, CloseOutcome::Clean);
    let cut = &records[1];
    assert_eq!(cut.code.as_u16(), 1001);
    assert_eq!(cut.initiator, Initiator::Server);
    assert!(!cut.clean);
    assert_ne!(cut.outcome, CloseOutcome::Clean);
}

#[async_std::test]
async fn messages_queued_before_the_shutdown_arrive_before_the_close() {
    let (running, counted) = start_counted(Server::new(), Duration::ZERO).await;
    let mut client = small_client(&running).await;
    let handle = next_event(&counted.handles).await;

    for text in ["one", "two", "three"] {
        within("queue", handle.text(text)).await.expect("queue");
    }
    running.handle.shutdown();

    for text in ["one", "two", "three"] {
        match within("queued message", client.next()).await {
            Some(Ok(WsMessage::Text(got))) => assert_eq!(got.as_str(), text),
            other => panic!("expected {text:?} before the Close, got {other:?}"),
        }
    }
    match within("the Close", client.next()).await {
        Some(Ok(WsMessage::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1001);
            assert_eq!(frame.reason.as_str(), "Going away");
        }
        other => panic!("expected the Close, got {other:?}"),
    }
    assert!(within("end of stream", client.next()).await.is_none());
    // (Exact summary counts: `the_summary_counts_each_connection_once`.)
    let summary = summary_within(running, Duration::from_secs(10)).await;
    assert_eq!(summary.dropped, 0, "{summary:?}");
    let closed = next_event(&counted.records).await;
    assert_eq!(closed.messages_out, 3);
    // Sending after the shutdown began fails.
    assert!(matches!(
        handle.try_send("late"),
        Err(wharf::Error::ConnectionClosed)
    ));
}

#[async_std::test]
async fn new_connections_are_refused_once_the_shutdown_begins() {
    let (running, counted) = start_counted(Server::new(), Duration::ZERO).await;
    let addr = running.addr;
    let handle = running.handle.clone();

    // A request being read when the shutdown begins: accepted, half sent.
    let mut halfway = within("tcp connect", TcpStream::connect(addr))
        .await
        .expect("tcp connect");
    let request = upgrade_request("/");
    let (first, rest) = request.split_at(20);
    within("write", halfway.write_all(first.as_bytes()))
        .await
        .expect("write");
    eventually("the socket accepted", || handle.stats().accepted == 1).await;

    handle.shutdown();
    // Never an upgrade from now on: the connect fails (refused, or reset
    // when it reached the backlog of the listener being closed), or the
    // socket is answered with 503 or dropped.
    match within("tcp connect", TcpStream::connect(addr)).await {
        Err(err) => assert!(
            matches!(
                err.kind(),
                ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
            ),
            "{err}"
        ),
        Ok(stream) => {
            let mut stream = stream;
            let _ = within("write", stream.write_all(upgrade_request("/").as_bytes())).await;
            if let Some(head) = read_response_head(&mut stream).await {
                assert_eq!(http_status(&head), Some(503), "{head}");
            }
        }
    }

    // No connection was open: the drain has nothing to do.
    let summary = summary_within(running, Duration::from_secs(10)).await;
    assert_eq!(summary.total(), 0, "{summary:?}");
    // The listener is closed.
    let err = within("tcp connect", TcpStream::connect(addr))
        .await
        .expect_err("connected after run() returned");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");

    // The request in flight is answered 503 once complete.
    within("write", halfway.write_all(rest.as_bytes()))
        .await
        .expect("write");
    let head = read_response_head(&mut halfway)
        .await
        .expect("a response to the request in flight");
    assert_eq!(http_status(&head), Some(503), "{head}");
    assert_eq!(counted.connects(), 0);
    eventually("counted as shutting down", || {
        handle.stats().rejected(RejectReason::ShuttingDown) >= 1
    })
    .await;
}

#[async_std::test]
async fn the_summary_counts_each_connection_once() {
    // Many short shutdowns: a connection that has published its outcome but
    // is not yet out of the registry must not be counted again.
    for round in 0..100 {
        let (running, counted) = start_counted(Server::new(), Duration::ZERO).await;
        let reports = clients_awaiting_close(&running, 2).await;
        eventually("connected", || counted.connects() == 2).await;
        running.handle.shutdown();
        let summary = summary_within(running, Duration::from_secs(10)).await;
        assert_eq!(
            (summary.clean, summary.total()),
            (2, 2),
            "round {round}: {summary:?}"
        );
        for _ in 0..2 {
            assert_going_away(&reports).await;
        }
    }
}

#[async_std::test]
async fn a_custom_shutdown_code_and_reason_are_sent() {
    let (running, counted) = start_counted(
        Server::new()
            .shutdown_close(1012, "Service restart")
            .drain_timeout(Duration::from_secs(5)),
        Duration::ZERO,
    )
    .await;
    let reports = clients_awaiting_close(&running, 1).await;
    next_event(&counted.handles).await;

    running.handle.shutdown();
    running.handle.shutdown(); // idempotent
    assert_eq!(
        next_event(&reports).await,
        Ok((1012, "Service restart".to_owned()))
    );
    let summary = summary_within(running, Duration::from_secs(5)).await;
    assert_eq!(summary.dropped, 0, "{summary:?}");
    let closed = next_event(&counted.records).await;
    assert_eq!(closed.code.as_u16(), 1012);
    assert_eq!(closed.reason, "Service restart");
    assert_eq!(closed.initiator, Initiator::Server);
    assert_eq!(closed.outcome, CloseOutcome::Clean);
}

#[async_std::test]
async fn close_handlers_have_run_when_run_returns() {
    // A program exits when run() returns: close handlers that save state
    // must have finished by then.
    const N: usize = 3;
    let (running, counted) = start_counted(Server::new(), Duration::from_millis(100)).await;
    let reports = clients_awaiting_close(&running, N).await;
    eventually("all connected", || counted.connects() == N).await;

    running.handle.shutdown();
    let summary = summary_within(running, Duration::from_secs(10)).await;
    let finished = counted.closes();
    assert_eq!(
        finished, N,
        "run() returned before every close handler had finished ({summary:?})"
    );
    for _ in 0..N {
        assert_going_away(&reports).await;
    }
}

#[async_std::test]
async fn dropped_connections_run_their_close_handler() {
    let drain = Duration::from_millis(300);
    let (running, counted) = start_draining(drain).await;
    // One peer never answers the Close; another neither reads nor returns
    // from its message handler.
    let _silent = RawPeer::connect(&running, "/").await;
    let mut stalled = small_client(&running).await;
    within("send", stalled.send(WsMessage::text("stall")))
        .await
        .expect("send");
    eventually("both connected, one stalled", || {
        counted.connects() == 2 && counted.stalls() == 1
    })
    .await;

    running.handle.shutdown();
    let summary = summary_within(running, drain).await;
    assert_eq!(
        (summary.clean, summary.dropped, summary.total()),
        (0, 2, 2),
        "{summary:?}"
    );
    // The stalled handler was dropped with its connection.
    eventually("both close handlers ran", || counted.closes() == 2).await;
    for _ in 0..2 {
        let closed = next_event(&counted.records).await;
        assert_eq!(closed.code.as_u16(), 1001);
        assert_ne!(closed.outcome, CloseOutcome::Clean);
    }
}

#[async_std::test]
async fn a_stalled_handler_does_not_outlive_the_shutdown() {
    // The client answers the Close, so the handshake completes, but the
    // connection's message handler never returns. The shutdown must still
    // end the connection (drop the handler, run the close handler) rather
    // than leave its task behind forever.
    let drain = Duration::from_millis(300);
    let (running, counted) = start_counted(
        Server::new()
            .shutdown_close(1001, "Going away")
            .drain_timeout(drain),
        Duration::ZERO,
    )
    .await;
    let mut client = small_client(&running).await;
    within("send", client.send(WsMessage::text("stall")))
        .await
        .expect("send");
    let (report, reports) = unbounded();
    read_until_close(client, report);
    eventually("the handler stalled", || counted.stalls() == 1).await;

    running.handle.shutdown();
    summary_within(running, drain).await;
    assert_going_away(&reports).await;
    // Well past the drain deadline (a shorter wait than `eventually`'s, as
    // this fails by waiting it out).
    within_for(Duration::from_secs(3), "the close handler to run", async {
        while counted.closes() == 0 {
            async_std::task::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

#[async_std::test]
async fn a_handler_stuck_after_its_socket_closed_does_not_hold_the_drain() {
    // The client closes while its message handler never returns: once the
    // handler grace has passed, the handler is dropped and the connection
    // leaves the drain's list, long before the drain deadline.
    let drain = Duration::from_secs(5);
    let (running, counted) = start_counted(
        Server::new()
            .handler_grace(Duration::from_millis(200))
            .shutdown_close(1001, "Going away")
            .drain_timeout(drain),
        Duration::ZERO,
    )
    .await;
    let mut client = small_client(&running).await;
    within("send", client.send(WsMessage::text("stall")))
        .await
        .expect("send");
    eventually("the handler stalled", || counted.stalls() == 1).await;
    within("client close", client.close(None))
        .await
        .expect("close");
    while within("the echo and the end", client.next())
        .await
        .is_some()
    {}

    let started = Instant::now();
    running.handle.shutdown();
    let handle = running.handle.clone();
    let summary = summary_within(running, drain).await;
    assert!(
        started.elapsed() < drain,
        "run() waited {:?}, the drain deadline, for a stuck handler",
        started.elapsed()
    );
    assert_eq!(summary.dropped, 0, "{summary:?}");
    assert_eq!(counted.closes(), 1, "the close handler ran");
    assert_eq!(handle.stats().handlers_abandoned, 1);
}

/// An upgrade handler that waits for the test to open its gate.
struct GatedUpgrade {
    entered: Sender<()>,
    gate: Receiver<()>,
}

impl Handler for GatedUpgrade {
    async fn on_upgrade(&self, _req: &wharf::Request) -> Result<(), wharf::Rejection> {
        let _ = self.entered.send(()).await;
        let _ = self.gate.recv().await;
        Ok(())
    }
}

#[async_std::test]
async fn an_upgrade_accepted_after_the_drain_is_refused_with_503() {
    let (entered_tx, entered) = unbounded();
    let (open, gate) = unbounded();
    let running = start(Server::new().route(
        "/",
        GatedUpgrade {
            entered: entered_tx,
            gate,
        },
    ))
    .await;
    let mut stream = within("tcp connect", TcpStream::connect(running.addr))
        .await
        .expect("tcp connect");
    within("write", stream.write_all(upgrade_request("/").as_bytes()))
        .await
        .expect("write");
    next_event(&entered).await;

    // The upgrade handler is still deciding when the shutdown begins; the
    // drain finds no connection and run() returns.
    running.handle.shutdown();
    let handle = running.handle.clone();
    let summary = summary_within(running, Duration::from_secs(10)).await;
    assert_eq!(summary.total(), 0, "{summary:?}");

    // Now the handler accepts: a connection opened now would outlive the
    // server, so the client is refused instead.
    open.send(()).await.expect("open the gate");
    let head = read_response_head(&mut stream)
        .await
        .expect("a response to the upgrade");
    assert_eq!(http_status(&head), Some(503), "{head}");
    eventually("counted as shutting down", || {
        handle.stats().rejected(RejectReason::ShuttingDown) == 1
    })
    .await;
    assert_eq!(handle.stats().active, 0);
}
