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
///
/// # Examples
///
/// ```
/// use wharf::Error;
///
/// let err = Error::handler("the database is down");
/// assert_eq!(err.to_string(), "handler error: the database is down");
/// assert!(matches!(Error::InvalidCloseCode(1006), Error::InvalidCloseCode(1006)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The connection is closing or closed: nothing more can be sent on it.
    /// The connection is not usable; the close handler runs (or has run).
    ConnectionClosed,
    /// The send queue is full (only from the non-waiting `try_send`). The
    /// connection is still usable; the message was not queued.
    QueueFull,
    /// `close` was given a code that may not be sent on the wire (1004-1006,
    /// 1015, below 1000, 1016-2999, 5000 and above). Nothing was sent; the
    /// connection is still open.
    InvalidCloseCode(u16),
    /// A setting of the server cannot work, or two routes claim one path.
    /// Returned by [`Server::bind`](crate::Server::bind) before anything is
    /// bound.
    Config {
        /// The setting, as its setter on [`Server`](crate::Server) is named
        /// (`"send_queue"`, `"upgrade_timeout"`, ...), or `"route"` for a
        /// problem with the routes.
        setting: &'static str,
        /// What is wrong with it and what would work.
        reason: String,
    },
    /// A message was not the JSON a handler asked for (only with the `json`
    /// feature): the peer's data, not a bug in the server. A handler that
    /// returns it closes the connection with 1007 "Invalid JSON"; to answer
    /// in another way, match on the result of
    /// [`Message::json`](crate::Message::json) instead of using `?`.
    #[cfg(feature = "json")]
    InvalidJson(JsonError),
    /// A group name was refused by [`Conn::join`](crate::Conn::join) or a
    /// [`Selector`](crate::Selector): it is empty, longer than
    /// [`MAX_GROUP_NAME_BYTES`](crate::MAX_GROUP_NAME_BYTES) bytes, or
    /// holds a control character. The text says which. Nothing changed;
    /// the connection is still usable.
    InvalidGroup(&'static str),
    /// The connection is already in
    /// [`MAX_GROUPS_PER_CONNECTION`](crate::MAX_GROUPS_PER_CONNECTION)
    /// groups: [`Conn::join`](crate::Conn::join) refused one more. Nothing
    /// changed; the connection is still usable.
    TooManyGroups,
    /// The cluster's Redis could not be used (only with the `cluster`
    /// feature): unreachable or refusing at
    /// [`Server::bind`](crate::Server::bind), or the link is down when a
    /// [`Selector::count`](crate::Selector::count) needs it. The text never
    /// holds the URL's credentials. Connections are not affected.
    #[cfg(feature = "cluster")]
    Cluster(String),
    /// An I/O error from the listener (binding or accepting).
    Io(io::Error),
    /// An upgrade handler asked for a `101` header that cannot be sent:
    /// its name or value is not valid HTTP, or it is one Wharf writes
    /// itself (see [`Request::response_header`](crate::Request::response_header)).
    /// Nothing was added; the request is still usable.
    InvalidHeader(String),
    /// An upgrade handler selected a subprotocol the client did not offer
    /// (see [`Request::select_subprotocol`](crate::Request::select_subprotocol)).
    /// The choice did not change; the request is still usable.
    SubprotocolNotOffered(String),
    /// An error raised by a handler; the connection is closed with 1011.
    Handler(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    /// Wraps any error raised by application code.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn load(conn: &wharf::Conn) -> wharf::Result<()> {
    ///     let user = conn.query("user").ok_or_else(|| wharf::Error::handler("no user"))?;
    ///     conn.send(format!("hello {user}")).await
    /// }
    /// ```
    pub fn handler(err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Error::Handler(err.into())
    }

    /// A configuration error for `setting`.
    pub(crate) fn config(setting: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            setting,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ConnectionClosed => f.write_str("the connection is closed"),
            Error::QueueFull => f.write_str("the connection's send queue is full"),
            Error::InvalidCloseCode(code) => {
                write!(
                    f,
                    "close code {code} may not be sent (use 1000-1003, 1007-1014 or 3000-4999)"
                )
            }
            Error::Config { setting, reason } => {
                write!(f, "invalid server configuration: `{setting}`: {reason}")
            }
            #[cfg(feature = "json")]
            Error::InvalidJson(err) => write!(f, "invalid JSON message: {err}"),
            Error::InvalidGroup(why) => write!(f, "invalid group name: {why}"),
            // 64 is `MAX_GROUPS_PER_CONNECTION` (a test in registry.rs
            // keeps the two equal; this leaf module names no folder).
            Error::TooManyGroups => {
                f.write_str("the connection is already in 64 groups, the most allowed")
            }
            #[cfg(feature = "cluster")]
            Error::Cluster(why) => write!(f, "cluster: {why}"),
            Error::Io(err) => write!(f, "i/o error: {err}"),
            Error::InvalidHeader(why) => write!(f, "invalid 101 header: {why}"),
            Error::SubprotocolNotOffered(protocol) => {
                write!(f, "subprotocol {protocol:?} was not offered by the client")
            }
            Error::Handler(err) => write!(f, "handler error: {err}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(err) => Some(err),
            Error::Handler(err) => Some(&**err),
            #[cfg(feature = "json")]
            Error::InvalidJson(err) => Some(err),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::Io(err)
    }
}

#[cfg(feature = "json")]
pub use json::JsonError;

#[cfg(feature = "json")]
mod json {
    use std::fmt;

    /// Why a message was not the JSON asked for: its position and kind.
    /// Returned (inside [`Error::InvalidJson`](crate::Error::InvalidJson)) by
    /// [`Message::json`](crate::Message::json).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = wharf::Message::text("{\"n\": oops}").json::<serde_json::Value>().unwrap_err();
    /// let wharf::Error::InvalidJson(err) = err else { unreachable!() };
    /// assert_eq!((err.line(), err.column()), (1, 7));
    /// assert!(err.is_syntax());
    /// ```
    #[derive(Debug)]
    pub struct JsonError(pub(crate) serde_json::Error);

    impl JsonError {
        /// The line (from 1) where the problem was found.
        ///
        /// # Examples
        ///
        /// ```
        /// let wharf::Error::InvalidJson(err) = wharf::Message::text("{\n  oops").json::<serde_json::Value>().unwrap_err() else { unreachable!() };
        /// assert_eq!(err.line(), 2);
        /// ```
        pub fn line(&self) -> usize {
            self.0.line()
        }

        /// The column (from 1) where the problem was found.
        ///
        /// # Examples
        ///
        /// ```
        /// let wharf::Error::InvalidJson(err) = wharf::Message::text("[1, x]").json::<Vec<u8>>().unwrap_err() else { unreachable!() };
        /// assert_eq!(err.column(), 5);
        /// ```
        pub fn column(&self) -> usize {
            self.0.column()
        }

        /// The message is not JSON at all (or is cut short).
        ///
        /// # Examples
        ///
        /// ```
        /// let wharf::Error::InvalidJson(err) = wharf::Message::text("{").json::<serde_json::Value>().unwrap_err() else { unreachable!() };
        /// assert!(err.is_syntax());
        /// ```
        pub fn is_syntax(&self) -> bool {
            self.0.is_syntax() || self.0.is_eof()
        }

        /// The message is JSON, but not of the type asked for (a missing
        /// field, a string where a number belongs, ...).
        ///
        /// # Examples
        ///
        /// ```
        /// let wharf::Error::InvalidJson(err) = wharf::Message::text("\"text\"").json::<u32>().unwrap_err() else { unreachable!() };
        /// assert!(err.is_data());
        /// ```
        pub fn is_data(&self) -> bool {
            self.0.is_data()
        }
    }

    impl fmt::Display for JsonError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Display::fmt(&self.0, f)
        }
    }

    impl std::error::Error for JsonError {}
}
