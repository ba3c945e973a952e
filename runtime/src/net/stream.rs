//! The connection stream: plain TCP, or TLS over TCP.
//!
//! One type for both, so the HTTP side and the connection driver are
//! written once. Reads and writes go straight to the variant (one branch
//! per call; a plain stream pays nothing else). Closing the write half
//! ([`AsyncWrite::poll_close`]) is the one place the two differ on the
//! wire: over TLS it first writes and flushes the TLS `close_notify` alert,
//! then shuts the TCP write half; over plain TCP it only shuts the write
//! half. Dropping the stream closes the socket.

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{AsyncRead, AsyncWrite};

use crate::rt::TcpStream;

/// A socket after the PROXY header and the TLS handshake, if any: what the
/// upgrade request is read from and the WebSocket runs over.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, its handshake done. Boxed: a TLS session is a few
    /// kilobytes, and a plain stream should not carry the room for one.
    #[cfg(feature = "tls")]
    Tls(Box<futures_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether the stream is TLS: its close sends `close_notify` first.
    pub(crate) fn is_tls(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            #[cfg(feature = "tls")]
            Stream::Tls(_) => true,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    /// Closes the write half: over TLS, `close_notify` is written and
    /// flushed first (this is what may be pending); then the TCP write
    /// half is shut (a FIN; the runtime's own `poll_close` only flushes).
    /// Reading stays possible.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        #[cfg(not(feature = "tls"))]
        let _ = cx;
        match self.get_mut() {
            Stream::Plain(tcp) => Poll::Ready(tcp.shutdown(Shutdown::Write)),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => {
                std::task::ready!(Pin::new(&mut **tls).poll_close(cx))?;
                Poll::Ready(tls.get_ref().0.shutdown(Shutdown::Write))
            }
        }
    }
}
