use wharf::{Conn, Message};

#[wharf::on("message")]
async fn only_conn(_conn: &Conn) {}

#[wharf::on("message")]
async fn three(_conn: &Conn, _msg: Message, _extra: u32, _more: bool) {}

fn main() {}
