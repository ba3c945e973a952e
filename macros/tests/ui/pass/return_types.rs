//! Every event with every return type it allows, parameters named freely.
use wharf::{Bytes, Closed, Conn, Message, Rejection, Request, Text};

#[derive(Debug)]
struct AppError;

impl From<AppError> for wharf::Error {
    fn from(_: AppError) -> Self {
        wharf::Error::handler("app error")
    }
}

#[wharf::on("upgrade")]
async fn accept_all(_: &Request) {}

#[wharf::on("upgrade")]
async fn check_token(req: &Request) -> Result<(), Rejection> {
    match req.query("token") {
        Some(_) => Ok(()),
        None => Err(Rejection::unauthorized("no token\n")),
    }
}

#[wharf::on("connect")]
async fn connect_unit(_conn: &Conn) {}

#[wharf::on("connect")]
async fn connect_result(conn: &Conn) -> wharf::Result<()> {
    conn.send("hi").await
}

#[wharf::on("connect")]
async fn connect_app_error(_conn: &Conn) -> Result<(), AppError> {
    Err(AppError)
}

#[wharf::on("connect")]
async fn connect_explicit_unit(_conn: &wharf::Conn) -> () {}

#[wharf::on("message")]
async fn message_unit(_conn: &Conn, _msg: Message) {}

#[wharf::on("message")]
async fn message_echo(_: &Conn, msg: Message) -> Message {
    msg
}

#[wharf::on("message")]
async fn message_option(_conn: &Conn, msg: Message) -> Option<Message> {
    msg.is_text().then_some(msg)
}

#[wharf::on("message")]
async fn message_string(_conn: &Conn, msg: Message) -> String {
    format!("{} bytes", msg.len())
}

#[wharf::on("message")]
async fn message_str(_conn: &Conn, _msg: Message) -> &'static str {
    "ok"
}

#[wharf::on("message")]
async fn message_vec(_conn: &Conn, msg: Message) -> Vec<u8> {
    msg.as_bytes().to_vec()
}

#[wharf::on("message")]
async fn message_bytes(_conn: &Conn, _msg: Message) -> Bytes {
    Bytes::from_static(b"\x01\x02")
}

#[wharf::on("message")]
async fn message_utf8(_conn: &Conn, _msg: Message) -> Text {
    Text::from_static("text")
}

#[wharf::on("message")]
async fn message_result(conn: &Conn, msg: Message) -> wharf::Result<()> {
    conn.send(msg).await
}

#[wharf::on("message")]
async fn message_result_string(_conn: &Conn, msg: Message) -> Result<String, AppError> {
    msg.as_text().map(str::to_uppercase).ok_or(AppError)
}

#[wharf::on("message")]
async fn message_result_option(_conn: &Conn, mut msg: Message) -> wharf::Result<Option<Message>> {
    msg = Message::text(format!("{msg:?}"));
    Ok(Some(msg))
}

#[wharf::on("close")]
async fn close_unit(_conn: &Conn, _closed: &Closed) {}

#[wharf::on("close")]
async fn close_result(conn: &Conn, closed: &Closed) -> wharf::Result<()> {
    let _ = (conn.id(), closed.code);
    Ok(())
}

#[wharf::on("close")]
async fn close_lifetimes<'a>(conn: &'a Conn, closed: &'a Closed) -> Result<(), AppError> {
    let _ = (conn, closed);
    Ok(())
}

#[wharf::on("connect")]
pub async fn public_handler(_conn: &Conn) {}

#[wharf::on("connect")]
pub(crate) async fn crate_handler(_conn: &Conn) {}

fn main() {
    let _ = wharf::Server::new()
        .route(
            "/a",
            wharf::handlers![accept_all, connect_unit, message_unit, close_unit],
        )
        .route(
            "/b",
            wharf::handlers![check_token, connect_result, message_echo, close_result],
        )
        .route(
            "/c",
            wharf::handlers![connect_app_error, message_option, close_lifetimes],
        )
        .route(
            "/d",
            wharf::handlers![connect_explicit_unit, message_string],
        )
        .route("/e", wharf::handlers![public_handler, message_str])
        .route("/f", wharf::handlers![crate_handler, message_vec])
        .route("/g", wharf::handlers![message_bytes])
        .route("/h", wharf::handlers![message_utf8])
        .route("/i", wharf::handlers![message_result])
        .route("/j", wharf::handlers![message_result_string])
        .route("/k", wharf::handlers![message_result_option])
        .route("/empty", wharf::handlers![]);
}
