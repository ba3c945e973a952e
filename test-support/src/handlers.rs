//! Handlers the tests share: an echo that records every connection's start
//! and end, and a gate that blocks its message handler (reading pauses
//! behind it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_std::channel::{unbounded, Receiver, Sender};
use wharf::{Closed, Conn, ConnId, Handler, Message, Server};

use crate::{eventually, next_event, start, within, RawPeer, TestServer, OP_TEXT};

/// Connections a [`RecordingEcho`] has seen start and end.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    connects: Arc<AtomicUsize>,
    closes: Arc<AtomicUsize>,
}

impl Tally {
    /// Connect handlers run so far.
    pub fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }

    /// Close handlers run so far.
    pub fn closes(&self) -> usize {
        self.closes.load(Ordering::SeqCst)
    }
}

/// Echoes every message; counts connects and closes and reports each
/// connection's start and end, with its id, on channels.
#[derive(Debug)]
pub struct RecordingEcho {
    tally: Tally,
    opened: Sender<ConnId>,
    closed: Sender<(ConnId, Closed)>,
}

impl Handler for RecordingEcho {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        self.tally.connects.fetch_add(1, Ordering::SeqCst);
        let _ = self.opened.send(conn.id()).await;
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        conn.send(msg).await
    }

    async fn on_close(&self, conn: &Conn, closed: &Closed) {
        self.tally.closes.fetch_add(1, Ordering::SeqCst);
        let _ = self.closed.send((conn.id(), closed.clone())).await;
    }
}

/// What a [`RecordingEcho`] reports.
#[derive(Debug)]
pub struct Recorded {
    /// Connects and closes so far.
    pub tally: Tally,
    opened: Receiver<ConnId>,
    closed: Receiver<(ConnId, Closed)>,
}

impl Recorded {
    /// The id of the next connection that ran its connect handler.
    pub async fn next_opened(&self) -> ConnId {
        within("connect handler", self.opened.recv())
            .await
            .expect("the server dropped its handler")
    }

    /// How connection `id` ended; ends of other connections reported
    /// before it are skipped.
    pub async fn closed_of(&self, id: ConnId) -> Closed {
        loop {
            let (got, closed) = self.next_closed().await;
            if got == id {
                return closed;
            }
        }
    }

    /// The next connection end, in the order the close handlers ran.
    pub async fn next_closed(&self) -> (ConnId, Closed) {
        within("close handler", self.closed.recv())
            .await
            .expect("the server dropped its handler")
    }

    /// Waits until every connection that ran its connect handler has
    /// run its close handler too (a panic in a connection task would
    /// skip it), and checks no close handler ran without a connect.
    pub async fn assert_all_closed(&self) {
        let tally = &self.tally;
        eventually("every connect has its close", || {
            tally.closes() >= tally.connects()
        })
        .await;
        assert_eq!(
            tally.closes(),
            tally.connects(),
            "close handlers vs connects"
        );
    }
}

/// An echo handler and what it reports.
pub fn recording_echo() -> (RecordingEcho, Recorded) {
    let (opened_tx, opened) = unbounded();
    let (closed_tx, closed) = unbounded();
    let tally = Tally::default();
    let echo = RecordingEcho {
        tally: tally.clone(),
        opened: opened_tx,
        closed: closed_tx,
    };
    (
        echo,
        Recorded {
            tally,
            opened,
            closed,
        },
    )
}

/// Blocks its message handler on the text "block" until the test
/// releases it; echoes everything else; reports every close.
#[derive(Debug)]
pub struct Gate {
    entered: Sender<()>,
    release: Receiver<()>,
    closed: Sender<Closed>,
}

impl Handler for Gate {
    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        if msg.as_text() == Some("block") {
            let _ = self.entered.send(()).await;
            let _ = self.release.recv().await;
            return Ok(());
        }
        conn.send(msg).await
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        let _ = self.closed.send(closed.clone()).await;
    }
}

/// The test's side of a [`Gate`].
#[derive(Debug)]
pub struct Gated {
    /// The server the gate runs on.
    pub server: TestServer,
    /// Send `()` to let the blocked handler return.
    pub release: Sender<()>,
    /// How each connection ended.
    pub closed: Receiver<Closed>,
}

/// Starts `server` with a [`Gate`] on `/`, connects a raw peer, and
/// blocks its message handler with "block" (returning once it has
/// blocked).
pub async fn blocked_peer(server: Server) -> (RawPeer, Gated) {
    let (entered_tx, entered) = unbounded();
    let (release, release_rx) = unbounded();
    let (closed_tx, closed) = unbounded();
    let server = start(server.route(
        "/",
        Gate {
            entered: entered_tx,
            release: release_rx,
            closed: closed_tx,
        },
    ))
    .await;
    let mut peer = RawPeer::connect(&server, "/").await;
    peer.send_frame(OP_TEXT, true, b"block").await;
    next_event(&entered).await;
    (
        peer,
        Gated {
            server,
            release,
            closed,
        },
    )
}
