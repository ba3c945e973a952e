//! Annotated handlers against a real server on 127.0.0.1 and real clients
//! (async-tungstenite's, and raw TCP for the HTTP answers): each event runs
//! with the user's function, and each return type has its documented effect.
//!
//! Handlers are free functions, so they report to the test through the
//! server's application state (`Server::state`, read with `conn.state()`).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use async_std::channel::{unbounded, Receiver, Sender};
use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message as WsMessage;
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt;
use wharf::{CloseCode, Closed, Conn, Error, HandlerFns, Message, Rejection, Request, Server};

/// The longest any single step may take.
const STEP: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match async_std::future::timeout(STEP, future).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// What the handlers report, in the server's state.
struct Probe {
    events: Sender<String>,
}

async fn report(conn: &Conn, event: String) {
    let probe = conn.state::<Probe>().expect("the server has a Probe");
    probe
        .events
        .send(event)
        .await
        .expect("the test is listening");
}

async fn next_event(events: &Receiver<String>) -> String {
    within("handler event", events.recv())
        .await
        .expect("the server dropped its state")
}

/// Binds `server` (with a fresh [`Probe`]) on 127.0.0.1:0 and runs it.
async fn start(server: Server) -> (SocketAddr, Receiver<String>) {
    let (events, rx) = unbounded();
    let listening = within("bind", server.state(Probe { events }).bind("127.0.0.1:0"))
        .await
        .expect("bind");
    let addr = listening.local_addr();
    async_std::task::spawn(listening.run());
    (addr, rx)
}

type Client = WebSocketStream<TcpStream>;

async fn connect(addr: SocketAddr, path: &str) -> Client {
    within("connect", async {
        let tcp = TcpStream::connect(addr).await.expect("tcp connect");
        let (ws, _) = async_tungstenite::client_async(format!("ws://{addr}{path}"), tcp)
            .await
            .expect("websocket handshake");
        ws
    })
    .await
}

/// The next data message, skipping nothing: a Close here fails the test.
async fn next_message(ws: &mut Client) -> WsMessage {
    within("next message", ws.next())
        .await
        .expect("stream ended")
        .expect("websocket error")
}

/// Reads until the server's Close frame and returns its code and reason,
/// after letting the client answer it (reading on until the end of the
/// stream), so the server's closing handshake completes at once.
async fn close_frame(ws: &mut Client) -> (u16, String) {
    let seen = loop {
        match within("close frame", ws.next()).await {
            Some(Ok(WsMessage::Close(Some(frame)))) => {
                break (u16::from(frame.code), frame.reason.to_string())
            }
            Some(Ok(WsMessage::Close(None))) => panic!("Close frame without a code"),
            Some(Ok(_)) => continue,
            other => panic!("expected a Close frame, got {other:?}"),
        }
    };
    while let Some(Ok(_)) = within("end of stream", ws.next()).await {}
    seen
}

/// Sends a raw HTTP request and reads the whole answer.
async fn http(addr: SocketAddr, request: &str) -> String {
    within("http request", async {
        let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.expect("read");
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

// ---- upgrade ----

struct User(String);

#[wharf::on("upgrade")]
async fn gate(req: &Request) -> Result<(), Rejection> {
    match req.query("token") {
        Some("secret") => {
            req.extensions().insert(User("ann".into()));
            Ok(())
        }
        _ => Err(Rejection::unauthorized("missing or wrong token\n")),
    }
}

#[wharf::on("connect")]
async fn greet_user(conn: &Conn) -> wharf::Result<()> {
    let name = conn.extensions().get::<User>().map(|user| user.0.clone());
    conn.send(format!("hello {}", name.as_deref().unwrap_or("nobody")))
        .await
}

#[async_std::test]
async fn upgrade_rejection_answers_with_its_status_and_body() {
    let (addr, _events) = start(Server::new().route("/", wharf::handlers![gate, greet_user])).await;

    let answer = http(addr, &upgrade_request("/?token=wrong")).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "got {answer:?}");
    assert!(
        answer.ends_with("missing or wrong token\n"),
        "got {answer:?}"
    );
    assert!(!answer.contains("101"), "no upgrade expected: {answer:?}");
}

#[async_std::test]
async fn upgrade_extensions_reach_the_connection() {
    let (addr, _events) = start(Server::new().route("/", wharf::handlers![gate, greet_user])).await;

    let mut ws = connect(addr, "/?token=secret").await;
    assert_eq!(next_message(&mut ws).await, WsMessage::text("hello ann"));
}

// ---- connect ----

#[wharf::on("connect")]
async fn require_token(conn: &Conn) -> wharf::Result<()> {
    if conn.query("token") != Some("secret") {
        conn.close(CloseCode::POLICY_VIOLATION, "Invalid authentication")
            .await?;
    }
    report(conn, "connected".into()).await;
    Ok(())
}

#[async_std::test]
async fn connect_handler_runs_and_can_close_with_1008() {
    let (addr, events) = start(Server::new().route("/", wharf::handlers![require_token])).await;

    let mut ws = connect(addr, "/").await;
    assert_eq!(
        close_frame(&mut ws).await,
        (1008, "Invalid authentication".to_owned())
    );
    assert_eq!(next_event(&events).await, "connected");

    let mut ws = connect(addr, "/?token=secret").await;
    assert_eq!(next_event(&events).await, "connected");
    ws.send(WsMessage::text("still open"))
        .await
        .expect("the connection stays open");
}

// ---- message: each reply type ----

#[wharf::on("message")]
async fn reply_string(_conn: &Conn, msg: Message) -> String {
    format!("got {}", msg.as_text().unwrap_or("binary"))
}

#[wharf::on("message")]
async fn reply_bytes(_conn: &Conn, msg: Message) -> Vec<u8> {
    msg.as_bytes().iter().rev().copied().collect()
}

#[wharf::on("message")]
async fn reply_option(_conn: &Conn, msg: Message) -> Option<Message> {
    (msg.as_text() != Some("skip")).then_some(msg)
}

#[derive(Debug)]
struct RejectReason;

impl From<RejectReason> for Error {
    fn from(_: RejectReason) -> Self {
        Error::handler("refused")
    }
}

#[wharf::on("message")]
async fn reply_or_fail(_conn: &Conn, msg: Message) -> Result<&'static str, RejectReason> {
    match msg.as_text() {
        Some("fail") => Err(RejectReason),
        _ => Ok("fine"),
    }
}

#[async_std::test]
async fn message_replies_arrive_as_text_binary_or_nothing() {
    let (addr, _events) = start(
        Server::new()
            .route("/string", wharf::handlers![reply_string])
            .route("/bytes", wharf::handlers![reply_bytes])
            .route("/option", wharf::handlers![reply_option]),
    )
    .await;

    let mut ws = connect(addr, "/string").await;
    ws.send(WsMessage::text("hi")).await.expect("send");
    assert_eq!(next_message(&mut ws).await, WsMessage::text("got hi"));

    let mut ws = connect(addr, "/bytes").await;
    ws.send(WsMessage::binary(vec![1, 2, 3]))
        .await
        .expect("send");
    assert_eq!(
        next_message(&mut ws).await,
        WsMessage::binary(vec![3, 2, 1])
    );

    // `None` sends nothing: the next reply is the one to the second message.
    let mut ws = connect(addr, "/option").await;
    ws.send(WsMessage::text("skip")).await.expect("send");
    ws.send(WsMessage::text("echo")).await.expect("send");
    assert_eq!(next_message(&mut ws).await, WsMessage::text("echo"));
}

#[async_std::test]
async fn message_error_closes_with_1011() {
    let (addr, _events) = start(Server::new().route("/", wharf::handlers![reply_or_fail])).await;

    let mut ws = connect(addr, "/").await;
    ws.send(WsMessage::text("ok?")).await.expect("send");
    assert_eq!(next_message(&mut ws).await, WsMessage::text("fine"));
    ws.send(WsMessage::text("fail")).await.expect("send");
    let (code, _reason) = close_frame(&mut ws).await;
    assert_eq!(code, 1011);
}

// ---- close ----

#[wharf::on("close")]
async fn record_close(conn: &Conn, closed: &Closed) {
    report(conn, format!("closed {} {}", closed.code, closed.reason)).await;
}

#[async_std::test]
async fn close_handler_gets_the_code_and_reason() {
    let (addr, events) = start(Server::new().route("/", wharf::handlers![record_close])).await;

    let mut ws = connect(addr, "/").await;
    within(
        "client close",
        ws.close(Some(CloseFrame {
            code: WsCloseCode::from(4001),
            reason: "done here".into(),
        })),
    )
    .await
    .expect("close");
    assert_eq!(next_event(&events).await, "closed 4001 done here");
}

// ---- a handler called directly, and a full set ----

#[wharf::on("message")]
async fn shout(_conn: &Conn, msg: Message) -> Option<Message> {
    msg.as_text().map(|text| Message::text(text.to_uppercase()))
}

#[wharf::on("connect")]
async fn welcome(conn: &Conn) -> wharf::Result<()> {
    // An annotated function stays an ordinary function.
    if let Some(text) = shout(conn, Message::text("welcome")).await {
        conn.send(text).await?;
    }
    Ok(())
}

#[async_std::test]
async fn annotated_functions_stay_callable() {
    let (addr, events) =
        start(Server::new().route("/", wharf::handlers![gate, welcome, shout, record_close])).await;

    let mut ws = connect(addr, "/?token=secret").await;
    assert_eq!(next_message(&mut ws).await, WsMessage::text("WELCOME"));
    ws.send(WsMessage::text("quiet")).await.expect("send");
    assert_eq!(next_message(&mut ws).await, WsMessage::text("QUIET"));
    within("client close", ws.close(None)).await.expect("close");
    assert_eq!(next_event(&events).await, "closed 1005 ");
}

// ---- two handlers for one event, built by hand ----

#[async_std::test]
async fn two_connect_handlers_built_by_hand_fail_bind() {
    let handlers = HandlerFns::new().on(require_token {}).on(welcome {});
    let err = within(
        "bind",
        Server::new().route("/", handlers).bind("127.0.0.1:0"),
    )
    .await
    .expect_err("two connect handlers on one route");
    let Error::Config {
        setting: "route",
        reason: why,
    } = &err
    else {
        panic!("expected Error::Config for the route, got {err:?}");
    };
    assert!(
        why.contains("require_token") && why.contains("welcome") && why.contains("connect"),
        "{why}"
    );
}
