//! What a test client receives, and how a failure message shows it.
//!
//! Every failure message of the kit names what was expected and what
//! arrived instead through the `Display` impls here: a text with its
//! content, a binary message with its length, a Close with its code and
//! reason, the end of the stream. This module never touches a socket.

use std::fmt;

use async_tungstenite::tungstenite::protocol::CloseFrame as WsCloseFrame;

use crate::connection::close::CloseCode;
use crate::connection::message::Bytes;

/// Longest text shown in a failure message, in characters.
const SHOWN_CHARS: usize = 200;
/// Most bytes of a binary message shown in a failure message.
const SHOWN_BYTES: usize = 16;

/// A Close frame, as a [`TestClient`](super::TestClient) received it.
///
/// # Examples
///
/// ```
/// use wharf::test::CloseFrame;
///
/// let frame = CloseFrame::new(1008, "Invalid authentication");
/// assert_eq!(frame.code, 1008);
/// assert_eq!(frame.to_string(), "Close 1008 \"Invalid authentication\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CloseFrame {
    /// The close code; 1005 ([`CloseCode::NO_STATUS`]) when the frame
    /// carried none.
    pub code: u16,
    /// The reason, empty when there was none.
    pub reason: String,
}

impl CloseFrame {
    /// A Close frame with `code` and `reason`, to compare with one received.
    ///
    /// # Examples
    ///
    /// ```
    /// use wharf::{test::CloseFrame, CloseCode};
    ///
    /// assert_eq!(CloseFrame::new(CloseCode::NORMAL, "bye"), CloseFrame::new(1000, "bye"));
    /// ```
    pub fn new(code: impl Into<CloseCode>, reason: impl Into<String>) -> Self {
        CloseFrame {
            code: code.into().as_u16(),
            reason: reason.into(),
        }
    }

    /// The frame tungstenite read; `None` is a Close without a code.
    pub(crate) fn from_ws(frame: Option<WsCloseFrame>) -> Self {
        match frame {
            Some(frame) => CloseFrame {
                code: u16::from(frame.code),
                reason: frame.reason.as_str().to_owned(),
            },
            None => CloseFrame::new(CloseCode::NO_STATUS, ""),
        }
    }
}

impl fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.code == CloseCode::NO_STATUS.as_u16() && self.reason.is_empty() {
            return f.write_str("Close without a code (1005)");
        }
        write!(f, "Close {} {:?}", self.code, self.reason)
    }
}

/// One thing a [`TestClient`](super::TestClient) received from the server.
///
/// Pings and pongs never show up here: the client answers pings itself.
/// Its `Display` is what failure messages print.
///
/// # Examples
///
/// ```
/// use wharf::test::{CloseFrame, Received};
///
/// assert_eq!(Received::Text("hi".into()).to_string(), "the text \"hi\"");
/// assert_eq!(
///     Received::Binary(vec![0u8, 1, 2].into()).to_string(),
///     "a binary message of 3 bytes [00 01 02]"
/// );
/// assert_eq!(
///     Received::Close(CloseFrame::new(1001, "Going away")).to_string(),
///     "Close 1001 \"Going away\""
/// );
/// assert_eq!(Received::Eof.to_string(), "EOF without a Close");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// The server's Close frame. The client has answered it; the server
    /// closes the TCP connection next.
    Close(CloseFrame),
    /// The TCP stream ended (or was reset). Before a Close, that is a
    /// connection cut without the closing handshake; after one, the
    /// handshake's proper end.
    Eof,
}

impl fmt::Display for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Received::Text(text) => {
                let shown: String = text.chars().take(SHOWN_CHARS).collect();
                if shown.len() < text.len() {
                    write!(f, "the text {shown:?}... ({} bytes in all)", text.len())
                } else {
                    write!(f, "the text {text:?}")
                }
            }
            Received::Binary(data) => {
                write!(f, "a binary message of {} bytes [", data.len())?;
                for (i, byte) in data.iter().take(SHOWN_BYTES).enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                if data.len() > SHOWN_BYTES {
                    f.write_str(" ...")?;
                }
                f.write_str("]")
            }
            Received::Close(frame) => fmt::Display::fmt(frame, f),
            Received::Eof => f.write_str("EOF without a Close"),
        }
    }
}

/// How the closing handshake went when the client started it:
/// what [`TestClient::close`](super::TestClient::close) returns.
///
/// # Examples
///
/// ```
/// # async_std::task::block_on(async {
/// use wharf as ws;
/// use ws::test::{CloseFrame, TestServer};
///
/// # #[ws::on("message")] async fn echo(_conn: &ws::Conn, msg: ws::Message) -> ws::Message { msg }
/// let server = TestServer::start(ws::Server::new().route("/", ws::handlers![echo])).await;
/// let mut client = server.connect("/").await.expect("upgrade");
/// let report = client.close(1000, "bye").await;
/// assert_eq!(report.answer, Some(CloseFrame::new(1000, "bye"))); // echoed
/// assert!(report.tcp_closed); // then the server closed TCP
/// assert!(report.is_clean());
/// # });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseReport {
    /// The server's Close frame in answer to ours (Wharf echoes the code
    /// and reason), or the server's own if it had closed first; `None`
    /// when none arrived within the client's timeout or the stream ended
    /// without one.
    pub answer: Option<CloseFrame>,
    /// Data messages that arrived after our Close and before the answer:
    /// the server sent them before it read our Close.
    pub received: Vec<Received>,
    /// Whether the server then closed the TCP connection within the
    /// client's timeout (RFC 6455 section 7.1.1: the server closes first).
    pub tcp_closed: bool,
}

impl CloseReport {
    /// Whether the closing handshake completed: the server answered our
    /// Close and then closed the TCP connection.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// use wharf as ws;
    /// use ws::test::TestServer;
    ///
    /// # #[ws::on("message")] async fn echo(_conn: &ws::Conn, msg: ws::Message) -> ws::Message { msg }
    /// let server = TestServer::start(ws::Server::new().route("/", ws::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// assert!(client.close(1000, "done").await.is_clean());
    /// # });
    /// ```
    pub fn is_clean(&self) -> bool {
        self.answer.is_some() && self.tcp_closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_and_binaries_are_cut_in_messages() {
        let long = Received::Text("é".repeat(300)).to_string();
        assert!(long.ends_with("... (600 bytes in all)"), "{long}");
        assert_eq!(long.matches('é').count(), SHOWN_CHARS);
        let big = Received::Binary(vec![0xab; 40].into()).to_string();
        assert!(
            big.starts_with("a binary message of 40 bytes [ab ab"),
            "{big}"
        );
        assert!(big.ends_with("ab ...]"), "{big}");
    }

    #[test]
    fn a_close_without_a_code_says_so() {
        assert_eq!(
            CloseFrame::from_ws(None).to_string(),
            "Close without a code (1005)"
        );
        assert_eq!(CloseFrame::new(1000, "").to_string(), "Close 1000 \"\"");
    }
}
