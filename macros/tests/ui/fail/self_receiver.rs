use wharf::Conn;

struct Chat;

impl Chat {
    #[wharf::on("connect")]
    async fn join(&self, _conn: &Conn) {}
}

fn main() {
    let _ = Chat;
}
