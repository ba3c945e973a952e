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

use event_listener::Event;

use super::close::{CloseCode, CloseOutcome};
use super::message::Message;
use crate::error::{Error, Result};
use crate::extensions::Extensions;
use crate::http::query::Query;
use crate::http::PackedHeaders;

/// A connection's identifier, unique for the life of its server, and
/// across every node of a cluster.
///
/// It prints as its number and parses back from it, so an id can travel
/// through logs, URLs and admin tools and come back to
/// [`Registry::get`](crate::Registry::get),
/// [`Registry::close`](crate::Registry::close) or, on any node of a
/// cluster, [`Registry::conn`](crate::Registry::conn).
///
/// Layout of the number: without a cluster, the connections of the server
/// counted from 1. With one (see `Server::cluster`), the high 16 bits are
/// the number the node took when it joined (1 to 65535) and the low 48
/// bits count that node's connections, which is how a selector finds the
/// node that owns an id.
///
/// # Examples
///
/// ```
/// use wharf::ConnId;
///
/// let id: ConnId = "42".parse().unwrap();
/// assert_eq!(id, ConnId::from(42));
/// assert_eq!(id.to_string(), "42");
/// assert_eq!(id.get(), 42);
/// assert!("forty-two".parse::<ConnId>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    /// The number behind the id.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wharf::ConnId::from(7).get(), 7);
    /// ```
    pub fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for ConnId {
    fn from(id: u64) -> Self {
        ConnId(id)
    }
}

impl From<ConnId> for u64 {
    fn from(id: ConnId) -> Self {
        id.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for ConnId {
    type Err = ParseConnIdError;

    /// Parses the decimal number a `ConnId` prints as.
    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        text.parse().map(ConnId).map_err(|_| ParseConnIdError(()))
    }
}

/// The text was not a connection id (a decimal number).
///
/// # Examples
///
/// ```
/// let err = "abc".parse::<wharf::ConnId>().unwrap_err();
/// assert_eq!(err.to_string(), "not a connection id (expected a decimal number)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseConnIdError(());

impl fmt::Display for ParseConnIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a connection id (expected a decimal number)")
    }
}

impl std::error::Error for ParseConnIdError {}

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
    /// The driver is in its poll: it looks at the queue and the close
    /// request again before it returns, so a push or request meanwhile
    /// need not wake it (a wake now would only poll it once more, for
    /// nothing, after this poll). `missed` records that one came;
    /// `missed_push` that a push came, forgotten once the driver finds the
    /// queue empty (its own handler's sends, written in the same poll).
    polling: bool,
    missed: bool,
    missed_push: bool,
}

impl State {
    /// The driver's waker for a push, or none while it is polling.
    fn push_waker(&mut self) -> Option<Waker> {
        if self.polling {
            self.missed_push = true;
            return None;
        }
        self.driver.clone()
    }

    /// The driver's waker, or none while it is polling (see `polling`).
    fn waker(&mut self) -> Option<Waker> {
        if self.polling {
            self.missed = true;
            return None;
        }
        self.driver.clone()
    }
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
    /// The client: the TCP peer, or the address trusted proxies name.
    pub(crate) peer: SocketAddr,
    /// The TCP peer.
    pub(crate) tcp_peer: SocketAddr,
    pub(crate) path: Arc<str>,
    pub(crate) query: Query,
    /// Packed; rebuilt as a `HeaderMap` when a handler asks.
    pub(crate) headers: PackedHeaders,
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
                polling: false,
                missed: false,
                missed_push: false,
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
    pub(crate) fn try_push(&self, msg: Message) -> Result<(), (Message, Error)> {
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
                return Err((msg, Error::ConnectionClosed));
            }
            if state.queue.len() >= self.capacity {
                return Err((msg, Error::QueueFull));
            }
            state.queue.push_back(msg);
            state.push_waker()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    pub(crate) async fn push(&self, mut msg: Message) -> Result<()> {
        // Try before listening: registering a listener allocates, and the
        // queue is rarely full.
        let mut listener = None;
        loop {
            match self.try_push(msg) {
                Ok(()) => return Ok(()),
                Err((_, Error::ConnectionClosed)) => return Err(Error::ConnectionClosed),
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
            state.waker()
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

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.lock().life, Life::Open | Life::Failing)
    }

    // ---- driver side ----

    /// Stores the driver's waker and notes that the driver is polling:
    /// called at the top of every driver poll, which ends with
    /// [`end_poll`](Self::end_poll) or [`stop_polling`](Self::stop_polling).
    pub(crate) fn begin_poll(&self, waker: &Waker) {
        let mut state = self.lock();
        match &mut state.driver {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        state.polling = true;
        state.missed = false;
        state.missed_push = false;
    }

    /// The driver found nothing more to do. `true` when a push, close
    /// request or abort came during the poll without waking it: the driver
    /// looks again (and is still polling). `false`: the poll ends, and
    /// whatever comes next wakes the driver.
    pub(crate) fn end_poll(&self) -> bool {
        let mut state = self.lock();
        let missed = std::mem::take(&mut state.missed);
        if std::mem::take(&mut state.missed_push) || missed {
            return true;
        }
        state.polling = false;
        false
    }

    /// The driver's poll ends with the driver already woken (or finished):
    /// what comes next wakes it again.
    pub(crate) fn stop_polling(&self) {
        let mut state = self.lock();
        state.polling = false;
        state.missed = false;
        state.missed_push = false;
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
        let waker = self.lock().waker();
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
        let msg = {
            let mut state = self.lock();
            let msg = state.queue.pop_front();
            if msg.is_none() {
                // Every push so far has been taken: none is missed.
                state.missed_push = false;
            }
            msg
        };
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
/// connection has ended, `send` fails with [`Error::ConnectionClosed`] and
/// `close` returns the outcome the connection ended with. The handler's
/// [`Conn`](crate::Conn) has the same methods, and more.
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

/// The methods a [`Handle`] and a [`Conn`](crate::Conn) share, written once
/// and expanded in both `impl` blocks so that each type's documentation
/// shows all of its methods. `$shared` reaches the connection's [`Shared`].
macro_rules! connection_methods {
    ($self:ident => $shared:expr_2021) => {
        /// The connection's id.
        ///
        /// # Examples
        ///
        /// ```
        /// async fn on_connect(conn: &wharf::Conn) {
        ///     tracing::info!(id = %conn.id(), "connected");
        /// }
        /// ```
        pub fn id(&$self) -> $crate::ConnId {
            $shared.info.id
        }

        /// The request path the connection was accepted on (the route's path,
        /// or whatever path the client asked for on a fallback route).
        ///
        /// # Examples
        ///
        /// ```
        /// async fn on_connect(conn: &wharf::Conn) {
        ///     tracing::info!(path = conn.path(), "connected");
        /// }
        /// ```
        pub fn path(&$self) -> &str {
            &$shared.info.path
        }

        /// The client's address: the TCP peer's, or, behind a trusted
        /// proxy ([`Server::trusted_proxies`](crate::Server::trusted_proxies)),
        /// the client the proxy names (port 0 when it gave none). It is
        /// what the per-IP limits, the logs and the close event use.
        ///
        /// # Examples
        ///
        /// ```
        /// async fn on_connect(conn: &wharf::Conn) {
        ///     tracing::info!(peer = %conn.peer_addr(), "connected");
        /// }
        /// ```
        pub fn peer_addr(&$self) -> std::net::SocketAddr {
            $shared.info.peer
        }

        /// The TCP peer's socket address: the proxy's, for a client behind
        /// a trusted proxy; otherwise the same as `peer_addr`.
        ///
        /// # Examples
        ///
        /// ```
        /// async fn on_connect(conn: &wharf::Conn) {
        ///     tracing::info!(client = %conn.peer_addr(), via = %conn.tcp_peer_addr(), "connected");
        /// }
        /// ```
        pub fn tcp_peer_addr(&$self) -> std::net::SocketAddr {
            $shared.info.tcp_peer
        }

        /// Whether the connection still accepts messages (no close has begun).
        ///
        /// # Examples
        ///
        /// ```
        /// fn still_there(handle: &wharf::Handle) -> bool {
        ///     handle.is_open()
        /// }
        /// ```
        pub fn is_open(&$self) -> bool {
            $shared.is_open()
        }

        /// Queues a message, waiting for room in the send queue when it is full.
        ///
        /// Resolves once the message is queued; messages are written in the
        /// order they were queued, and every message queued before a `close()`
        /// is written before the Close frame. Fails with
        /// [`Error::ConnectionClosed`](crate::Error::ConnectionClosed) once a
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
        pub async fn send(&$self, msg: impl Into<$crate::Message>) -> $crate::Result<()> {
            $shared.push(msg.into()).await
        }

        /// Queues a message without waiting:
        /// [`Error::QueueFull`](crate::Error::QueueFull) when there is no room,
        /// [`Error::ConnectionClosed`](crate::Error::ConnectionClosed) once a
        /// close has begun.
        ///
        /// # Examples
        ///
        /// ```
        /// fn notify(handle: &wharf::Handle) {
        ///     if let Err(wharf::Error::QueueFull) = handle.try_send("tick") {
        ///         tracing::debug!(id = %handle.id(), "slow reader; tick skipped");
        ///     }
        /// }
        /// ```
        pub fn try_send(&$self, msg: impl Into<$crate::Message>) -> $crate::Result<()> {
            $shared.try_push(msg.into()).map_err(|(_, err)| err)
        }

        /// Queues a text message; see [`send`](Self::send).
        ///
        /// # Examples
        ///
        /// ```
        /// async fn hello(conn: &wharf::Conn) -> wharf::Result<()> {
        ///     conn.text(format!("hello {}", conn.id())).await
        /// }
        /// ```
        pub async fn text(&$self, text: impl Into<$crate::Text>) -> $crate::Result<()> {
            $self.send($crate::Message::Text(text.into())).await
        }

        /// Queues a binary message; see [`send`](Self::send).
        ///
        /// # Examples
        ///
        /// ```
        /// async fn blob(conn: &wharf::Conn) -> wharf::Result<()> {
        ///     conn.binary(vec![1u8, 2, 3]).await
        /// }
        /// ```
        pub async fn binary(&$self, data: impl Into<$crate::Bytes>) -> $crate::Result<()> {
            $self.send($crate::Message::Binary(data.into())).await
        }

        /// Queues `value` as a JSON text message; see [`send`](Self::send).
        /// Fails (as [`Error::Handler`](crate::Error::Handler)) only when
        /// `value` cannot be represented as JSON.
        ///
        /// # Examples
        ///
        /// ```
        /// #[derive(serde::Serialize)]
        /// struct Joined<'a> {
        ///     user: &'a str,
        /// }
        ///
        /// async fn announce(conn: &wharf::Conn) -> wharf::Result<()> {
        ///     conn.send_json(&Joined { user: "ann" }).await
        /// }
        /// ```
        #[cfg(feature = "json")]
        pub async fn send_json<T: serde::Serialize + ?Sized>(&$self, value: &T) -> $crate::Result<()> {
            $self.send($crate::Message::from_json(value)?).await
        }

        /// Runs the closing handshake (RFC 6455 section 7) and waits for it.
        ///
        /// 1. `code` must be sendable (see
        ///    [`CloseCode::is_sendable`](crate::CloseCode::is_sendable)), else
        ///    [`Error::InvalidCloseCode`](crate::Error::InvalidCloseCode) and
        ///    nothing happens. A `reason` longer than 123 bytes is cut at the
        ///    last UTF-8 character boundary that fits.
        /// 2. Messages queued before this call are written first, then exactly
        ///    one Close frame; `send` fails from now on.
        /// 3. The connection keeps reading, discarding data, until the peer's
        ///    Close arrives and everything the server wrote has left; then the
        ///    server closes the TCP stream first. If that has not happened
        ///    within the close timeout
        ///    ([`Server::close_timeout`](crate::Server::close_timeout)), the
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
        pub async fn close(
            &$self,
            code: impl Into<$crate::CloseCode>,
            reason: &str,
        ) -> $crate::Result<$crate::CloseOutcome> {
            let (code, reason) = $crate::connection::close::validate(code.into(), reason)?;
            $shared.request_close(code, reason);
            Ok($shared.outcome().await)
        }

        /// Waits until the connection has ended, whoever ended it, and returns
        /// its outcome (the one every `close()` caller got). Does not start a
        /// close; resolves at once for a connection that already ended. Like
        /// Python websockets' `wait_closed()`.
        ///
        /// Called from one of the connection's own `connect` or `message`
        /// handlers it waits for the end of the very connection the handler
        /// holds open, which only the peer, a policy or another task can
        /// bring.
        ///
        /// # Examples
        ///
        /// ```
        /// async fn watch(handle: wharf::Handle) {
        ///     let outcome = handle.closed().await;
        ///     tracing::info!(id = %handle.id(), %outcome, "connection over");
        /// }
        /// ```
        pub async fn closed(&$self) -> $crate::CloseOutcome {
            $shared.outcome().await
        }
    };
}
pub(crate) use connection_methods;

impl Handle {
    connection_methods!(self => self.shared);
}
