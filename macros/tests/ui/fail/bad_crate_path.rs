use wharf::Conn;

#[wharf::on("connect", crate = wharf)]
async fn unquoted(_conn: &Conn) {}

#[wharf::on("connect", crate = "not a path")]
async fn not_a_path(_conn: &Conn) {}

fn main() {}
