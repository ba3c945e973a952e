//! Groups and selectors on one server: joining and leaving, the limits,
//! membership ending with the connection, and sending to, counting and
//! closing a group, a route, one connection or all, with `except`.

use std::time::Duration;

use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use wharf::{CloseCode, Error, Message, MAX_GROUPS_PER_CONNECTION, MAX_GROUP_NAME_BYTES};
use wharf_test_support::*;

#[async_std::test]
async fn join_leave_and_groups_with_their_limits() {
    let server = start(member_server()).await;
    let (mut ann, _) = member(&server, "/room", &[]).await;
    assert_eq!(ask(&mut ann, "groups").await, "groups ");
    assert_eq!(ask(&mut ann, "join room:a").await, "joined room:a");
    // Joining twice is one membership.
    assert_eq!(ask(&mut ann, "join room:a").await, "joined room:a");
    assert_eq!(ask(&mut ann, "groups").await, "groups room:a");
    assert_eq!(server.registry.group("room:a").count().await.unwrap(), 1);

    let long = "x".repeat(MAX_GROUP_NAME_BYTES + 1);
    for (bad, why) in [
        (long.as_str(), "longer than 128 bytes"),
        ("a\u{7}b", "control character"),
    ] {
        let answer = ask(&mut ann, &format!("join {bad}")).await;
        assert!(
            answer.starts_with("error: invalid group name") && answer.contains(why),
            "{answer}"
        );
    }
    let exact = "y".repeat(MAX_GROUP_NAME_BYTES);
    assert_eq!(
        ask(&mut ann, &format!("join {exact}")).await,
        format!("joined {exact}")
    );
    assert_eq!(
        ask(&mut ann, &format!("leave {exact}")).await,
        format!("left {exact} true")
    );

    // Up to the limit, then refused.
    for i in 1..MAX_GROUPS_PER_CONNECTION {
        assert_eq!(
            ask(&mut ann, &format!("join g{i}")).await,
            format!("joined g{i}")
        );
    }
    let refused = ask(&mut ann, "join one-too-many").await;
    assert_eq!(
        refused,
        "error: the connection is already in 64 groups, the most allowed"
    );
    assert_eq!(ask(&mut ann, "leave g1").await, "left g1 true");
    assert_eq!(ask(&mut ann, "leave g1").await, "left g1 false");
    assert_eq!(ask(&mut ann, "join one-more").await, "joined one-more");

    // Selectors refuse invalid names the same way; a send selects nobody.
    assert_eq!(server.registry.group("").send("lost"), 0);
    assert!(matches!(
        server.registry.group("").count().await,
        Err(Error::InvalidGroup(_))
    ));
    assert!(matches!(
        server.registry.group(&long).close(1000, "").await,
        Err(Error::InvalidGroup(_))
    ));
    // And an unsendable close code is refused before anything closes.
    assert!(matches!(
        server.registry.group("room:a").close(1006, "").await,
        Err(Error::InvalidCloseCode(1006))
    ));
    assert_eq!(ask(&mut ann, "groups").await.matches(',').count(), 63);
}

#[async_std::test]
async fn membership_ends_with_the_connection() {
    let server = start(member_server()).await;
    let (ann, ann_id) = member(&server, "/room", &["room:a", "user:ann"]).await;
    let (_bob, bob_id) = member(&server, "/room", &["room:a"]).await;
    let room = server.registry.group("room:a");
    assert_eq!(room.count().await.unwrap(), 2);
    assert_eq!(server.registry.groups(ann_id), ["room:a", "user:ann"]);

    drop(ann); // the TCP stream ends: 1006
    eventually("ann leaves her groups", || {
        server.registry.groups(ann_id).is_empty()
    })
    .await;
    assert_eq!(room.count().await.unwrap(), 1);
    assert_eq!(server.registry.group("user:ann").count().await.unwrap(), 0);
    assert_eq!(server.registry.groups(bob_id), ["room:a"]);
    // A connection that is gone cannot join.
    assert!(matches!(
        server.registry.join(ann_id, "late"),
        Err(Error::ConnectionClosed)
    ));
    assert!(!server.registry.leave(ann_id, "room:a"));
}

#[async_std::test]
async fn sends_reach_the_selected_connections_once_and_no_other() {
    let server = start(member_server()).await;
    let (mut a1, a1_id) = member(&server, "/room", &["red"]).await;
    let (mut a2, _) = member(&server, "/room", &["red", "blue"]).await;
    let (mut b1, b1_id) = member(&server, "/other", &["blue"]).await;
    let registry = &server.registry;

    assert_eq!(registry.group("red").send("to red"), 2);
    assert_eq!(registry.group("red").except(a1_id).send("to red but a1"), 1);
    assert_eq!(registry.group("blue").send(vec![1u8, 2]), 2);
    assert_eq!(registry.group("nobody").send("lost"), 0);
    assert_eq!(registry.route("/other").send("to /other"), 1);
    assert_eq!(registry.conn(b1_id).send(Message::text("to b1")), 1);
    assert_eq!(registry.all().except(b1_id).send("to all but b1"), 2);
    assert_eq!(registry.all().count().await.unwrap(), 3);
    assert_eq!(registry.route("/room").count().await.unwrap(), 2);
    assert_eq!(
        registry.group("red").except(a1_id).count().await.unwrap(),
        1
    );
    assert_eq!(registry.conn(a1_id).count().await.unwrap(), 1);
    assert_eq!(registry.conn(a1_id).local().count().await.unwrap(), 1);

    assert_eq!(next_text(&mut a1).await, "to red");
    assert_eq!(next_text(&mut a1).await, "to all but b1");
    assert_eq!(next_text(&mut a2).await, "to red");
    assert_eq!(next_text(&mut a2).await, "to red but a1");
    let binary = within("binary", a2.next()).await;
    assert!(
        matches!(binary, Some(Ok(WsMessage::Binary(ref b))) if b[..] == [1, 2]),
        "{binary:?}"
    );
    assert_eq!(next_text(&mut a2).await, "to all but b1");
    let binary = within("binary", b1.next()).await;
    assert!(
        matches!(binary, Some(Ok(WsMessage::Binary(_)))),
        "{binary:?}"
    );
    assert_eq!(next_text(&mut b1).await, "to /other");
    assert_eq!(next_text(&mut b1).await, "to b1");
    // Nothing more arrived for anyone: a marker sent to each comes next.
    assert_eq!(registry.all().send("end"), 3);
    for client in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(next_text(client).await, "end");
    }
}

/// Closes `selector` with 4000 "Room closed" while `clients` read to their
/// end; the summary and what each client saw.
async fn close_while_reading<const N: usize>(
    selector: &wharf::Selector,
    clients: [&mut Client; N],
) -> (wharf::CloseSummary, [ClosedBy; N]) {
    let close = Box::pin(within(
        "group close",
        selector.close(CloseCode::from(4000), "Room closed"),
    ));
    let reads =
        futures_util::future::join_all(clients.into_iter().map(|c| Box::pin(closed_by_server(c))));
    let (summary, closed) = futures_util::future::join(close, reads).await;
    let closed: [ClosedBy; N] = closed.try_into().unwrap_or_else(|_| unreachable!());
    (summary.expect("close"), closed)
}

#[async_std::test]
async fn close_of_a_group_closes_its_members_and_counts_them() {
    let server = start(member_server()).await;
    let (mut a1, _) = member(&server, "/room", &["red"]).await;
    let (mut a2, _) = member(&server, "/room", &["red"]).await;
    let (mut b, _) = member(&server, "/room", &["blue"]).await;
    // What was queued before the close arrives before the Close frame.
    server.registry.group("red").send("last words");
    let red = server.registry.group("red");
    let (summary, [a1_closed, a2_closed]) = close_while_reading(&red, [&mut a1, &mut a2]).await;
    assert_eq!(
        (summary.clean, summary.total(), summary.unanswered),
        (2, 2, 0)
    );
    for closed in [a1_closed, a2_closed] {
        assert_eq!(closed.close, Some((4000, "Room closed".to_owned())));
        assert_eq!(closed.before, [WsMessage::text("last words")]);
    }
    assert_eq!(server.registry.group("red").count().await.unwrap(), 0);
    // The other group is untouched.
    assert_eq!(ask(&mut b, "groups").await, "groups blue");
    // Closing an empty group or a gone connection closes nothing.
    let none = server.registry.group("red").close(1000, "").await.unwrap();
    assert_eq!(none.total(), 0);
}

#[async_std::test]
async fn a_slow_member_does_not_stall_a_group_send_and_meets_the_send_queue_policy() {
    let server = start(
        member_server()
            .send_queue(4)
            .send_timeout(Duration::from_millis(200)),
    )
    .await;
    let (mut fast, _) = member(&server, "/room", &["room"]).await;
    // A peer with a tiny receive window that never reads.
    let mut slow = RawPeer::connect_small_window(&server, "/room?join=room").await;
    let ready = slow.read_frame().await.expect("ready");
    assert!(ready.payload.starts_with(b"ready "));
    let room = server.registry.group("room");
    eventually("two members", || server.registry.count() == 2).await;
    let big = "z".repeat(100 << 10);
    // Until the slow member's queue is full, both take each message; then
    // only the fast one, and a send never waits.
    let mut sends = 0;
    let mut last = 2;
    while last == 2 {
        assert!(sends < 1000, "the slow member's queue never filled");
        last = room.send(big.as_str());
        sends += 1;
        let _ = next_text(&mut fast).await;
    }
    assert_eq!(last, 1);
    // Its queue stays full: it is closed with 1008 "Send queue full".
    eventually("the slow member is gone", || server.registry.count() == 1).await;
    assert_eq!(room.count().await.unwrap(), 1);
    assert_eq!(room.send("still here"), 1);
    assert_eq!(next_text(&mut fast).await, "still here");
    let stats = server.stats();
    assert_eq!(stats.closed(1008, wharf::Initiator::Server), 1);
}
