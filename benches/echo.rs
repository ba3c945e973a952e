//! `echo`: round trips per second over open connections.
//!
//! 64 connections, opened before measuring, each send a 64-byte binary
//! message and wait for its echo, again and again, all at once. One
//! iteration is one round trip on every connection, so the throughput is in
//! round trips per second (64 per iteration). Runs against Wharf
//! (`echo/wharf`) and the bare async-tungstenite echo server (`echo/bare`)
//! with the same clients.
//!
//! ```text
//! cargo bench -p wharf-benches --bench echo
//! ```
//!
//! The server runs on one core and the clients on the other; see
//! `benches/README.md`.

use std::time::Duration;

use async_std::task::block_on;
use async_tungstenite::tungstenite::Message;
use criterion::{Criterion, Throughput};
use wharf_benches::client;
use wharf_benches::{pin, start_bare, within, WharfServer, ECHO_PATH};

/// Connections that echo at once.
const CONNECTIONS: usize = 64;

/// Bytes in each message.
const MESSAGE_BYTES: usize = 64;

fn echo(c: &mut Criterion) {
    pin::init().announce("echo");
    let (wharf, bare) = block_on(async {
        let wharf = WharfServer::start().await.expect("start Wharf");
        let bare = start_bare().await.expect("start the bare server");
        (wharf, bare)
    });
    let msg = Message::binary(vec![0x5a; MESSAGE_BYTES]);
    let mut group = c.benchmark_group("echo");
    group.throughput(Throughput::Elements(CONNECTIONS as u64));
    for (name, addr) in [("wharf", wharf.addr()), ("bare", bare)] {
        let mut clients = block_on(client::connect_many(
            addr,
            ECHO_PATH,
            CONNECTIONS,
            CONNECTIONS,
            Some(client::client_config()),
        ))
        .expect("open the echo connections");
        group.bench_function(name, |b| {
            b.iter_custom(|rounds| {
                block_on(within(
                    Duration::from_secs(30) + Duration::from_millis(rounds),
                    "echo",
                    client::echo_rounds(&mut clients, rounds, &msg),
                ))
                .expect("echo round failed")
            });
        });
        block_on(within(
            Duration::from_secs(10),
            "closing the echo connections",
            client::close_all(clients),
        ))
        .expect("close the echo connections");
    }
    group.finish();
}

fn main() {
    wharf_benches::run_criterion(10, Duration::from_secs(3), echo);
}
