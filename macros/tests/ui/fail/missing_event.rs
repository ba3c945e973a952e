use wharf::Conn;

#[wharf::on]
async fn no_parens(_conn: &Conn) {}

#[wharf::on()]
async fn empty_parens(_conn: &Conn) {}

#[wharf::on(crate = "wharf")]
async fn only_crate(_conn: &Conn) {}

fn main() {}
