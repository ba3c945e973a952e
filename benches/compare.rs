//! `compare`: Wharf against the bare async-tungstenite baseline, measured in
//! interleaved blocks, printed as ratios (a report, not asserted).
//!
//! Criterion measures one bench after the other, so on a machine that other
//! work shares, a burst of that work lands on one side of a comparison. This
//! report alternates instead: each round runs one block of every contender
//! (rotating which goes first), and the ratios are taken within a round,
//! then summarised by their median over the rounds:
//!
//! - churn (the cycle of the `churn` bench), C = 1 and 32: Wharf over bare
//!   for client- and server-initiated close, and Wharf's server-initiated
//!   over its client-initiated close;
//! - echo (the `echo` bench: 64 connections, 64-byte messages): Wharf over
//!   bare.
//!
//! A ratio above 1 means Wharf did more per second. Besides wall-clock
//! rates, each block records the CPU time the server's executor thread and
//! the clients' thread ran (from `schedstat`, in nanoseconds): CPU time per
//! operation hardly moves when other processes share the cores, so the
//! server-CPU ratio (bare over Wharf, above 1 when Wharf spends less) holds
//! on a busy machine where wall-clock rates do not. Each section also prints
//! the share of the cores that other processes used meanwhile.
//!
//! ```text
//! cargo bench -p wharf-benches --bench compare
//! WHARF_COMPARE_ROUNDS=31 cargo bench -p wharf-benches --bench compare
//! cargo bench -p wharf-benches --bench compare -- --test   # one short round
//! ```
//!
//! The servers run on one core and the clients on the other; see
//! `benches/README.md`.

#![allow(
    clippy::print_stdout,
    reason = "the comparison report prints its results"
)]

use std::time::Duration;

use async_std::task::block_on;
use async_tungstenite::tungstenite::Message;
use wharf_benches::client::{self, CloseBy};
use wharf_benches::procfs::{self, CpuTicks};
use wharf_benches::{
    churn_limit, pin, quick_mode, start_bare, within, BenchResult, WharfServer, ECHO_PATH,
};

/// What one block measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Operations per second, wall clock.
    rate: f64,
    /// CPU nanoseconds of the server's executor thread per operation.
    server_ns: f64,
    /// CPU nanoseconds of the clients' thread per operation.
    client_ns: f64,
}

/// Where the CPU times come from.
#[derive(Debug, Clone, Copy)]
struct Threads {
    server: Option<u32>,
    client: Option<u32>,
}

impl Threads {
    fn cpu(&self) -> (f64, f64) {
        let read = |tid: Option<u32>| {
            tid.and_then(procfs::thread_cpu_ns)
                .map_or(f64::NAN, |ns| ns as f64)
        };
        (read(self.server), read(self.client))
    }

    /// Runs `block`, which does `ops` operations, and measures it.
    fn sample(
        &self,
        ops: u64,
        block: impl FnOnce() -> BenchResult<Duration>,
    ) -> BenchResult<Sample> {
        let (server0, client0) = self.cpu();
        let took = block()?;
        let (server1, client1) = self.cpu();
        let ops = ops as f64;
        Ok(Sample {
            rate: ops / took.as_secs_f64(),
            server_ns: (server1 - server0) / ops,
            client_ns: (client1 - client0) / ops,
        })
    }
}

/// One contender of a round: a block that measures it once.
type Block<'a> = Box<dyn FnMut() -> BenchResult<Sample> + 'a>;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Runs `rounds` rounds of `blocks`, rotating the order, and returns each
/// contender's samples, round by round.
fn rounds(rounds: usize, blocks: &mut [Block<'_>]) -> BenchResult<Vec<Vec<Sample>>> {
    let n = blocks.len();
    let mut samples = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let sample = (blocks[i])()?;
            samples[i].push(sample);
        }
    }
    Ok(samples)
}

/// Prints each contender's medians.
fn contenders(labels: &[&str], samples: &[Vec<Sample>], unit: &str) {
    println!(
        "  {:<20} {:>15} {:>15} {:>24} {:>24}",
        "",
        format!("{unit}/s"),
        format!("µs/{unit}"),
        format!("server CPU µs/{unit}"),
        format!("client CPU µs/{unit}")
    );
    for (label, samples) in labels.iter().zip(samples) {
        let med = |f: fn(&Sample) -> f64| median(&mut samples.iter().map(f).collect::<Vec<_>>());
        let rate = med(|s| s.rate);
        println!(
            "  {label:<20} {rate:>15.0} {:>15.1} {:>24.1} {:>24.1}",
            1e6 / rate,
            med(|s| s.server_ns) / 1e3,
            med(|s| s.client_ns) / 1e3
        );
    }
}

/// The median, smallest and largest of `values`.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    let med = median(&mut values);
    let first = values.first().copied().unwrap_or(f64::NAN);
    let last = values.last().copied().unwrap_or(f64::NAN);
    (med, first, last)
}

/// Prints the median over the rounds of `ours / theirs` for the rate, and
/// of `theirs / ours` for the server's CPU per operation (both above 1 when
/// `ours` does better), with the smallest and largest round.
fn ratio_line(label: &str, ours: &[Sample], theirs: &[Sample]) {
    let pairs = || ours.iter().zip(theirs);
    let (rate, rate_lo, rate_hi) = spread(pairs().map(|(a, b)| a.rate / b.rate).collect());
    let (cpu, cpu_lo, cpu_hi) = spread(pairs().map(|(a, b)| b.server_ns / a.server_ns).collect());
    println!(
        "  {label:<42} rate {rate:>5.2}x ({rate_lo:.2}..{rate_hi:.2})   server CPU {cpu:>5.2}x ({cpu_lo:.2}..{cpu_hi:.2})"
    );
}

fn main() -> BenchResult<()> {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| "compare".contains(f.as_str())) {
        return Ok(());
    }
    let quick = quick_mode();
    let round_count = std::env::var("WHARF_COMPARE_ROUNDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(if quick { 1 } else { 15 });
    // Blocks long enough to be more than timer noise, short enough that
    // many rounds fit in a minute or two.
    let scale: u64 = if quick { 1 } else { 10 };
    let pinning = pin::init();
    let threads = Threads {
        server: pinning.server_thread,
        client: procfs::current_thread_id(),
    };
    println!("compare: {pinning}; {round_count} rounds; CPU times from schedstat");
    let (wharf, bare) = block_on(async {
        BenchResult::Ok((WharfServer::start().await?.addr(), start_bare().await?))
    })?;

    for clients in [1usize, 32] {
        let cycles = if clients == 1 {
            30 * scale
        } else {
            200 * scale
        };
        let start = CpuTicks::now();
        let mut blocks: Vec<Block<'_>> = Vec::new();
        let mut labels = Vec::new();
        for (name, addr) in [("wharf", wharf), ("bare", bare)] {
            for close_by in [CloseBy::Client, CloseBy::Server] {
                labels.push(format!("{name} {}", close_by.name()));
                blocks.push(Box::new(move || {
                    threads.sample(cycles, || {
                        block_on(within(
                            churn_limit(cycles),
                            "churn",
                            client::churn(addr, close_by, clients, cycles),
                        ))
                    })
                }));
            }
        }
        let samples = rounds(round_count, &mut blocks)?;
        let others = CpuTicks::now().others_busy_since(&start);
        println!();
        println!(
            "churn, C = {clients}, {cycles} cycles a block (other processes used {:.0}% of the cores meanwhile)",
            others * 100.0
        );
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        contenders(&labels, &samples, "cycle");
        ratio_line("wharf / bare, client_close", &samples[0], &samples[2]);
        ratio_line("wharf / bare, server_close", &samples[1], &samples[3]);
        ratio_line(
            "wharf server_close / wharf client_close",
            &samples[1],
            &samples[0],
        );
        ratio_line(
            "bare server_close / bare client_close",
            &samples[3],
            &samples[2],
        );
    }

    // Echo: 64 connections to each server, open for the whole section.
    let per_block = 20 * scale;
    let msg = Message::binary(vec![0x5a; 64]);
    let mut wharf_clients = block_on(client::connect_many(
        wharf,
        ECHO_PATH,
        64,
        64,
        Some(client::client_config()),
    ))?;
    let mut bare_clients = block_on(client::connect_many(
        bare,
        ECHO_PATH,
        64,
        64,
        Some(client::client_config()),
    ))?;
    let start = CpuTicks::now();
    let samples = {
        let echo_block = |clients: &mut Vec<client::Client>| {
            threads.sample(64 * per_block, || {
                block_on(within(
                    Duration::from_secs(60),
                    "echo",
                    client::echo_rounds(clients, per_block, &msg),
                ))
            })
        };
        let mut blocks: Vec<Block<'_>> = vec![
            Box::new(|| echo_block(&mut wharf_clients)),
            Box::new(|| echo_block(&mut bare_clients)),
        ];
        rounds(round_count, &mut blocks)?
    };
    let others = CpuTicks::now().others_busy_since(&start);
    println!();
    println!(
        "echo, 64 connections, 64-byte messages, {per_block} round trips each a block (other processes used {:.0}% of the cores meanwhile)",
        others * 100.0
    );
    contenders(&["wharf", "bare"], &samples, "round trip");
    ratio_line("wharf / bare", &samples[0], &samples[1]);
    block_on(client::close_all(wharf_clients))?;
    block_on(client::close_all(bare_clients))?;
    Ok(())
}
