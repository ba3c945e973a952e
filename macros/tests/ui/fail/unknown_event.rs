use wharf::Conn;

#[wharf::on("conect")]
async fn misspelt(_conn: &Conn) {}

#[wharf::on("disconnect")]
async fn synonym(_conn: &Conn, _closed: &wharf::Closed) {}

#[wharf::on("xyzzy")]
async fn nonsense(_conn: &Conn) {}

fn main() {
    // The misspelt handler still has a companion: no second error here.
    let _ = wharf::handlers![misspelt];
}
