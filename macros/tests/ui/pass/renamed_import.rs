//! The form the README uses: `use wharf as ws;` then `#[ws::on("...")]`.
//! Built by trybuild as its own crate outside the workspace, depending on
//! `wharf` by path: the generated code names `::wharf`, which resolves
//! there too.
use wharf as ws;
use ws::{CloseCode, Closed, Conn, Message};

#[ws::on("connect")]
async fn join(conn: &Conn) -> ws::Result<()> {
    if conn.query("token") != Some("secret") {
        conn.close(CloseCode::POLICY_VIOLATION, "Invalid authentication")
            .await?;
    }
    Ok(())
}

#[ws::on("message")]
async fn echo(conn: &Conn, msg: Message) -> ws::Result<()> {
    conn.send(msg).await
}

#[ws::on("close")]
async fn left(conn: &Conn, closed: &ws::Closed) {
    let _ = (conn.id(), closed.code);
}

#[ws::on("upgrade")]
async fn gate(req: &ws::Request) -> Result<(), ws::Rejection> {
    let _ = req.path();
    Ok(())
}

fn main() {
    let _: fn(&Closed) = |_| {};
    let _ = ws::Server::new().route("/chat", ws::handlers![gate, join, echo, left,]);
}
