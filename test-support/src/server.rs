//! A server under test, running in the background on 127.0.0.1.

use std::net::SocketAddr;

use async_std::task::JoinHandle;
use wharf::{CloseSummary, Registry, Server, ServerHandle, Stats};

use crate::within;

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A server started by [`start`].
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens: 127.0.0.1 and the port it was given.
    pub addr: SocketAddr,
    /// Its live connections.
    pub registry: Registry,
    /// Its handle: `shutdown()`, `stats()`.
    pub handle: ServerHandle,
    /// The task running `Listening::run`: resolves with the shutdown
    /// summary once a graceful shutdown has drained. Dropping it leaves the
    /// server running.
    pub run: JoinHandle<wharf::Result<CloseSummary>>,
}

impl TestServer {
    /// The `ws://` URL of `path` (with its query string) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A snapshot of the server's counters and gauges.
    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// Triggers a graceful shutdown and waits for its summary.
    pub async fn shutdown(self) -> CloseSummary {
        self.handle.shutdown();
        within("graceful shutdown", self.run)
            .await
            .expect("run() failed")
    }
}

/// Binds `server` to 127.0.0.1:0 (a free port) and runs it in a background
/// task.
pub async fn start(server: Server) -> TestServer {
    init_tracing();
    let listening = within("bind", server.bind("127.0.0.1:0"))
        .await
        .expect("bind");
    let addr = listening.local_addr();
    let registry = listening.registry();
    let handle = listening.handle();
    let run = async_std::task::spawn(listening.run());
    TestServer {
        addr,
        registry,
        handle,
        run,
    }
}
