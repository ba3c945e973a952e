//! The handler grace: once a connection's socket has closed, a connect or
//! message handler that is still running gets `Server::handler_grace`, then
//! its future is dropped and the close handler runs; a close handler gets
//! the same grace. Either way the connection's data and its place in the
//! server are released, and the drop is counted.

use std::time::{Duration, Instant};

use async_std::channel::{unbounded, Receiver, Sender};
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use wharf::{CloseOutcome, Closed, Conn, Handler, Initiator, Message, Server};
use wharf_test_support::*;

/// The grace every test here configures.
const GRACE: Duration = Duration::from_millis(200);

#[derive(Debug)]
enum Event {
    /// The message handler is blocked on "stuck".
    Stuck,
    /// The blocked message handler's future was dropped.
    HandlerDropped,
    /// The close handler started, at this instant.
    Closed(Closed, Instant),
    /// The connection's data (an extension) was dropped.
    DataDropped,
}

/// Sends its event when dropped.
struct OnDrop(Sender<Event>, fn() -> Event);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.try_send((self.1)());
    }
}

/// Blocks its message handler on "stuck", and (when `close_blocks`) its
/// close handler, on a channel that never delivers.
struct Stuck {
    events: Sender<Event>,
    never: Receiver<()>,
    close_blocks: bool,
}

impl Handler for Stuck {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        conn.extensions()
            .insert(OnDrop(self.events.clone(), || Event::DataDropped));
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        if msg.as_text() == Some("stuck") {
            let _dropped = OnDrop(self.events.clone(), || Event::HandlerDropped);
            let _ = self.events.send(Event::Stuck).await;
            let _ = self.never.recv().await;
        }
        conn.send(msg).await
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        let _ = self
            .events
            .send(Event::Closed(closed.clone(), Instant::now()))
            .await;
        if self.close_blocks {
            let _ = self.never.recv().await;
        }
    }
}

/// A server with a [`Stuck`] route on `/` and a handler grace of
/// [`GRACE`]; the events, and the sender that keeps the channel open.
async fn start_stuck(close_blocks: bool) -> (TestServer, Receiver<Event>, Sender<()>) {
    let (events, rx) = unbounded();
    let (keep, never) = unbounded();
    let running = start(Server::new().handler_grace(GRACE).route(
        "/",
        Stuck {
            events,
            never,
            close_blocks,
        },
    ))
    .await;
    (running, rx, keep)
}

/// Closes `client` with 1000 and reads the echo and the end of the stream.
async fn close_client(client: &mut Client) {
    send_normal_close(client, "bye").await;
    let echo = within("echo of the Close", client.next()).await;
    assert!(
        matches!(echo, Some(Ok(WsMessage::Close(Some(_))))),
        "expected the echo of the Close, got {echo:?}"
    );
    assert!(within("end of stream", client.next()).await.is_none());
}

#[async_std::test]
async fn a_message_handler_stuck_after_the_socket_closed_is_dropped_after_the_grace() {
    let (running, events, _keep) = start_stuck(false).await;
    let mut client = connect(&running, "/").await;
    within("send", client.send(WsMessage::text("stuck")))
        .await
        .unwrap();
    expect_event!(&events, Event::Stuck => ());

    // The closing handshake completes while the handler is blocked.
    close_client(&mut client).await;
    let socket_closed = Instant::now();

    expect_event!(&events, Event::HandlerDropped => ());
    let (closed, at) = expect_event!(&events, Event::Closed(closed, at) => (closed, at));
    assert!(
        at.duration_since(socket_closed) >= GRACE - Duration::from_millis(20),
        "the close handler ran {:?} after the socket closed, before the {GRACE:?} grace",
        at.duration_since(socket_closed)
    );
    // The record says how the socket ended, not how the handler did.
    assert_eq!(closed.initiator, Initiator::Client);
    assert_eq!(closed.code.as_u16(), 1000);
    assert!(closed.clean);
    assert_eq!(closed.outcome, CloseOutcome::Clean);
    expect_event!(&events, Event::DataDropped => ());

    assert_eq!(running.registry.count(), 0);
    let stats = running.handle.stats();
    assert_eq!(stats.handlers_abandoned, 1);
    assert_eq!(stats.active, 0);
    assert!(stats
        .to_prometheus()
        .lines()
        .any(|l| l == "wharf_handlers_abandoned_total 1"));

    // The server goes on serving.
    let mut other = connect(&running, "/").await;
    assert_echo(&mut other, "still here").await;
}

#[async_std::test]
async fn a_stuck_close_handler_is_dropped_after_the_grace() {
    let (running, events, _keep) = start_stuck(true).await;
    let mut client = connect(&running, "/").await;
    assert_echo(&mut client, "hello").await;
    close_client(&mut client).await;

    let (closed, started) = expect_event!(&events, Event::Closed(closed, at) => (closed, at));
    assert!(closed.clean);
    // Blocked, the close handler keeps the connection's data until the
    // grace ends; then both are dropped.
    expect_event!(&events, Event::DataDropped => ());
    assert!(
        started.elapsed() >= GRACE - Duration::from_millis(20),
        "the data was released {:?} after the close handler started",
        started.elapsed()
    );
    eventually("the stuck close handler counted", || {
        running.handle.stats().handlers_abandoned == 1
    })
    .await;
}

#[async_std::test]
async fn a_zero_handler_grace_is_refused() {
    let err = within(
        "bind",
        Server::new()
            .handler_grace(Duration::ZERO)
            .bind("127.0.0.1:0"),
    )
    .await
    .expect_err("bound with a zero handler grace");
    assert!(
        matches!(
            err,
            wharf::Error::Config {
                setting: "handler_grace",
                ..
            }
        ),
        "{err}"
    );
}
