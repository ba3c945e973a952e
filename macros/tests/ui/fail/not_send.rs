use std::rc::Rc;

use wharf::{Conn, Message};

#[wharf::on("message")]
async fn count(conn: &Conn, msg: Message) -> wharf::Result<()> {
    let local = Rc::new(msg);
    conn.send((*local).clone()).await
}

fn main() {}
