//! `large`: what the read buffer size costs large messages. Echo of 64 KiB
//! and 1 MiB binary messages against Wharf servers that differ only in
//! `Server::read_buffer_size` (1 KiB, 4 KiB and 128 KiB), in interleaved
//! blocks (a report, not asserted).
//!
//! Each server is a process of its own (this binary re-executed, one
//! executor thread, on the first core; see `wharf_benches::process`), so
//! its CPU time is the whole process's, read from `/proc/<pid>/stat`. The
//! clients run in this process on the second core, with tungstenite's
//! default configuration (128 KiB read buffer), the same for every server.
//! A few connections echo at once: 4 for 64 KiB, 2 for 1 MiB. Per server
//! and size the report gives the echoed payload per second (MB/s, 10^6
//! bytes, counted once per round trip: each byte goes to the server and
//! back), the server's CPU time per message, and that CPU time over the
//! 128 KiB server's: medians over the rounds.
//!
//! ```text
//! cargo bench -p wharf-benches --bench large
//! WHARF_LARGE_ROUNDS=15 cargo bench -p wharf-benches --bench large
//! cargo bench -p wharf-benches --bench large -- --test   # one tiny round
//! ```

#![allow(clippy::print_stdout, reason = "the report prints its results")]

use std::time::Duration;

use async_std::task::block_on;
use async_tungstenite::tungstenite::Message;
use wharf_benches::client::{self, Client};
use wharf_benches::process::{Kind, ServerProcess, Spawner, PROCESS_ECHO_PATH};
use wharf_benches::procfs::CpuTicks;
use wharf_benches::report::{median, rounds, Sample};
use wharf_benches::{quick_mode, within, BenchResult};

/// The read buffer sizes compared, bytes.
const BUFFERS: [usize; 3] = [1 << 10, 4 << 10, 128 << 10];

/// One load: message size, connections echoing at once, round trips per
/// connection a block (full run, quick run).
const LOADS: [(usize, usize, u64, u64); 2] = [(64 << 10, 4, 1_500, 2), (1 << 20, 2, 250, 1)];

fn kib(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

fn main() -> BenchResult<()> {
    wharf_benches::process::serve_if_child();
    if wharf_benches::filtered_out("large") {
        return Ok(());
    }
    let quick = quick_mode();
    let round_count = wharf_benches::env_number::<usize>("WHARF_LARGE_ROUNDS")
        .unwrap_or(if quick { 1 } else { 9 })
        .max(1);
    let spawner = Spawner::from_env("WHARF_LARGE_WRAPPER");
    let pinned = spawner.pin_clients();
    let servers: Vec<ServerProcess> = BUFFERS
        .iter()
        .map(|&bytes| {
            spawner.spawn(&Kind::Wharf {
                read_buffer: Some(bytes),
            })
        })
        .collect::<BenchResult<_>>()?;
    println!(
        "large: Wharf servers with read buffers of {}, on {}, clients on {}; {round_count} rounds; wharf::DEFAULT_READ_BUFFER_SIZE is {}",
        BUFFERS.map(kib).join(", "),
        pinned.map_or("any core".to_owned(), |(s, _)| format!("core {s}")),
        pinned.map_or("any core".to_owned(), |(_, c)| format!("core {c}")),
        kib(wharf::DEFAULT_READ_BUFFER_SIZE)
    );
    let pids: Vec<u32> = servers.iter().map(ServerProcess::pid).collect();
    for (size, connections, full, tiny) in LOADS {
        let per_block = if quick { tiny } else { full };
        let msg = Message::binary(vec![0xa5; size]);
        let mut clients: Vec<Vec<Client>> = Vec::new();
        for server in &servers {
            clients.push(block_on(client::connect_many(
                server.addr(),
                PROCESS_ECHO_PATH,
                connections,
                connections,
                None,
            ))?);
        }
        let start = CpuTicks::now_with(&pids);
        let ops = connections as u64 * per_block;
        let samples = rounds(&servers, round_count, ops, |i| {
            block_on(within(
                Duration::from_secs(300),
                "large echo",
                client::echo_rounds(&mut clients[i], per_block, &msg),
            ))
        })?;
        let others = CpuTicks::now_with(&pids).others_busy_since(&start);
        println!();
        println!(
            "echo of {} messages, {connections} connections, {per_block} round trips each a block (other processes used {:.0}% of the cores meanwhile)",
            kib(size),
            others * 100.0
        );
        println!(
            "  {:<14} {:>10} {:>22} {:>22} {:>24} {:>20} {:>20}",
            "read buffer",
            "MB/s",
            "server CPU µs/message",
            "client CPU µs/message",
            "server CPU / 128 KiB's",
            "server's core busy",
            "clients' core busy"
        );
        let reference = samples.len() - 1;
        for (i, bytes) in BUFFERS.iter().enumerate() {
            let med = |f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
            let ratio = median(
                samples[i]
                    .iter()
                    .zip(&samples[reference])
                    .map(|(a, b)| a.server_us / b.server_us)
                    .filter(|r| r.is_finite())
                    .collect(),
            );
            let mbps = med(|s| s.rate) * size as f64 / 1e6;
            println!(
                "  {:<14} {:>10.0} {:>22.1} {:>22.1} {:>24.2} {:>19.0}% {:>19.0}%",
                kib(*bytes),
                mbps,
                med(|s| s.server_us),
                med(|s| s.client_us),
                ratio,
                median(samples[i].iter().map(Sample::server_busy).collect()) * 100.0,
                med(|s| s.client_busy) * 100.0
            );
        }
        for set in clients {
            block_on(client::close_all(set))?;
        }
    }
    if quick {
        println!();
        println!("(quick run: blocks far shorter than the 10 ms ticks of /proc's CPU times, so the figures mean nothing; it checks that every load runs)");
    }
    Ok(())
}
