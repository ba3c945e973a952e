//! The server's counters: a known scenario (clean client closes, server
//! closes, a close timeout, a dropped stream, a refused Origin, messages
//! each way), then the Prometheus text served on the metrics path and
//! `ServerHandle::stats()` must both say exactly that.

use std::time::Duration;

use async_std::channel::{unbounded, Sender};
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use wharf::{CloseCode, Closed, Conn, Handler, Initiator, Message, RejectReason, Server};
use wharf_test_support::*;

/// Echoes; the text "kick" makes the server close with 1008 "kicked".
/// Reports every close.
struct Kicker {
    closed: Sender<Closed>,
}

impl Handler for Kicker {
    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        if msg.as_text() == Some("kick") {
            conn.close(CloseCode::POLICY_VIOLATION, "kicked").await?;
            return Ok(());
        }
        conn.send(msg).await
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        let _ = self.closed.send(closed.clone()).await;
    }
}

/// The body of an HTTP response, after checking it is a 200 with the
/// Prometheus text content type.
fn prometheus_body(response: &str) -> &str {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    assert_eq!(http_status(head), Some(200), "{head}");
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim())
        })
        .unwrap_or_else(|| panic!("no Content-Type in {head}"));
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "Content-Type {content_type:?}"
    );
    body
}

/// The sample lines of a Prometheus text body (comments dropped), sorted.
fn samples(body: &str) -> Vec<&str> {
    let mut lines: Vec<_> = body
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    lines.sort_unstable();
    lines
}

/// A tungstenite client sends `count` messages, reads their echoes, and
/// closes with 1000.
async fn chat_and_leave(server: &TestServer, count: usize) {
    let mut client = connect(server, "/").await;
    for i in 0..count {
        assert_echo(&mut client, &format!("message {i}")).await;
    }
    send_normal_close(&mut client, "bye").await;
    while within("end of stream", client.next()).await.is_some() {}
}

/// A tungstenite client asks to be kicked and answers the server's Close.
async fn get_kicked(server: &TestServer) {
    let mut client = connect(server, "/").await;
    within("send", client.send(WsMessage::text("kick")))
        .await
        .expect("send");
    match within("the Close", client.next()).await {
        Some(Ok(WsMessage::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1008),
        other => panic!("expected the server's Close, got {other:?}"),
    }
    assert!(within("end of stream", client.next()).await.is_none());
}

#[async_std::test]
async fn metrics_report_a_known_scenario_exactly() {
    const CHATTERS: usize = 3; // clean client closes
    const MESSAGES: usize = 2; // each way, per chatter
    const KICKED: usize = 2; // clean server closes with 1008

    let (closed_tx, closed) = unbounded();
    let running = start(
        Server::new()
            .metrics("/metrics")
            .allow_origin("http://ok.example")
            .close_timeout(Duration::from_millis(300))
            .route("/", Kicker { closed: closed_tx }),
    )
    .await;
    let server = &running;

    for _ in 0..CHATTERS {
        chat_and_leave(server, MESSAGES).await;
    }
    for _ in 0..KICKED {
        get_kicked(server).await;
    }
    // A peer kicked that never answers the Close: a third 1008, by timeout.
    let mut deaf = RawPeer::connect(server, "/").await;
    deaf.send_frame(OP_TEXT, true, b"kick").await;
    assert_eq!(deaf.read_until_close().await.code, Some(1008));
    // A peer that drops its TCP stream: 1006, abnormal.
    let gone = RawPeer::connect(server, "/").await;
    drop(gone);
    // A browser from another origin: refused with 403.
    let mut request = upgrade_request("/");
    request.insert_str(request.len() - 2, "Origin: http://evil.example\r\n");
    let response = http_exchange(server.addr, &request).await;
    assert_eq!(http_status(&response), Some(403), "{response}");

    // Every connection has ended (the counters are updated before the
    // close handler runs).
    let total = CHATTERS + KICKED + 2;
    let mut records = Vec::new();
    for _ in 0..total {
        records.push(next_event(&closed).await);
    }
    let count = |code: u16, initiator: Initiator| {
        records
            .iter()
            .filter(|r| r.code.as_u16() == code && r.initiator == initiator)
            .count()
    };
    assert_eq!(count(1000, Initiator::Client), CHATTERS);
    assert_eq!(count(1008, Initiator::Server), KICKED + 1);
    assert_eq!(count(1006, Initiator::Abnormal), 1);

    let accepted = total + 1 /* the refused origin */ + 1 /* this GET */;
    let received = CHATTERS * MESSAGES + KICKED + 1;
    let sent = CHATTERS * MESSAGES;
    let expected = [
        format!("wharf_connections_accepted_total {accepted}"),
        "wharf_connections_active 0".to_owned(),
        "wharf_connections_rejected_total{reason=\"origin\"} 1".to_owned(),
        format!("wharf_connections_closed_total{{code=\"1000\",initiator=\"client\"}} {CHATTERS}"),
        "wharf_connections_closed_total{code=\"1006\",initiator=\"abnormal\"} 1".to_owned(),
        format!(
            "wharf_connections_closed_total{{code=\"1008\",initiator=\"server\"}} {}",
            KICKED + 1
        ),
        "wharf_close_timeouts_total 1".to_owned(),
        "wharf_handlers_abandoned_total 0".to_owned(),
        format!("wharf_messages_received_total {received}"),
        format!("wharf_messages_sent_total {sent}"),
        // Gauges: nothing is paused or full once every connection ended.
        "wharf_connections_reads_paused 0".to_owned(),
        "wharf_connections_send_queue_full 0".to_owned(),
    ];
    let mut expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    expected.sort_unstable();

    let response = http_exchange(
        server.addr,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    let body = prometheus_body(&response);
    assert_eq!(samples(body), expected, "the metrics served:\n{body}");
    // Each family is declared with its type.
    for (family, kind) in [
        ("wharf_connections_accepted_total", "counter"),
        ("wharf_connections_active", "gauge"),
        ("wharf_connections_rejected_total", "counter"),
        ("wharf_connections_closed_total", "counter"),
        ("wharf_close_timeouts_total", "counter"),
        ("wharf_handlers_abandoned_total", "counter"),
        ("wharf_messages_received_total", "counter"),
        ("wharf_messages_sent_total", "counter"),
        ("wharf_connections_reads_paused", "gauge"),
        ("wharf_connections_send_queue_full", "gauge"),
    ] {
        let declared = format!("# TYPE {family} {kind}");
        assert!(body.lines().any(|l| l == declared), "missing {declared:?}");
        assert!(
            body.lines()
                .any(|l| l.starts_with(&format!("# HELP {family} "))),
            "missing HELP for {family}"
        );
    }

    // The handle's snapshot says the same thing.
    let stats = running.handle.stats();
    assert_eq!(stats.to_prometheus(), body);
    assert_eq!(stats.accepted, accepted as u64);
    assert_eq!(stats.active, 0);
    assert_eq!(stats.rejections, vec![(RejectReason::Origin, 1)]);
    assert_eq!(stats.closed(1000, Initiator::Client), CHATTERS as u64);
    assert_eq!(stats.closed(1008, Initiator::Server), KICKED as u64 + 1);
    assert_eq!(stats.closed(1006, Initiator::Abnormal), 1);
    assert_eq!(stats.closes.len(), 3, "{:?}", stats.closes);
    assert_eq!(stats.close_timeouts, 1);
    assert_eq!(stats.messages_in, received as u64);
    assert_eq!(stats.messages_out, sent as u64);

    // Counters only grow: a second scrape counts the first.
    let response = http_exchange(
        server.addr,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    let again = samples(prometheus_body(&response)).join("\n");
    assert!(
        again.contains(&format!(
            "wharf_connections_accepted_total {}",
            accepted + 1
        )),
        "{again}"
    );
}

#[async_std::test]
async fn the_metrics_path_answers_plain_get_only() {
    let (closed_tx, _closed) = unbounded();
    let running = start(
        Server::new()
            .metrics("/metrics")
            .route("/", Kicker { closed: closed_tx }),
    )
    .await;
    let addr = running.addr;

    let response = http_exchange(
        addr,
        "POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(http_status(&response), Some(405), "{response}");
    let response = http_exchange(addr, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    let body = prometheus_body(&response);
    assert!(
        body.contains("wharf_connections_rejected_total{reason=\"bad_request\"} 1"),
        "{body}"
    );
    assert_eq!(running.handle.stats().rejected(RejectReason::BadRequest), 1);

    // Without a metrics path, nothing is served there.
    let (closed_tx, _closed) = unbounded();
    let plain = start(Server::new().route("/", Kicker { closed: closed_tx })).await;
    let response = http_exchange(
        plain.addr,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    assert_eq!(http_status(&response), Some(404), "{response}");
}
