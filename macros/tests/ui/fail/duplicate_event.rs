use wharf::{Conn, Message};

#[wharf::on("connect")]
async fn join(_conn: &Conn) {}

#[wharf::on("message")]
async fn echo(_conn: &Conn, msg: Message) -> Message {
    msg
}

mod greetings {
    use wharf::Conn;

    #[wharf::on("connect")]
    pub async fn welcome(conn: &Conn) -> wharf::Result<()> {
        conn.send("welcome").await
    }
}

fn main() {
    let _ = wharf::handlers![join, echo, greetings::welcome];
}
