//! The connection driver: one task per connection that owns the socket.
//!
//! It reads frames, writes the send queue, runs the route's handlers one at a
//! time, and carries every end of the connection through the closing
//! handshake of RFC 6455 section 7. Handler futures are polled inside the
//! same task as the socket, so a handler awaiting `close()` never blocks the
//! reads that complete the handshake. The [`Phase`] enum is the document of
//! the lifecycle; everything else is bookkeeping.
//!
//! The driver must never send a data frame after its Close frame, never send
//! 1005/1006/1015, and never wait on the peer without a deadline.
//!
//! # The close lifecycle, as callers see it
//!
//! Every phase but `Open` and `Terminated` is bounded by the close deadline
//! (`close_timeout` from the moment the close began; `TimedOut` when it
//! passes). `close()` returns when the driver enters `Terminated`, with the
//! same outcome for every caller, earlier or later, and before the close
//! handler runs; a stream that fails or ends early in any phase is
//! `PeerGone`. "Ours" is the code and reason of the `close()` that won,
//! or of the policy, shutdown or protocol error that closed.
//!
//! | phase (stage) | what the driver does | `send` | `close()` | the close handler is told, if it ends here |
//! | --- | --- | --- | --- | --- |
//! | `Open` | reads, writes the queue, runs handlers | queued (waits for room) | fails sends from this call on; starts `ClosingByUs` | see below |
//! | `ClosingByUs` (`Sending`) | writes what was queued, then hands over our Close; a Close from the peer now means it closed first: `ClosedByPeer`, the rest of the queue dropped | `ConnectionClosed` | waits | ours, `Server`, not clean |
//! | `ClosingByUs` (`Awaiting`) | flushes; reads, discarding data, until the peer's Close | `ConnectionClosed` | waits | ours, `Server`, not clean |
//! | `ClosingByUs` (`Acknowledged`) | the peer answered; flushes our Close and what preceded it (a peer that answered without reading may still hold them up) | `ConnectionClosed` | waits: `Clean` once flushed, `PeerGone` on a write error, `TimedOut` at the deadline | ours, `Server`, clean when `Clean` |
//! | `ClosedByPeer` | flushes the echo of the peer's Close | `ConnectionClosed` | sends nothing more; waits: `Clean` once the echo is out | the peer's code (1005 when it had none), `Client`, clean when `Clean` |
//! | `Failing` (`Finishing`) | stops reading; handlers finish the messages received before the violation, their replies are written | queued, but broadcasts skip it | stops finishing and moves on to `Sending`; waits | ours (1002, 1007 or 1009), `Server`, not clean |
//! | `Failing` (`Sending`) | writes the queued replies, then our Close | `ConnectionClosed` | waits | the same |
//! | `Failing` (`Shutting`) | once our Close is out, shuts the write half (over TLS, after writing `close_notify`) | `ConnectionClosed` | waits | the same |
//! | `Failing` (`Draining`) | reads and discards until EOF | `ConnectionClosed` | waits: `PeerGone` at EOF, `TimedOut` at the deadline (never `Clean`: the peer's Close is not read) | the same |
//! | `ClosingTransport` | over TLS only, once the closing handshake has ended (any outcome but a drop): writes and flushes TLS `close_notify` and shuts the TCP write half, within the close deadline (one attempt when it has passed); plain TCP goes straight on | `ConnectionClosed` | waits | the record of the end, as decided before this phase |
//! | `Terminated` | the socket is closed and the outcome published; waits for the running handler and the messages received before the end, up to the handler grace, then drops them | `ConnectionClosed` | returns the outcome at once | the record of the end, once handlers are done |
//!
//! Ends without a closing handshake: a stream that ends or fails while
//! `Open` is reported as 1006 with `Initiator::Abnormal` and `PeerGone`
//! (nothing is sent), a peer that misses the heartbeat as 1006 "Heartbeat
//! timeout", and a connection cut by a graceful shutdown's drain deadline
//! as `TimedOut` (1006 "Dropped at shutdown" if it was still `Open`; its
//! running handler is dropped with it). The last two drop the socket
//! without a TLS `close_notify` either, as they send no Close frame.
//!
//! Over TLS the order on the wire is the same as over TCP, one layer
//! down: the Close frames, then `close_notify`, then the server closes
//! TCP first.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use async_tungstenite::tungstenite::protocol::frame::{coding, CloseFrame};
use async_tungstenite::tungstenite::Message as Frame;
use async_tungstenite::WebSocketStream;
use futures_util::{AsyncRead, AsyncWrite, Sink, Stream};

use super::close::{truncate_reason, CloseCode, CloseOutcome, Closed, Initiator};
use super::conn::Conn;
use super::message::{Bytes, Message, Text};
use super::policies::{Limits, Policies, Verdict};
use super::BoxFuture;
use crate::error::{Error, Result};
use crate::net::Stream as Transport;
use crate::rt::Clock;

type Ws = WebSocketStream<Transport>;

/// Frames one poll of the driver may read before it yields to the executor,
/// so a peer that streams frames (a ping flood, say) cannot monopolise a
/// worker thread.
const READ_BUDGET: u32 = 64;

/// What the driver asks of the application: a future for each handler
/// call it makes. Every route handler implements it (`handler/`); the
/// driver knows nothing of routes or of the `Handler` trait.
pub(crate) trait Events: Send + Sync {
    /// The `connect` handler's call, started with the driver.
    fn connect<'a>(&'a self, conn: &'a Conn) -> BoxFuture<'a, Result<()>>;
    /// The `message` handler's call for one received message.
    fn message<'a>(&'a self, conn: &'a Conn, msg: Message) -> BoxFuture<'a, Result<()>>;
}

/// What the driver asks of the server that runs it: a deadline service
/// (one sweeper for every connection, `server/timers.rs`) and counters
/// and gauges (`server/metrics.rs`).
pub(crate) trait Host: Sync {
    /// The clock the deadlines are read against; asked once, when the
    /// driver starts. Only `test-util` builds have one that can move:
    /// elsewhere the driver reads `Instant::now()` without asking.
    #[cfg(feature = "test-util")]
    fn clock(&self) -> Clock;
    /// A key for this connection's one deadline.
    fn deadline_key(&self) -> u64;
    /// Wakes `waker` once `at` has passed; replaces `key`'s `previous`
    /// deadline, the one set last (the host keeps no index by key).
    fn set_deadline(&self, key: u64, previous: Option<Instant>, at: Instant, waker: &Waker);
    /// Forgets `key`'s deadline `at`.
    fn cancel_deadline(&self, key: u64, at: Instant);
    /// Adds data messages received and written.
    fn count_messages(&self, received: u64, sent: u64);
    /// Counts one connection end.
    fn count_close(&self, code: CloseCode, initiator: Initiator, outcome: CloseOutcome);
    /// Counts one handler dropped for outliving the handler grace.
    fn count_abandoned(&self);
    /// This connection's reading paused because its inbox is full (`true`),
    /// or resumed. Called only when the state changes, and with `false`
    /// before the connection ends if it was paused.
    fn reading_paused(&self, paused: bool);
    /// This connection's send queue became full (`true`), or has room
    /// again. Called only when the state changes, and with `false` before
    /// the connection ends if it was full.
    fn send_queue_full(&self, full: bool);
}

/// Where the connection is in its closing handshake.
#[derive(Debug)]
enum Phase {
    /// Both directions open: messages flow, handlers run.
    Open,
    /// We are closing: queued messages are written, then our Close frame;
    /// data from the peer is discarded until its Close arrives; then what we
    /// wrote is flushed. All of it within the close deadline.
    ClosingByUs {
        code: CloseCode,
        reason: String,
        stage: CloseStage,
    },
    /// The peer's Close arrived and tungstenite queued the echo; we flush it,
    /// then close the TCP stream.
    ClosedByPeer { code: CloseCode, reason: String },
    /// The peer broke the protocol. Reading stops (the frame stream is no
    /// longer trustworthy); messages received before the violation are still
    /// handled and their replies written, then our Close frame; then the write
    /// half is shut down (over TLS, after `close_notify`) and the rest of the
    /// stream read and discarded until EOF or the deadline, so our Close is
    /// not lost to a TCP reset.
    Failing {
        code: CloseCode,
        reason: String,
        stage: FailStage,
    },
    /// Over TLS: the closing handshake has ended with `End`; TLS
    /// `close_notify` is written and flushed and the TCP write half shut,
    /// within the close deadline; then the socket is closed. Plain TCP
    /// never enters this phase.
    ClosingTransport(End),
    /// The socket is closed; the driver waits for the running handler, and
    /// the messages received before the end, up to the handler grace; then
    /// it drops them.
    Terminated,
}

/// Steps of [`Phase::ClosingByUs`].
#[derive(Debug, Clone, Copy)]
enum CloseStage {
    /// Queued messages are handed to the socket, then our Close frame. A
    /// Close from the peer now means the peer closed first
    /// ([`Phase::ClosedByPeer`]).
    Sending,
    /// Our Close is handed over (perhaps not yet written); we flush and
    /// read, discarding data, until the peer's Close arrives.
    Awaiting,
    /// The peer's Close arrived. Our Close and what preceded it may still
    /// be waiting for the peer to read: the close is clean only once they
    /// are flushed, then the server closes TCP.
    Acknowledged,
}

/// Steps of [`Phase::Failing`].
#[derive(Debug, Clone, Copy)]
enum FailStage {
    /// Handlers finish the messages received before the violation.
    Finishing,
    /// Queued replies, then our Close frame, are written.
    Sending,
    /// Our Close is handed over: it is flushed, then the write half is
    /// shut (over TLS, `close_notify` first).
    Shutting,
    /// Write half shut: input discarded until EOF.
    Draining,
}

/// How the socket ended, recorded when the driver enters `Terminated`.
#[derive(Debug)]
struct End {
    code: CloseCode,
    reason: String,
    initiator: Initiator,
    clean: bool,
    outcome: CloseOutcome,
}

pub(crate) struct Driver<'c> {
    conn: &'c Conn,
    events: &'c dyn Events,
    host: &'c dyn Host,
    /// This connection's key in the host's deadlines.
    timer_key: u64,
    /// The deadline registered with the host, and the waker it wakes.
    registered: Option<(Instant, Waker)>,
    policies: Policies,
    /// The server's clock: every instant below is read from it.
    clock: Clock,
    /// The socket, in a slot of the connection task's own (`None` once
    /// closed): borrowed rather than moved in, so that the task, which
    /// must hold the socket before the driver exists, holds it only once.
    ws: &'c mut Option<Ws>,
    phase: Phase,
    /// The server's limits, shared by its connections (not a copy: an idle
    /// connection's task holds the driver).
    limits: &'c Limits,
    /// When the close in progress gives up on the peer.
    close_at: Option<Instant>,
    /// Once `Terminated`: when a handler still running is dropped.
    grace_at: Option<Instant>,
    running: Option<BoxFuture<'c, Result<()>>>,
    inbox: VecDeque<Message>,
    /// Payload bytes waiting in `inbox`.
    inbox_bytes: usize,
    unflushed: bool,
    started: Instant,
    messages_in: u64,
    messages_out: u64,
    /// Message counts already added to the server's metrics.
    reported: (u64, u64),
    end: Option<End>,
    /// Frames left to read in this poll; see [`READ_BUDGET`].
    budget: u32,
    /// A read of this poll found nothing: the socket's waker is registered
    /// with the reactor, which wakes the task when more arrives. Until
    /// then another read would only be a system call failing with
    /// `EAGAIN`, so the rest of the poll does not try.
    read_blocked: bool,
    /// The server gave up on the connection before it ended (see `abort`).
    dropped: bool,
    /// The send queue was full when last looked at (by the slow-consumer
    /// clock while open); cleared by a write that takes from it, and at
    /// the end, when the queue is dropped.
    queue_full: bool,
    /// What the host was last told: (reading paused, send queue full).
    pressure: (bool, bool),
}

impl<'c> Driver<'c> {
    pub(crate) fn new(
        conn: &'c Conn,
        events: &'c dyn Events,
        host: &'c dyn Host,
        ws: &'c mut Option<Ws>,
        limits: &'c Limits,
    ) -> Self {
        #[cfg(feature = "test-util")]
        let clock = host.clock();
        #[cfg(not(feature = "test-util"))]
        let clock = Clock::default();
        let now = clock.now();
        Driver {
            conn,
            events,
            host,
            clock,
            timer_key: host.deadline_key(),
            registered: None,
            policies: Policies::new(now),
            ws,
            phase: Phase::Open,
            limits,
            close_at: None,
            grace_at: None,
            running: Some(events.connect(conn)),
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            unflushed: false,
            started: now,
            messages_in: 0,
            messages_out: 0,
            reported: (0, 0),
            end: None,
            budget: READ_BUDGET,
            read_blocked: false,
            dropped: false,
            queue_full: false,
            pressure: (false, false),
        }
    }

    /// What the close handler is told, once the driver has finished.
    fn outcome(&mut self) -> (Closed, bool) {
        let end = self.end.take().unwrap_or(End {
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            initiator: Initiator::Abnormal,
            clean: false,
            outcome: CloseOutcome::PeerGone,
        });
        let closed = Closed {
            code: end.code,
            reason: end.reason,
            initiator: end.initiator,
            clean: end.clean,
            outcome: end.outcome,
            duration: self.elapsed(),
            messages_in: self.messages_in,
            messages_out: self.messages_out,
        };
        (closed, self.dropped)
    }

    /// How long the connection has lasted, by the server's clock.
    fn elapsed(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.started)
    }
}

impl Drop for Driver<'_> {
    fn drop(&mut self) {
        if let Some((at, _)) = &self.registered {
            self.host.cancel_deadline(self.timer_key, *at);
        }
        // A driver dropped before it finished (its task cancelled) leaves
        // the gauges it raised; one that finished has lowered them already.
        let (paused, full) = self.pressure;
        if paused {
            self.host.reading_paused(false);
        }
        if full {
            self.host.send_queue_full(false);
        }
    }
}

/// Awaiting the driver drives the connection until its socket is closed and
/// the last handler has returned; it yields what the close handler is told,
/// and whether the server dropped the connection before it ended.
///
/// The driver is its own future (rather than an `async fn` holding it), so
/// a connection's task stores it once: after the read buffer, it is most of
/// an idle connection's memory.
impl Future for Driver<'_> {
    type Output = (Closed, bool);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let driver = self.get_mut();
        match driver.poll_drive(cx) {
            Poll::Ready(()) => Poll::Ready(driver.outcome()),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<'c> Driver<'c> {
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let poll = self.poll_steps(cx);
        if poll.is_pending() {
            self.sync_deadline(cx.waker());
        }
        // Message counters reach the server's metrics once per poll.
        let (sent_in, sent_out) = self.reported;
        if (sent_in, sent_out) != (self.messages_in, self.messages_out) {
            self.host
                .count_messages(self.messages_in - sent_in, self.messages_out - sent_out);
            self.reported = (self.messages_in, self.messages_out);
        }
        self.report_pressure();
        poll
    }

    /// Tells the host when reading paused or resumed and when the send
    /// queue filled or drained: once per poll, and only on a change.
    fn report_pressure(&mut self) {
        let paused = matches!(self.phase, Phase::Open) && !self.inbox_has_room();
        let now = (paused, self.queue_full);
        if now == self.pressure {
            return;
        }
        if now.0 != self.pressure.0 {
            self.host.reading_paused(now.0);
        }
        if now.1 != self.pressure.1 {
            self.host.send_queue_full(now.1);
        }
        self.pressure = now;
    }

    fn poll_steps(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &self.conn.shared;
        shared.begin_poll(cx.waker());
        self.budget = READ_BUDGET;
        self.read_blocked = false;
        if shared.is_aborted() {
            self.abort();
        }
        loop {
            let mut progress = self.poll_handler(cx);
            if matches!(self.phase, Phase::Open) {
                if let Some((code, reason)) = shared.take_close_request() {
                    self.begin_close(code, reason);
                    progress = true;
                }
            }
            progress |= match self.phase {
                Phase::Open => self.poll_open(cx) | self.poll_policies(cx),
                Phase::ClosingByUs { .. } => self.poll_closing_by_us(cx),
                Phase::ClosedByPeer { .. } => self.poll_closed_by_peer(cx),
                Phase::Failing { .. } => self.poll_failing(cx),
                Phase::ClosingTransport(_) => self.poll_closing_transport(cx),
                Phase::Terminated => self.poll_grace(),
            };
            if let Phase::Terminated = self.phase {
                if self.running.is_none() && self.inbox.is_empty() {
                    shared.stop_polling();
                    return Poll::Ready(());
                }
            }
            if !progress {
                if shared.end_poll() {
                    // A send, close request or abort came during this
                    // poll, perhaps after its look: look again.
                    if shared.is_aborted() {
                        self.abort();
                    }
                    continue;
                }
                return Poll::Pending;
            }
            if self.budget == 0 {
                // More may be readable: come back after other tasks ran.
                shared.stop_polling();
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }

    /// Takes one frame from this poll's read budget; false when spent.
    fn spend(&mut self) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }

    /// Polls the running handler; starts the next message's handler when
    /// idle. Returns whether anything happened.
    fn poll_handler(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        loop {
            if let Some(running) = self.running.as_mut() {
                // A panicking handler fails like one that returned an
                // error (logged, 1011); the `Events` futures are not
                // wrapped, so this is where a panic is caught.
                let poll = panic::catch_unwind(AssertUnwindSafe(|| running.as_mut().poll(cx)))
                    .unwrap_or_else(|_| Poll::Ready(Err(Error::handler("handler panicked"))));
                match poll {
                    Poll::Pending => return progress,
                    Poll::Ready(result) => {
                        self.running = None;
                        progress = true;
                        match result {
                            Ok(()) => {}
                            // A send that lost the race with the connection's
                            // end: ordinary, not a handler bug.
                            Err(Error::ConnectionClosed) if !self.conn.is_open() => {
                                tracing::debug!(id = %self.conn.id(), "handler stopped: connection closed");
                            }
                            // The peer's data was not the JSON asked for: its
                            // fault, not ours.
                            #[cfg(feature = "json")]
                            Err(Error::InvalidJson(err)) => {
                                tracing::debug!(
                                    id = %self.conn.id(),
                                    error = %err,
                                    "invalid JSON from the peer; closing with 1007"
                                );
                                self.conn.shared.request_close(
                                    CloseCode::INVALID_PAYLOAD,
                                    "Invalid JSON".into(),
                                );
                            }
                            Err(err) => {
                                tracing::error!(
                                    id = %self.conn.id(),
                                    path = %self.conn.path(),
                                    error = %err,
                                    "handler failed; closing with 1011"
                                );
                                self.conn.shared.request_close(
                                    CloseCode::INTERNAL_ERROR,
                                    "Internal error".into(),
                                );
                            }
                        }
                    }
                }
            }
            match self.next_inbound() {
                Some(msg) => {
                    self.running = Some(self.events.message(self.conn, msg));
                    progress = true;
                }
                None => return progress,
            }
        }
    }

    fn ws(&mut self) -> Pin<&mut Ws> {
        Pin::new(self.ws.as_mut().expect("socket is open until Terminated"))
    }

    fn begin_close(&mut self, code: CloseCode, reason: String) {
        // The server decided to end: messages not yet handed to the handler
        // are dropped with the rest of the conversation.
        self.clear_inbox();
        self.close_at = self.clock.now().checked_add(self.limits.close_timeout);
        self.phase = Phase::ClosingByUs {
            code,
            reason,
            stage: CloseStage::Sending,
        };
    }

    /// Starts failing the connection because the peer broke the protocol.
    fn fail(&mut self, code: CloseCode, reason: String, err: &WsError) {
        tracing::debug!(id = %self.conn.id(), error = %err, code = %code, "peer broke the protocol");
        self.conn.shared.mark_failing();
        self.close_at = self.clock.now().checked_add(self.limits.close_timeout);
        self.phase = Phase::Failing {
            code,
            reason,
            stage: FailStage::Finishing,
        };
    }

    /// Closes the socket and publishes the outcome to `close()` callers.
    fn terminate(&mut self, end: End) {
        *self.ws = None;
        self.close_at = None;
        self.grace_at = self.clock.now().checked_add(self.limits.handler_grace);
        self.phase = Phase::Terminated;
        // `finish` drops whatever is still queued.
        self.queue_full = false;
        // Leave the registry before publishing the outcome: whoever has
        // seen the outcome must not find the connection still listed.
        self.conn.registry().remove(self.conn.id());
        let _ = self.conn.shared.finish(end.outcome);
        self.host.count_close(end.code, end.initiator, end.outcome);
        log_end(
            self.conn,
            &end,
            self.elapsed(),
            self.messages_in,
            self.messages_out,
        );
        self.end = Some(end);
    }

    /// The stream ended or failed while open: reported as 1006, nothing sent.
    fn abnormal(&mut self) {
        self.conn.shared.mark_closing();
        self.end_close(false, CloseOutcome::PeerGone);
    }

    /// Drops the socket without a Close frame (a dead peer, or the end of a
    /// shutdown's drain): reported as 1006 with `reason`.
    fn drop_socket(&mut self, reason: &str, outcome: CloseOutcome) {
        self.conn.shared.mark_closing();
        self.terminate(End {
            code: CloseCode::ABNORMAL,
            reason: reason.to_owned(),
            initiator: Initiator::Abnormal,
            clean: false,
            outcome,
        });
    }

    /// The server gave up on this connection (a graceful shutdown's drain
    /// deadline passed): the socket and any running handler are dropped.
    fn abort(&mut self) {
        self.running = None;
        self.clear_inbox();
        self.dropped |= !matches!(self.phase, Phase::Terminated);
        match self.phase {
            Phase::Terminated => {}
            Phase::Open => self.drop_socket("Dropped at shutdown", CloseOutcome::TimedOut),
            // The end was decided; only `close_notify` is left unsent.
            Phase::ClosingTransport(_) => self.finish_transport(),
            _ => {
                let end = self.close_record(false, CloseOutcome::TimedOut);
                self.terminate(end);
            }
        }
    }

    /// Once the socket is closed, drops the running handler (and the
    /// messages still waiting for it) when the handler grace has passed, so
    /// that a handler stuck on a channel cannot hold the connection. Returns
    /// whether it did.
    fn poll_grace(&mut self) -> bool {
        let expired = self.grace_at.is_some_and(|at| self.clock.now() >= at);
        if !expired || (self.running.is_none() && self.inbox.is_empty()) {
            return false;
        }
        tracing::warn!(
            id = %self.conn.id(),
            path = %self.conn.path(),
            grace_ms = self.limits.handler_grace.as_millis() as u64,
            unhandled = self.inbox.len(),
            "handler still running after the handler grace; dropping it"
        );
        self.running = None;
        self.clear_inbox();
        self.grace_at = None;
        self.host.count_abandoned();
        true
    }

    /// Checks the policy clocks (see [`Policies`]) and acts on the first
    /// that expired. Returns whether anything happened.
    fn poll_policies(&mut self, cx: &mut Context<'_>) -> bool {
        if !matches!(self.phase, Phase::Open) {
            return false;
        }
        let now = self.clock.now();
        self.queue_full = self.conn.shared.is_full();
        let newly_full = self.policies.queue_full(self.queue_full, now);
        if !(newly_full || self.policies.is_due(now)) {
            return self.policies.ping_due && self.poll_ping(cx);
        }
        if !self.inbox_has_room() {
            // Reading is paused for the handler (inbound backpressure): the
            // peer's pongs wait unread behind its messages, and a peer whose
            // messages fill the inbox is anything but idle or dead.
            self.policies.heard(now, true);
        }
        match self.policies.check(self.limits, self.started, now) {
            Some(Verdict::Close(code, reason)) => {
                tracing::debug!(id = %self.conn.id(), code = %code, reason, "policy closes the connection");
                self.conn.shared.request_close(code, reason.to_owned());
                if let Some((code, reason)) = self.conn.shared.take_close_request() {
                    self.begin_close(code, reason);
                }
                return true;
            }
            Some(Verdict::Dead) => {
                tracing::debug!(id = %self.conn.id(), "no answer to the heartbeat; dropping the socket");
                self.drop_socket("Heartbeat timeout", CloseOutcome::PeerGone);
                return true;
            }
            None => {}
        }
        self.policies.plan(self.limits, self.started);
        self.policies.ping_due && self.poll_ping(cx)
    }

    /// Sends the due heartbeat ping once the socket has room.
    fn poll_ping(&mut self, cx: &mut Context<'_>) -> bool {
        match self.ws().poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) | Poll::Pending => return false,
        }
        if self.ws().start_send(Frame::Ping(Bytes::new())).is_err() {
            return false;
        }
        self.policies.ping_due = false;
        self.unflushed = true;
        matches!(self.poll_flush(cx), Ok(true))
    }

    /// Writes queued messages and flushes. `Err` when the socket failed.
    fn poll_write_queue(&mut self, cx: &mut Context<'_>) -> std::result::Result<bool, ()> {
        let mut progress = false;
        loop {
            match self.ws().poll_ready(cx) {
                Poll::Pending => return Ok(progress),
                Poll::Ready(Err(_)) => return Err(()),
                Poll::Ready(Ok(())) => {}
            }
            let Some(msg) = self.conn.shared.pop() else {
                break;
            };
            if self.ws().start_send(msg.into_frame()).is_err() {
                return Err(());
            }
            // A slot is free now; while open, the policy check that follows
            // looks again.
            self.queue_full = false;
            self.messages_out += 1;
            self.unflushed = true;
            progress = true;
        }
        self.poll_flush(cx).map(|flushed| progress | flushed)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> std::result::Result<bool, ()> {
        if !self.unflushed {
            return Ok(false);
        }
        match self.ws().poll_flush(cx) {
            Poll::Pending => Ok(false),
            Poll::Ready(Ok(())) => {
                self.unflushed = false;
                Ok(true)
            }
            Poll::Ready(Err(_)) => Err(()),
        }
    }

    fn poll_open(&mut self, cx: &mut Context<'_>) -> bool {
        let Ok(mut progress) = self.poll_write_queue(cx) else {
            self.abnormal();
            return true;
        };
        // When the first frame of this poll was read: before anything is
        // answered (a pong), so a peer that has seen our answer knows its
        // frame was heard no later than that.
        let (mut heard, mut active): (Option<Instant>, bool) = (None, false);
        while !self.read_blocked && self.inbox_has_room() && self.spend() {
            // While our writes are blocked (the peer does not read), reading
            // waits too: each ping read would queue a pong in memory, so a
            // peer flooding pings without reading could grow it without
            // bound. Its frames wait in TCP buffers instead.
            match self.poll_flush(cx) {
                Ok(flushed) => progress |= flushed,
                Err(()) => {
                    self.abnormal();
                    return true;
                }
            }
            if self.unflushed {
                break;
            }
            match self.ws().poll_next(cx) {
                Poll::Pending => {
                    self.read_blocked = true;
                    break;
                }
                Poll::Ready(Some(Ok(frame))) => {
                    progress = true;
                    if heard.is_none() {
                        heard = Some(self.clock.now());
                    }
                    match frame {
                        Frame::Text(text) => {
                            active = true;
                            self.receive(Message::Text(Text(text)));
                        }
                        Frame::Binary(data) => {
                            active = true;
                            self.receive(Message::Binary(data));
                        }
                        // tungstenite queued the pong; the next turn of this
                        // loop flushes it.
                        Frame::Ping(_) => {
                            active = true;
                            self.unflushed = true;
                        }
                        Frame::Pong(_) | Frame::Frame(_) => {}
                        Frame::Close(frame) => {
                            self.conn.shared.mark_closing();
                            let (code, reason) = split_frame(frame);
                            self.close_at = self.clock.now().checked_add(self.limits.close_timeout);
                            self.phase = Phase::ClosedByPeer { code, reason };
                            // The echo is flushed by `poll_closed_by_peer`.
                            self.unflushed = true;
                            return true;
                        }
                    }
                    if self.running.is_none() && !self.inbox.is_empty() {
                        // The handler is idle: it takes this message at
                        // once, and its reply is written before the next
                        // read. Reading on first would mostly find nothing
                        // (a peer that waits for the reply has sent no
                        // more) and cost a failed read and a re-arm of the
                        // reactor per message.
                        break;
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    match classify(&err) {
                        Some((code, reason)) => self.fail(code, reason, &err),
                        None => self.abnormal(),
                    }
                    return true;
                }
                Poll::Ready(None) => {
                    self.abnormal();
                    return true;
                }
            }
        }
        if let Some(at) = heard {
            self.policies.heard(at, active);
        }
        progress
    }

    fn receive(&mut self, msg: Message) {
        self.messages_in += 1;
        self.inbox_bytes += msg.len();
        self.inbox.push_back(msg);
    }

    /// Whether another message may be read while the handler is busy.
    fn inbox_has_room(&self) -> bool {
        self.inbox.len() < self.limits.inbound_queue && self.inbox_bytes < self.limits.inbound_bytes
    }

    fn next_inbound(&mut self) -> Option<Message> {
        let msg = self.inbox.pop_front()?;
        self.inbox_bytes -= msg.len();
        Some(msg)
    }

    /// Drops messages not yet handed to the handler.
    fn clear_inbox(&mut self) {
        self.inbox.clear();
        self.inbox_bytes = 0;
    }

    fn poll_closing_by_us(&mut self, cx: &mut Context<'_>) -> bool {
        let Phase::ClosingByUs { stage, .. } = self.phase else {
            return false;
        };
        let mut progress = false;
        match stage {
            CloseStage::Sending => match self.poll_send_close(cx) {
                Err(()) => return self.closing_failed(CloseOutcome::PeerGone),
                Ok(false) => {}
                Ok(true) => {
                    self.set_close_stage(CloseStage::Awaiting);
                    progress = true;
                }
            },
            CloseStage::Awaiting => {}
            CloseStage::Acknowledged => {
                return match self.poll_flush(cx) {
                    // Both Close frames exchanged and ours is out: the server
                    // closes TCP first.
                    Ok(true) => self.end_close(true, CloseOutcome::Clean),
                    Ok(false) => self.poll_deadline(cx),
                    Err(()) => self.closing_failed(CloseOutcome::PeerGone),
                };
            }
        }
        match self.poll_flush(cx) {
            Err(()) => return self.closing_failed(CloseOutcome::PeerGone),
            Ok(p) => progress |= p,
        }
        while !self.read_blocked && self.spend() {
            match self.ws().poll_next(cx) {
                Poll::Pending => {
                    self.read_blocked = true;
                    break;
                }
                Poll::Ready(Some(Ok(Frame::Close(frame)))) => {
                    if let Phase::ClosingByUs {
                        stage: CloseStage::Awaiting,
                        ..
                    } = self.phase
                    {
                        // The peer answered. tungstenite now only writes out
                        // what it holds (our Close, and what preceded it when
                        // the peer did not read), then reports the stream
                        // closed, which its `poll_flush` maps to `Ok`: one
                        // more flush tells when all of it is out.
                        self.set_close_stage(CloseStage::Acknowledged);
                    } else {
                        // The peer's Close arrived while our queue was still
                        // flushing: the peer closed first; tungstenite echoes it.
                        let (code, reason) = split_frame(frame);
                        self.phase = Phase::ClosedByPeer { code, reason };
                    }
                    self.unflushed = true;
                    return true;
                }
                // Data after our Close is discarded (RFC 6455 section 1.4).
                Poll::Ready(Some(Ok(_))) => progress = true,
                Poll::Ready(Some(Err(_)) | None) => {
                    return self.closing_failed(CloseOutcome::PeerGone);
                }
            }
        }
        progress | self.poll_deadline(cx)
    }

    fn set_close_stage(&mut self, next: CloseStage) {
        if let Phase::ClosingByUs { stage, .. } = &mut self.phase {
            *stage = next;
        }
    }

    /// Writes what is queued, then our one Close frame. `Ok(true)` once the
    /// Close frame is handed to tungstenite; `Err` when the socket failed.
    fn poll_send_close(&mut self, cx: &mut Context<'_>) -> std::result::Result<bool, ()> {
        self.poll_write_queue(cx)?;
        if self.conn.shared.has_queued() {
            return Ok(false);
        }
        match self.ws().poll_ready(cx) {
            Poll::Pending => return Ok(false),
            Poll::Ready(Err(_)) => return Err(()),
            Poll::Ready(Ok(())) => {}
        }
        let frame = match &self.phase {
            Phase::ClosingByUs { code, reason, .. } | Phase::Failing { code, reason, .. } => {
                close_frame(*code, reason)
            }
            _ => return Ok(false),
        };
        self.ws()
            .start_send(Frame::Close(Some(frame)))
            .map_err(drop)?;
        self.unflushed = true;
        Ok(true)
    }

    /// Ends the close in progress with its code and reason; the phase says
    /// who started it. Over TLS the transport's close follows
    /// ([`Phase::ClosingTransport`]); over TCP the socket is closed now.
    /// Returns `true` (progress) for the poll loop.
    fn end_close(&mut self, clean: bool, outcome: CloseOutcome) -> bool {
        if let Phase::ClosingTransport(_) = self.phase {
            // Already decided: the transport's close is cut short.
            self.finish_transport();
            return true;
        }
        let end = self.close_record(clean, outcome);
        if self.ws.as_ref().is_some_and(|ws| ws.get_ref().is_tls()) {
            if self.close_at.is_none() {
                // The stream ended while open: no close deadline yet.
                self.close_at = Instant::now().checked_add(self.limits.close_timeout);
            }
            self.phase = Phase::ClosingTransport(end);
        } else {
            self.terminate(end);
        }
        true
    }

    /// The record of the close in progress, ending now with `outcome`.
    fn close_record(&mut self, clean: bool, outcome: CloseOutcome) -> End {
        let (code, reason, initiator) = match &mut self.phase {
            Phase::ClosingByUs { code, reason, .. } | Phase::Failing { code, reason, .. } => {
                (*code, std::mem::take(reason), Initiator::Server)
            }
            Phase::ClosedByPeer { code, reason } => {
                (*code, std::mem::take(reason), Initiator::Client)
            }
            Phase::Open | Phase::ClosingTransport(_) | Phase::Terminated => {
                (CloseCode::ABNORMAL, String::new(), Initiator::Abnormal)
            }
        };
        End {
            code,
            reason,
            initiator,
            clean,
            outcome,
        }
    }

    /// Writes TLS `close_notify` and shuts the write half; then (or at the
    /// close deadline, or on a write error) closes the socket with the end
    /// already decided.
    fn poll_closing_transport(&mut self, cx: &mut Context<'_>) -> bool {
        let ws = self.ws.as_mut().expect("socket is open until Terminated");
        match Pin::new(ws.get_mut()).poll_close(cx) {
            Poll::Ready(result) => {
                if let Err(err) = result {
                    tracing::debug!(id = %self.conn.id(), error = %err, "TLS close_notify not sent");
                }
                self.finish_transport();
                true
            }
            Poll::Pending => {
                let expired = self.close_at.is_some_and(|at| Instant::now() >= at);
                if expired {
                    tracing::debug!(id = %self.conn.id(), "TLS close_notify not flushed by the close deadline");
                    self.finish_transport();
                }
                expired
            }
        }
    }

    /// Leaves [`Phase::ClosingTransport`] for `Terminated` with its end.
    fn finish_transport(&mut self) {
        if let Phase::ClosingTransport(end) = std::mem::replace(&mut self.phase, Phase::Terminated)
        {
            self.terminate(end);
        }
    }

    /// Ends a close that did not complete.
    fn closing_failed(&mut self, outcome: CloseOutcome) -> bool {
        self.end_close(false, outcome)
    }

    /// True (and the connection ended) when the close deadline has passed.
    fn poll_deadline(&mut self, _cx: &mut Context<'_>) -> bool {
        let expired = self.close_at.is_some_and(|at| self.clock.now() >= at);
        expired && self.closing_failed(CloseOutcome::TimedOut)
    }

    /// Registers the earliest deadline this connection waits for (its close
    /// timeout, or its policy clocks while open) with the host's deadlines,
    /// when it changed.
    fn sync_deadline(&mut self, waker: &Waker) {
        let wanted = match self.phase {
            Phase::Open => self.policies.deadline(),
            Phase::Terminated => self.grace_at,
            _ => self.close_at,
        };
        let current = self
            .registered
            .as_ref()
            .map(|(at, w)| (*at, w.will_wake(waker)));
        match (wanted, current) {
            (Some(at), Some((registered, true))) if at == registered => {}
            (Some(at), current) => {
                let previous = current.map(|(registered, _)| registered);
                self.host.set_deadline(self.timer_key, previous, at, waker);
                self.registered = Some((at, waker.clone()));
            }
            (None, Some((registered, _))) => {
                self.host.cancel_deadline(self.timer_key, registered);
                self.registered = None;
            }
            (None, None) => {}
        }
    }

    fn poll_closed_by_peer(&mut self, cx: &mut Context<'_>) -> bool {
        match self.poll_flush(cx) {
            // The echo is out: the server closes TCP first.
            Ok(true) => self.end_close(true, CloseOutcome::Clean),
            Ok(false) => self.poll_deadline(cx),
            Err(()) => self.closing_failed(CloseOutcome::PeerGone),
        }
    }

    fn poll_failing(&mut self, cx: &mut Context<'_>) -> bool {
        let Phase::Failing { stage, .. } = self.phase else {
            return false;
        };
        let mut progress = false;
        match stage {
            FailStage::Finishing => {
                // Replies of the handlers still running go out before our Close.
                match self.poll_write_queue(cx) {
                    Err(()) => return self.closing_failed(CloseOutcome::PeerGone),
                    Ok(p) => progress |= p,
                }
                // A handler that itself calls `close()` now waits for the
                // outcome: stop finishing and send the Close (with our code).
                let close_requested = self.conn.shared.take_close_request().is_some();
                if !close_requested && (self.running.is_some() || !self.inbox.is_empty()) {
                    return progress | self.poll_deadline(cx);
                }
                self.clear_inbox();
                self.conn.shared.mark_closing();
                self.set_fail_stage(FailStage::Sending);
                true
            }
            FailStage::Sending => match self.poll_send_close(cx) {
                Err(()) => self.closing_failed(CloseOutcome::PeerGone),
                Ok(true) => {
                    self.set_fail_stage(FailStage::Shutting);
                    true
                }
                Ok(false) => self.poll_deadline(cx),
            },
            FailStage::Shutting => {
                if self.unflushed {
                    match self.poll_flush(cx) {
                        Ok(false) => return self.poll_deadline(cx),
                        Ok(true) => progress = true,
                        Err(()) => return self.closing_failed(CloseOutcome::PeerGone),
                    }
                }
                let ws = self.ws.as_mut().expect("socket is open until Terminated");
                match Pin::new(ws.get_mut()).poll_close(cx) {
                    Poll::Pending => progress | self.poll_deadline(cx),
                    // A write half that cannot be shut (the peer is gone)
                    // shows as EOF or an error in the drain.
                    Poll::Ready(_) => {
                        self.set_fail_stage(FailStage::Draining);
                        true
                    }
                }
            }
            FailStage::Draining => {
                let mut scratch = [0u8; 512];
                while self.spend() {
                    let ws = self.ws.as_mut().expect("socket is open until Terminated");
                    match Pin::new(ws.get_mut()).poll_read(cx, &mut scratch) {
                        Poll::Pending => break,
                        Poll::Ready(Ok(0) | Err(_)) => {
                            return self.closing_failed(CloseOutcome::PeerGone)
                        }
                        Poll::Ready(Ok(_)) => progress = true,
                    }
                }
                progress | self.poll_deadline(cx)
            }
        }
    }

    fn set_fail_stage(&mut self, next: FailStage) {
        if let Phase::Failing { stage, .. } = &mut self.phase {
            *stage = next;
        }
    }
}

/// The Close code and reason for an error reading from the peer, or `None`
/// when the stream simply ended or failed (reported as 1006, nothing sent).
/// A protocol violation's reason names it (tungstenite's description, cut to
/// fit), which is what a client developer needs to find the bug.
fn classify(err: &WsError) -> Option<(CloseCode, String)> {
    match err {
        WsError::Utf8(_) => Some((CloseCode::INVALID_PAYLOAD, "Invalid UTF-8".into())),
        WsError::Capacity(_) => Some((CloseCode::MESSAGE_TOO_BIG, "Message too big".into())),
        WsError::Protocol(
            ProtocolError::ResetWithoutClosingHandshake | ProtocolError::SendAfterClosing,
        )
        | WsError::Io(_)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed => None,
        WsError::Protocol(violation) => {
            let reason = violation.to_string();
            Some((
                CloseCode::PROTOCOL_ERROR,
                truncate_reason(&reason).to_owned(),
            ))
        }
        _ => Some((CloseCode::PROTOCOL_ERROR, "Protocol error".into())),
    }
}

fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    CloseFrame {
        code: coding::CloseCode::from(code.as_u16()),
        reason: reason.into(),
    }
}

/// The code and reason of a peer's Close frame; 1005 for one without a code.
fn split_frame(frame: Option<CloseFrame>) -> (CloseCode, String) {
    match frame {
        Some(frame) => (
            CloseCode::from(u16::from(frame.code)),
            frame.reason.as_str().to_owned(),
        ),
        None => (CloseCode::NO_STATUS, String::new()),
    }
}

/// The one structured event per connection end.
fn log_end(conn: &Conn, end: &End, duration: Duration, messages_in: u64, messages_out: u64) {
    macro_rules! event {
        ($level:ident) => {
            tracing::$level!(
                id = %conn.id(),
                peer = %conn.peer_addr(),
                path = %conn.path(),
                code = end.code.as_u16(),
                reason = %end.reason,
                initiator = %end.initiator,
                clean = end.clean,
                outcome = %end.outcome,
                duration_ms = duration.as_millis() as u64,
                messages_in,
                messages_out,
                "connection closed"
            )
        };
    }
    if end.clean {
        event!(info);
    } else {
        event!(warn);
    }
}
