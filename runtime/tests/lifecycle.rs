//! A connection's life from connect to close handler: nothing is left
//! behind after many connections, the close handler runs exactly once
//! whoever ends the connection, failing handlers close with 1011,
//! per-connection data lives until the close handler returns, control frames
//! are answered while a handler is busy, and handlers run one at a time in
//! arrival order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_std::channel::{bounded, unbounded, Receiver, Sender};
use async_std::net::TcpStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::future::join_all;
use futures_util::StreamExt;
use wharf::{CloseCode, Closed, Conn, ConnId, Error, Handle, Handler, Initiator, Message, Server};
use wharf_test_support::*;

// ---- shared bits ----

/// Per-connection data whose drop is counted.
struct Probe {
    drops: &'static AtomicUsize,
    value: u64,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

fn client_close(code: u16, reason: &str) -> Option<CloseFrame> {
    Some(CloseFrame {
        code: WsCloseCode::from(code),
        reason: reason.into(),
    })
}

/// Reads the server's Close frame, then the end of the stream.
async fn expect_close(client: &mut Client, code: u16, reason: &str) {
    let msg = within("close frame", client.next()).await;
    let Some(Ok(WsMessage::Close(Some(frame)))) = msg else {
        panic!("expected a Close frame with {code}, got {msg:?}");
    };
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (code, reason)
    );
    // tungstenite answers the Close while reading; the server then closes the
    // TCP stream.
    assert!(
        within("end of stream", client.next()).await.is_none(),
        "the server closes the stream after the handshake"
    );
}

/// Sends a text message and expects it back.
async fn echo(client: &mut Client, text: &str) {
    within("send", client.send(WsMessage::text(text)))
        .await
        .expect("send");
    let reply = within("echo", client.next()).await;
    assert!(
        matches!(&reply, Some(Ok(WsMessage::Text(t))) if t.as_str() == text),
        "expected the echo of {text:?}, got {reply:?}"
    );
}

/// Closes from the client with `code` and waits for the echo and the end of
/// the stream.
async fn close_from_client(client: &mut Client, frame: Option<CloseFrame>) {
    let code = frame.as_ref().map(|f| u16::from(f.code));
    within("client close", client.close(frame))
        .await
        .expect("send close");
    let msg = within("close echo", client.next()).await;
    let Some(Ok(WsMessage::Close(echoed))) = msg else {
        panic!("expected the Close echo, got {msg:?}");
    };
    if let Some(code) = code {
        assert_eq!(echoed.map(|f| u16::from(f.code)), Some(code), "echoed code");
    }
    assert!(
        within("end of stream", client.next()).await.is_none(),
        "the server closes the stream after echoing"
    );
}

// ---- many connections leave nothing behind ----

static CYCLE_DROPS: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct Counts {
    connects: AtomicUsize,
    closes: AtomicUsize,
    probe_in_close: AtomicUsize,
}

struct Cycle(Arc<Counts>);

impl Handler for Cycle {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let n = self.0.connects.fetch_add(1, SeqCst);
        conn.extensions().insert(Probe {
            drops: &CYCLE_DROPS,
            value: n as u64,
        });
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        conn.send(msg).await
    }

    async fn on_close(&self, conn: &Conn, _closed: &Closed) {
        if conn.extensions().get::<Probe>().is_some() {
            self.0.probe_in_close.fetch_add(1, SeqCst);
        }
        self.0.closes.fetch_add(1, SeqCst);
    }
}

#[async_std::test]
async fn ten_thousand_connections_leave_nothing_behind() {
    const CYCLES: usize = 10_000;
    let counts = Arc::new(Counts::default());
    let server = start(Server::new().route("/", Cycle(Arc::clone(&counts)))).await;
    let url = server.url("/");
    let started = Instant::now();
    for i in 0..CYCLES {
        within(&format!("cycle {i}"), async {
            let tcp = TcpStream::connect(server.addr).await.expect("tcp connect");
            let (mut client, _) = async_tungstenite::client_async(url.as_str(), tcp)
                .await
                .expect("handshake");
            client.send(WsMessage::text("ping")).await.expect("send");
            let reply = client.next().await;
            assert!(
                matches!(&reply, Some(Ok(WsMessage::Text(t))) if t.as_str() == "ping"),
                "cycle {i}: {reply:?}"
            );
            client.close(None).await.expect("close");
            // The echo of our Close, then the end of the stream.
            let reply = client.next().await;
            assert!(
                matches!(reply, Some(Ok(WsMessage::Close(_)))),
                "cycle {i}: {reply:?}"
            );
            assert!(client.next().await.is_none(), "cycle {i}: stream not ended");
        })
        .await;
        if i % 1000 == 999 {
            // Nothing accumulates along the way.
            let done = i + 1;
            eventually("registry drained mid-run", || server.registry.count() == 0).await;
            eventually("probes dropped mid-run", || {
                CYCLE_DROPS.load(SeqCst) == done
            })
            .await;
        }
    }
    let elapsed = started.elapsed();
    eventually("every close handler ran", || {
        counts.closes.load(SeqCst) == CYCLES
    })
    .await;
    eventually("every probe dropped", || CYCLE_DROPS.load(SeqCst) == CYCLES).await;
    assert_eq!(counts.connects.load(SeqCst), CYCLES);
    assert_eq!(counts.closes.load(SeqCst), CYCLES);
    assert_eq!(counts.probe_in_close.load(SeqCst), CYCLES);
    assert_eq!(
        CYCLE_DROPS.load(SeqCst),
        CYCLES,
        "dropped exactly once each"
    );
    assert_eq!(server.registry.count(), 0);
    tracing::info!(?elapsed, "{CYCLES} connect/echo/close cycles");
}

// ---- the close handler runs exactly once, whoever ends ----

static MIX_DROPS: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct MixLog {
    connects: Mutex<Vec<ConnId>>,
    by_tag: Mutex<HashMap<String, ConnId>>,
    closes: Mutex<Vec<(ConnId, String, Closed)>>,
}

/// Behaves as its connection's `do` query parameter and messages say.
struct Mixed(Arc<MixLog>);

fn tag(conn: &Conn) -> String {
    conn.query("tag").unwrap_or_default().to_owned()
}

impl Handler for Mixed {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        self.0.connects.lock().unwrap().push(conn.id());
        self.0.by_tag.lock().unwrap().insert(tag(conn), conn.id());
        conn.extensions().insert(Probe {
            drops: &MIX_DROPS,
            value: conn.id().get(),
        });
        match conn.query("do") {
            Some("close") => {
                conn.close(4000, "from connect").await?;
            }
            Some("fail") => return Err(Error::handler("connect failed")),
            Some("panic") => panic!("connect handler panics (expected by the test)"),
            _ => {}
        }
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        match msg.as_text() {
            Some("close") => {
                conn.close(4001, "from message").await?;
                Ok(())
            }
            Some("fail") => Err(Error::handler("message failed")),
            Some("panic") => panic!("message handler panics (expected by the test)"),
            _ => conn.send(msg).await,
        }
    }

    async fn on_close(&self, conn: &Conn, closed: &Closed) {
        assert!(
            conn.extensions().get::<Probe>().is_some(),
            "the probe lives until the close handler returns"
        );
        self.0
            .closes
            .lock()
            .unwrap()
            .push((conn.id(), tag(conn), closed.clone()));
    }
}

/// The ways a connection can end, and what the close handler must report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Ending {
    ServerFromConnect,
    ServerFromMessage,
    ServerFromRegistry,
    ConnectFails,
    ConnectPanics,
    MessageFails,
    MessagePanics,
    ClientWithCode,
    ClientWithoutCode,
    DroppedIdle,
    DroppedMidFrame,
}

const ENDINGS: [Ending; 11] = [
    Ending::ServerFromConnect,
    Ending::ServerFromMessage,
    Ending::ServerFromRegistry,
    Ending::ConnectFails,
    Ending::ConnectPanics,
    Ending::MessageFails,
    Ending::MessagePanics,
    Ending::ClientWithCode,
    Ending::ClientWithoutCode,
    Ending::DroppedIdle,
    Ending::DroppedMidFrame,
];

impl Ending {
    /// Initiator, code and reason the close handler must see.
    fn expected(self) -> (Initiator, u16, &'static str) {
        match self {
            Ending::ServerFromConnect => (Initiator::Server, 4000, "from connect"),
            Ending::ServerFromMessage => (Initiator::Server, 4001, "from message"),
            Ending::ServerFromRegistry => (Initiator::Server, 4002, "from registry"),
            Ending::ConnectFails
            | Ending::ConnectPanics
            | Ending::MessageFails
            | Ending::MessagePanics => (Initiator::Server, 1011, "Internal error"),
            Ending::ClientWithCode => (Initiator::Client, 4003, "client leaves"),
            Ending::ClientWithoutCode => (Initiator::Client, 1005, ""),
            Ending::DroppedIdle | Ending::DroppedMidFrame => (Initiator::Abnormal, 1006, ""),
        }
    }

    /// Runs one connection that ends this way.
    async fn run(self, server: &TestServer, log: &MixLog, tag: &str) {
        let query = match self {
            Ending::ServerFromConnect => "close",
            Ending::ConnectFails => "fail",
            Ending::ConnectPanics => "panic",
            _ => "",
        };
        let path = format!("/?tag={tag}&do={query}");
        if self == Ending::DroppedMidFrame {
            let mut peer = RawPeer::connect(server, &path).await;
            // A frame header announcing 100 bytes, and only 3 of them.
            let mut bytes = frame(OP_TEXT, true, &[b'x'; 100], true);
            bytes.truncate(2 + 4 + 3);
            peer.send_raw(&bytes).await;
            eventually("connect handler ran", || {
                log.by_tag.lock().unwrap().contains_key(tag)
            })
            .await;
            drop(peer);
            return;
        }
        let mut client = connect(server, &path).await;
        let (_, code, reason) = self.expected();
        match self {
            Ending::ServerFromConnect | Ending::ConnectFails | Ending::ConnectPanics => {
                expect_close(&mut client, code, reason).await;
            }
            Ending::ServerFromMessage | Ending::MessageFails | Ending::MessagePanics => {
                echo(&mut client, "hello").await;
                let text = match self {
                    Ending::ServerFromMessage => "close",
                    Ending::MessageFails => "fail",
                    _ => "panic",
                };
                within("send", client.send(WsMessage::text(text)))
                    .await
                    .unwrap();
                expect_close(&mut client, code, reason).await;
            }
            Ending::ServerFromRegistry => {
                echo(&mut client, "hello").await;
                let id = log.by_tag.lock().unwrap()[tag];
                let registry = server.registry.clone();
                let closing = async_std::task::spawn(async move {
                    registry.close(id, 4002, "from registry").await
                });
                expect_close(&mut client, code, reason).await;
                let outcome = within("registry close", closing).await;
                assert_eq!(
                    outcome.expect("was live").expect("valid code"),
                    wharf::CloseOutcome::Clean
                );
            }
            Ending::ClientWithCode => {
                echo(&mut client, "hello").await;
                close_from_client(&mut client, client_close(code, reason)).await;
            }
            Ending::ClientWithoutCode => {
                echo(&mut client, "hello").await;
                close_from_client(&mut client, None).await;
            }
            Ending::DroppedIdle => {
                echo(&mut client, "hello").await;
                drop(client);
            }
            Ending::DroppedMidFrame => unreachable!("handled above"),
        }
    }
}

#[async_std::test]
async fn close_handler_runs_exactly_once_whoever_ends_the_connection() {
    const ROUNDS: usize = 4;
    let log = Arc::new(MixLog::default());
    let server = start(
        Server::new()
            .close_timeout(std::time::Duration::from_secs(5))
            .route("/", Mixed(Arc::clone(&log))),
    )
    .await;

    let mut plan = Vec::new();
    for round in 0..ROUNDS {
        for ending in ENDINGS {
            plan.push((format!("{ending:?}-{round}"), ending));
        }
    }
    // Every ending at once, several times over: connections of one server
    // run concurrently and must not disturb each other's counts.
    join_all(plan.iter().map(|(tag, ending)| {
        let (server, log) = (&server, &*log);
        async move { within(tag, ending.run(server, log, tag)).await }
    }))
    .await;

    let total = plan.len();
    eventually("every close handler ran", || {
        log.closes.lock().unwrap().len() >= total
    })
    .await;
    eventually("every probe dropped", || MIX_DROPS.load(SeqCst) >= total).await;
    eventually("registry drained", || server.registry.count() == 0).await;

    let connects: Vec<ConnId> = log.connects.lock().unwrap().clone();
    let closes = log.closes.lock().unwrap().clone();
    assert_eq!(connects.len(), total, "one connect per connection");
    assert_eq!(closes.len(), total, "one close per connection");
    let connect_ids: HashSet<ConnId> = connects.iter().copied().collect();
    let close_ids: HashSet<ConnId> = closes.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(close_ids.len(), total, "no connection closed twice");
    assert_eq!(connect_ids, close_ids, "closed exactly the connected ones");
    assert_eq!(MIX_DROPS.load(SeqCst), total, "every probe dropped once");

    let endings: HashMap<&str, Ending> = plan.iter().map(|(t, e)| (t.as_str(), *e)).collect();
    let mut per_initiator: HashMap<Initiator, usize> = HashMap::new();
    for (_, tag, closed) in &closes {
        let ending = endings[tag.as_str()];
        let (initiator, code, reason) = ending.expected();
        assert_eq!(
            (
                closed.initiator,
                closed.code.as_u16(),
                closed.reason.as_str()
            ),
            (initiator, code, reason),
            "{tag}: {closed:?}"
        );
        assert_eq!(
            closed.clean,
            initiator != Initiator::Abnormal,
            "{tag}: {closed:?}"
        );
        *per_initiator.entry(closed.initiator).or_default() += 1;
    }
    let expect = |who: Initiator| plan.iter().filter(|(_, e)| e.expected().0 == who).count();
    assert_eq!(per_initiator[&Initiator::Server], expect(Initiator::Server));
    assert_eq!(per_initiator[&Initiator::Client], expect(Initiator::Client));
    assert_eq!(
        per_initiator[&Initiator::Abnormal],
        expect(Initiator::Abnormal)
    );
    assert_eq!(expect(Initiator::Server), 7 * ROUNDS);
    assert_eq!(expect(Initiator::Client), 2 * ROUNDS);
    assert_eq!(expect(Initiator::Abnormal), 2 * ROUNDS);
}

/// Holds its connect handler until the test opens the gate.
struct SlowConnect {
    gate: Receiver<()>,
    send_after_gate: Sender<bool>,
    closed: Sender<Closed>,
}

impl Handler for SlowConnect {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let _ = self.gate.recv().await;
        let failed = conn.text("welcome").await.is_err();
        let _ = self.send_after_gate.send(failed).await;
        Ok(())
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        let _ = self.closed.send(closed.clone()).await;
    }
}

#[async_std::test]
async fn peer_gone_during_the_connect_handler_still_gets_one_close_handler() {
    let (gate_tx, gate) = unbounded();
    let (sent_tx, send_failed) = unbounded();
    let (closed_tx, closed) = unbounded();
    let server = start(Server::new().route(
        "/",
        SlowConnect {
            gate,
            send_after_gate: sent_tx,
            closed: closed_tx,
        },
    ))
    .await;
    let client = connect(&server, "/").await;
    eventually("registered", || server.registry.count() == 1).await;
    drop(client);
    // The socket's end is noticed while the connect handler still runs...
    eventually("left the registry", || server.registry.count() == 0).await;
    // ...but the close handler waits for it.
    assert!(
        closed.try_recv().is_err(),
        "close handler before connect returned"
    );
    within("open the gate", gate_tx.send(())).await.unwrap();
    assert!(
        within("connect handler finished", send_failed.recv())
            .await
            .unwrap(),
        "sending on a connection that ended fails"
    );
    let got = within("close handler", closed.recv()).await.unwrap();
    assert_eq!(got.initiator, Initiator::Abnormal, "{got:?}");
    assert_eq!(got.code, CloseCode::ABNORMAL);
    assert!(!got.clean);
    assert!(closed.try_recv().is_err(), "exactly one close handler");
}

// ---- failing handlers ----

struct Failing {
    closed: Sender<Closed>,
}

impl Handler for Failing {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        match conn.query("do") {
            Some("fail") => Err(Error::handler("no")),
            Some("panic") => panic!("connect handler panics (expected by the test)"),
            _ => Ok(()),
        }
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        match msg.as_text() {
            Some("fail") => Err(Error::handler("the database is down")),
            Some("panic") => panic!("message handler panics (expected by the test)"),
            _ => conn.send(msg).await,
        }
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        let _ = self.closed.send(closed.clone()).await;
    }
}

async fn assert_internal_error(closed: &Receiver<Closed>) {
    let closed = within("close handler", closed.recv()).await.unwrap();
    assert_eq!(closed.code, CloseCode::INTERNAL_ERROR, "{closed:?}");
    assert_eq!(closed.reason, "Internal error", "{closed:?}");
    assert_eq!(closed.initiator, Initiator::Server, "{closed:?}");
    assert!(closed.clean, "{closed:?}");
}

#[async_std::test]
async fn handler_error_closes_with_1011() {
    let (tx, closed) = unbounded();
    let server = start(Server::new().route("/", Failing { closed: tx })).await;

    let mut client = connect(&server, "/").await;
    echo(&mut client, "fine").await;
    within("send", client.send(WsMessage::text("fail")))
        .await
        .unwrap();
    // The error text stays on the server.
    expect_close(&mut client, 1011, "Internal error").await;
    assert_internal_error(&closed).await;

    let mut client = connect(&server, "/?do=fail").await;
    expect_close(&mut client, 1011, "Internal error").await;
    assert_internal_error(&closed).await;
    eventually("registry drained", || server.registry.count() == 0).await;
}

#[async_std::test]
async fn panicking_handler_closes_with_1011_and_the_server_keeps_serving() {
    let (tx, closed) = unbounded();
    let server = start(Server::new().route("/", Failing { closed: tx })).await;

    let mut client = connect(&server, "/").await;
    echo(&mut client, "fine").await;
    within("send", client.send(WsMessage::text("panic")))
        .await
        .unwrap();
    expect_close(&mut client, 1011, "Internal error").await;
    assert_internal_error(&closed).await;

    let mut client = connect(&server, "/?do=panic").await;
    expect_close(&mut client, 1011, "Internal error").await;
    assert_internal_error(&closed).await;

    // Other connections, old and new, are untouched.
    let mut bystander = connect(&server, "/").await;
    let mut panicker = connect(&server, "/").await;
    within("send", panicker.send(WsMessage::text("panic")))
        .await
        .unwrap();
    expect_close(&mut panicker, 1011, "Internal error").await;
    assert_internal_error(&closed).await;
    echo(&mut bystander, "still served").await;
    let mut newcomer = connect(&server, "/").await;
    echo(&mut newcomer, "welcome").await;
    eventually("only the two live", || server.registry.count() == 2).await;
}

static PANIC_CLOSE_DROPS: AtomicUsize = AtomicUsize::new(0);

/// Panics in its close handler.
struct PanicOnClose {
    close_ran: Arc<AtomicUsize>,
}

impl Handler for PanicOnClose {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        conn.extensions().insert(Probe {
            drops: &PANIC_CLOSE_DROPS,
            value: 0,
        });
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        conn.send(msg).await
    }

    async fn on_close(&self, _conn: &Conn, _closed: &Closed) {
        self.close_ran.fetch_add(1, SeqCst);
        panic!("close handler panics (expected by the test)");
    }
}

#[async_std::test]
async fn panicking_close_handler_still_releases_the_connection() {
    let close_ran = Arc::new(AtomicUsize::new(0));
    let server = start(Server::new().route(
        "/",
        PanicOnClose {
            close_ran: Arc::clone(&close_ran),
        },
    ))
    .await;
    for round in 1..=3 {
        let mut client = connect(&server, "/").await;
        echo(&mut client, "hi").await;
        close_from_client(&mut client, client_close(1000, "")).await;
        eventually("close handler ran", || close_ran.load(SeqCst) == round).await;
        eventually("probe dropped", || PANIC_CLOSE_DROPS.load(SeqCst) == round).await;
        eventually("registry drained", || server.registry.count() == 0).await;
    }
}

// ---- per-connection data ----

static EXT_DROPS: AtomicUsize = AtomicUsize::new(0);

/// What the close handler found in the extensions.
#[derive(Debug, PartialEq, Eq)]
struct FoundInClose {
    probe: Option<u64>,
    note: Option<String>,
    drops_then: usize,
}

struct Keeper {
    found: Sender<FoundInClose>,
}

impl Handler for Keeper {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        conn.extensions().insert(Probe {
            drops: &EXT_DROPS,
            value: 7,
        });
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        conn.extensions()
            .insert(format!("noted: {}", msg.as_text().unwrap_or_default()));
        conn.send(msg).await
    }

    async fn on_close(&self, conn: &Conn, _closed: &Closed) {
        let found = {
            let ext = conn.extensions();
            FoundInClose {
                probe: ext.get::<Probe>().map(|p| p.value),
                note: ext.get::<String>().cloned(),
                drops_then: EXT_DROPS.load(SeqCst),
            }
        };
        let _ = self.found.send(found).await;
    }
}

#[async_std::test]
async fn extensions_are_readable_in_the_close_handler_and_dropped_after_it() {
    let (tx, found) = unbounded();
    let server = start(Server::new().route("/", Keeper { found: tx })).await;
    let mut client = connect(&server, "/").await;
    echo(&mut client, "hello").await;
    close_from_client(&mut client, client_close(1000, "bye")).await;
    let got = within("close handler", found.recv()).await.unwrap();
    assert_eq!(
        got,
        FoundInClose {
            probe: Some(7),
            note: Some("noted: hello".into()),
            drops_then: 0,
        },
        "the close handler sees every value, none dropped yet"
    );
    eventually("probe dropped after the close handler", || {
        EXT_DROPS.load(SeqCst) == 1
    })
    .await;
    assert_eq!(server.registry.count(), 0);
}

static CYCLE_REF_DROPS: AtomicUsize = AtomicUsize::new(0);

/// Data that refers back to its own connection: a reference cycle
/// (connection -> extensions -> handle -> connection) that the end of the
/// connection must break.
struct SelfRef {
    _handle: Handle,
    _probe: Probe,
}

struct HoldsItself {
    handle_open_in_close: Sender<bool>,
}

impl Handler for HoldsItself {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        conn.extensions().insert(SelfRef {
            _handle: conn.handle(),
            _probe: Probe {
                drops: &CYCLE_REF_DROPS,
                value: 0,
            },
        });
        Ok(())
    }

    async fn on_close(&self, conn: &Conn, _closed: &Closed) {
        let _ = self.handle_open_in_close.send(conn.is_open()).await;
    }
}

#[async_std::test]
async fn extensions_holding_the_connections_own_handle_are_released() {
    let (tx, rx) = unbounded();
    let server = start(Server::new().route(
        "/",
        HoldsItself {
            handle_open_in_close: tx,
        },
    ))
    .await;
    for round in 1..=3 {
        let mut client = connect(&server, "/").await;
        close_from_client(&mut client, client_close(1000, "")).await;
        let open = within("close handler", rx.recv()).await.unwrap();
        assert!(!open, "the connection is not open in its close handler");
        eventually("self-referencing data dropped", || {
            CYCLE_REF_DROPS.load(SeqCst) == round
        })
        .await;
    }
    assert_eq!(server.registry.count(), 0);
}

// ---- control frames while a handler is busy ----

/// Blocks on the message "slow" until the test opens the gate.
struct Slow {
    entered: Sender<()>,
    gate: Receiver<()>,
    send_after_gate: Sender<Result<(), String>>,
    closed: Sender<Closed>,
}

impl Handler for Slow {
    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        if msg.as_text() == Some("slow") {
            let _ = self.entered.send(()).await;
            let _ = self.gate.recv().await;
            let sent = conn.text("late").await.map_err(|e| e.to_string());
            let _ = self.send_after_gate.send(sent).await;
            return Ok(());
        }
        conn.send(msg).await
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        let _ = self.closed.send(closed.clone()).await;
    }
}

#[async_std::test]
async fn pings_and_the_peers_close_are_answered_while_a_handler_is_busy() {
    let (entered_tx, entered) = unbounded();
    let (gate_tx, gate) = bounded(1);
    let (sent_tx, sent_after) = unbounded();
    let (closed_tx, closed) = unbounded();
    let server = start(Server::new().route(
        "/",
        Slow {
            entered: entered_tx,
            gate,
            send_after_gate: sent_tx,
            closed: closed_tx,
        },
    ))
    .await;
    let mut busy = connect(&server, "/").await;
    let mut other = connect(&server, "/").await;

    within("send", busy.send(WsMessage::text("slow")))
        .await
        .unwrap();
    within("handler entered", entered.recv()).await.unwrap();

    // The busy connection still answers pings...
    within("ping", busy.send(WsMessage::Ping("still there?".into())))
        .await
        .unwrap();
    let pong = within("pong", busy.next()).await;
    assert!(
        matches!(&pong, Some(Ok(WsMessage::Pong(p))) if p.as_ref() == b"still there?"),
        "expected the pong, got {pong:?}"
    );
    // ...other connections are not slowed...
    echo(&mut other, "unaffected").await;
    // ...and the peer's Close completes: echoed, then the stream is closed.
    close_from_client(&mut busy, client_close(4003, "leaving")).await;
    assert!(
        closed.try_recv().is_err(),
        "the close handler waits for the running handler"
    );

    within("open the gate", gate_tx.send(())).await.unwrap();
    let sent = within("handler finished", sent_after.recv()).await.unwrap();
    assert!(
        sent.is_err(),
        "send after the close began must fail: {sent:?}"
    );
    let closed = within("close handler", closed.recv()).await.unwrap();
    assert_eq!(closed.initiator, Initiator::Client, "{closed:?}");
    assert_eq!(
        (closed.code.as_u16(), closed.reason.as_str()),
        (4003, "leaving")
    );
    assert!(closed.clean, "{closed:?}");
    assert_eq!(closed.messages_in, 1);
    assert_eq!(closed.messages_out, 0);
    eventually("only the other connection is live", || {
        server.registry.count() == 1
    })
    .await;
}

// ---- ordering ----

/// One connection's record of its handler calls.
#[derive(Default)]
struct CallLog {
    busy: AtomicBool,
    calls: Mutex<Vec<String>>,
}

impl CallLog {
    fn enter(&self) {
        if self.busy.swap(true, SeqCst) {
            self.calls.lock().unwrap().push("OVERLAP".into());
        }
    }

    fn leave(&self, call: String) {
        self.calls.lock().unwrap().push(call);
        self.busy.store(false, SeqCst);
    }
}

/// Holds its connect handler until the test opens the gate; message
/// handlers take different numbers of scheduler turns.
struct Ordered {
    gate: Receiver<()>,
    logs: Sender<Vec<String>>,
}

fn call_log(conn: &Conn) -> Arc<CallLog> {
    conn.extensions()
        .get::<Arc<CallLog>>()
        .cloned()
        .expect("log inserted on connect")
}

impl Handler for Ordered {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let log = Arc::new(CallLog::default());
        conn.extensions().insert(Arc::clone(&log));
        log.enter();
        let _ = self.gate.recv().await;
        log.leave("connect".into());
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        let log = call_log(conn);
        log.enter();
        let text = msg.as_text().unwrap_or_default().to_owned();
        let turns = text.len() % 4;
        for _ in 0..turns {
            async_std::task::yield_now().await;
        }
        log.leave(text);
        conn.send(msg).await
    }

    async fn on_close(&self, conn: &Conn, _closed: &Closed) {
        let log = call_log(conn);
        log.enter();
        log.leave("close".into());
        let calls = log.calls.lock().unwrap().clone();
        let _ = self.logs.send(calls).await;
    }
}

#[async_std::test]
async fn handlers_of_one_connection_run_one_at_a_time_in_arrival_order() {
    const CONNS: usize = 3;
    const EARLY: usize = 10; // fewer than the inbound queue (16)
    const TOTAL: usize = 60;
    let (gate_tx, gate) = unbounded();
    let (logs_tx, logs) = unbounded();
    let server = start(Server::new().route(
        "/",
        Ordered {
            gate,
            logs: logs_tx,
        },
    ))
    .await;
    let texts: Vec<String> = (0..TOTAL)
        .map(|i| format!("m{i:0width$}", width = i % 5 + 1))
        .collect();

    let mut clients = join_all((0..CONNS).map(|_| connect(&server, "/"))).await;
    // Messages arrive while the connect handlers are still running; a ping
    // behind them proves the server has read them.
    for client in &mut clients {
        for text in &texts[..EARLY] {
            within("send", client.send(WsMessage::text(text.as_str())))
                .await
                .unwrap();
        }
        within("ping", client.send(WsMessage::Ping("p".into())))
            .await
            .unwrap();
        let pong = within("pong", client.next()).await;
        assert!(
            matches!(pong, Some(Ok(WsMessage::Pong(_)))),
            "expected a pong before any echo, got {pong:?}"
        );
    }
    for _ in 0..CONNS {
        within("open the gate", gate_tx.send(())).await.unwrap();
    }
    let conversations = clients.iter_mut().map(|client| {
        let texts = &texts;
        async move {
            for text in &texts[EARLY..] {
                within("send", client.send(WsMessage::text(text.as_str())))
                    .await
                    .unwrap();
            }
            for text in texts {
                let reply = within("echo", client.next()).await;
                assert!(
                    matches!(&reply, Some(Ok(WsMessage::Text(t))) if t.as_str() == text),
                    "expected {text:?}, got {reply:?}"
                );
            }
            close_from_client(client, client_close(1000, "")).await;
        }
    });
    join_all(conversations).await;

    let mut expected = vec!["connect".to_owned()];
    expected.extend(texts.iter().cloned());
    expected.push("close".to_owned());
    for _ in 0..CONNS {
        let calls = within("close handler", logs.recv()).await.unwrap();
        assert_eq!(calls, expected);
    }
}
