//! A chat room: the main Wharf example.
//!
//! It shows a WebSocket route built from `#[ws::on(...)]` handlers for
//! connect, message and close; application state shared by every
//! connection (`Server::state` and `conn.state()`); per-connection data
//! (`conn.extensions()`); groups and selectors (`conn.join`,
//! `registry.route(..).send`, `registry.group(..).close`); and closes
//! started by the server, both from a connection's own handler and from
//! another connection's handler. With `--redis` several servers make one
//! room (the `cluster` feature).
//!
//! ```text
//! cargo run --example chat
//! ```
//!
//! then open <http://127.0.0.1:8080/> in two browser tabs. `--addr HOST:PORT`
//! changes the address (default 127.0.0.1:8080); the server logs it when it
//! is ready. With `--tls-cert PEM --tls-key PEM` the page is served over
//! https and the room over wss (the page picks `wss://` when it was loaded
//! over https): open <https://localhost:8080/> with a certificate for
//! `localhost` that the browser trusts (for example one made with mkcert). Set `RUST_LOG=debug` for a line per connection. Ctrl-C closes
//! every connection with 1001 "Going away" before the server exits.
//!
//! On several nodes, with a Redis on 127.0.0.1:6379:
//!
//! ```text
//! cargo run --example chat -- --addr 127.0.0.1:8081 --redis redis://127.0.0.1:6379
//! cargo run --example chat -- --addr 127.0.0.1:8082 --redis redis://127.0.0.1:6379
//! ```
//!
//! A line said on one node appears on the other, `/kick NAME` closes NAME's
//! connection whichever node holds it, and a name in use on any node is
//! refused.
//!
//! The room lives on `ws://HOST:PORT/chat?name=NAME`. Every text message is
//! sent to everyone in the room, sender included, as `NAME: text`; joins and
//! leaves are announced as `* ...` lines. Commands:
//!
//! - `/quit`: the server closes your connection with 1000 "Goodbye".
//! - `/kick NAME`: the server closes NAME's connection with 4000
//!   "Kicked by YOU" (anyone may kick anyone: this is a demo).
//!
//! A name already in the room is refused with 4001 "Name taken"; a message
//! longer than 500 characters is refused with a note to its sender only; a
//! message over 64 KiB ends the connection with 1009. The page at `/` shows
//! the close code and reason when the session ends.
//!
//! Each member is in the group `user:NAME`. The name check takes the name
//! on this node first (one atomic step), then, with a cluster, counts
//! `user:NAME` across the nodes: more than one member means the name is in
//! use elsewhere. Counts reach Redis a moment after a join, so two people
//! taking one name on two nodes within those few milliseconds may both be
//! refused, or (if neither count has landed yet) both admitted: a demo's
//! race, documented rather than solved (a real service would reserve names
//! in its database).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use clap::Parser;
use wharf as ws;
use ws::{CloseCode, Closed, Conn, ConnId, Message};

/// The route of the room.
const ROOM: &str = "/chat";
/// Longest chat line, in characters; longer ones are refused politely.
const MAX_CHARS: usize = 500;
/// Largest message, in bytes: a bigger one ends the connection with 1009.
const MAX_MESSAGE: usize = 64 << 10;
/// Longest name, in characters.
const MAX_NAME: usize = 24;
/// Close code for a member removed with `/kick` (private range 4000-4999).
const KICKED: u16 = 4000;
/// Close code for a connection whose name is already in the room.
const NAME_TAKEN: u16 = 4001;

/// The page served at `/`: plain HTML and JavaScript, no external resources.
const PAGE: &str = include_str!("chat.html");

/// The room on this server: who is in it, by name. One value for the
/// whole server, registered with `Server::state` and shared by every
/// handler.
///
/// The roster makes the duplicate-name check and the join one atomic step
/// on this node (the cluster-wide check follows in `join`), and lists the
/// local members in the welcome line.
#[derive(Debug, Default)]
pub struct Room {
    roster: Mutex<HashMap<String, ConnId>>,
}

impl Room {
    /// The room registered with the server.
    fn of(conn: &Conn) -> ws::Result<&Room> {
        conn.state::<Room>()
            .ok_or_else(|| ws::Error::handler("the server has no Room state"))
    }

    fn roster(&self) -> MutexGuard<'_, HashMap<String, ConnId>> {
        self.roster.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A member's name, kept in the connection's extensions.
struct Name(String);

/// Cleans the `?name=` a client asked for: letters, digits, `-`, `_` and `.`
/// only, at most [`MAX_NAME`] characters. Without a usable name, or with one
/// that starts with `guest-` (kept for defaults), the member is `guest-ID`.
fn pick_name(asked: Option<&str>, id: ConnId) -> String {
    let cleaned: String = asked
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(MAX_NAME)
        .collect();
    if cleaned.is_empty() || cleaned.starts_with("guest-") {
        format!("guest-{id}")
    } else {
        cleaned
    }
}

/// The group of the member named `name`.
fn user_group(name: &str) -> String {
    format!("user:{name}")
}

/// Joins the room under the asked name, or closes with 4001 when it is taken.
#[ws::on("connect")]
async fn join(conn: &Conn) -> ws::Result<()> {
    let name = pick_name(conn.query("name"), conn.id());
    let present = {
        let mut roster = Room::of(conn)?.roster();
        if roster.contains_key(&name) {
            None
        } else {
            roster.insert(name.clone(), conn.id());
            let mut names: Vec<&str> = roster.keys().map(String::as_str).collect();
            names.sort_unstable();
            Some(names.join(", "))
        }
    }; // the roster is unlocked before anything is awaited
    let Some(present) = present else {
        return refuse(conn, &name).await;
    };
    let group = user_group(&name);
    conn.join(&group)?;
    // With a cluster, someone on another node may hold the name (see the
    // race in the module docs). Without one, this counts 1: ourselves.
    if conn.registry().group(&group).count().await? > 1 {
        conn.leave(&group);
        Room::of(conn)?.roster().remove(&name);
        return refuse(conn, &name).await;
    }
    conn.extensions().insert(Name(name.clone()));
    tracing::info!(id = %conn.id(), %name, "joined");
    let room = conn.registry().route(ROOM);
    let here = room.clone().local().count().await?;
    let elsewhere = room.count().await?.saturating_sub(here);
    let others = match elsewhere {
        0 => String::new(),
        n => format!(", and {n} on other nodes"),
    };
    conn.text(format!(
        "* welcome, {name}. In the room: {present}{others}. Commands: /quit, /kick NAME"
    ))
    .await?;
    room.send(format!("* {name} joined"));
    Ok(())
}

/// Closes a connection whose name is taken with 4001.
async fn refuse(conn: &Conn, name: &str) -> ws::Result<()> {
    tracing::info!(id = %conn.id(), %name, "name taken; refusing");
    conn.close(NAME_TAKEN, "Name taken").await?;
    Ok(())
}

/// Runs a command or sends a line to the room. The returned text, if any,
/// is a note for the sender only.
#[ws::on("message")]
async fn say(conn: &Conn, msg: Message) -> ws::Result<Option<String>> {
    let Some(text) = msg.as_text() else {
        return Ok(Some("* only text messages are supported".into()));
    };
    let text = text.trim();
    let Some(me) = conn.extensions().get::<Name>().map(|name| name.0.clone()) else {
        return Ok(None); // refused in `join`: the close is under way
    };
    let chars = text.chars().count();
    if chars > MAX_CHARS {
        return Ok(Some(format!(
            "* not sent: {chars} characters, the limit is {MAX_CHARS}"
        )));
    }
    if text == "/quit" {
        // Closing from inside our own handler: the server sends the Close
        // frame and waits for the browser's answer.
        conn.close(CloseCode::NORMAL, "Goodbye").await?;
    } else if let Some(target) = text.strip_prefix("/kick ") {
        let target = target.trim();
        // The member's group, wherever it is: on this node or another.
        let summary = match conn
            .registry()
            .group(&user_group(target))
            .close(KICKED, &format!("Kicked by {me}"))
            .await
        {
            Ok(summary) => summary,
            // Not a name anyone can have (too long, control characters).
            Err(ws::Error::InvalidGroup(_)) => ws::CloseSummary::default(),
            Err(err) => return Err(err),
        };
        if summary.total() == 0 && summary.unanswered == 0 {
            return Ok(Some(format!("* nobody named {target:?}")));
        }
        if summary.total() == 0 {
            return Ok(Some(format!(
                "* {target:?} may be on a node that did not answer"
            )));
        }
        tracing::info!(by = %me, kicked = %target, clean = summary.clean, unanswered = summary.unanswered, "kick");
    } else if text.starts_with('/') {
        return Ok(Some(format!(
            "* unknown command {text:?}; try /quit or /kick NAME"
        )));
    } else if !text.is_empty() {
        conn.registry().route(ROOM).send(format!("{me}: {text}"));
    }
    Ok(None)
}

/// Leaves the room and tells the others why.
#[ws::on("close")]
async fn leave(conn: &Conn, closed: &Closed) -> ws::Result<()> {
    // Connections refused in `join` never got a name.
    let Some(Name(name)) = conn.extensions().remove::<Name>() else {
        return Ok(());
    };
    Room::of(conn)?.roster().remove(&name);
    // The connection has already left the registry: this goes to the
    // others only.
    let why = match closed.reason.as_str() {
        "" => format!("{}", closed.code),
        reason => format!("{} {reason}", closed.code),
    };
    conn.registry()
        .route(ROOM)
        .send(format!("* {name} left ({why})"));
    Ok(())
}

/// The chat server: the page at `/` and the room at [`ROOM`]; a node of
/// the cluster on `redis` when given.
pub fn app(redis: Option<&str>) -> ws::Server {
    let server = match redis {
        Some(url) => ws::Server::new().cluster(ws::Cluster::new(url).namespace("chat")),
        None => ws::Server::new(),
    };
    server
        .state(Room::default())
        .page("/", "text/html; charset=utf-8", PAGE)
        .route(ROOM, ws::handlers![join, say, leave])
        // The hard limit: a bigger message ends the connection with 1009.
        // Chat lines are refused politely long before that (`MAX_CHARS`).
        .max_message_size(MAX_MESSAGE)
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "chat",
    about = "A chat room: open http://HOST:PORT/ in a browser."
)]
struct Options {
    /// Listen address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Join the chat cluster on this Redis (`redis://[user:password@]host[:port][/db]`):
    /// every server started with the same Redis shares one room.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Serve the page over https and the room over wss with this PEM
    /// certificate chain; needs --tls-key.
    #[arg(long = "tls-cert", value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long = "tls-key", value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

#[async_std::main]
async fn main() -> ws::Result<()> {
    let Options {
        addr,
        redis,
        tls_cert,
        tls_key,
    } = Options::parse();
    wharf_examples::init_logging();
    let (app, scheme) = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => (
            app(redis.as_deref()).tls(ws::TlsConfig::from_pem_files(cert, key)?),
            "https",
        ),
        _ => (app(redis.as_deref()), "http"),
    };
    let server = app.bind(addr.as_str()).await?;
    tracing::info!("open {scheme}://{}/ in a browser", server.local_addr());
    let summary = server.shutdown_on_signals().run().await?;
    tracing::info!(
        clean = summary.clean,
        dropped = summary.dropped,
        "chat stopped"
    );
    Ok(())
}
