use wharf::Conn;

struct Chat;

#[wharf::on("connect")]
impl Chat {
    async fn join(_conn: &Conn) {}
}

fn main() {}
