use wharf::Conn;

#[wharf::on("connect", foo = 1)]
async fn join(_conn: &Conn) {}

#[wharf::on("connect", crate = "wharf", crate = "wharf")]
async fn twice(_conn: &Conn) {}

#[wharf::on("connect", (1, 2))]
async fn tuple(_conn: &Conn) {}

fn main() {}
