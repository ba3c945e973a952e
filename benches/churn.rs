//! `churn`: whole connection lifecycles per second.
//!
//! One cycle is: TCP connect, WebSocket upgrade, one echo of a 16-byte text
//! message, the closing handshake, and the server's end of the TCP stream.
//! `C` clients run cycles at once (C = 1 and 32). Two variants:
//!
//! - `churn/client_close`: the client sends Close (1000), the server echoes it;
//! - `churn/server_close`: after the echo the client sends `kick`, the server
//!   closes with 1008 "Session expired", the client answers.
//!
//! Each variant runs against Wharf (`wharf/C`) and against the bare
//! async-tungstenite echo server of `wharf_benches::start_bare` (`bare/C`),
//! with the same clients, so the report shows Wharf's cost relative to the
//! layer it is built on. Throughput is in cycles per second; the time per
//! iteration is the time per cycle.
//!
//! ```text
//! cargo bench -p wharf-benches --bench churn
//! ```
//!
//! The server runs on one core and the clients on the other; see
//! `benches/README.md`.

use criterion::{BenchmarkId, Criterion, Throughput};
use std::time::Duration;

use async_std::task::block_on;
use wharf_benches::client::{self, CloseBy};
use wharf_benches::{churn_limit, pin, start_bare, within, WharfServer};

fn churn(c: &mut Criterion) {
    pin::init().announce("churn");
    let (wharf, bare) = block_on(async {
        let wharf = WharfServer::start().await.expect("start Wharf");
        let bare = start_bare().await.expect("start the bare server");
        (wharf, bare)
    });
    for close_by in [CloseBy::Client, CloseBy::Server] {
        let mut group = c.benchmark_group(format!("churn/{}", close_by.name()));
        group.throughput(Throughput::Elements(1));
        for clients in [1, 32] {
            for (name, addr) in [("wharf", wharf.addr()), ("bare", bare)] {
                group.bench_with_input(BenchmarkId::new(name, clients), &clients, |b, &clients| {
                    b.iter_custom(|cycles| {
                        block_on(within(
                            churn_limit(cycles),
                            "churn",
                            client::churn(addr, close_by, clients, cycles),
                        ))
                        .expect("churn cycle failed")
                    });
                });
            }
        }
        group.finish();
    }
}

fn main() {
    wharf_benches::run_criterion(10, Duration::from_secs(3), churn);
}
