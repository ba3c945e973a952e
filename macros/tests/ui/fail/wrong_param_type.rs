use wharf::{Closed, Conn, Message};

#[wharf::on("connect")]
async fn join(_conn: &String) {}

#[wharf::on("message")]
async fn echo(_conn: &Conn, _msg: String) {}

#[wharf::on("close")]
async fn left(_conn: &Conn, _closed: &Conn) {}

#[wharf::on("upgrade")]
async fn check(_req: &Closed) {}

#[wharf::on("message")]
async fn swapped(_msg: Message, _conn: &Conn) {}

fn main() {}
