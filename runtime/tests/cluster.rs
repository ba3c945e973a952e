//! The cluster with a real Redis: two and three in-process servers sharing
//! one `redis-server`, each test in a namespace of its own. Group sends
//! across nodes (every member exactly once, in the order one node sent),
//! closes of a group spread over nodes and of one id from another node,
//! counts across nodes, after a graceful shutdown and after a node's
//! death (its alive key's expiry).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use wharf::{CloseCode, ConnId};
use wharf_test_support::*;

#[async_std::test]
async fn group_sends_reach_every_member_on_every_node_exactly_once_in_order() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis, "send", 3).await;
    let (mut a1, a1_id) = member(&nodes[0], "/room", &["room"]).await;
    let (mut a2, _) = member(&nodes[0], "/room", &["room", "other"]).await;
    let (mut b1, _) = member(&nodes[1], "/room", &["room"]).await;
    let (mut c1, _) = member(&nodes[2], "/room", &["room"]).await;
    let (mut c2, c2_id) = member(&nodes[2], "/room", &["other"]).await;
    // Ids are unique across nodes: each node's number is in the high bits.
    let owners: HashSet<u64> = [a1_id, c2_id].iter().map(|id| id.get() >> 48).collect();
    assert_eq!(owners.len(), 2, "{a1_id} and {c2_id} come from one node");
    assert!(owners.iter().all(|&n| n > 0));

    for node in &nodes {
        until_count(&node.registry.group("room"), 4).await;
    }
    // Node 0 sends 50 lines to the room, except a1: its local member a2
    // and the members on nodes 1 and 2 get each once, in order.
    for i in 0..50 {
        let local = nodes[0]
            .registry
            .group("room")
            .except(a1_id)
            .send(format!("line {i}"));
        assert_eq!(local, 1, "only a2 is local");
    }
    for client in [&mut a2, &mut b1, &mut c1] {
        for i in 0..50 {
            assert_eq!(next_text(client).await, format!("line {i}"));
        }
    }
    // A send from node 2 to `other`: a2 on node 0 gets it, c2 locally.
    assert_eq!(nodes[2].registry.group("other").send("to other"), 1);
    assert_eq!(next_text(&mut a2).await, "to other");
    assert_eq!(next_text(&mut c2).await, "to other");
    // Routes and all() cross nodes too.
    assert_eq!(
        nodes[1].registry.route("/room").except(a1_id).send("route"),
        1
    );
    until_count(&nodes[1].registry.all(), 5).await;
    // Nothing arrived twice: the next message of each is this marker.
    nodes[1].registry.all().send("end");
    assert_eq!(next_text(&mut a1).await, "end");
    for client in [&mut a2, &mut b1, &mut c1, &mut c2] {
        assert_eq!(next_text(client).await, "route");
        assert_eq!(next_text(client).await, "end");
    }
    let stats = nodes[0].stats().cluster.expect("a cluster node");
    assert!(stats.up && stats.published >= 50, "{stats:?}");
    assert_eq!((stats.dropped, stats.invalid), (0, 0));
}

#[async_std::test]
async fn close_of_a_group_spread_over_nodes_adds_up_every_node() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis, "close", 3).await;
    let mut members = Vec::new();
    for (node, n) in [(0, 2), (1, 1), (2, 2)] {
        for _ in 0..n {
            members.push(member(&nodes[node], "/room", &["room"]).await.0);
        }
    }
    let (mut bystander, _) = member(&nodes[1], "/room", &["elsewhere"]).await;
    let room = nodes[1].registry.group("room");
    until_count(&room, 5).await;
    let started = Instant::now();
    let close = Box::pin(within(
        "cluster close",
        room.close(CloseCode::from(4000), "Room closed"),
    ));
    let reads =
        futures_util::future::join_all(members.iter_mut().map(|c| Box::pin(closed_by_server(c))));
    let (summary, closed) = futures_util::future::join(close, reads).await;
    let summary = summary.expect("close");
    assert_eq!(
        (
            summary.clean,
            summary.timed_out,
            summary.peer_gone,
            summary.unanswered
        ),
        (5, 0, 0, 0),
        "{summary:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    for seen in closed {
        assert_eq!(seen.close, Some((4000, "Room closed".to_owned())));
    }
    for node in &nodes {
        until_count(&node.registry.group("room"), 0).await;
    }
    assert_eq!(ask(&mut bystander, "groups").await, "groups elsewhere");
}

#[async_std::test]
async fn a_connection_is_closed_and_counted_by_id_from_another_node() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis, "by-id", 2).await;
    let (mut ann, ann_id) = member(&nodes[0], "/room", &[]).await;
    let remote = nodes[1].registry.conn(ann_id);
    assert_eq!(remote.count().await.unwrap(), 1);
    // The id travels as text, as through an admin tool.
    let parsed: ConnId = ann_id.to_string().parse().unwrap();
    assert_eq!(parsed, ann_id);
    let by_id = nodes[1].registry.conn(parsed);
    let close = Box::pin(by_id.close(4000, "Kicked"));
    let (summary, seen) =
        futures_util::future::join(close, Box::pin(closed_by_server(&mut ann))).await;
    let summary = summary.unwrap();
    assert_eq!((summary.clean, summary.unanswered), (1, 0), "{summary:?}");
    assert_eq!(seen.close, Some((4000, "Kicked".to_owned())));
    assert_eq!(remote.count().await.unwrap(), 0);
    // Again: nobody there now.
    let again = remote.close(4000, "Kicked").await.unwrap();
    assert_eq!((again.total(), again.unanswered), (0, 0));
    // An id of a node that does not exist: nothing to wait for.
    let nowhere = ConnId::from((4000u64 << 48) | 1);
    let started = Instant::now();
    let summary = nodes[1]
        .registry
        .conn(nowhere)
        .close(1000, "")
        .await
        .unwrap();
    assert_eq!((summary.total(), summary.unanswered), (0, 0));
    assert_eq!(nodes[1].registry.conn(nowhere).count().await.unwrap(), 0);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[async_std::test]
async fn counts_cross_nodes_and_a_node_leaves_them_at_shutdown_without_disturbing_others() {
    let redis = RedisServer::start();
    let mut nodes = start_nodes(&redis, "count", 2).await;
    let mut clients = Vec::new();
    for node in [0, 0, 1, 1, 1] {
        clients.push(member(&nodes[node], "/room", &["room"]).await.0);
    }
    let (mut solo, _) = member(&nodes[0], "/other", &["room:solo"]).await;
    for node in &nodes {
        until_count(&node.registry.group("room"), 5).await;
        until_count(&node.registry.route("/room"), 5).await;
        until_count(&node.registry.all(), 6).await;
    }
    assert_eq!(
        nodes[0]
            .registry
            .group("room")
            .local()
            .count()
            .await
            .unwrap(),
        2
    );
    // The count hash holds one field per node, the alive keys expire.
    let fields = redis
        .cmd(&["HGETALL", &format!("count:count:g:{}", hex("room"))])
        .strings();
    assert_eq!(fields.len(), 4, "{fields:?}");
    let node_b = nodes.remove(1);
    let alive_ttl = redis
        .cmd(&["PTTL", &format!("count:alive:{}", fields[2])])
        .int();
    assert!(
        (1..=6000).contains(&alive_ttl),
        "alive key expiry {alive_ttl} ms"
    );

    // A graceful shutdown of node B removes its counts at once, and its
    // members are closed with 1001; node A goes on.
    let started = Instant::now();
    // (Its clients do not read here: their closes time out after 1 s.)
    let summary = node_b.shutdown().await;
    assert_eq!(summary.total(), 3, "{summary:?}");
    until_count(&nodes[0].registry.group("room"), 2).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(nodes[0].registry.all().count().await.unwrap(), 3);
    assert_eq!(
        redis
            .cmd(&["HGETALL", &format!("count:count:g:{}", hex("room"))])
            .strings()
            .len(),
        2
    );
    assert_eq!(nodes[0].registry.group("room:solo").send("still served"), 1);
    assert_eq!(next_text(&mut solo).await, "still served");
    drop(clients);
}

#[async_std::test]
async fn a_dead_node_stops_being_counted_when_its_alive_key_expires() {
    let redis = RedisServer::start();
    let node = start_node(&redis, "dead").await;
    let (_ann, _) = member(&node, "/room", &["room"]).await;
    let room = node.registry.group("room");
    until_count(&room, 1).await;
    // What a killed node leaves behind: its count fields, and an alive key
    // it no longer refreshes (here with 300 ms left rather than up to 6 s).
    let key = format!("dead:count:g:{}", hex("room"));
    redis.cmd(&["HSET", &key, "999", "4"]);
    redis.cmd(&["SET", "dead:alive:999", "ghost", "PX", "300"]);
    assert_eq!(room.count().await.unwrap(), 5);
    let started = Instant::now();
    until_count(&room, 1).await;
    let gone = started.elapsed();
    assert!(
        gone >= Duration::from_millis(200) && gone < Duration::from_secs(2),
        "{gone:?}"
    );
    // The dead node's field is removed on the way.
    assert_eq!(redis.cmd(&["HGETALL", &key]).strings().len(), 2);
    // A live node refreshes its own key: it never lapses while it runs.
    for _ in 0..3 {
        let ttl = redis.cmd(&["PTTL", "dead:alive:1"]).int();
        assert!(ttl > 0, "node 1's alive key: {ttl}");
    }
}

/// Lower-case hex, as the cluster spells names in keys.
fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}
