use wharf::{Conn, Message};

#[wharf::on("connect")]
async fn none() {}

#[wharf::on("connect")]
async fn extra(_conn: &Conn, _msg: Message) {}

fn main() {}
