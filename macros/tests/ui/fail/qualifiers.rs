use wharf::Conn;

#[wharf::on("connect")]
async unsafe fn not_safe(_conn: &Conn) {}

#[wharf::on("connect")]
async extern "C" fn with_abi(_conn: &Conn) {}

#[wharf::on("connect")]
const async fn constant(_conn: &Conn) {}

#[wharf::on("message")]
async fn variadic(_conn: &Conn, _msg: wharf::Message, _: ...) {}

fn main() {}
