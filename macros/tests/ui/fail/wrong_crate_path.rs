use wharf::Conn;

#[wharf::on("connect", crate = "no_such_crate")]
async fn wrong_path(_conn: &Conn) {}

fn main() {}
