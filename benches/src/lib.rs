//! Code the Wharf benchmarks share: the servers under test, the client
//! cycles that drive them, thread pinning, and readings from `/proc`.
//!
//! Every bench starts its servers on 127.0.0.1, in-process or (`compare`,
//! `large`) as processes of their own, and drives them with
//! async-tungstenite clients from the bench's main thread:
//!
//! - [`WharfServer`] is Wharf with the routes the benches use: an echo
//!   fallback (the text `kick` makes the server close with 1008), a route
//!   that hands each connection's [`Handle`](wharf::Handle) to the bench, and
//!   a silent route for broadcasts.
//! - [`start_bare`] is the baseline: the same echo written directly on
//!   async-tungstenite with tungstenite's default `WebSocketConfig` but
//!   Wharf's read buffer size ([`servers::bare_config`]), on the same
//!   runtime, so each report shows Wharf's cost relative to the layer it is
//!   built on.
//! - [`process`] runs those servers, and uWebSockets.js when installed, as
//!   processes of their own (`compare`, `large`), measured from `/proc`;
//!   [`report`] measures blocks of operations against them in rounds.
//! - [`client`] holds the client side: one churn [`cycle`](client::cycle)
//!   (connect, upgrade, one 16-byte echo, close handshake), concurrent
//!   [`churn`](client::churn), echo rounds.
//! - [`tls`] holds the same cycle over TLS: a certificate made at start-up
//!   (rcgen) and clients over futures-rustls.
//! - [`pin`] puts the server's executor on one core and the clients on the
//!   other; [`procfs`] reads resident memory, open descriptors and TCP
//!   states of this process.
//!
//! Nothing here sends traffic anywhere but 127.0.0.1, and every loop is
//! bounded in count and time.
//!
//! Run the benches with `cargo bench -p wharf-benches`; see `benches/README.md`.

pub mod client;
pub mod pin;
pub mod process;
pub mod procfs;
pub mod report;
pub mod servers;
pub mod tls;

pub use servers::{start_bare, WharfServer, BROADCAST_PATH, CLOSE_PATH, ECHO_PATH};

/// Runs a criterion bench with the settings the benches share: `samples`
/// samples, one second of warm-up, `measure` of measurement, and
/// criterion's command line (filters, `--test`) on top.
pub fn run_criterion(
    samples: usize,
    measure: std::time::Duration,
    bench: impl FnOnce(&mut criterion::Criterion),
) {
    let mut criterion = criterion::Criterion::default()
        .sample_size(samples)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(measure)
        .configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}

/// The error of a bench step: whatever failed, boxed.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// The result of a bench step.
pub type BenchResult<T> = Result<T, BenchError>;

/// Whether this run is a quick check rather than a measurement: criterion's
/// test mode (`cargo bench -p wharf-benches -- --test`, which `.ci/run`
/// uses) or `WHARF_BENCH_QUICK=1` in the environment.
pub fn quick_mode() -> bool {
    std::env::args().any(|arg| arg == "--test")
        || std::env::var_os("WHARF_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Whether the command line's filters leave out the report named `name`:
/// the printed reports (`compare`, `large`, `memory`, `tls`) are not
/// criterion groups, so they honour criterion's filter arguments
/// (`cargo bench -p wharf-benches -- churn`) themselves, running when no
/// filter is given or one is part of their name.
pub fn filtered_out(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str()))
}

/// The number in the environment variable `name`, when it is set and
/// parses (surrounding white space allowed).
pub fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs `step` for at most `limit`, so a bench that stops making progress
/// fails with `what` instead of hanging.
pub async fn within<T>(
    limit: std::time::Duration,
    what: &str,
    step: impl std::future::Future<Output = BenchResult<T>>,
) -> BenchResult<T> {
    match async_std::future::timeout(limit, step).await {
        Ok(result) => result,
        Err(_) => Err(format!("{what}: no result within {limit:?}").into()),
    }
}

/// The time limit [`within`] gets for `cycles` churn cycles: 30 s plus
/// 5 ms a cycle, far above any healthy run.
pub fn churn_limit(cycles: u64) -> std::time::Duration {
    std::time::Duration::from_secs(30)
        + std::time::Duration::from_millis(5).saturating_mul(cycles.min(u32::MAX.into()) as u32)
}
