//! Runs: a real server built with `handlers![...]` and a real client, in a
//! crate outside the workspace. Also calls an annotated function directly.
use std::time::Duration;

use async_std::net::TcpStream;
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use wharf::{Conn, Message};

#[wharf::on("message")]
async fn shout(_conn: &Conn, msg: Message) -> Option<Message> {
    msg.as_text().map(|text| Message::text(text.to_uppercase()))
}

#[wharf::on("connect")]
async fn join(conn: &Conn) -> wharf::Result<()> {
    // An annotated function is still an ordinary function.
    if let Some(greeting) = shout(conn, Message::text("welcome")).await {
        conn.send(greeting).await?;
    }
    Ok(())
}

fn main() {
    let run = async {
        let listening = wharf::Server::new()
            .route("/", wharf::handlers![join, shout])
            .bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listening.local_addr();
        async_std::task::spawn(listening.run());

        let tcp = TcpStream::connect(addr).await.expect("tcp connect");
        let (mut ws, _) = async_tungstenite::client_async(format!("ws://{addr}/"), tcp)
            .await
            .expect("handshake");
        let first = ws.next().await.expect("open").expect("message");
        assert_eq!(first, WsMessage::text("WELCOME"));
        ws.send(WsMessage::text("hi")).await.expect("send");
        let reply = ws.next().await.expect("open").expect("message");
        assert_eq!(reply, WsMessage::text("HI"));
        ws.close(None).await.expect("close");
    };
    async_std::task::block_on(async_std::future::timeout(Duration::from_secs(20), run))
        .expect("timed out");
}
