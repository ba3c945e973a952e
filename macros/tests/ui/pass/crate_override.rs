//! `crate = "..."` for a crate that reaches wharf under another name: an
//! `extern crate` rename (as a `package = "wharf"` rename in Cargo.toml
//! would give) and a re-export from a module.
extern crate wharf as sockets;

mod framework {
    pub use ::wharf as ws;
}

use sockets::{Conn, Message};

#[sockets::on("connect", crate = "::sockets")]
async fn join(conn: &Conn) -> sockets::Result<()> {
    conn.send("hello").await
}

#[framework::ws::on("message", crate = "crate::framework::ws")]
async fn echo(_conn: &Conn, msg: Message) -> Message {
    msg
}

#[sockets::on("close", crate = "sockets")]
async fn left(_conn: &Conn, _closed: &sockets::Closed) {}

fn main() {
    let _ = sockets::Server::new().route("/", sockets::handlers![join, echo, left]);
}
