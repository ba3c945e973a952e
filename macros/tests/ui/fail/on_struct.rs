#[wharf::on("connect")]
struct Chat;

fn main() {}
