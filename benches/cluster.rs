//! `cluster`: group sends across two nodes through a real `redis-server`.
//!
//! The bench starts its own `redis-server` on a free 127.0.0.1 port
//! (persistence off; `.ci/run` installs it) and three Wharf servers in this
//! process: one without a cluster, and two nodes of one cluster.
//!
//! - `cluster_group_send/local/1000`: one 64-byte message to a group of
//!   1,000 members on the single server, timed until every client has it
//!   (the `broadcast` bench's measurement, through a group).
//! - `cluster_group_send/two_nodes/1000`: the same group send to 1,000
//!   members split 500 and 500 over the two nodes, from the first: its
//!   local members at once, the other node's through Redis; timed until
//!   every client has it.
//! - `cluster_rate/two_nodes/1000`: 1,000 sends in a row from the first
//!   node to a group whose one member is on the second, timed until that
//!   member has all of them: cross-node sends per second, to set against
//!   `benches/redis-publish.sh` (`redis-benchmark` publishing on the same
//!   machine).
//!
//! ```text
//! cargo bench -p wharf-benches --bench cluster
//! ```
//!
//! The servers run on one core and the clients on the other (see
//! `benches/README.md`); `redis-server` is a process of its own, unpinned.

use std::time::{Duration, Instant};

use async_std::task::block_on;
use async_tungstenite::tungstenite::Message as WsMessage;
use criterion::{Criterion, Throughput};
use futures_util::future::join_all;
use futures_util::StreamExt;
use wharf::{Cluster, Conn, Handler, Message, Registry, Selector};
use wharf_benches::client::{self, Client};
use wharf_benches::{pin, within, BenchResult};
use wharf_test_support::RedisServer;

/// Members of the measured group.
const MEMBERS: usize = 1_000;
/// Sends per iteration of the rate bench.
const RATE_SENDS: usize = 1_000;

/// Joins the group named by the path's last segment at connect.
#[derive(Debug)]
struct Join;

impl Handler for Join {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let group = conn.path().rsplit('/').next().unwrap_or("bench").to_owned();
        conn.join(&group)
    }
}

/// Starts a server with [`Join`] on `/g/bench` and `/g/rate`.
async fn serve(cluster: Option<Cluster>) -> BenchResult<(std::net::SocketAddr, Registry)> {
    let mut server = wharf::Server::new()
        .route("/g/bench", Join)
        .route("/g/rate", Join)
        .send_queue(4096);
    if let Some(cluster) = cluster {
        server = server.cluster(cluster.publish_queue(16_384));
    }
    let listening = server.bind("127.0.0.1:0").await?;
    let addr = listening.local_addr();
    let registry = listening.registry();
    async_std::task::spawn(listening.run());
    Ok((addr, registry))
}

/// Waits until `selector` counts `n`, for at most 30 s.
async fn until_count(selector: &Selector, n: usize) -> BenchResult<()> {
    let start = Instant::now();
    loop {
        let now = selector.count().await?;
        if now == n {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("{selector:?} counts {now}, expected {n}").into());
        }
        async_std::task::sleep(Duration::from_millis(1)).await;
    }
}

/// One send to `selector`, timed until every one of `clients` has it.
async fn one_send(
    selector: &Selector,
    clients: &mut [Client],
    msg: &Message,
) -> BenchResult<Duration> {
    let start = Instant::now();
    selector.send(msg.clone());
    let received = join_all(clients.iter_mut().map(|c| c.next())).await;
    let elapsed = start.elapsed();
    for reply in received {
        match reply {
            Some(Ok(WsMessage::Text(text))) if text.as_bytes() == msg.as_bytes() => {}
            other => return Err(format!("expected the group message, got {other:?}").into()),
        }
    }
    Ok(elapsed)
}

/// `RATE_SENDS` sends to `selector`, timed until `member` has them all.
async fn burst(selector: &Selector, member: &mut Client) -> BenchResult<Duration> {
    let start = Instant::now();
    for i in 0..RATE_SENDS {
        selector.send(format!("{i:08}"));
    }
    for i in 0..RATE_SENDS {
        match member.next().await {
            Some(Ok(WsMessage::Text(text))) if text.as_str() == format!("{i:08}") => {}
            other => return Err(format!("expected send {i}, got {other:?}").into()),
        }
    }
    Ok(start.elapsed())
}

struct Setup {
    _redis: RedisServer,
    single: Registry,
    node_a: Registry,
    single_clients: Vec<Client>,
    split_clients: Vec<Client>,
    rate_member: Client,
}

async fn setup() -> BenchResult<Setup> {
    let redis = RedisServer::start();
    let cluster = || Cluster::new(redis.url()).namespace("bench");
    let (single_addr, single) = serve(None).await?;
    let (a_addr, node_a) = serve(Some(cluster())).await?;
    let (b_addr, _node_b) = serve(Some(cluster())).await?;
    let config = Some(client::client_config());
    let single_clients =
        client::connect_many(single_addr, "/g/bench", MEMBERS, 100, config).await?;
    let mut split_clients =
        client::connect_many(a_addr, "/g/bench", MEMBERS / 2, 100, config).await?;
    split_clients.extend(client::connect_many(b_addr, "/g/bench", MEMBERS / 2, 100, config).await?);
    let rate_member =
        client::connect_with_config(b_addr, "/g/rate", Some(client::client_config())).await?;
    until_count(&single.group("bench"), MEMBERS).await?;
    until_count(&node_a.group("bench"), MEMBERS).await?;
    until_count(&node_a.group("rate"), 1).await?;
    Ok(Setup {
        _redis: redis,
        single,
        node_a,
        single_clients,
        split_clients,
        rate_member,
    })
}

fn cluster(c: &mut Criterion) {
    pin::init().announce("cluster");
    let mut setup = block_on(within(Duration::from_secs(60), "setup", setup()))
        .expect("start redis-server, the servers and the clients");
    let msg = Message::text("c".repeat(64));
    let mut group = c.benchmark_group("cluster_group_send");
    group.throughput(Throughput::Elements(MEMBERS as u64));
    let limit = |iters: u64| Duration::from_secs(30) + Duration::from_millis(20 * iters);
    let local = setup.single.group("bench");
    let split = setup.node_a.group("bench");
    for (name, selector, clients) in [
        ("local/1000", &local, &mut setup.single_clients),
        ("two_nodes/1000", &split, &mut setup.split_clients),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                block_on(within(limit(iters), name, async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += one_send(selector, clients, &msg).await?;
                    }
                    Ok(total)
                }))
                .expect("group send failed")
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("cluster_rate");
    group.throughput(Throughput::Elements(RATE_SENDS as u64));
    let rate = setup.node_a.group("rate");
    group.bench_function("two_nodes/1000", |b| {
        b.iter_custom(|iters| {
            block_on(within(limit(iters) * 10, "rate", async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += burst(&rate, &mut setup.rate_member).await?;
                }
                Ok(total)
            }))
            .expect("cross-node sends failed")
        });
    });
    group.finish();
    let mut clients = std::mem::take(&mut setup.single_clients);
    clients.append(&mut setup.split_clients);
    block_on(within(
        Duration::from_secs(20),
        "closing",
        client::close_all(clients),
    ))
    .expect("close the clients");
}

fn main() {
    wharf_benches::run_criterion(10, Duration::from_secs(3), cluster);
}
