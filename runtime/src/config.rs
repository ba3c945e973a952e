//! Server settings and their documented defaults.
//!
//! Plain data: reading and validating settings lives here, acting on them
//! lives in the modules that own the behaviour (`http.rs`, `driver.rs`).

use std::time::Duration;

use crate::error::{Error, Result};

/// Limits and timeouts of a [`Server`](crate::Server).
///
/// Every field has a default chosen for a production server facing the open
/// internet; change them with the setters on [`Server`](crate::Server) or by
/// building a `Config` and passing it to [`Server::config`](crate::Server::config).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let config = wharf::Config::default();
/// assert_eq!(config.close_timeout, Duration::from_secs(5));
///
/// let server = wharf::Server::new().close_timeout(Duration::from_secs(2));
/// # drop(server);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Time a client has, from the TCP accept, to send its whole HTTP upgrade
    /// request; after it the socket is dropped without a response.
    /// Default: 10 s.
    pub handshake_timeout: Duration,
    /// Time the peer has to answer the server's Close frame (including the
    /// time to flush messages queued before the close); after it the socket
    /// is shut down and `close()` returns
    /// [`CloseOutcome::TimedOut`](crate::CloseOutcome::TimedOut).
    /// Also bounds the time to flush the echo of a peer's Close and the
    /// drain after a protocol error. Default: 5 s.
    pub close_timeout: Duration,
    /// Largest message accepted from a peer, in bytes, after reassembling
    /// fragments; a bigger one closes the connection with 1009.
    /// Default: 16 MiB.
    pub max_message_size: usize,
    /// Largest single frame payload accepted from a peer, in bytes; a bigger
    /// one closes the connection with 1009. Default: 16 MiB.
    pub max_frame_size: usize,
    /// Largest HTTP upgrade request head (request line and headers), in
    /// bytes; a bigger one is answered with 431. Default: 8 KiB.
    pub max_request_bytes: usize,
    /// Messages that may wait in a connection's send queue. `send` waits for
    /// room when it is full, `try_send` fails with
    /// [`Error::QueueFull`](crate::Error::QueueFull). Default: 64.
    pub send_queue: usize,
    /// Received messages that may wait while the message handler is busy.
    /// When this many are waiting, or their payloads add up to
    /// `max_message_size` bytes, the server stops reading from that
    /// connection (TCP backpressure) until the handler catches up; so one
    /// connection's inbound memory stays under about twice
    /// `max_message_size`. While reading is paused, the peer's pings and
    /// Close wait too; a `close()` from the server drops the waiting messages
    /// and resumes reading to complete its handshake. Default: 16.
    pub inbound_queue: usize,
    /// Bytes read from the socket at a time into each connection's read
    /// buffer, which is allocated for the life of the connection.
    /// Default: 4 KiB (tungstenite's own default of 128 KiB costs that much
    /// memory for every idle connection).
    pub read_buffer_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            max_request_bytes: 8 << 10,
            send_queue: 64,
            inbound_queue: 16,
            read_buffer_size: 4 << 10,
        }
    }
}

impl Config {
    /// Rejects settings that cannot work.
    pub(crate) fn validate(&self) -> Result<()> {
        let fail = |why: &str| Err(Error::Config(why.to_owned()));
        if self.send_queue == 0 {
            return fail("send_queue must be at least 1");
        }
        if self.inbound_queue == 0 {
            return fail("inbound_queue must be at least 1");
        }
        if self.read_buffer_size == 0 {
            return fail("read_buffer_size must be at least 1");
        }
        if self.max_request_bytes < 256 {
            return fail("max_request_bytes must be at least 256");
        }
        if self.close_timeout.is_zero() || self.handshake_timeout.is_zero() {
            return fail("timeouts must be longer than zero");
        }
        Ok(())
    }
}
