use wharf::{Conn, Message};

#[wharf::on("connect", "message")]
async fn both(_conn: &Conn) {}

#[wharf::on("message")]
#[wharf::on("close")]
async fn stacked(_conn: &Conn, _msg: Message) {}

fn main() {}
