//! The state a connection shares between its driver task and everyone
//! else, and the [`Handle`] that reaches it from any task.
//!
//! This module owns the bounded send queue, the close request and the final
//! outcome. It never touches the socket; the driver (`driver.rs`) does, and
//! is woken through the waker stored here.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use async_tungstenite::tungstenite::http::HeaderMap;
use event_listener::Event;

use super::close::{self, CloseCode, CloseOutcome};
use super::message::{Bytes, Message, Utf8Bytes};
use crate::error::{Error, Result};
use crate::extensions::Extensions;

/// A connection's identifier, unique for the life of its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Where a connection is in its life, as seen from outside the driver.
#[derive(Debug)]
enum Life {
    /// Sends are queued and delivered.
    Open,
    /// The peer broke the protocol; the driver lets the connection's
    /// handlers finish the messages received before, then sends its Close.
    /// Sends are still queued and delivered (the handlers' replies), but
    /// broadcasts skip the connection: it is on its way out.
    Failing,
    /// `close()` was called; the driver has not picked the request up yet.
    /// Sends already fail.
    CloseRequested(CloseCode, String),
    /// The driver is ending the connection (our Close is being sent, the
    /// peer's Close was received, or the peer broke the protocol).
    Closing,
    /// The socket is closed; every `close()` caller gets this outcome.
    Ended(CloseOutcome),
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Message>,
    life: Life,
    driver: Option<Waker>,
}

/// Everything about one connection that outlives a single handler call.
pub(crate) struct Shared {
    pub(crate) info: ConnInfo,
    pub(crate) extensions: Mutex<Extensions>,
    capacity: usize,
    state: Mutex<State>,
    /// Notified when queue room frees up or the connection stops accepting.
    room: Event,
    /// Notified once, when the outcome is known.
    ended: Event,
    /// Set when the server gives up on the connection (end of a shutdown's
    /// drain): the driver drops the socket at its next poll.
    aborted: AtomicBool,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.info.id)
            .field("peer", &self.info.peer)
            .field("path", &self.info.path)
            .finish_non_exhaustive()
    }
}

/// The facts of the request that opened a connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) id: ConnId,
    pub(crate) peer: SocketAddr,
    pub(crate) path: Arc<str>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) subprotocol: Option<String>,
}

impl Shared {
    pub(crate) fn new(info: ConnInfo, capacity: usize, extensions: Extensions) -> Self {
        Shared {
            info,
            extensions: Mutex::new(extensions),
            capacity,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                life: Life::Open,
                driver: None,
            }),
            room: Event::new(),
            ended: Event::new(),
            aborted: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-written
        // (every critical section is a few field assignments), so a poisoned
        // lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `msg` if there is room. Gives it back when full.
    fn try_push(&self, msg: Message) -> Result<(), (Message, Error)> {
        self.push_if(msg, |life| matches!(life, Life::Open | Life::Failing))
    }

    /// Queues a broadcast's `msg` if the connection is open (not failing)
    /// and has room; whether it did.
    pub(crate) fn try_broadcast(&self, msg: Message) -> bool {
        self.push_if(msg, |life| matches!(life, Life::Open)).is_ok()
    }

    fn push_if(
        &self,
        msg: Message,
        accepts: impl FnOnce(&Life) -> bool,
    ) -> Result<(), (Message, Error)> {
        let waker = {
            let mut state = self.lock();
            if !accepts(&state.life) {
                return Err((msg, Error::Closed));
            }
            if state.queue.len() >= self.capacity {
                return Err((msg, Error::QueueFull));
            }
            state.queue.push_back(msg);
            state.driver.clone()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    async fn push(&self, mut msg: Message) -> Result<()> {
        // Try before listening: registering a listener allocates, and the
        // queue is rarely full.
        let mut listener = None;
        loop {
            match self.try_push(msg) {
                Ok(()) => return Ok(()),
                Err((_, Error::Closed)) => return Err(Error::Closed),
                Err((back, _)) => msg = back,
            }
            match listener.take() {
                Some(listener) => listener.await,
                None => listener = Some(self.room.listen()),
            }
        }
    }

    /// Asks the driver to close with an already validated code and reason.
    pub(crate) fn request_close(&self, code: CloseCode, reason: String) {
        let waker = {
            let mut state = self.lock();
            if !matches!(state.life, Life::Open | Life::Failing) {
                return;
            }
            state.life = Life::CloseRequested(code, reason);
            state.driver.clone()
        };
        // Senders waiting for room must now fail with `Closed`.
        self.room.notify(usize::MAX);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub(crate) async fn outcome(&self) -> CloseOutcome {
        let mut listener = None;
        loop {
            if let Life::Ended(outcome) = self.lock().life {
                return outcome;
            }
            match listener.take() {
                Some(listener) => listener.await,
                None => listener = Some(self.ended.listen()),
            }
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.lock().life, Life::Open | Life::Failing)
    }

    // ---- driver side ----

    /// Stores the driver's waker; called at the top of every driver poll.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut state = self.lock();
        match &mut state.driver {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    /// Takes a pending `close()` request; the connection is `Closing` after.
    pub(crate) fn take_close_request(&self) -> Option<(CloseCode, String)> {
        let mut state = self.lock();
        if !matches!(state.life, Life::CloseRequested(..)) {
            return None;
        }
        match std::mem::replace(&mut state.life, Life::Closing) {
            Life::CloseRequested(code, reason) => Some((code, reason)),
            _ => None,
        }
    }

    /// The driver is ending the connection on its own account (peer close,
    /// protocol error, failed socket): sends fail from now on.
    pub(crate) fn mark_closing(&self) {
        let mut state = self.lock();
        if matches!(
            state.life,
            Life::Open | Life::Failing | Life::CloseRequested(..)
        ) {
            state.life = Life::Closing;
            drop(state);
            self.room.notify(usize::MAX);
        }
    }

    /// The peer broke the protocol: broadcasts skip the connection from now
    /// on, while its handlers' sends are still delivered (see
    /// [`Life::Failing`]). A pending close request stays pending.
    pub(crate) fn mark_failing(&self) {
        let mut state = self.lock();
        if matches!(state.life, Life::Open) {
            state.life = Life::Failing;
        }
    }

    /// Whether the send queue is at its bound.
    pub(crate) fn is_full(&self) -> bool {
        self.lock().queue.len() >= self.capacity
    }

    /// Tells the driver to drop the socket and any running handler now;
    /// see `aborted`.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Relaxed);
        let waker = self.lock().driver.clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Forgets the driver's waker once its task is over.
    pub(crate) fn clear_waker(&self) {
        let waker = self.lock().driver.take();
        drop(waker);
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }

    /// Whether messages are waiting in the send queue.
    pub(crate) fn has_queued(&self) -> bool {
        !self.lock().queue.is_empty()
    }

    /// The next queued message, freeing a slot.
    pub(crate) fn pop(&self) -> Option<Message> {
        let msg = self.lock().queue.pop_front();
        if msg.is_some() {
            self.room.notify(1);
        }
        msg
    }

    /// Publishes the outcome: releases every `close()` caller and every
    /// waiting sender, and drops whatever is still queued. Idempotent:
    /// returns whether this call was the one that ended the connection.
    pub(crate) fn finish(&self, outcome: CloseOutcome) -> bool {
        let dropped = {
            let mut state = self.lock();
            if matches!(state.life, Life::Ended(_)) {
                return false;
            }
            state.life = Life::Ended(outcome);
            std::mem::take(&mut state.queue)
        };
        drop(dropped);
        self.room.notify(usize::MAX);
        self.ended.notify(usize::MAX);
        true
    }
}

/// A cheap, clonable reference to a connection, usable from any task.
///
/// A handle can send and close; it does not keep the socket open. Once the
/// connection has ended, `send` fails with [`Error::Closed`] and `close`
/// returns the outcome the connection ended with.
///
/// # Examples
///
/// Close a connection from a timer task:
///
/// ```no_run
/// use std::time::Duration;
/// use wharf::{CloseCode, Conn};
///
/// fn expire_later(conn: &Conn) {
///     let handle = conn.handle();
///     async_std::task::spawn(async move {
///         async_std::task::sleep(Duration::from_secs(3600)).await;
///         let _ = handle.close(CloseCode::POLICY_VIOLATION, "Session expired").await;
///     });
/// }
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.shared.info.id)
            .field("path", &self.shared.info.path)
            .finish()
    }
}

impl Handle {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.shared.info.id
    }

    /// The request path the connection was accepted on (the route's path,
    /// or whatever path the client asked for on a fallback route).
    pub fn path(&self) -> &str {
        &self.shared.info.path
    }

    /// The peer's socket address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.info.peer
    }

    /// Whether the connection still accepts messages (no close has begun).
    pub fn is_open(&self) -> bool {
        self.shared.is_open()
    }

    /// Queues a message, waiting for room in the send queue when it is full.
    ///
    /// Resolves once the message is queued; messages are written in the
    /// order they were queued, and every message queued before a `close()`
    /// is written before the Close frame. Fails with [`Error::Closed`] once a
    /// close has begun, from either side. Messages still queued when the
    /// *peer* closes first, or when the socket fails, are dropped: RFC 6455
    /// forbids data after the Close the server must echo.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn greet(conn: &wharf::Conn) -> wharf::Result<()> {
    ///     conn.send("welcome").await?;
    ///     conn.send(vec![0u8, 1, 2]).await // binary
    /// }
    /// ```
    pub async fn send(&self, msg: impl Into<Message>) -> Result<()> {
        self.shared.push(msg.into()).await
    }

    /// Queues a message without waiting: [`Error::QueueFull`] when there is
    /// no room, [`Error::Closed`] once a close has begun.
    pub fn try_send(&self, msg: impl Into<Message>) -> Result<()> {
        self.shared.try_push(msg.into()).map_err(|(_, err)| err)
    }

    /// Queues a text message; see [`send`](Self::send).
    pub async fn text(&self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.send(Message::Text(text.into())).await
    }

    /// Queues a binary message; see [`send`](Self::send).
    pub async fn binary(&self, data: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Binary(data.into())).await
    }

    /// Runs the closing handshake (RFC 6455 section 7) and waits for it.
    ///
    /// 1. `code` must be sendable (see [`CloseCode::is_sendable`]), else
    ///    [`Error::InvalidCloseCode`] and nothing happens. A `reason` longer
    ///    than 123 bytes is cut at the last UTF-8 character boundary that fits.
    /// 2. Messages queued before this call are written first, then exactly
    ///    one Close frame; `send` fails from now on.
    /// 3. The connection keeps reading, discarding data, until the peer's
    ///    Close arrives; once our Close and what preceded it are written
    ///    out, the server closes the TCP stream first. If the
    ///    peer does not answer within the close timeout
    ///    ([`Config::close_timeout`](crate::Config::close_timeout)), the
    ///    socket is shut down anyway.
    ///
    /// Idempotent and safe from any task, including the connection's own
    /// handlers: a second call, concurrent or later, sends nothing and gets
    /// the same outcome as the first. When the connection already ended (the
    /// peer closed first), returns the outcome it ended with.
    ///
    /// # Examples
    ///
    /// ```
    /// use wharf::{CloseCode, CloseOutcome, Conn};
    ///
    /// async fn expire(conn: &Conn) -> wharf::Result<()> {
    ///     match conn.close(CloseCode::POLICY_VIOLATION, "Session expired").await? {
    ///         CloseOutcome::Clean => tracing::info!(id = %conn.id(), "session ended"),
    ///         other => tracing::warn!(id = %conn.id(), outcome = %other, "peer did not answer"),
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub async fn close(&self, code: impl Into<CloseCode>, reason: &str) -> Result<CloseOutcome> {
        let (code, reason) = close::validate(code.into(), reason)?;
        self.shared.request_close(code, reason);
        Ok(self.shared.outcome().await)
    }
}
