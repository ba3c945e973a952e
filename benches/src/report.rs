//! The measurement the process benches (`compare`, `large`) share: one
//! block of operations against a [`ServerProcess`], its CPU times from
//! `/proc`, rounds of blocks in rotating order, medians.
//!
//! `/proc/<pid>/stat` counts CPU time in clock ticks of 10 ms, so a block
//! must run for many ticks (the benches make full-run blocks about half a
//! second) for its CPU per operation to mean something; a median over
//! rounds, or the pooled ticks of all rounds, smooths what is left.

use std::time::{Duration, Instant};

use crate::process::ServerProcess;
use crate::procfs::{self, TICKS_PER_SECOND};
use crate::BenchResult;

/// What one block measured: the server process's CPU time (the whole
/// process, from `/proc/<pid>/stat`) and this process's, the clients'.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Operations in the block.
    pub ops: f64,
    /// CPU ticks of the server process during the block.
    pub server_ticks: f64,
    /// Operations per second, wall clock.
    pub rate: f64,
    /// CPU microseconds of the server process per operation.
    pub server_us: f64,
    /// CPU microseconds of this (the clients') process per operation.
    pub client_us: f64,
    /// The share of one core the clients' process used during the block.
    pub client_busy: f64,
}

impl Sample {
    /// The share of one core the server process used during the block.
    pub fn server_busy(&self) -> f64 {
        self.server_ticks / TICKS_PER_SECOND as f64 / (self.ops / self.rate)
    }
}

/// Runs `block`, which does `ops` operations against `server`, and
/// measures it.
pub fn sample(
    server: &ServerProcess,
    ops: u64,
    block: impl FnOnce() -> BenchResult<Duration>,
) -> BenchResult<Sample> {
    let self_ticks = || procfs::self_cpu_ticks().map_or(f64::NAN, |t| t as f64);
    let (server0, client0) = (server.cpu_ticks(), self_ticks());
    let start = Instant::now();
    let took = block()?;
    let wall = start.elapsed().as_secs_f64();
    let (server1, client1) = (server.cpu_ticks(), self_ticks());
    let us_per_tick = 1e6 / TICKS_PER_SECOND as f64;
    let ops = ops as f64;
    Ok(Sample {
        ops,
        server_ticks: server1 - server0,
        rate: ops / took.as_secs_f64(),
        server_us: (server1 - server0) * us_per_tick / ops,
        client_us: (client1 - client0) * us_per_tick / ops,
        client_busy: (client1 - client0) / TICKS_PER_SECOND as f64 / wall,
    })
}

/// The median of `values`, NaNs left out (NaN when none is left).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Runs `rounds` rounds of one block per server, rotating which goes
/// first; `run(i)` does the block's `ops` operations against server `i`.
pub fn rounds(
    servers: &[ServerProcess],
    rounds: usize,
    ops: u64,
    mut run: impl FnMut(usize) -> BenchResult<Duration>,
) -> BenchResult<Vec<Vec<Sample>>> {
    let n = servers.len();
    let mut samples = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            samples[i].push(sample(&servers[i], ops, || run(i))?);
        }
    }
    Ok(samples)
}
