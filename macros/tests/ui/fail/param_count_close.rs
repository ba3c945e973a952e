use wharf::Conn;

#[wharf::on("close")]
async fn only_conn(_conn: &Conn) {}

#[wharf::on("close")]
async fn none() {}

fn main() {}
