//! One structured `tracing` event per connection end: its fields, and its
//! level (info when clean, warn otherwise).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;
use wharf::{CloseCode, Conn, Handler, Message, Server};
use wharf_test_support::*;

/// One captured "connection closed" event: its level and every field as text.
#[derive(Debug, Clone)]
struct Record {
    level: Level,
    fields: HashMap<String, String>,
}

impl Record {
    fn get(&self, name: &str) -> &str {
        self.fields
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("field {name} missing from {self:?}"))
    }
}

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Keeps every connection-end event the runtime emits, from any thread.
struct Capture(Arc<Mutex<Vec<Record>>>);

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.0.get("message").map(String::as_str) == Some("connection closed") {
            self.0.lock().unwrap().push(Record {
                level: *event.metadata().level(),
                fields: fields.0,
            });
        }
    }
}

/// The process-wide capture (connection tasks run on the executor's threads,
/// so only a global subscriber sees their events).
fn records() -> Arc<Mutex<Vec<Record>>> {
    static RECORDS: OnceLock<Arc<Mutex<Vec<Record>>>> = OnceLock::new();
    RECORDS
        .get_or_init(|| {
            let records = Arc::new(Mutex::new(Vec::new()));
            let subscriber = tracing_subscriber::registry().with(Capture(records.clone()));
            tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
            records
        })
        .clone()
}

/// The connection-end events logged for connections on `path` (each test
/// uses its own path), once there is at least one.
async fn events_for(path: &str) -> Vec<Record> {
    let records = records();
    let matching = |records: &Vec<Record>| -> Vec<Record> {
        records
            .iter()
            .filter(|r| r.fields.get("path").map(String::as_str) == Some(path))
            .cloned()
            .collect()
    };
    eventually("the connection-end event", || {
        !matching(&records.lock().unwrap()).is_empty()
    })
    .await;
    matching(&records.lock().unwrap())
}

/// Echoes; "kick" closes with 1008; "fail" makes the handler fail.
struct Echo;

impl Handler for Echo {
    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        match msg.as_text() {
            Some("kick") => {
                conn.close(CloseCode::POLICY_VIOLATION, "Session expired")
                    .await?;
                Ok(())
            }
            _ => conn.send(msg).await,
        }
    }
}

fn server() -> Server {
    Server::new()
        .fallback(Echo)
        .close_timeout(Duration::from_millis(300))
}

#[async_std::test]
async fn a_server_close_logs_one_info_event_with_every_field() {
    records();
    let server = start(server()).await;
    let mut client = connect(&server, "/server-close").await;
    let local = client.get_ref().local_addr().unwrap();
    within("send", client.send(WsMessage::text("one")))
        .await
        .unwrap();
    within("echo", client.next()).await.unwrap().unwrap();
    within("send", client.send(WsMessage::text("kick")))
        .await
        .unwrap();
    while within("read to the end", client.next()).await.is_some() {}

    let events = events_for("/server-close").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.level, Level::INFO);
    assert_eq!(e.get("peer"), local.to_string());
    assert_eq!(e.get("code"), "1008");
    assert_eq!(e.get("reason"), "Session expired");
    assert_eq!(e.get("initiator"), "server");
    assert_eq!(e.get("clean"), "true");
    assert_eq!(e.get("outcome"), "clean");
    assert_eq!(e.get("messages_in"), "2");
    assert_eq!(e.get("messages_out"), "1");
    assert!(e.get("id").parse::<u64>().is_ok());
    assert!(e.get("duration_ms").parse::<u64>().is_ok());
}

#[async_std::test]
async fn a_client_close_logs_info_with_the_peers_code() {
    records();
    let server = start(server()).await;
    let mut client = connect(&server, "/client-close").await;
    let frame = CloseFrame {
        code: WsCode::from(4001),
        reason: "bye".into(),
    };
    within("close", client.close(Some(frame))).await.unwrap();
    while within("read to the end", client.next()).await.is_some() {}

    let events = events_for("/client-close").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.level, Level::INFO);
    assert_eq!((e.get("code"), e.get("reason")), ("4001", "bye"));
    assert_eq!(e.get("initiator"), "client");
}

#[async_std::test]
async fn an_abnormal_end_logs_a_warning() {
    records();
    let server = start(server()).await;
    let peer = RawPeer::connect(&server, "/abnormal").await;
    drop(peer);

    let events = events_for("/abnormal").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.level, Level::WARN);
    assert_eq!(e.get("code"), "1006");
    assert_eq!(e.get("initiator"), "abnormal");
    assert_eq!(e.get("clean"), "false");
}

#[async_std::test]
async fn a_close_timeout_logs_a_warning() {
    records();
    let server = start(server()).await;
    let mut peer = RawPeer::connect(&server, "/timeout").await;
    peer.send_frame(OP_TEXT, true, b"kick").await;
    // Read the Close, never answer it, and wait for the server to give up.
    let seen = peer.read_until_close().await;
    assert_eq!(seen.code, Some(1008));
    peer.expect_eof().await;

    let events = events_for("/timeout").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.level, Level::WARN);
    assert_eq!(e.get("outcome"), "timed_out");
    assert_eq!(e.get("clean"), "false");
    assert_eq!(e.get("initiator"), "server");
}

#[async_std::test]
async fn behind_a_trusted_proxy_the_event_names_the_client() {
    records();
    let server = start(server().trusted_proxies(["127.0.0.1"])).await;
    let mut client =
        connect_with_headers(&server, "/proxied", &[("x-forwarded-for", "203.0.113.7")]).await;
    within("close", client.close(None)).await.unwrap();
    while within("read to the end", client.next()).await.is_some() {}

    let events = events_for("/proxied").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].get("peer"), "203.0.113.7:0");
}
