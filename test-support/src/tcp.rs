//! Plain TCP peers for hostile input: many sockets at once, a byte at a
//! time, or waiting for the server to drop one.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;

use crate::{within, within_for};

/// A TCP connection to `addr` on a socket that `configure` sets up first
/// (its options, the address it binds), connected on a blocking thread
/// within the support's time limit.
pub(crate) async fn connect_configured(
    addr: SocketAddr,
    configure: impl FnOnce(&socket2::Socket) -> std::io::Result<()> + Send + 'static,
) -> TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    let connect = move || -> std::io::Result<std::net::TcpStream> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        configure(&socket)?;
        socket.connect(&addr.into())?;
        let stream: std::net::TcpStream = socket.into();
        stream.set_nonblocking(true)?;
        Ok(stream)
    };
    let stream = within("tcp connect", async_std::task::spawn_blocking(connect))
        .await
        .expect("tcp connect");
    TcpStream::from(stream)
}

/// Reads and discards until the server ends the stream (EOF or reset),
/// failing after `limit`; returns how many bytes arrived before the end.
pub async fn wait_until_dropped(stream: &mut TcpStream, limit: Duration) -> usize {
    within_for(limit, "the server to drop the socket", async {
        let mut total = 0;
        let mut chunk = vec![0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(err) => {
                    assert!(
                        matches!(
                            err.kind(),
                            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                        ),
                        "unexpected read error: {err}"
                    );
                    return total;
                }
            }
        }
    })
    .await
}

/// Writes `bytes` one at a time, `pace` apart, until done or the server
/// drops the socket; returns how many were written. The pace is the
/// client's, not a wait for an event: the loop is bounded by `bytes`.
pub async fn trickle(mut stream: TcpStream, bytes: Vec<u8>, pace: Duration) -> usize {
    for (i, byte) in bytes.iter().enumerate() {
        if stream.write_all(&[*byte]).await.is_err() {
            return i;
        }
        async_std::task::sleep(pace).await;
    }
    bytes.len()
}

/// Connects `n` TCP sockets to `addr`, `batch` at a time, and returns
/// them with the instant each connect started.
pub async fn connect_many(addr: SocketAddr, n: usize, batch: usize) -> Vec<(TcpStream, Instant)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let take = batch.min(n - out.len());
        let started = Instant::now();
        let streams = within(
            "tcp connects",
            futures_util::future::join_all((0..take).map(|_| TcpStream::connect(addr))),
        )
        .await;
        for stream in streams {
            out.push((stream.expect("tcp connect"), started));
        }
    }
    out
}
