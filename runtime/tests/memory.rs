//! The server's memory under a flood, read from the process's resident set
//! (`VmRSS` in `/proc/self/status`).
//!
//! One test in a binary of its own: cargo runs the tests of one binary in
//! parallel threads of one process, and their servers and clients would
//! move the reading; test binaries run one after another, so nothing else
//! runs in this process while it measures.
//!
//! Linux only: other platforms have no `/proc/self/status`. There the test
//! is compiled out and an ignored stand-in of the same name says so in the
//! test output.

#[cfg(target_os = "linux")]
use std::net::Shutdown;
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(target_os = "linux")]
use std::sync::Arc;
#[cfg(target_os = "linux")]
use std::time::Duration;

#[cfg(target_os = "linux")]
use async_std::io::WriteExt;
#[cfg(target_os = "linux")]
use wharf::{CloseCode, Initiator, Server};
#[cfg(target_os = "linux")]
use wharf_test_support::*;

/// The process's resident memory, in bytes.
#[cfg(target_os = "linux")]
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib << 10
}

/// A peer that floods pings and never reads the pongs: the server must not
/// buffer a pong for every ping. It may stop reading (backpressure), answer
/// only the latest ping (RFC 6455 5.5.3) or close the connection; here its
/// memory must not grow with the flood. The pace of "has the writer stopped
/// making progress" is the one timed observation: there is no event for a
/// server that has stopped reading.
#[cfg(target_os = "linux")]
#[async_std::test]
async fn a_ping_flood_that_never_reads_its_pongs_does_not_grow_server_memory() {
    const FLOOD: u64 = 96 << 20;
    const STALL: Duration = Duration::from_millis(500);
    install_panic_detector();
    let (echo, recorded) = recording_echo();
    // A short close timeout: the flooder does not answer the server's Close.
    let server = start(
        Server::new()
            .close_timeout(Duration::from_millis(500))
            .route("/", echo),
    )
    .await;
    let peer = RawPeer::connect(&server, "/").await;
    let before = resident_bytes();

    // Batches of 1,000 pings with 125-byte payloads, 131 KB a batch.
    let ping = frame(OP_PING, true, &[b'p'; 125], true);
    let batch = ping.repeat(1000);
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let mut stream = peer.stream.clone();
        let written = Arc::clone(&written);
        async_std::task::spawn(async move {
            while written.load(Ordering::SeqCst) < FLOOD {
                if stream.write_all(&batch).await.is_err() {
                    return;
                }
                written.fetch_add(batch.len() as u64, Ordering::SeqCst);
            }
        })
    };
    // Until the whole flood is written, the server stops reading, or the
    // server ends the connection; bounded by the flood's size.
    let mut last = u64::MAX;
    loop {
        let now = written.load(Ordering::SeqCst);
        if now >= FLOOD || now == last || server.registry.count() == 0 {
            break;
        }
        last = now;
        async_std::task::sleep(STALL).await;
    }
    let grown = resident_bytes().saturating_sub(before);
    let flooded = written.load(Ordering::SeqCst);
    assert!(
        grown < 32 << 20,
        "the server's memory grew by {} MiB while {} MiB of pings went unanswered",
        grown >> 20,
        flooded >> 20
    );

    // Other clients do not notice: a fresh client is served, and its end is
    // recorded as a clean close started by the client with 1000.
    assert_serves_fresh_client(&server, "/").await;
    let (_, closed) = recorded.next_closed().await;
    assert_eq!(closed.code, CloseCode::NORMAL);
    assert_eq!(closed.initiator, Initiator::Client);
    assert!(closed.clean, "{closed:?}");

    // The flooder goes away: the connection ends, and nothing is left (the
    // registry is empty, every connect has its close, nothing panicked).
    peer.stream.shutdown(Shutdown::Both).expect("shutdown");
    within("the writer to stop", writer).await;
    drop(peer);
    eventually("registry empty", || server.registry.count() == 0).await;
    recorded.assert_all_closed().await;
    assert_no_server_panic();
}

/// Stands in for the test above where `/proc/self/status` does not exist.
#[cfg(not(target_os = "linux"))]
#[test]
#[ignore = "reads the resident memory from /proc/self/status: Linux only"]
fn a_ping_flood_that_never_reads_its_pongs_does_not_grow_server_memory() {}
