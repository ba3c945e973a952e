use wharf::{Conn, Message};

#[wharf::on("message")]
async fn count(_conn: &Conn, msg: Message) -> usize {
    msg.len()
}

#[wharf::on("message")]
async fn wrong_error(_conn: &Conn, msg: Message) -> Result<Message, String> {
    Ok(msg)
}

fn main() {}
