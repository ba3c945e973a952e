use wharf::Conn;

#[wharf::on("connect")]
async fn join(_conn: &Conn) {}

fn main() {
    let _ = wharf::handlers![join, join];
}
