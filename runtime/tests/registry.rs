//! The registry of live connections: counting, looking up, snapshots,
//! sending by route, and closing one or all, against real clients.

use std::collections::BTreeSet;
use std::time::Duration;

use async_std::channel::{unbounded, Receiver, Sender};
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use wharf::{
    CloseCode, CloseOutcome, Closed, Conn, ConnId, Error, Handle, Handler, Initiator, Message,
    Server,
};
use wharf_test_support::*;

#[derive(Debug)]
enum Event {
    Connected(Handle),
    /// The close handler ran: the connection's id, its record, and whether
    /// the registry still listed the connection at that point.
    Closed(ConnId, Closed, bool),
}

/// Reports every connection and every close; echoes messages.
struct Tracker {
    events: Sender<Event>,
}

impl Handler for Tracker {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        assert!(
            conn.registry().get(conn.id()).is_some(),
            "a connection is registered before its connect handler runs"
        );
        let _ = self.events.send(Event::Connected(conn.handle())).await;
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        conn.send(msg).await
    }

    async fn on_close(&self, conn: &Conn, closed: &Closed) {
        let listed = conn.registry().get(conn.id()).is_some();
        let _ = self
            .events
            .send(Event::Closed(conn.id(), closed.clone(), listed))
            .await;
    }
}

/// A server with a [`Tracker`] on each of `paths`, all reporting to one
/// channel.
async fn start_tracked(server: Server, paths: &[&str]) -> (TestServer, Receiver<Event>) {
    let (events, rx) = unbounded();
    let mut server = server;
    for path in paths {
        server = server.route(
            *path,
            Tracker {
                events: events.clone(),
            },
        );
    }
    (start(server).await, rx)
}

async fn connected(events: &Receiver<Event>) -> Handle {
    expect_event!(events, Event::Connected(handle) => handle)
}

async fn closed_event(events: &Receiver<Event>) -> (ConnId, Closed, bool) {
    expect_event!(events, Event::Closed(id, closed, listed) => (id, closed, listed))
}

/// Connects a client and waits for its connect handler; the connection is
/// in the registry from then on.
async fn join(server: &TestServer, events: &Receiver<Event>, path: &str) -> (Client, Handle) {
    let client = connect(server, path).await;
    let handle = connected(events).await;
    (client, handle)
}

/// Moves `client` into a task that forwards everything it receives, the
/// Close frame included, and ends the channel at the end of the stream.
fn spawn_reader(mut client: Client) -> Receiver<WsMessage> {
    let (tx, rx) = unbounded();
    async_std::task::spawn(async move {
        let _ = async_std::future::timeout(STEP, async {
            while let Some(Ok(msg)) = client.next().await {
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
        })
        .await;
    });
    rx
}

async fn expect_text(reader: &Receiver<WsMessage>, expected: &str) {
    let msg = within("message", reader.recv()).await;
    assert_eq!(msg.ok(), Some(WsMessage::text(expected)));
}

/// The reader's next message must be a Close with `code` and `reason`,
/// followed by the end of the stream.
async fn expect_close(reader: &Receiver<WsMessage>, code: u16, reason: &str) {
    let msg = within("close frame", reader.recv()).await;
    let Ok(WsMessage::Close(Some(frame))) = msg else {
        panic!("expected a Close frame, got {msg:?}");
    };
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (code, reason)
    );
    assert!(
        within("end of stream", reader.recv()).await.is_err(),
        "a message after the Close frame"
    );
}

/// Closes from the client side and reads to the end of the stream.
async fn hang_up(mut client: Client) {
    within("client close", client.close(None)).await.unwrap();
    while within("drain", client.next()).await.is_some() {}
}

fn ids(handles: &[Handle]) -> BTreeSet<ConnId> {
    handles.iter().map(Handle::id).collect()
}

#[async_std::test]
async fn count_follows_connections_up_and_back_to_zero() {
    let (server, events) = start_tracked(Server::new(), &["/"]).await;
    assert_eq!(server.registry.count(), 0);

    let mut clients = Vec::new();
    for i in 1..=3 {
        let (client, _) = join(&server, &events, "/").await;
        clients.push(client);
        assert_eq!(server.registry.count(), i);
    }
    while let Some(client) = clients.pop() {
        hang_up(client).await;
        let (_, _, listed) = closed_event(&events).await;
        assert!(!listed, "the close handler ran while still registered");
        let left = clients.len();
        eventually("count drops", || server.registry.count() == left).await;
    }

    // Connections that come and go leave nothing behind.
    for _ in 0..20 {
        let (client, _) = join(&server, &events, "/").await;
        hang_up(client).await;
        let _ = closed_event(&events).await;
    }
    eventually("count back to zero", || server.registry.count() == 0).await;
    assert!(server.registry.handles().is_empty());
}

#[async_std::test]
async fn get_finds_a_live_connection_and_nothing_after_it_ends() {
    let (server, events) = start_tracked(Server::new(), &["/", "/other"]).await;
    let (client, handle) = join(&server, &events, "/other").await;
    let local = client.get_ref().local_addr().unwrap();
    let (client2, handle2) = join(&server, &events, "/").await;
    assert_ne!(handle.id(), handle2.id(), "ids are unique");

    let found = server.registry.get(handle.id()).expect("live connection");
    assert_eq!(found.id(), handle.id());
    assert_eq!(found.path(), "/other");
    assert_eq!(found.peer_addr(), local);
    assert!(found.is_open());

    // The found handle reaches the connection.
    let reader = spawn_reader(client);
    within("send via registry", found.text("via the registry"))
        .await
        .unwrap();
    expect_text(&reader, "via the registry").await;

    // Closed through the found handle: gone from the registry before
    // the close handler runs, so `get` finds nothing from then on.
    let outcome = within("close", found.close(CloseCode::NORMAL, "bye")).await;
    assert_eq!(outcome.unwrap(), CloseOutcome::Clean);
    expect_close(&reader, 1000, "bye").await;
    let (id, closed, listed) = closed_event(&events).await;
    assert_eq!(id, handle.id());
    assert_eq!(closed.initiator, Initiator::Server);
    assert!(!listed);
    assert!(server.registry.get(handle.id()).is_none());

    // The other connection is untouched.
    assert!(server.registry.get(handle2.id()).is_some());
    hang_up(client2).await;
    let (id, closed, _) = closed_event(&events).await;
    assert_eq!(id, handle2.id());
    assert_eq!(closed.initiator, Initiator::Client);
    assert!(server.registry.get(handle2.id()).is_none());
}

#[async_std::test]
async fn handles_is_a_snapshot_of_the_live_connections() {
    let (server, events) = start_tracked(Server::new(), &["/"]).await;
    let mut clients = Vec::new();
    let mut expected = BTreeSet::new();
    for _ in 0..3 {
        let (client, handle) = join(&server, &events, "/").await;
        clients.push(client);
        expected.insert(handle.id());
    }
    let snapshot = server.registry.handles();
    assert_eq!(snapshot.len(), 3);
    assert_eq!(ids(&snapshot), expected);

    let leaving = clients.remove(0);
    let leaving_id = snapshot
        .iter()
        .find(|h| h.peer_addr() == leaving.get_ref().local_addr().unwrap())
        .expect("the leaving client is in the snapshot")
        .id();
    hang_up(leaving).await;
    let (id, _, _) = closed_event(&events).await;
    assert_eq!(id, leaving_id);

    // The old snapshot still holds the handle, which now refuses sends;
    // a new snapshot no longer lists it.
    assert_eq!(snapshot.len(), 3);
    let stale = snapshot.iter().find(|h| h.id() == leaving_id).unwrap();
    assert!(!stale.is_open());
    assert!(matches!(
        within("send to a gone connection", stale.text("hello")).await,
        Err(Error::ConnectionClosed)
    ));
    expected.remove(&leaving_id);
    assert_eq!(ids(&server.registry.handles()), expected);

    for client in clients {
        hang_up(client).await;
    }
    eventually("registry empty", || server.registry.handles().is_empty()).await;
}

#[async_std::test]
async fn broadcast_reaches_every_connection_of_its_route_and_no_other() {
    let (server, events) = start_tracked(Server::new(), &["/a", "/b"]).await;
    let mut a = Vec::new();
    let mut b = Vec::new();
    for path in ["/a", "/b", "/a", "/b", "/a"] {
        let (client, handle) = join(&server, &events, path).await;
        let reader = spawn_reader(client);
        if path == "/a" {
            a.push((reader, handle));
        } else {
            b.push((reader, handle));
        }
    }
    assert_eq!(server.registry.count(), 5);

    assert_eq!(server.registry.route("/a").send("to a"), 3);
    assert_eq!(server.registry.route("/b").send(Message::text("to b")), 2);
    assert_eq!(server.registry.route("/nowhere").send("lost"), 0);
    assert_eq!(server.registry.route("/a").send(vec![7u8, 7, 7]), 3);

    // Each client's messages arrive in order, so a message for the
    // other route would show up in place of the expected one.
    for (reader, _) in &a {
        expect_text(reader, "to a").await;
        let msg = within("binary broadcast", reader.recv()).await;
        assert_eq!(msg.ok(), Some(WsMessage::binary(vec![7u8, 7, 7])));
    }
    for (reader, _) in &b {
        expect_text(reader, "to b").await;
    }

    // A connection that has left is no longer counted.
    let (gone_reader, gone) = a.remove(0);
    let outcome = within("close one", server.registry.close(gone.id(), 1000, "")).await;
    assert_eq!(outcome.unwrap().unwrap(), CloseOutcome::Clean);
    expect_close(&gone_reader, 1000, "").await;
    eventually("count drops", || server.registry.count() == 4).await;
    assert_eq!(server.registry.route("/a").send("again"), 2);
    for (reader, _) in &a {
        expect_text(reader, "again").await;
    }
    // And the /b clients got nothing more: their next message is this.
    assert_eq!(server.registry.route("/b").send("b again"), 2);
    for (reader, _) in &b {
        expect_text(reader, "b again").await;
    }
}

#[async_std::test]
async fn close_by_id_closes_that_connection_only() {
    let (server, events) = start_tracked(Server::new(), &["/"]).await;
    let mut readers = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..3 {
        let (client, handle) = join(&server, &events, "/").await;
        readers.push(spawn_reader(client));
        handles.push(handle);
    }
    let target = handles[1].id();

    // An unsendable code is refused and closes nothing.
    let refused = within("close 1006", server.registry.close(target, 1006, "")).await;
    assert!(matches!(refused, Some(Err(Error::InvalidCloseCode(1006)))));
    assert!(handles[1].is_open());

    let outcome = within("close", server.registry.close(target, 4000, "kicked")).await;
    assert_eq!(outcome.unwrap().unwrap(), CloseOutcome::Clean);
    expect_close(&readers[1], 4000, "kicked").await;
    let (id, closed, _) = closed_event(&events).await;
    assert_eq!(id, target);
    assert_eq!(
        (closed.code.as_u16(), closed.reason.as_str()),
        (4000, "kicked")
    );
    assert_eq!(closed.initiator, Initiator::Server);
    assert!(closed.clean);

    // Not live any more: nothing to close.
    eventually("target left the registry", || {
        server.registry.get(target).is_none()
    })
    .await;
    assert!(
        within("close again", server.registry.close(target, 4000, ""))
            .await
            .is_none()
    );

    // The others are untouched and still reachable.
    assert_eq!(server.registry.count(), 2);
    assert!(handles[0].is_open() && handles[2].is_open());
    assert_eq!(server.registry.route("/").send("still here"), 2);
    expect_text(&readers[0], "still here").await;
    expect_text(&readers[2], "still here").await;
    assert!(events.try_recv().is_err(), "another connection closed");
}

#[async_std::test]
async fn close_all_closes_every_connection_cleanly() {
    let (server, events) = start_tracked(Server::new(), &["/a", "/b"]).await;

    // With nothing connected there is nothing to count.
    let empty = within("close_all on nothing", server.registry.close_all(1001, ""))
        .await
        .unwrap();
    assert_eq!((empty.clean, empty.timed_out, empty.peer_gone), (0, 0, 0));

    const N: usize = 4;
    let mut readers = Vec::new();
    let mut ids = BTreeSet::new();
    for i in 0..N {
        let path = if i % 2 == 0 { "/a" } else { "/b" };
        let (client, handle) = join(&server, &events, path).await;
        readers.push(spawn_reader(client));
        ids.insert(handle.id());
    }

    // An unsendable code is one error, and nothing is closed.
    let refused = within("close_all 1005", server.registry.close_all(1005, "")).await;
    assert!(matches!(refused, Err(Error::InvalidCloseCode(1005))));
    assert_eq!(server.registry.count(), N);
    assert_eq!(server.registry.route("/a").send("open"), N / 2);
    for reader in readers.iter().step_by(2) {
        expect_text(reader, "open").await;
    }

    let counts = within(
        "close_all",
        server
            .registry
            .close_all(CloseCode::GOING_AWAY, "Going away"),
    )
    .await
    .unwrap();
    assert_eq!(counts.clean, N);
    assert_eq!((counts.timed_out, counts.peer_gone), (0, 0));
    for reader in &readers {
        expect_close(reader, 1001, "Going away").await;
    }
    let mut closed_ids = BTreeSet::new();
    for _ in 0..N {
        let (id, closed, _) = closed_event(&events).await;
        assert_eq!(closed.code, CloseCode::GOING_AWAY);
        assert_eq!(closed.initiator, Initiator::Server);
        assert!(closed.clean);
        closed_ids.insert(id);
    }
    assert_eq!(closed_ids, ids);
    eventually("registry empty", || server.registry.count() == 0).await;
}

#[async_std::test]
async fn close_all_counts_a_silent_peer_as_timed_out() {
    let (server, events) = start_tracked(
        Server::new().close_timeout(Duration::from_millis(300)),
        &["/"],
    )
    .await;
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (client, _) = join(&server, &events, "/").await;
        readers.push(spawn_reader(client));
    }
    // This peer never reads, so it never answers our Close.
    let mut silent = RawPeer::connect(&server, "/").await;
    let _ = connected(&events).await;

    let counts = within("close_all", server.registry.close_all(4000, "bye"))
        .await
        .unwrap();
    assert_eq!(
        (counts.clean, counts.timed_out, counts.peer_gone),
        (2, 1, 0)
    );
    for reader in &readers {
        expect_close(reader, 4000, "bye").await;
    }
    let seen = silent.read_until_close().await;
    assert_eq!(seen.code, Some(4000));
    silent.expect_eof().await;
    eventually("registry empty", || server.registry.count() == 0).await;
}

/// `Handle::closed()` waits for the end from another task, whoever ends the
/// connection, and resolves at once once it has ended.
#[async_std::test]
async fn closed_waits_for_the_end_from_another_task() {
    let (server, events) = start_tracked(Server::new(), &["/"]).await;
    let (mut client, handle) = join(&server, &events, "/").await;
    let waiting = {
        let handle = handle.clone();
        async_std::task::spawn(async move { handle.closed().await })
    };
    assert_echo(&mut client, "still open").await;
    send_normal_close(&mut client, "bye").await;
    assert_eq!(within("closed()", waiting).await, CloseOutcome::Clean);
    let _ = closed_event(&events).await;
    // Already ended: at once, with the same outcome.
    assert_eq!(
        within("closed() again", handle.closed()).await,
        CloseOutcome::Clean
    );
}

/// An id printed by one part of an application (a log line, an admin URL)
/// parses back and reaches the same connection.
#[async_std::test]
async fn an_id_round_trips_through_text_to_the_registry() {
    let (server, events) = start_tracked(Server::new(), &["/"]).await;
    let (mut client, handle) = join(&server, &events, "/").await;
    let text = handle.id().to_string();
    let id: ConnId = text.parse().expect("an id parses");
    assert_eq!(id, handle.id());
    assert_eq!(ConnId::from(id.get()), id);
    assert!("12x".parse::<ConnId>().is_err());
    let closing = {
        let registry = server.registry.clone();
        async_std::task::spawn(async move {
            registry
                .close(id, CloseCode::POLICY_VIOLATION, "Token revoked")
                .await
        })
    };
    match within("the server's close", client.next()).await {
        Some(Ok(WsMessage::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1008);
            assert_eq!(frame.reason.as_str(), "Token revoked");
        }
        other => panic!("expected the Close frame, got {other:?}"),
    }
    // The client's answer completes the handshake.
    while within("the end", client.next()).await.is_some() {}
    let outcome = within("close by id", closing).await;
    assert!(
        matches!(outcome, Some(Ok(CloseOutcome::Clean))),
        "{outcome:?}"
    );
    let (closed_id, _, _) = closed_event(&events).await;
    assert_eq!(closed_id, id);
}

#[async_std::test]
async fn broadcast_skips_a_connection_failing_on_a_protocol_error() {
    // The message handler is blocked; a message waits behind it when the
    // peer breaks the protocol (an unmasked frame).
    let (mut peer, gated) = blocked_peer(Server::new()).await;
    peer.send_frame(OP_TEXT, true, b"queued").await;
    peer.send_raw(&frame(OP_TEXT, true, b"bare", false)).await;

    // The connection now finishes what it received before its Close, but
    // it is on its way out: broadcasts no longer reach it.
    let mut delivered = 0;
    eventually("the failing connection, still listed, is skipped", || {
        let n = gated.server.registry.route("/").send("news");
        delivered += n;
        n == 0 && gated.server.registry.count() == 1
    })
    .await;
    assert_eq!(gated.server.registry.route("/").send("news"), 0);

    // Its own handlers' replies still go out, then the Close.
    gated.release.send(()).await.unwrap();
    let seen = peer.read_until_close().await;
    assert_eq!(seen.code, Some(1002));
    let texts: Vec<String> = seen
        .before
        .iter()
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect();
    let news = texts.iter().filter(|t| *t == "news").count();
    assert_eq!(news, delivered, "every broadcast counted was delivered");
    assert_eq!(
        texts.last().map(String::as_str),
        Some("queued"),
        "the echo of the message received before the violation: {texts:?}"
    );
    peer.expect_eof().await;
    // Our end of the stream ends the server's drain of it.
    drop(peer);
    let closed = next_event(&gated.closed).await;
    assert_eq!(closed.code.as_u16(), 1002);
}
