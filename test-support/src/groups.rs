//! A handler for the group and cluster tests: members that join groups
//! from their query and on command, and clients that say which connection
//! they are.

use std::time::Duration;

use wharf::{Conn, ConnId, Handler, Message, Server};

use crate::{connect, next_text, send_text, Client, TestServer};

/// Joins the groups named in `?join=a,b` at connect, then says
/// `ready ID`; answers the text commands `join NAME` (`joined NAME` or
/// `error: ...`), `leave NAME` (`left NAME true|false`) and `groups`
/// (`groups a,b`). Any other message is ignored: what a member receives
/// is what the selectors sent it.
#[derive(Debug)]
pub struct Member;

impl Handler for Member {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let joins: Vec<String> = conn
            .query("join")
            .unwrap_or_default()
            .split(',')
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect();
        for group in joins {
            conn.join(&group)?;
        }
        conn.send(format!("ready {}", conn.id())).await
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        let Some(text) = msg.as_text() else {
            return Ok(());
        };
        if let Some(group) = text.strip_prefix("join ") {
            let reply = match conn.join(group) {
                Ok(()) => format!("joined {group}"),
                Err(err) => format!("error: {err}"),
            };
            conn.send(reply).await
        } else if let Some(group) = text.strip_prefix("leave ") {
            let left = conn.leave(group);
            conn.send(format!("left {group} {left}")).await
        } else if text == "groups" {
            conn.send(format!("groups {}", conn.groups().join(",")))
                .await
        } else {
            Ok(())
        }
    }
}

/// A server with [`Member`] on `/room` and `/other`, short close and
/// drain timeouts, and no heartbeat.
pub fn member_server() -> Server {
    Server::new()
        .route("/room", Member)
        .route("/other", Member)
        .close_timeout(Duration::from_secs(1))
        .drain_timeout(Duration::from_secs(3))
        .no_heartbeat()
}

/// Connects a [`Member`] to `path` joining `groups`; its client and id.
pub async fn member(server: &TestServer, path: &str, groups: &[&str]) -> (Client, ConnId) {
    let mut client = connect(server, &format!("{path}?join={}", groups.join(","))).await;
    let ready = next_text(&mut client).await;
    let id = ready
        .strip_prefix("ready ")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("expected `ready ID`, got {ready:?}"));
    (client, id)
}

/// Sends a command to a [`Member`] and returns its answer.
pub async fn ask(client: &mut Client, command: &str) -> String {
    send_text(client, command).await;
    next_text(client).await
}
