use wharf::Conn;

#[wharf::on("connect")]
async fn join<T: Default>(_conn: &Conn) {}

#[wharf::on("connect")]
async fn with_where(_conn: &Conn)
where
    String: Clone,
{
}

#[wharf::on("connect")]
async fn with_impl(_conn: &impl std::fmt::Debug) {}

fn main() {}
