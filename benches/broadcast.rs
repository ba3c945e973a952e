//! `broadcast`: one message fanned out to 1,000 connections.
//!
//! 1,000 clients connect to the bench's silent route before measuring. One
//! iteration sends through [`Registry::route`](wharf::Registry::route)'s
//! selector ([`Selector::send`](wharf::Selector::send)) with
//! a 64-byte text message (from the clients' thread: it only queues) and
//! waits until every client has read it; the time per iteration is the time
//! until all have it, the throughput deliveries per second.
//!
//! ```text
//! cargo bench -p wharf-benches --bench broadcast
//! ```
//!
//! The server runs on one core and the clients on the other; see
//! `benches/README.md`.

use std::time::{Duration, Instant};

use async_std::task::block_on;
use async_tungstenite::tungstenite::Message as WsMessage;
use criterion::{Criterion, Throughput};
use futures_util::future::join_all;
use futures_util::StreamExt;
use wharf::Message;
use wharf_benches::client::{self, Client};
use wharf_benches::{pin, within, BenchResult, WharfServer, BROADCAST_PATH};

/// Connections the message reaches.
const CONNECTIONS: usize = 1_000;

/// One broadcast, timed until the last client has the message.
async fn one_broadcast(
    server: &WharfServer,
    clients: &mut [Client],
    msg: &Message,
) -> BenchResult<Duration> {
    let start = Instant::now();
    let delivered = server.registry().route(BROADCAST_PATH).send(msg.clone());
    let received = join_all(clients.iter_mut().map(|c| c.next())).await;
    let elapsed = start.elapsed();
    if delivered != clients.len() {
        return Err(format!(
            "broadcast reached {delivered} of {} connections",
            clients.len()
        )
        .into());
    }
    for reply in received {
        match reply {
            Some(Ok(WsMessage::Text(text))) if text.as_bytes() == msg.as_bytes() => {}
            other => return Err(format!("expected the broadcast, got {other:?}").into()),
        }
    }
    Ok(elapsed)
}

fn broadcast(c: &mut Criterion) {
    pin::init().announce("broadcast");
    let (server, mut clients) = block_on(async {
        let server = WharfServer::start().await?;
        let clients = client::connect_many(
            server.addr(),
            BROADCAST_PATH,
            CONNECTIONS,
            100,
            Some(client::client_config()),
        )
        .await?;
        server
            .wait_for_count(CONNECTIONS, Duration::from_secs(10))
            .await?;
        BenchResult::Ok((server, clients))
    })
    .expect("open the broadcast connections");
    let msg = Message::text("b".repeat(64));
    let mut group = c.benchmark_group("broadcast");
    group.throughput(Throughput::Elements(CONNECTIONS as u64));
    group.bench_function("wharf/1000", |b| {
        b.iter_custom(|iters| {
            block_on(within(
                Duration::from_secs(30) + Duration::from_millis(10 * iters),
                "broadcast",
                async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += one_broadcast(&server, &mut clients, &msg).await?;
                    }
                    Ok(total)
                },
            ))
            .expect("broadcast failed")
        });
    });
    group.finish();
    block_on(within(
        Duration::from_secs(10),
        "closing",
        client::close_all(clients),
    ))
    .expect("close the broadcast connections");
}

fn main() {
    wharf_benches::run_criterion(10, Duration::from_secs(3), broadcast);
}
