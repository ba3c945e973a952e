//! Cluster nodes for the tests: [`member_server`]s sharing one Redis.

use std::time::Duration;

use wharf::{Cluster, Selector};

use crate::{member_server, start, RedisServer, TestServer};

/// Starts `n` [`member_server`] nodes on `redis`, in namespace `ns`.
pub async fn start_nodes(redis: &RedisServer, ns: &str, n: usize) -> Vec<TestServer> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(start_node(redis, ns).await);
    }
    nodes
}

/// Starts one [`member_server`] node on `redis`, in namespace `ns`.
pub async fn start_node(redis: &RedisServer, ns: &str) -> TestServer {
    start(member_server().cluster(Cluster::new(redis.url()).namespace(ns))).await
}

/// Waits until `selector` counts `n` (counts reach Redis a flush after the
/// change), re-checking every millisecond, for at most [`crate::STEP`].
pub async fn until_count(selector: &Selector, n: usize) {
    let mut last = None;
    let wait = async {
        loop {
            let now = selector.count().await.ok();
            if now == Some(n) {
                return;
            }
            last = now;
            async_std::task::sleep(Duration::from_millis(1)).await;
        }
    };
    if async_std::future::timeout(crate::STEP, wait).await.is_err() {
        panic!("{selector:?} never counted {n} (last: {last:?})");
    }
}
