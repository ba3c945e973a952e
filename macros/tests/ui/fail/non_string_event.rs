use wharf::Conn;

#[wharf::on(connect)]
async fn bare(_conn: &Conn) {}

#[wharf::on(42)]
async fn number(_conn: &Conn) {}

#[wharf::on(b"connect")]
async fn byte_string(_conn: &Conn) {}

fn main() {}
