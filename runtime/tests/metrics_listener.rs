//! Metrics off the public port (`Server::metrics_addr`): served on their
//! own listener only, on the metrics path or on every path, and checked at
//! bind.

use wharf::{Error, RejectReason, Server};
use wharf_test_support::*;

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

async fn start_with(
    configure: impl FnOnce(Server) -> Server,
) -> (TestServer, std::net::SocketAddr) {
    let (echo, _recorded) = recording_echo();
    let server = start(configure(Server::new().route("/", echo))).await;
    let metrics = server.handle.metrics_addr().expect("a metrics listener");
    (server, metrics)
}

#[async_std::test]
async fn the_metrics_path_is_served_on_the_metrics_listener_only() {
    let (server, metrics) = start_with(|s| s.metrics("/metrics").metrics_addr("127.0.0.1:0")).await;
    assert_ne!(metrics, server.addr);
    // Something to count: a refusal on the public port.
    let public = http_exchange(server.addr, get("/metrics")).await;
    assert_eq!(status(&public), 404, "not on the public port: {public}");
    assert_eq!(server.stats().rejected(RejectReason::NotFound), 1);

    let scrape = http_exchange(metrics, get("/metrics")).await;
    assert_eq!(status(&scrape), 200, "{scrape}");
    assert!(
        scrape.contains("Content-Type: text/plain; version=0.0.4"),
        "{scrape}"
    );
    assert!(
        scrape.contains("wharf_connections_rejected_total{reason=\"not_found\"} 1"),
        "{scrape}"
    );
    assert!(
        scrape.contains("wharf_connections_accepted_total 1"),
        "{scrape}"
    );
    // Scrapes are not connections of the server.
    let again = http_exchange(metrics, get("/metrics")).await;
    assert!(
        again.contains("wharf_connections_accepted_total 1"),
        "{again}"
    );

    let other = http_exchange(metrics, get("/other")).await;
    assert_eq!(status(&other), 404, "{other}");
    let post = http_exchange(
        metrics,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(status(&post), 405, "{post}");
    let junk = http_exchange(metrics, "\x16\x03\x01junk\r\n\r\n").await;
    assert_eq!(status(&junk), 400, "{junk}");
}

#[async_std::test]
async fn without_a_path_every_path_of_the_metrics_listener_serves_them() {
    let (server, metrics) = start_with(|s| s.metrics_addr("127.0.0.1:0")).await;
    for path in ["/", "/metrics", "/anything?x=1"] {
        let scrape = http_exchange(metrics, get(path)).await;
        assert_eq!(status(&scrape), 200, "{path}: {scrape}");
        assert!(scrape.contains("wharf_connections_active 0"), "{scrape}");
    }
    // The WebSocket side is untouched.
    let mut client = connect(&server, "/").await;
    assert_echo(&mut client, "still a websocket server").await;
}

#[async_std::test]
async fn the_metrics_listener_serves_during_the_drain_and_closes_after() {
    let (server, metrics) = start_with(|s| s.metrics_addr("127.0.0.1:0")).await;
    let summary = server.shutdown().await;
    assert_eq!(summary.total(), 0);
    let refused = async_std::net::TcpStream::connect(metrics).await;
    assert!(refused.is_err(), "the metrics listener closed with run()");
}

#[async_std::test]
async fn a_metrics_address_that_does_not_resolve_is_a_config_error() {
    let err = Server::new()
        .metrics_addr("not an address")
        .bind("127.0.0.1:0")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config {
                setting: "metrics_addr",
                ..
            }
        ),
        "{err}"
    );
    // With a listener of their own, the metrics path may be a route too.
    let (echo, _) = recording_echo();
    let listening = Server::new()
        .route("/metrics", echo)
        .metrics("/metrics")
        .metrics_addr("127.0.0.1:0")
        .bind("127.0.0.1:0")
        .await;
    assert!(listening.is_ok());
}
