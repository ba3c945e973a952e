//! The reference echo server that benchmarks and conformance tools run.
//!
//! It echoes text and binary messages on any path; the text message `kick`
//! makes the server close the connection with 1008 "Session expired".
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:9001
//! ```
//!
//! `--addr` defaults to 127.0.0.1:9001. The server logs its address when it
//! is ready. Set `RUST_LOG=debug` for a line per connection.

use wharf::{CloseCode, Conn, Handler, Message};

/// Echoes every message back; `kick` ends the session from the server side.
struct Echo;

impl Handler for Echo {
    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        if msg.as_text() == Some("kick") {
            conn.close(CloseCode::POLICY_VIOLATION, "Session expired")
                .await?;
            return Ok(());
        }
        conn.send(msg).await
    }
}

#[async_std::main]
async fn main() -> wharf::Result<()> {
    wharf_examples::init_logging();
    let addr = wharf_examples::addr_flag("echo", "127.0.0.1:9001")?;
    // Any path echoes: the fallback route answers every WebSocket request.
    wharf::Server::new()
        .fallback(Echo)
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .bind(addr.as_str())
        .await?
        .run()
        .await
}
