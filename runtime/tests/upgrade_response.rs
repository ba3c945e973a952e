//! What an upgrade handler adds to the `101`: headers (a `Set-Cookie`, a
//! request id) checked at the call, and the subprotocol chosen from the
//! client's offer.

use std::sync::Mutex;

use async_std::channel::{unbounded, Receiver, Sender};
use async_std::io::WriteExt;
use async_std::net::TcpStream;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use wharf::{Conn, Error, Handler, Message, Rejection, Request, Route, Server};
use wharf_test_support::*;

/// Adds headers and picks a subprotocol in the upgrade handler; reports
/// what each call returned and the subprotocol the connection got.
struct Upgrader {
    calls: Sender<Vec<String>>,
    subprotocols: Sender<Option<String>>,
    pick: Mutex<Option<&'static str>>,
}

fn outcome(result: wharf::Result<()>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(Error::InvalidHeader(_)) => "invalid header".into(),
        Err(Error::SubprotocolNotOffered(p)) => format!("not offered: {p}"),
        Err(other) => format!("other: {other}"),
    }
}

impl Handler for Upgrader {
    async fn on_upgrade(&self, req: &Request) -> Result<(), Rejection> {
        let mut calls = vec![
            outcome(req.response_header("Set-Cookie", "session=abc; Secure; HttpOnly")),
            outcome(req.response_header("Set-Cookie", "theme=dark")),
            outcome(req.response_header("X-Request-Id", "req-42")),
            outcome(req.response_header("X-Bad", "line\r\nInjected: yes")),
            outcome(req.response_header("Bad Name", "v")),
            outcome(req.response_header("upgrade", "h2c")),
            outcome(req.response_header("Connection", "keep-alive")),
            outcome(req.response_header("Sec-WebSocket-Accept", "forged")),
            outcome(req.response_header("Sec-WebSocket-Protocol", "x")),
            outcome(req.response_header("Content-Length", "5")),
            outcome(req.select_subprotocol("never-offered")),
        ];
        calls.push(req.offered_subprotocols().collect::<Vec<_>>().join(","));
        calls.push(format!("{:?}", req.subprotocol()));
        let pick = *self.pick.lock().unwrap();
        if let Some(pick) = pick {
            calls.push(outcome(req.select_subprotocol(pick)));
        }
        let _ = self.calls.send(calls).await;
        if req.query("refuse").is_some() {
            return Err(Rejection::forbidden("no\n"));
        }
        Ok(())
    }

    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let _ = self
            .subprotocols
            .send(conn.subprotocol().map(str::to_owned))
            .await;
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        conn.send(msg).await
    }
}

struct Setup {
    server: TestServer,
    calls: Receiver<Vec<String>>,
    subprotocols: Receiver<Option<String>>,
}

async fn start_with(pick: Option<&'static str>, supported: &[&str]) -> Setup {
    let (calls_tx, calls) = unbounded();
    let (sub_tx, subprotocols) = unbounded();
    let handler = Upgrader {
        calls: calls_tx,
        subprotocols: sub_tx,
        pick: Mutex::new(pick),
    };
    let route = Route::new("/", handler).subprotocols(supported.iter().copied());
    Setup {
        server: start(Server::new().mount(route)).await,
        calls,
        subprotocols,
    }
}

/// The response head to an upgrade of `path` with extra header lines.
async fn response_head(server: &TestServer, path: &str, extra: &[&str]) -> String {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    within(
        "write",
        tcp.write_all(upgrade_request_with(path, extra).as_bytes()),
    )
    .await
    .unwrap();
    read_response_head(&mut tcp).await.expect("a response head")
}

#[async_std::test]
async fn headers_are_added_to_the_101_and_bad_ones_refused_at_the_call() {
    let setup = start_with(None, &[]).await;
    let head = response_head(&setup.server, "/", &[]).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let calls = next_event(&setup.calls).await;
    assert_eq!(
        &calls[..11],
        [
            "ok",
            "ok",
            "ok",
            "invalid header",
            "invalid header",
            "invalid header",
            "invalid header",
            "invalid header",
            "invalid header",
            "invalid header",
            "not offered: never-offered",
        ]
    );
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert!(
        lines.contains(&"set-cookie: session=abc; Secure; HttpOnly"),
        "{head}"
    );
    assert!(lines.contains(&"set-cookie: theme=dark"), "{head}");
    assert!(lines.contains(&"x-request-id: req-42"), "{head}");
    assert!(!head.contains("Injected"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("h2c"), "{head}");
    assert!(!head.contains("forged"), "{head}");
    assert_eq!(head.matches("Upgrade: websocket").count(), 1, "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    assert!(
        head.ends_with("\r\n\r\n") && !head.contains("\r\n\r\n\r\n"),
        "{head}"
    );
}

#[async_std::test]
async fn a_real_client_sees_the_headers() {
    let setup = start_with(None, &[]).await;
    let request = setup.server.url("/").into_client_request().unwrap();
    let tcp = TcpStream::connect(setup.server.addr).await.unwrap();
    let (mut ws, response) = within("upgrade", async_tungstenite::client_async(request, tcp))
        .await
        .expect("upgrade");
    let cookies: Vec<_> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies, ["session=abc; Secure; HttpOnly", "theme=dark"]);
    assert_eq!(response.headers()["x-request-id"], "req-42");
    assert_echo(&mut ws, "and it works").await;
}

#[async_std::test]
async fn a_rejection_carries_none_of_the_101_headers() {
    let setup = start_with(None, &[]).await;
    let answer = http_exchange(setup.server.addr, upgrade_request("/?refuse=1")).await;
    assert_eq!(status(&answer), 403, "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("set-cookie"),
        "{answer}"
    );
}

#[async_std::test]
async fn the_handler_chooses_the_subprotocol_from_the_offer() {
    // No list on the route: the handler's choice, from the client's offer.
    let setup = start_with(Some("b"), &[]).await;
    let head = response_head(&setup.server, "/", &["Sec-WebSocket-Protocol: a, b"]).await;
    assert!(head.contains("Sec-WebSocket-Protocol: b\r\n"), "{head}");
    let calls = next_event(&setup.calls).await;
    assert_eq!(calls[11], "a,b", "the offer, in the client's order");
    assert_eq!(calls[12], "None", "no pick of the route's own");
    assert_eq!(calls[13], "ok");
    assert_eq!(next_event(&setup.subprotocols).await.as_deref(), Some("b"));

    // The route picks the client's first supported one; the handler
    // overrides it.
    let setup = start_with(Some("a"), &["a", "b"]).await;
    let head = response_head(
        &setup.server,
        "/",
        &["Sec-WebSocket-Protocol: b", "Sec-WebSocket-Protocol: a"],
    )
    .await;
    assert!(head.contains("Sec-WebSocket-Protocol: a\r\n"), "{head}");
    assert_eq!(head.matches("Sec-WebSocket-Protocol").count(), 1, "{head}");
    let calls = next_event(&setup.calls).await;
    assert_eq!(calls[12], "Some(\"b\")", "the route's pick first");
    assert_eq!(next_event(&setup.subprotocols).await.as_deref(), Some("a"));

    // A choice that was not offered changes nothing.
    let setup = start_with(Some("c"), &["a"]).await;
    let head = response_head(&setup.server, "/", &["Sec-WebSocket-Protocol: a"]).await;
    assert!(head.contains("Sec-WebSocket-Protocol: a\r\n"), "{head}");
    assert_eq!(next_event(&setup.calls).await[13], "not offered: c");
    assert_eq!(next_event(&setup.subprotocols).await.as_deref(), Some("a"));
}
