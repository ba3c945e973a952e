//! A chat room: the main Wharf example.
//!
//! It shows a WebSocket route with connect, message and close handlers,
//! per-connection data, broadcasting through the registry, and closes
//! started by the server, both from a connection's own handler and from
//! another connection's handler through a registry handle.
//!
//! ```text
//! cargo run --example chat
//! ```
//!
//! then open <http://127.0.0.1:8080/> in two browser tabs. `--addr HOST:PORT`
//! changes the address (default 127.0.0.1:8080); the server logs it when it
//! is ready. Set `RUST_LOG=debug` for a line per connection.
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
//! longer than 500 characters is refused with a note to its sender only. The
//! page at `/` shows the close code and reason when the session ends.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use wharf::{CloseCode, Closed, Conn, ConnId, Handler, Message};

/// The route of the room.
const ROOM: &str = "/chat";
/// Longest chat line, in characters; longer ones are refused politely.
const MAX_CHARS: usize = 500;
/// Longest name, in characters.
const MAX_NAME: usize = 24;
/// Close code for a member removed with `/kick` (private range 4000-4999).
const KICKED: u16 = 4000;
/// Close code for a connection whose name is already in the room.
const NAME_TAKEN: u16 = 4001;

/// The page served at `/`: plain HTML and JavaScript, no external resources.
const PAGE: &str = include_str!("chat.html");

/// A member's name, kept in the connection's extensions.
struct Name(String);

/// The room: who is in it, by name.
///
/// The roster maps names to connection ids so `/kick NAME` can find the
/// connection's handle in the registry; it also makes the duplicate-name
/// check and the join one atomic step.
#[derive(Default)]
struct Chat {
    roster: Mutex<HashMap<String, ConnId>>,
}

impl Chat {
    fn roster(&self) -> MutexGuard<'_, HashMap<String, ConnId>> {
        self.roster.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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

impl Handler for Chat {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let name = pick_name(conn.query("name"), conn.id());
        let present = {
            let mut roster = self.roster();
            if roster.contains_key(&name) {
                None
            } else {
                roster.insert(name.clone(), conn.id());
                let mut names: Vec<&str> = roster.keys().map(String::as_str).collect();
                names.sort_unstable();
                Some(names.join(", "))
            }
        };
        let Some(present) = present else {
            tracing::info!(id = %conn.id(), %name, "name taken; refusing");
            conn.close(NAME_TAKEN, "Name taken").await?;
            return Ok(());
        };
        conn.extensions().insert(Name(name.clone()));
        tracing::info!(id = %conn.id(), %name, "joined");
        conn.text(format!(
            "* welcome, {name}. In the room: {present}. Commands: /quit, /kick NAME"
        ))
        .await?;
        conn.registry().broadcast(ROOM, format!("* {name} joined"));
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        let Some(text) = msg.as_text() else {
            return conn.text("* only text messages are supported").await;
        };
        let text = text.trim();
        let me = match conn.extensions().get::<Name>() {
            Some(Name(name)) => name.clone(),
            None => return Ok(()),
        };
        let chars = text.chars().count();
        if chars > MAX_CHARS {
            return conn
                .text(format!(
                    "* not sent: {chars} characters, the limit is {MAX_CHARS}"
                ))
                .await;
        }
        if text == "/quit" {
            // Closing from inside our own handler: the server sends the
            // Close frame and waits for the browser's answer.
            conn.close(CloseCode::NORMAL, "Goodbye").await?;
        } else if let Some(target) = text.strip_prefix("/kick ") {
            let target = target.trim();
            let id = self.roster().get(target).copied();
            // The registry hands out a handle to any live connection.
            match id.and_then(|id| conn.registry().get(id)) {
                Some(handle) => {
                    let outcome = handle.close(KICKED, &format!("Kicked by {me}")).await?;
                    tracing::info!(by = %me, kicked = %target, %outcome, "kick");
                }
                None => conn.text(format!("* nobody named {target:?}")).await?,
            }
        } else if text.starts_with('/') {
            conn.text(format!(
                "* unknown command {text:?}; try /quit or /kick NAME"
            ))
            .await?;
        } else if !text.is_empty() {
            conn.registry().broadcast(ROOM, format!("{me}: {text}"));
        }
        Ok(())
    }

    async fn on_close(&self, conn: &Conn, closed: &Closed) {
        // Connections refused in `on_connect` never got a name.
        let Some(Name(name)) = conn.extensions().remove::<Name>() else {
            return;
        };
        self.roster().remove(&name);
        // The connection has already left the registry: this goes to the
        // others only.
        let why = match closed.reason.as_str() {
            "" => format!("{}", closed.code),
            reason => format!("{} {reason}", closed.code),
        };
        conn.registry()
            .broadcast(ROOM, format!("* {name} left ({why})"));
    }
}

#[async_std::main]
async fn main() -> wharf::Result<()> {
    wharf_examples::init_logging();
    let addr = wharf_examples::addr_flag("chat", "127.0.0.1:8080")?;
    let server = wharf::Server::new()
        .page("/", "text/html; charset=utf-8", PAGE)
        .route(ROOM, Chat::default())
        // The hard limit: a bigger message ends the connection with 1009.
        // Chat lines are refused politely long before that (`MAX_CHARS`).
        .max_message_size(64 << 10)
        .bind(addr.as_str())
        .await?;
    tracing::info!("open http://{}/ in a browser", server.local_addr());
    server.run().await
}
