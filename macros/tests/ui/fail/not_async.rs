use wharf::Conn;

#[wharf::on("connect")]
fn join(conn: &Conn) -> wharf::Result<()> {
    let _ = conn;
    Ok(())
}

fn main() {
    // Still callable, and still listable: the attribute's error is the only one.
    let _ = wharf::handlers![join];
}
