//! `handlers![...]` takes paths, and the companion follows the function:
//! its visibility, its `#[cfg]`, a raw identifier as its name.
mod chat {
    pub mod handlers {
        use wharf::{Conn, Message};

        /// Greets the newcomer.
        #[wharf::on("connect")]
        pub async fn join(conn: &Conn) -> wharf::Result<()> {
            conn.send("welcome").await
        }

        #[wharf::on("message")]
        pub(crate) async fn r#move(_conn: &Conn, msg: Message) -> Option<Message> {
            Some(msg)
        }
    }

    #[wharf::on("close")]
    pub(super) async fn left(_conn: &wharf::Conn, _closed: &wharf::Closed) {}

    #[cfg(any())]
    #[wharf::on("upgrade")]
    pub async fn never_compiled(_req: &wharf::Request) {}
}

use wharf::__private::{Companion, Event};

fn main() {
    let handlers = wharf::handlers![
        chat::handlers::join,
        self::chat::handlers::r#move,
        crate::chat::left,
    ];
    assert_eq!(<chat::handlers::join as Companion>::NAME, "join");
    assert_eq!(<chat::handlers::r#move as Companion>::NAME, "move");
    assert_eq!(<chat::handlers::r#move as Companion>::EVENT, Event::Message);
    assert_eq!(<chat::left as Companion>::EVENT, Event::Close);
    let _ = wharf::Server::new().route("/", handlers);
}
