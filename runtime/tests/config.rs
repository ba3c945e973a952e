//! The settings: one way to set each (the setters on `Server`), and a value
//! that cannot work is an `Error::Config` from `bind` naming the setter.

use std::time::Duration;

use wharf::{CloseCode, ConnectRate, Error, Handler, Server};
use wharf_test_support::*;

struct Nothing;
impl Handler for Nothing {}

async fn refused_setting(server: Server) -> &'static str {
    match within("bind", server.route("/", Nothing).bind("127.0.0.1:0")).await {
        Err(Error::Config { setting, reason }) => {
            assert!(!reason.is_empty());
            let shown = Error::Config { setting, reason }.to_string();
            assert!(shown.contains(setting), "{shown}");
            setting
        }
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

#[async_std::test]
async fn an_invalid_value_is_an_error_naming_its_setter() {
    let zero = Duration::ZERO;
    let cases: Vec<(&str, Server)> = vec![
        ("send_queue", Server::new().send_queue(0)),
        ("inbound_queue", Server::new().inbound_queue(0)),
        ("read_buffer_size", Server::new().read_buffer_size(0)),
        ("read_buffer_size", Server::new().read_buffer_size(1 << 30)),
        ("max_request_bytes", Server::new().max_request_bytes(10)),
        ("max_message_size", Server::new().max_message_size(0)),
        ("max_frame_size", Server::new().max_frame_size(0)),
        ("upgrade_timeout", Server::new().upgrade_timeout(zero)),
        ("close_timeout", Server::new().close_timeout(zero)),
        ("pong_timeout", Server::new().pong_timeout(zero)),
        ("ping_interval", Server::new().ping_interval(zero)),
        ("send_timeout", Server::new().send_timeout(zero)),
        ("drain_timeout", Server::new().drain_timeout(zero)),
        ("idle_timeout", Server::new().idle_timeout(zero)),
        ("session_ttl", Server::new().session_ttl(zero)),
        ("max_connections", Server::new().max_connections(0)),
        (
            "max_connections_per_ip",
            Server::new().max_connections_per_ip(0),
        ),
        (
            "connect_rate",
            Server::new().connect_rate(ConnectRate::new(f64::NAN, 1)),
        ),
        (
            "connect_rate",
            Server::new().connect_rate(ConnectRate::new(1.0, 0)),
        ),
        (
            "shutdown",
            Server::new().shutdown_close(CloseCode::ABNORMAL, "x"),
        ),
        ("metrics", Server::new().metrics("metrics")),
        ("allow_origin", Server::new().allow_origin("localhost:8000")),
        ("allow_origin", Server::new().allow_origin("null")),
    ];
    for (setting, server) in cases {
        assert_eq!(refused_setting(server).await, setting);
    }
}

#[async_std::test]
async fn a_later_setter_wins_and_nothing_discards_earlier_ones() {
    // Every setter writes into the one configuration: a later one does not
    // reset the others (there is no `config(...)` that replaces them all).
    let server = start(
        Server::new()
            .max_connections(1)
            .send_queue(8)
            .max_connections(2)
            .route("/", Nothing),
    )
    .await;
    let _a = RawPeer::connect(&server, "/").await;
    let _b = RawPeer::connect(&server, "/").await;
    let third = http_exchange(server.addr, upgrade_request("/")).await;
    assert!(third.starts_with("HTTP/1.1 503"), "{third}");
}
