//! async-tungstenite's client, as a well-behaved peer.

use async_std::net::TcpStream;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::Message as WsMessage;
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt;

use crate::{within, TestServer};

/// async-tungstenite's client over TCP.
pub type Client = WebSocketStream<TcpStream>;

/// Connects async-tungstenite's client to `path` (with its query string).
pub async fn connect(server: &TestServer, path: &str) -> Client {
    connect_with_headers(server, path, &[]).await
}

/// Connects with extra request headers (an `Origin`, ...).
pub async fn connect_with_headers(
    server: &TestServer,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Client {
    within("connect", async {
        let mut request = server.url(path).into_client_request().expect("request");
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        let tcp = TcpStream::connect(server.addr).await.expect("tcp connect");
        let (ws, _response) = async_tungstenite::client_async(request, tcp)
            .await
            .expect("websocket handshake");
        ws
    })
    .await
}

/// Connects with a client configuration (for example a large max message).
pub async fn connect_with(server: &TestServer, path: &str, config: WebSocketConfig) -> Client {
    within("connect", async {
        let tcp = TcpStream::connect(server.addr).await.expect("tcp connect");
        let (ws, _response) =
            async_tungstenite::client_async_with_config(server.url(path), tcp, Some(config))
                .await
                .expect("websocket handshake");
        ws
    })
    .await
}

/// Sends a text message.
pub async fn send_text(client: &mut Client, text: &str) {
    within("send", client.send(WsMessage::text(text)))
        .await
        .expect("send");
}

/// The next text message, failing on anything else.
pub async fn next_text(client: &mut Client) -> String {
    match within("next message", client.next()).await {
        Some(Ok(WsMessage::Text(text))) => text.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Reads text messages until one satisfies `wanted` and returns it
/// (broadcasts from other members may come first).
pub async fn text_matching(client: &mut Client, wanted: impl Fn(&str) -> bool) -> String {
    loop {
        let text = next_text(client).await;
        if wanted(&text) {
            return text;
        }
    }
}

/// Sends `text` and checks the next message is its echo.
pub async fn assert_echo(client: &mut Client, text: &str) {
    send_text(client, text).await;
    let echo = within("echo", client.next()).await;
    assert!(
        matches!(echo, Some(Ok(WsMessage::Text(ref t))) if t.as_str() == text),
        "expected the echo, got {echo:?}"
    );
}

/// Sends a Close with code 1000 (normal) and `reason`; reading its echo is
/// the caller's.
pub async fn send_normal_close(client: &mut Client, reason: &str) {
    let bye = CloseFrame {
        code: WsCloseCode::Normal,
        reason: reason.into(),
    };
    within("client close", client.close(Some(bye)))
        .await
        .expect("send the Close");
}

/// How the server closed a connection, as the client saw it.
#[derive(Debug)]
pub struct ClosedBy {
    /// The server's Close frame: code and reason; `None` when the stream
    /// ended without one.
    pub close: Option<(u16, String)>,
    /// Data messages that arrived before it.
    pub before: Vec<WsMessage>,
}

/// Reads until the server's Close frame, lets the client answer it, and
/// reads on until the server closes the stream.
pub async fn closed_by_server(client: &mut Client) -> ClosedBy {
    within("server close", async {
        let mut before = Vec::new();
        let mut close = None;
        while let Some(item) = client.next().await {
            match item {
                Ok(WsMessage::Close(frame)) => {
                    close = Some(frame.map_or((1005, String::new()), |frame| {
                        (u16::from(frame.code), frame.reason.as_str().to_owned())
                    }));
                }
                Ok(msg @ (WsMessage::Text(_) | WsMessage::Binary(_))) => before.push(msg),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        ClosedBy { close, before }
    })
    .await
}

/// Asserts the server closed `client` with `code` and `reason` (see
/// [`closed_by_server`]).
pub async fn expect_close(client: &mut Client, code: u16, reason: &str) {
    let closed = closed_by_server(client).await;
    assert_eq!(
        closed.close,
        Some((code, reason.to_owned())),
        "messages before: {:?}",
        closed.before
    );
}

/// A fresh, well-behaved client on `path` is served: it connects, gets
/// its echo, closes with 1000 and gets the echo of its Close, then the
/// server ends the stream.
pub async fn assert_serves_fresh_client(server: &TestServer, path: &str) {
    let mut client = connect(server, path).await;
    assert_echo(&mut client, "still there?").await;
    send_normal_close(&mut client, "done").await;
    let msg = within("echo of the Close", client.next()).await;
    assert!(
        matches!(msg, Some(Ok(WsMessage::Close(Some(ref f)))) if f.code == WsCloseCode::Normal),
        "expected the echo of the Close, got {msg:?}"
    );
    assert!(within("end of stream", client.next()).await.is_none());
}
