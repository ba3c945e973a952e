//! `close`: latency of the server's `close()`, from the call to its outcome.
//!
//! One connection at a time: a client connects to the bench route that
//! hands its [`Handle`](wharf::Handle) over (not timed); a task on the
//! server's executor then calls `handle.close(1000, "bench")` and times it
//! until it returns `CloseOutcome::Clean`. The span covers waking the
//! connection's driver, writing the Close frame, the client reading it and
//! answering (tungstenite answers by itself), reading that answer, closing
//! TCP and publishing the outcome. The client reads until the server's end
//! of the stream. The reported time per iteration is one close.
//!
//! ```text
//! cargo bench -p wharf-benches --bench close
//! ```
//!
//! The server runs on one core and the client on the other; see
//! `benches/README.md`.

use std::time::{Duration, Instant};

use async_std::task::{self, block_on};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use criterion::Criterion;
use futures_util::future::join;
use wharf::{CloseCode, CloseOutcome};
use wharf_benches::{client, pin, within, BenchResult, WharfServer, CLOSE_PATH};

/// One close, timed on the server.
async fn one_close(server: &WharfServer) -> BenchResult<Duration> {
    let mut client = client::connect(server.addr(), CLOSE_PATH).await?;
    let handle = server.next_handle(Duration::from_secs(5)).await?;
    let closing = task::spawn(async move {
        let start = Instant::now();
        let outcome = handle.close(CloseCode::NORMAL, "bench").await;
        (start.elapsed(), outcome)
    });
    let (finished, (elapsed, outcome)) =
        join(client::finish(&mut client, WsCloseCode::Normal), closing).await;
    finished?;
    match outcome? {
        CloseOutcome::Clean => Ok(elapsed),
        other => Err(format!("close ended {other}, expected clean").into()),
    }
}

fn close(c: &mut Criterion) {
    pin::init().announce("close");
    let server = block_on(WharfServer::start()).expect("start Wharf");
    let mut group = c.benchmark_group("close");
    group.bench_function("wharf", |b| {
        b.iter_custom(|iters| {
            block_on(within(
                Duration::from_secs(30) + Duration::from_millis(5 * iters),
                "close",
                async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += one_close(&server).await?;
                    }
                    Ok(total)
                },
            ))
            .expect("close failed")
        });
    });
    group.finish();
}

fn main() {
    // Each iteration also connects (untimed), so the wall time is a few
    // times the measurement time; keep the latter short.
    wharf_benches::run_criterion(20, Duration::from_secs(2), close);
}
