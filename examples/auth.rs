//! Authentication two ways: refusing at the HTTP upgrade, and closing right
//! after connecting.
//!
//! ```text
//! cargo run --example auth -- --addr 127.0.0.1:8081
//! ```
//!
//! `--addr` defaults to 127.0.0.1:8081. Both routes want the query
//! parameter `token=secret`, and echo messages once a client is in:
//!
//! - `ws://HOST:PORT/strict?token=...`: an `upgrade` handler checks the token
//!   before the server answers the HTTP request. A wrong or missing token
//!   gets `401 Unauthorized` and no WebSocket is ever established: nothing
//!   is allocated for the connection and no other handler runs. Browsers do
//!   not show the status to the page (the WebSocket API reports only an
//!   error and a close with 1006), so this suits clients you control and
//!   floods you want to refuse cheaply.
//! - `ws://HOST:PORT/?token=...`: the upgrade always succeeds and the
//!   `connect` handler checks the token; a wrong or missing one is closed
//!   with 1008 "Invalid authentication", which a browser page can read from
//!   the close event and show to its user.
//!
//! Try them with any WebSocket client, and look at the refusal with curl
//! (the server logs refusals before an upgrade at `debug`):
//!
//! ```text
//! websocat 'ws://127.0.0.1:8081/strict?token=secret'
//! curl -i http://127.0.0.1:8081/strict -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
//!     -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=='
//! ```

use clap::Parser;
use wharf as ws;
use ws::{CloseCode, Conn, Message, Rejection, Request};

/// The one token both routes accept. A real server would look it up.
const TOKEN: &str = "secret";

/// `/strict`: refuses the upgrade itself with 401 unless `?token=secret`.
#[ws::on("upgrade")]
async fn require_token(req: &Request) -> Result<(), Rejection> {
    if req.query("token") == Some(TOKEN) {
        return Ok(());
    }
    // HTTP asks a 401 to name how to authenticate.
    Err(Rejection::unauthorized("missing or wrong token\n")
        .header("WWW-Authenticate", "Bearer realm=\"wharf auth example\""))
}

/// `/`: the connection is open; closes it with 1008 unless `?token=secret`.
#[ws::on("connect")]
async fn check_token(conn: &Conn) -> ws::Result<()> {
    if conn.query("token") != Some(TOKEN) {
        conn.close(CloseCode::POLICY_VIOLATION, "Invalid authentication")
            .await?;
    }
    Ok(())
}

/// Both routes, once a client is in: every message comes back.
#[ws::on("message")]
async fn echo(_conn: &Conn, msg: Message) -> Message {
    msg
}

/// The server: `/strict` checks at the upgrade, `/` at connect.
pub fn app() -> ws::Server {
    ws::Server::new()
        .route("/strict", ws::handlers![require_token, echo])
        .route("/", ws::handlers![check_token, echo])
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "auth",
    about = "Token authentication at the upgrade (/strict) and at connect (/)."
)]
struct Options {
    /// Listen address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8081")]
    addr: String,
}

#[async_std::main]
async fn main() -> ws::Result<()> {
    let Options { addr } = Options::parse();
    wharf_examples::init_logging();
    app()
        .bind(addr.as_str())
        .await?
        .shutdown_on_signals()
        .run()
        .await?;
    Ok(())
}
