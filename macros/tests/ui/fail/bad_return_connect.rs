use wharf::Conn;

#[wharf::on("connect")]
async fn join(_conn: &Conn) -> bool {
    true
}

#[wharf::on("close")]
async fn left(_conn: &Conn, _closed: &wharf::Closed) -> Result<(), String> {
    Ok(())
}

#[wharf::on("upgrade")]
async fn check(_req: &wharf::Request) -> Result<(), u16> {
    Err(401)
}

fn main() {}
