use wharf::{Conn, Message};

async fn plain(_conn: &Conn) {}

#[wharf::on("message")]
async fn echo(_conn: &Conn, msg: Message) -> Message {
    msg
}

struct Chat;
impl wharf::Handler for Chat {}

fn main() {
    let _ = wharf::handlers![plain, echo];
    let _ = wharf::handlers![Chat];
}
