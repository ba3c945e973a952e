//! Close codes, close reasons and the record of how a connection ended.
//!
//! This module owns the rules of RFC 6455 section 7.4 about which codes may
//! be sent and how long a reason may be. It never touches a socket: the
//! handshake itself is run by the connection driver (`driver.rs`).

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

/// The longest close reason in bytes: a control frame carries at most 125
/// bytes of payload, two of which are the code.
pub const MAX_REASON_BYTES: usize = 123;

/// A WebSocket close status code (RFC 6455 section 7.4).
///
/// Any `u16` can be held, because the close handler also reports codes that
/// are never sent ([`NO_STATUS`](Self::NO_STATUS) when the peer's Close had no
/// code, [`ABNORMAL`](Self::ABNORMAL) when the TCP stream ended without one).
/// [`Handle::close`](crate::Handle::close) refuses codes that may not be sent; see
/// [`is_sendable`](Self::is_sendable).
///
/// # Examples
///
/// ```
/// use wharf::CloseCode;
///
/// assert!(CloseCode::POLICY_VIOLATION.is_sendable());
/// assert!(CloseCode::from(4000).is_sendable());
/// assert!(!CloseCode::ABNORMAL.is_sendable());
/// assert_eq!(u16::from(CloseCode::NORMAL), 1000);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the endpoint received a type of data it cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: reported when the peer's Close frame carried no code. Never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reported when the connection ended without a Close frame. Never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data was inconsistent with its type (bad UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message or the peer violated the server's policy (auth,
    /// expired session).
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition (a handler failed).
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (temporary overload).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway or proxy received an invalid upstream response.
    ///
    /// Wharf sends it, but a 1014 *received* from a peer is answered with
    /// 1002 by tungstenite 0.30, which does not know the code
    /// (snapview/tungstenite-rs#502).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// The numeric value.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wharf::CloseCode::POLICY_VIOLATION.as_u16(), 1008);
    /// ```
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether this code may be put in a Close frame: 1000-1003, 1007-1014,
    /// and the registered (3000-3999) and private (4000-4999) ranges.
    ///
    /// # Examples
    ///
    /// ```
    /// use wharf::CloseCode;
    ///
    /// assert!(CloseCode::from(4001).is_sendable());
    /// assert!(!CloseCode::NO_STATUS.is_sendable()); // 1005 is only ever reported
    /// ```
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

/// Checks a code a user asked to send and fits the reason into a frame.
///
/// A reason longer than [`MAX_REASON_BYTES`] is cut at the last UTF-8
/// character boundary that fits rather than refused: the close is what the
/// caller needs to happen (a revoked token must end the session), the reason
/// is only a hint for the peer. The cut is logged at debug level.
pub(crate) fn validate(code: CloseCode, reason: &str) -> Result<(CloseCode, String)> {
    if !code.is_sendable() {
        return Err(Error::InvalidCloseCode(code.0));
    }
    Ok((code, truncate_reason(reason).to_owned()))
}

/// The longest prefix of `reason` that fits in a Close frame, cut on a
/// character boundary.
pub(crate) fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    tracing::debug!(
        len = reason.len(),
        kept = end,
        "close reason longer than 123 bytes was truncated"
    );
    &reason[..end]
}

/// Who started the end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Initiator {
    /// The server sent the first Close frame: an application `close()`, a
    /// failed handler (1011), or a protocol violation by the peer (1002,
    /// 1007, 1009).
    Server,
    /// The peer sent the first Close frame; the server echoed its code, or
    /// answered 1002 when that code may not be sent (1005, 1006, 1015,
    /// below 1000, 1016-2999, 5000 and above; the record then says 1002).
    Client,
    /// The TCP stream ended or failed without a Close frame (reported as
    /// 1006).
    Abnormal,
}

impl fmt::Display for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Initiator::Server => "server",
            Initiator::Client => "client",
            Initiator::Abnormal => "abnormal",
        })
    }
}

/// What a call to `close()` achieved. Every caller of `close()` on one
/// connection gets the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseOutcome {
    /// Both Close frames were exchanged and the server closed the TCP stream.
    /// Also returned when the peer closed first and the handshake completed.
    Clean,
    /// The peer did not answer the server's Close within the close timeout;
    /// the socket was shut down anyway.
    TimedOut,
    /// The TCP stream failed or ended before the handshake could complete,
    /// or the peer broke the protocol while it was being closed.
    PeerGone,
}

impl fmt::Display for CloseOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseOutcome::Clean => "clean",
            CloseOutcome::TimedOut => "timed_out",
            CloseOutcome::PeerGone => "peer_gone",
        })
    }
}

/// How a connection ended, as handed to the close handler.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Closed {
    /// The code of the Close frame that started the end (the server's own, or
    /// the peer's that was echoed); 1005 when the peer's Close had no code,
    /// 1006 when the stream ended without a Close.
    pub code: CloseCode,
    /// The reason that went with `code` (empty when there was none).
    pub reason: String,
    /// Who started the end.
    pub initiator: Initiator,
    /// True when both Close frames were exchanged before the TCP stream was
    /// closed. Always false for a connection the server *failed* because the
    /// peer broke the protocol (1002, 1007, 1009): after such an error the
    /// frame stream cannot be trusted, so the server sends its Close, shuts
    /// its write half and discards input until EOF instead of parsing the
    /// peer's reply.
    pub clean: bool,
    /// The outcome every `close()` caller got.
    pub outcome: CloseOutcome,
    /// Time from the upgrade to the end of the TCP stream.
    pub duration: Duration,
    /// Data messages received from the peer.
    pub messages_in: u64,
    /// Data messages written to the peer.
    pub messages_out: u64,
}

/// How a batch of connections ended: the result of closing many at once
/// ([`Selector::close`](crate::Selector::close),
/// [`Registry::close_all`](crate::Registry::close_all)) and of a graceful
/// shutdown ([`Listening::run`](crate::Listening::run)). With a cluster,
/// a selector's close adds up the answers of every node that had members,
/// and [`unanswered`](Self::unanswered) says how many did not answer.
///
/// # Examples
///
/// ```
/// async fn restart(registry: wharf::Registry) -> wharf::Result<()> {
///     let summary = registry.close_all(wharf::CloseCode::SERVICE_RESTART, "Back soon").await?;
///     tracing::info!(
///         clean = summary.clean,
///         timed_out = summary.timed_out,
///         peer_gone = summary.peer_gone,
///         took_ms = summary.duration.as_millis() as u64,
///         "closed {} connections",
///         summary.total()
///     );
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseSummary {
    /// Closing handshakes that completed ([`CloseOutcome::Clean`]).
    pub clean: usize,
    /// Peers that did not answer within the close timeout
    /// ([`CloseOutcome::TimedOut`]).
    pub timed_out: usize,
    /// Peers whose stream failed before the handshake completed
    /// ([`CloseOutcome::PeerGone`]).
    pub peer_gone: usize,
    /// Connections the server gave up on before their handshake finished:
    /// still open at a graceful shutdown's drain deadline. Always 0 for
    /// `close_all`, whose closes are each bounded by the close timeout.
    pub dropped: usize,
    /// Nodes of the cluster that had members when the close began but
    /// did not answer within the deadline (the requester's close timeout
    /// plus one second): their members may or may not have been closed,
    /// and are not in the counts above. Always 0 without a cluster, for a
    /// graceful shutdown, and while the cluster link is down (the close
    /// then reaches this node's members only; see
    /// [`ClusterStats::up`](crate::ClusterStats::up)).
    pub unanswered: usize,
    /// How long it took, from the first Close requested to the last end.
    pub duration: Duration,
}

impl CloseSummary {
    /// Every connection counted.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wharf::CloseSummary::default().total(), 0);
    /// ```
    pub fn total(&self) -> usize {
        self.clean + self.timed_out + self.peer_gone + self.dropped
    }

    /// Adds another batch's counts (another node's answer) to these; the
    /// duration stays this one's.
    pub(crate) fn add(&mut self, other: &CloseSummary) {
        self.clean += other.clean;
        self.timed_out += other.timed_out;
        self.peer_gone += other.peer_gone;
        self.dropped += other.dropped;
        self.unanswered += other.unanswered;
    }

    /// Counts one connection that ended with `outcome`.
    pub(crate) fn count(&mut self, outcome: CloseOutcome) {
        match outcome {
            CloseOutcome::Clean => self.clean += 1,
            CloseOutcome::TimedOut => self.timed_out += 1,
            CloseOutcome::PeerGone => self.peer_gone += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_codes_match_rfc_6455() {
        for code in 0..=u16::MAX {
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode(code).is_sendable(), expected, "code {code}");
        }
    }

    #[test]
    fn unsendable_codes_are_refused() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert!(matches!(
                validate(CloseCode(code), ""),
                Err(Error::InvalidCloseCode(c)) if c == code
            ));
        }
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let exact = "a".repeat(123);
        assert_eq!(truncate_reason(&exact), exact);
        let long = "a".repeat(124);
        assert_eq!(truncate_reason(&long).len(), 123);
        // 122 ASCII bytes then a 2-byte char straddling the limit.
        let straddle = format!("{}é", "a".repeat(122));
        assert_eq!(truncate_reason(&straddle), "a".repeat(122));
        // 4-byte chars: 30 of them is 120 bytes, the 31st would end at 124.
        let emoji = "🦀".repeat(40);
        assert_eq!(truncate_reason(&emoji), "🦀".repeat(30));
    }
}
