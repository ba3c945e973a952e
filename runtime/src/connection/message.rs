//! Data messages as handlers see and send them.
//!
//! Only text and binary messages reach application code. Pings, pongs and
//! Close frames are the runtime's business (answered, timed and logged by the
//! connection driver), so this type cannot express them and a handler cannot
//! break the closing handshake by sending a stray Close frame.
//!
//! The payload types are Wharf's own: [`Text`] (UTF-8, checked once when
//! the frame was read) and [`Bytes`] (the `bytes` crate's, 1.x, the
//! ecosystem's shared byte buffer). Both are reference-counted, so a
//! message sent to many connections is shared, not copied. Neither exposes
//! tungstenite's types: an upgrade of tungstenite does not change Wharf's
//! API.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use async_tungstenite::tungstenite;

/// A reference-counted byte buffer: the `bytes` crate's `Bytes` (1.x),
/// re-exported as a stable part of Wharf's API.
pub use bytes::Bytes;

/// A UTF-8 text payload: a reference-counted string, cheap to clone.
///
/// It reads as a `&str` (it dereferences to one) and is built from a
/// `String`, a `&'static str` or any `&str`.
///
/// # Examples
///
/// ```
/// use wharf::Text;
///
/// let text = Text::from("hello");
/// assert_eq!(text.as_str(), "hello");
/// assert_eq!(text.len(), 5); // any `str` method, through `Deref`
/// assert_eq!(text, "hello");
/// let shared = text.clone(); // no copy of the bytes
/// assert_eq!(shared, text);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(pub(crate) tungstenite::Utf8Bytes);

impl Text {
    /// A text from a string literal, without copying it.
    ///
    /// # Examples
    ///
    /// ```
    /// const GREETING: wharf::Text = wharf::Text::from_static("welcome");
    /// assert_eq!(GREETING.as_str(), "welcome");
    /// ```
    pub const fn from_static(text: &'static str) -> Self {
        Text(tungstenite::Utf8Bytes::from_static(text))
    }

    /// The text as a `&str`.
    ///
    /// # Examples
    ///
    /// ```
    /// let text = wharf::Text::from(String::from("hi"));
    /// assert_eq!(text.as_str(), "hi");
    /// ```
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The UTF-8 bytes, shared rather than copied.
    ///
    /// # Examples
    ///
    /// ```
    /// let bytes = wharf::Text::from("hi").into_bytes();
    /// assert_eq!(&bytes[..], b"hi");
    /// ```
    pub fn into_bytes(self) -> Bytes {
        self.0.into()
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text(text.into())
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text(text.into())
    }
}

impl From<&String> for Text {
    fn from(text: &String) -> Self {
        Text(text.as_str().into())
    }
}

impl From<Text> for String {
    fn from(text: Text) -> Self {
        text.as_str().to_owned()
    }
}

impl TryFrom<Bytes> for Text {
    type Error = std::str::Utf8Error;

    /// Checks that `bytes` is UTF-8, without copying it.
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        tungstenite::Utf8Bytes::try_from(bytes).map(Text)
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

/// A complete WebSocket data message.
///
/// Payloads are reference-counted ([`Bytes`], [`Text`]), so cloning a
/// message for a broadcast does not copy it.
///
/// # Examples
///
/// ```
/// use wharf::Message;
///
/// let m = Message::text("hello");
/// assert_eq!(m.as_text(), Some("hello"));
/// assert_eq!(Message::from(vec![1u8, 2]).as_bytes(), &[1, 2]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// A UTF-8 text message.
    Text(Text),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = wharf::Message::text(format!("{} online", 3));
    /// assert!(m.is_text());
    /// ```
    pub fn text(text: impl Into<Text>) -> Self {
        Message::Text(text.into())
    }

    /// A binary message.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = wharf::Message::binary(vec![0xde, 0xad]);
    /// assert!(m.is_binary());
    /// ```
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Message::Binary(data.into())
    }

    /// The text, when this is a text message.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wharf::Message::text("hi").as_text(), Some("hi"));
    /// assert_eq!(wharf::Message::binary(vec![1]).as_text(), None);
    /// ```
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(text) => Some(text.as_str()),
            Message::Binary(_) => None,
        }
    }

    /// The payload bytes, whatever the type.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wharf::Message::text("hi").as_bytes(), b"hi");
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(data) => data,
        }
    }

    /// Payload length in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(wharf::Message::text("héllo").len(), 6);
    /// ```
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(wharf::Message::text("").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True for text messages.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(wharf::Message::text("hi").is_text());
    /// ```
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// True for binary messages.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(wharf::Message::binary(vec![1]).is_binary());
    /// ```
    pub fn is_binary(&self) -> bool {
        matches!(self, Message::Binary(_))
    }

    pub(crate) fn into_frame(self) -> tungstenite::Message {
        match self {
            Message::Text(text) => tungstenite::Message::Text(text.0),
            Message::Binary(data) => tungstenite::Message::Binary(data),
        }
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(text.into())
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(text.into())
    }
}

impl From<Text> for Message {
    fn from(text: Text) -> Self {
        Message::Text(text)
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Message::Binary(data.into())
    }
}

impl From<&[u8]> for Message {
    fn from(data: &[u8]) -> Self {
        Message::Binary(Bytes::copy_from_slice(data))
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Message::Binary(data)
    }
}

#[cfg(feature = "json")]
mod json {
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use super::Message;
    use crate::error::{Error, JsonError, Result};

    impl Message {
        /// The message parsed as JSON into a `T` (text or binary alike).
        ///
        /// Bad JSON from the peer is [`Error::InvalidJson`], never a panic:
        /// match on it to answer in your own way, or let `?` return it from
        /// the handler, which closes the connection with **1007 "Invalid
        /// JSON"** (the reason the peer sees; the parser's message, with
        /// its line and column, is logged at debug level).
        ///
        /// # Examples
        ///
        /// ```
        /// #[derive(serde::Deserialize)]
        /// struct Move {
        ///     x: i32,
        ///     y: i32,
        /// }
        ///
        /// async fn on_message(conn: &wharf::Conn, msg: wharf::Message) -> wharf::Result<()> {
        ///     match msg.json::<Move>() {
        ///         Ok(m) => conn.send(format!("moved to {},{}", m.x, m.y)).await,
        ///         Err(err) => conn.send(format!("not a move: {err}")).await,
        ///     }
        /// }
        /// ```
        pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
            serde_json::from_slice(self.as_bytes())
                .map_err(|err| Error::InvalidJson(JsonError(err)))
        }

        /// A text message holding `value` as JSON. Fails (as
        /// [`Error::Handler`]) only when `value` cannot be represented
        /// (for example a map with non-string keys).
        ///
        /// # Examples
        ///
        /// ```
        /// let m = wharf::Message::from_json(&serde_json::json!({"online": 3})).unwrap();
        /// assert_eq!(m.as_text(), Some(r#"{"online":3}"#));
        /// ```
        pub fn from_json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
            serde_json::to_string(value)
                .map(Message::from)
                .map_err(Error::handler)
        }
    }

    /// A message handler's reply sent as JSON text, like axum's `Json`.
    ///
    /// # Examples
    ///
    /// ```
    /// use wharf as ws;
    /// use ws::Json;
    ///
    /// #[derive(serde::Serialize)]
    /// struct Ack {
    ///     ok: bool,
    ///     bytes: usize,
    /// }
    ///
    /// #[ws::on("message")]
    /// async fn ack(_conn: &ws::Conn, msg: ws::Message) -> Json<Ack> {
    ///     Json(Ack { ok: true, bytes: msg.len() })
    /// }
    /// # let _ = ws::handlers![ack];
    /// ```
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Json<T>(pub T);
}

#[cfg(feature = "json")]
pub use json::Json;
