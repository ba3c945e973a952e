//! `tls`: the churn cycle over TLS against the same cycle over TCP, on one
//! Wharf server each, in interleaved blocks of one run (a report, not
//! asserted).
//!
//! One cycle: TCP connect, (TLS handshake, a full one: the clients do not
//! resume sessions), upgrade, one 16-byte echo, client-initiated closing
//! handshake, the server's end of the stream (over TLS with its
//! `close_notify`). C = 1 and 32 clients at once. Each block records the
//! CPU time of the server's executor thread from `schedstat`, as `compare`
//! does; the report gives the server CPU per cycle of each and their ratio
//! (TLS over TCP, the median of the rounds' ratios). The TLS handshake
//! dominates, so the ratio says what TLS costs, not a target.
//!
//! ```text
//! cargo bench -p wharf-benches --bench tls
//! WHARF_TLS_ROUNDS=11 cargo bench -p wharf-benches --bench tls
//! cargo bench -p wharf-benches --bench tls -- --test   # one short round
//! ```
//!
//! The servers run on one core and the clients on the other; see
//! `benches/README.md`.

#![allow(clippy::print_stdout, reason = "the report prints its results")]

use async_std::task::block_on;
use wharf_benches::client::{self, CloseBy};
use wharf_benches::procfs::{self, CpuTicks};
use wharf_benches::tls::{self, Tls};
use wharf_benches::{churn_limit, pin, quick_mode, within, BenchResult, WharfServer};

/// What one block measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Cycles per second, wall clock.
    rate: f64,
    /// CPU nanoseconds of the server's executor thread per cycle.
    server_ns: f64,
    /// CPU nanoseconds of the clients' thread per cycle.
    client_ns: f64,
}

fn cpu(tid: Option<u32>) -> f64 {
    tid.and_then(procfs::thread_cpu_ns)
        .map_or(f64::NAN, |ns| ns as f64)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn main() -> BenchResult<()> {
    if wharf_benches::filtered_out("tls") {
        return Ok(());
    }
    let quick = quick_mode();
    let rounds = wharf_benches::env_number("WHARF_TLS_ROUNDS").unwrap_or(if quick { 1 } else { 7 });
    let scale: u64 = if quick { 1 } else { 10 };
    let pinning = pin::init();
    let (server_tid, client_tid) = (pinning.server_thread, procfs::current_thread_id());
    println!("tls: {pinning}; {rounds} rounds; CPU times from schedstat");
    let keys = Tls::new()?;
    let (tcp, over_tls) = block_on(async {
        let tcp = WharfServer::start().await?.addr();
        let over_tls = WharfServer::start_tls(keys.server.clone()).await?.addr();
        BenchResult::Ok((tcp, over_tls))
    })?;

    for clients in [1usize, 32] {
        let cycles = if clients == 1 {
            20 * scale
        } else {
            100 * scale
        };
        let start = CpuTicks::now();
        let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            for k in 0..2 {
                // Alternate which goes first.
                let which = (round + k) % 2;
                let (s0, c0) = (cpu(server_tid), cpu(client_tid));
                let took = block_on(within(churn_limit(cycles), "churn", async {
                    if which == 0 {
                        client::churn(tcp, CloseBy::Client, clients, cycles).await
                    } else {
                        tls::churn(over_tls, &keys, clients, cycles).await
                    }
                }))?;
                let (s1, c1) = (cpu(server_tid), cpu(client_tid));
                let n = cycles as f64;
                samples[which].push(Sample {
                    rate: n / took.as_secs_f64(),
                    server_ns: (s1 - s0) / n,
                    client_ns: (c1 - c0) / n,
                });
            }
        }
        let others = CpuTicks::now().others_busy_since(&start);
        println!();
        println!(
            "churn, client close, C = {clients}, {cycles} cycles a block (other processes used {:.0}% of the cores meanwhile)",
            others * 100.0
        );
        println!(
            "  {:<8} {:>12} {:>22} {:>22}",
            "", "cycles/s", "server CPU µs/cycle", "client CPU µs/cycle"
        );
        for (label, s) in ["tcp", "tls"].iter().zip(&samples) {
            let med = |f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
            println!(
                "  {label:<8} {:>12.0} {:>22.1} {:>22.1}",
                med(|s| s.rate),
                med(|s| s.server_ns) / 1e3,
                med(|s| s.client_ns) / 1e3
            );
        }
        let pairs = || samples[0].iter().zip(&samples[1]);
        let cpu_ratio = median(pairs().map(|(t, s)| s.server_ns / t.server_ns).collect());
        let rate_ratio = median(pairs().map(|(t, s)| t.rate / s.rate).collect());
        println!(
            "  tls / tcp: server CPU per cycle {cpu_ratio:.2}x, time per cycle {rate_ratio:.2}x"
        );
    }
    Ok(())
}
