use wharf::{Closed, Conn, Message};

#[wharf::on("connect")]
async fn join(_conn: Conn) {}

#[wharf::on("close")]
async fn left(_: &Conn, _closed: Closed) {}

#[wharf::on("upgrade")]
async fn check(_req: wharf::Request) {}

#[wharf::on("message")]
async fn echo(_conn: &Conn, _msg: &Message) {}

#[wharf::on("message")]
async fn mutable(_conn: &mut Conn, _msg: Message) {}

fn main() {
    // The companions exist: listing the handlers adds no error.
    let _ = wharf::handlers![join, echo, left, check];
}
