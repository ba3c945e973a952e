use wharf::{Conn, Request};

#[wharf::on("upgrade")]
async fn none() {}

#[wharf::on("upgrade")]
async fn extra(_req: &Request, _conn: &Conn) {}

fn main() {}
