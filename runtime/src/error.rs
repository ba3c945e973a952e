//! The crate's one error type.
//!
//! Every variant says what happened and whether the connection it came from
//! is still usable. A normal close is not an error: `close()` returns
//! `Ok(CloseOutcome)` whatever the peer did.

use std::fmt;
use std::io;

/// `Result` with Wharf's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The connection is closing or closed: nothing more can be sent on it.
    /// The connection is not usable; the close handler runs (or has run).
    Closed,
    /// The send queue is full (only from the non-waiting `try_send`). The
    /// connection is still usable; the message was not queued.
    QueueFull,
    /// `close` was given a code that may not be sent on the wire (1004-1006,
    /// 1015, below 1000, 1016-2999, 5000 and above). Nothing was sent; the
    /// connection is still open.
    InvalidCloseCode(u16),
    /// The server's configuration is inconsistent (for example two routes for
    /// one path). Returned by [`Server::bind`](crate::Server::bind).
    Config(String),
    /// An I/O error from the listener (binding or accepting).
    Io(io::Error),
    /// An error raised by a handler; the connection is closed with 1011.
    Handler(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    /// Wraps any error raised by application code.
    pub fn handler(err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Error::Handler(err.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Closed => f.write_str("the connection is closed"),
            Error::QueueFull => f.write_str("the connection's send queue is full"),
            Error::InvalidCloseCode(code) => {
                write!(
                    f,
                    "close code {code} may not be sent (use 1000-1003, 1007-1014 or 3000-4999)"
                )
            }
            Error::Config(why) => write!(f, "invalid server configuration: {why}"),
            Error::Io(err) => write!(f, "i/o error: {err}"),
            Error::Handler(err) => write!(f, "handler error: {err}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(err) => Some(err),
            Error::Handler(err) => Some(&**err),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::Io(err)
    }
}
