//! What annotated handlers may return, turned into the runtime's terms: a
//! connect or close outcome, a message handler's reply, an upgrade verdict.
//! The `#[on]` attribute's generated code calls these; the
//! `#[diagnostic::on_unimplemented]` notes are what a user with a wrong
//! return type reads.

use crate::connection::conn::Conn;
use crate::connection::message::{Bytes, Message, Text};
use crate::error::{Error, Result};
use crate::http::Rejection;

/// What a `connect` or `close` handler may return: `()` or
/// `Result<(), E>` with `E: Into<wharf::Error>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a wharf `connect` or `close` handler",
    label = "this return type",
    note = "return `()` or `Result<(), E>` where `E: Into<wharf::Error>` (for example `wharf::Result<()>`)"
)]
pub trait Outcome {
    /// The outcome in the runtime's terms.
    fn into_result(self) -> Result<()>;
}

impl Outcome for () {
    fn into_result(self) -> Result<()> {
        Ok(())
    }
}

impl<E: Into<Error>> Outcome for Result<(), E> {
    fn into_result(self) -> Result<()> {
        self.map_err(Into::into)
    }
}

/// What a `message` handler may return: nothing (`()`), a reply sent back on
/// the same connection (`Message`, `String`, `&'static str`, `Vec<u8>`,
/// `Bytes`, `Text`, and with the `json` feature `Json<T>`), an `Option` of a
/// reply (`None` sends nothing), or a `Result` of
/// one of those with `E: Into<wharf::Error>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a wharf `message` handler",
    label = "this return type",
    note = "return `()`, a reply (`Message`, `Option<Message>`, `String`, `Vec<u8>`), or a `Result` of one of those with an error that converts into `wharf::Error`"
)]
pub trait Reply {
    /// The message to send back, if any, or the handler's error.
    fn into_reply(self) -> Result<Option<Message>>;
}

impl Reply for () {
    fn into_reply(self) -> Result<Option<Message>> {
        Ok(None)
    }
}

impl Reply for Message {
    fn into_reply(self) -> Result<Option<Message>> {
        Ok(Some(self))
    }
}

impl<T: Reply> Reply for Option<T> {
    fn into_reply(self) -> Result<Option<Message>> {
        match self {
            Some(reply) => reply.into_reply(),
            None => Ok(None),
        }
    }
}

macro_rules! reply_via_message {
    ($($ty:ty),*) => {$(
        impl Reply for $ty {
            fn into_reply(self) -> Result<Option<Message>> {
                Ok(Some(Message::from(self)))
            }
        }
    )*};
}

reply_via_message!(String, &'static str, Vec<u8>, Bytes, Text);

#[cfg(feature = "json")]
impl<T: serde::Serialize> Reply for crate::connection::message::Json<T> {
    fn into_reply(self) -> Result<Option<Message>> {
        Message::from_json(&self.0).map(Some)
    }
}

impl<T: Reply, E: Into<Error>> Reply for Result<T, E> {
    fn into_reply(self) -> Result<Option<Message>> {
        self.map_err(Into::into)?.into_reply()
    }
}

/// What an `upgrade` handler may return: `()` (accept) or
/// `Result<(), Rejection>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a wharf `upgrade` handler",
    label = "this return type",
    note = "return `()` to accept every request, or `Result<(), wharf::Rejection>` to refuse some with an HTTP status"
)]
pub trait Verdict {
    /// The verdict in the runtime's terms.
    fn into_verdict(self) -> Result<(), Rejection>;
}

impl Verdict for () {
    fn into_verdict(self) -> Result<(), Rejection> {
        Ok(())
    }
}

impl Verdict for Result<(), Rejection> {
    fn into_verdict(self) -> Result<(), Rejection> {
        self
    }
}

/// Sends a `message` handler's reply on its own connection. A reply to a
/// connection that is already closing is dropped, not an error: the peer
/// may not receive data after the Close (RFC 6455 5.5.1).
pub async fn reply(conn: &Conn, value: impl Reply) -> Result<()> {
    match value.into_reply()? {
        Some(msg) => match conn.send(msg).await {
            Err(Error::ConnectionClosed) => Ok(()),
            other => other,
        },
        None => Ok(()),
    }
}
