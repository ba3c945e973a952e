//! `memory`: a report (printed, not asserted) of the server's resident
//! memory per idle connection and of leaks under connection churn.
//!
//! The server runs in this process; the clients run in a child process
//! (this same binary, re-executed with `WHARF_MEMORY_CLIENT=<addr>`), so the
//! readings of `/proc/self` (`VmRSS`, the entries of `fd/`) are the
//! server's alone. The parent drives the child over its stdin and stdout,
//! one command per line.
//!
//! 1. Churn: RSS and open descriptors before any cycle, after the first
//!    1,000 cycles, at a few points on the way, and after 100,000 (connect,
//!    upgrade, one 16-byte echo, closing handshake; half of the clients
//!    close, half send `kick` so the server closes; 32 at a time). The leak target is RSS after 100,000
//!    within 5% of RSS after 1,000. TIME_WAIT sockets on the server's port
//!    are counted per side: Wharf closes TCP first, so they land on the
//!    server side, where they hold no ephemeral port.
//! 2. Idle: 10,000 upgraded connections that send nothing; the RSS delta
//!    over the count is the memory per idle connection (target: at most
//!    4 KiB). Kernel socket buffers are not in RSS. Then the clients close
//!    and RSS is read again.
//!
//! Churn runs first, on a fresh server, so the idle phase's high-water mark
//! does not hide churn growth. Next to `VmRSS` the report prints `RssAnon`
//! (heap and stacks, without the pages of the program's own code), where
//! any growth lives. A little growth over the first tens of thousands of
//! cycles that then stops is the allocator's free lists settling, not a
//! leak: under `valgrind --tool=dhat` the heap still live at exit after
//! 6,000 cycles is that of 1,000 cycles plus one 64-byte block.
//!
//! ```text
//! cargo bench -p wharf-benches --bench memory
//! WHARF_MEMORY_CYCLES=20000 WHARF_MEMORY_IDLE=2000 cargo bench -p wharf-benches --bench memory
//! cargo bench -p wharf-benches --bench memory -- --test   # tiny run: 100 idle, 1,000 cycles
//! ```
//!
//! `WHARF_MEMORY_CONCURRENCY` changes the 32 clients at a time. Each process
//! needs a descriptor per connection: the idle count is lowered to fit the
//! soft `ulimit -n` (with a note) when it is too low.

#![allow(clippy::print_stdout, reason = "the memory report prints its results")]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use async_std::task::block_on;
use futures_util::future::try_join;
use wharf_benches::client::{self, Client, CloseBy};
use wharf_benches::{
    churn_limit, pin, procfs, quick_mode, within, BenchResult, WharfServer, ECHO_PATH,
};

/// Set in the child: the server address to drive.
const CLIENT_ENV: &str = "WHARF_MEMORY_CLIENT";

/// Cycles after which the first reading is taken.
const FIRST_CYCLES: u64 = 1_000;

fn main() {
    if let Ok(addr) = std::env::var(CLIENT_ENV) {
        if let Err(err) = client_process(&addr) {
            println!("error {err}");
            std::process::exit(1);
        }
        return;
    }
    // `cargo bench -- FILTER` passes the filter to every bench: run only
    // when no filter is given or one matches this report's name.
    if wharf_benches::filtered_out("memory") {
        return;
    }
    if let Err(err) = report() {
        println!("memory: failed: {err}");
        std::process::exit(1);
    }
}

/// Settings of one run.
#[derive(Debug)]
struct Plan {
    idle: usize,
    cycles: u64,
    concurrency: usize,
}

impl Plan {
    fn from_env() -> Plan {
        let quick = quick_mode();
        let var = wharf_benches::env_number::<u64>;
        let mut plan = Plan {
            idle: var("WHARF_MEMORY_IDLE").unwrap_or(if quick { 100 } else { 10_000 }) as usize,
            cycles: var("WHARF_MEMORY_CYCLES").unwrap_or(if quick {
                FIRST_CYCLES
            } else {
                100_000
            }),
            concurrency: var("WHARF_MEMORY_CONCURRENCY").unwrap_or(32).max(2) as usize,
        };
        // Both processes hold one descriptor per idle connection, plus a
        // few dozen of their own.
        plan.idle = procfs::idle_that_fit(plan.idle, 256);
        plan
    }
}

/// One reading of the server process.
#[derive(Debug, Clone, Copy)]
struct Reading {
    rss_kib: Option<u64>,
    anon_kib: Option<u64>,
    fds: Option<usize>,
}

impl Reading {
    fn now() -> Reading {
        Reading {
            rss_kib: procfs::rss_kib(),
            anon_kib: procfs::rss_anon_kib(),
            fds: procfs::open_fds(),
        }
    }
}

fn show<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

/// The child process, seen from the parent.
struct ClientProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ClientProcess {
    fn spawn(addr: SocketAddr) -> BenchResult<ClientProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(CLIENT_ENV, addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut process = ClientProcess {
            child,
            stdin,
            stdout,
        };
        process.answer()?;
        Ok(process)
    }

    /// Reads the child's answer line: `done ...` or `error ...`.
    fn answer(&mut self) -> BenchResult<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let line = line.trim().to_owned();
        match line.strip_prefix("done") {
            Some(rest) => Ok(rest.trim().to_owned()),
            None if line.is_empty() => Err("the client process exited".into()),
            None => Err(format!("client process: {line}").into()),
        }
    }

    fn command(&mut self, command: &str) -> BenchResult<String> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        self.answer()
    }

    fn exit(mut self) -> BenchResult<()> {
        let _ = self.command("exit");
        drop(self.stdin);
        self.child.wait()?;
        Ok(())
    }
}

/// The parent: the server and the report.
fn report() -> BenchResult<()> {
    let plan = Plan::from_env();
    let pinning = pin::init();
    println!("memory: {pinning}; the clients run in a child process on the clients' core");
    let server = block_on(WharfServer::start())?;
    let port = server.addr().port();
    let settle = |count: usize| -> BenchResult<()> {
        block_on(server.wait_for_count(count, Duration::from_secs(120)))?;
        // Let the last connections' tasks finish and free what they held.
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    };
    let mut clients = ClientProcess::spawn(server.addr())?;

    // 1. Churn, read at checkpoints: the first 1,000 cycles, then a few
    // points on the way to the total.
    let mut checkpoints: Vec<u64> = [FIRST_CYCLES, 10_000, 50_000, 100_000, 200_000, 500_000]
        .into_iter()
        .filter(|&c| c < plan.cycles)
        .collect();
    checkpoints.push(plan.cycles);
    let before = Reading::now();
    let mut readings = Vec::new();
    let mut done = 0;
    for &checkpoint in &checkpoints {
        let cycles = checkpoint - done;
        let seconds: f64 = clients
            .command(&format!("churn {cycles} {}", plan.concurrency))?
            .parse()?;
        settle(0)?;
        readings.push((checkpoint, Reading::now(), cycles as f64 / seconds));
        done = checkpoint;
    }
    let time_wait = procfs::time_wait(port);

    println!();
    println!(
        "churn: {} cycles, {} clients at a time (half client-initiated close, half server-initiated)",
        plan.cycles, plan.concurrency
    );
    println!(
        "{:<28} {:>12} {:>14} {:>8} {:>16}",
        "", "RSS KiB", "RssAnon KiB", "fds", "cycles/s since"
    );
    println!(
        "{:<28} {:>12} {:>14} {:>8}",
        "before",
        show(before.rss_kib),
        show(before.anon_kib),
        show(before.fds)
    );
    for &(checkpoint, reading, rate) in &readings {
        println!(
            "{:<28} {:>12} {:>14} {:>8} {:>16.0}",
            format!("after {checkpoint} cycles"),
            show(reading.rss_kib),
            show(reading.anon_kib),
            show(reading.fds),
            rate
        );
    }
    let first = readings[0];
    let last = readings[readings.len() - 1];
    let change = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:+.2}%", (b as f64 - a as f64) / a as f64 * 100.0),
        _ => "n/a".to_owned(),
    };
    println!(
        "after {} cycles vs after {}: RSS {} (target: within 5%), RssAnon {}",
        last.0,
        first.0,
        change(first.1.rss_kib, last.1.rss_kib),
        change(first.1.anon_kib, last.1.anon_kib)
    );
    println!(
        "TIME_WAIT on port {port} now: {} on the server side, {} on the client side",
        time_wait.server_side, time_wait.client_side
    );

    // 2. Idle connections.
    settle(0)?;
    let idle_before = Reading::now();
    let opened = Instant::now();
    clients.command(&format!("idle {}", plan.idle))?;
    settle(plan.idle)?;
    let open_time = opened.elapsed();
    let idle = Reading::now();
    clients.command("close")?;
    settle(0)?;
    let idle_after = Reading::now();
    clients.exit()?;

    println!();
    println!(
        "idle: {} open connections (opened in {open_time:.2?})",
        plan.idle
    );
    println!(
        "{:<28} {:>12} {:>14} {:>8}",
        "", "RSS KiB", "RssAnon KiB", "fds"
    );
    for (label, reading) in [
        ("before", idle_before),
        ("with the connections open", idle),
        ("after they closed", idle_after),
    ] {
        println!(
            "{label:<28} {:>12} {:>14} {:>8}",
            show(reading.rss_kib),
            show(reading.anon_kib),
            show(reading.fds)
        );
    }
    if let (Some(a), Some(b)) = (idle_before.rss_kib, idle.rss_kib) {
        let per = (b as f64 - a as f64) / plan.idle.max(1) as f64;
        println!("RSS per idle connection: {per:.2} KiB (target: at most 4 KiB)");
    }
    println!("peak RSS: {} KiB", show(procfs::peak_rss_kib()));
    Ok(())
}

/// The child: connects as told and answers each command with a line.
///
/// Commands: `churn CYCLES CONCURRENCY` (answers `done SECONDS`), `idle N`
/// (opens N connections and keeps them), `close` (closes them), `exit`.
fn client_process(addr: &str) -> BenchResult<()> {
    let addr: SocketAddr = addr.parse()?;
    pin::pin_as_client();
    let config = client::client_config();
    let mut idle: Vec<Client> = Vec::new();
    println!("done ready");
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words[..] {
            ["churn", cycles, concurrency] => {
                let cycles: u64 = cycles.parse()?;
                let concurrency: usize = concurrency.parse()?;
                let half = cycles / 2;
                let work = try_join(
                    client::churn(addr, CloseBy::Client, concurrency / 2, half),
                    client::churn(
                        addr,
                        CloseBy::Server,
                        concurrency - concurrency / 2,
                        cycles - half,
                    ),
                );
                let start = Instant::now();
                block_on(within(churn_limit(cycles), "churn", async {
                    work.await.map(drop)
                }))?;
                format!("{:.6}", start.elapsed().as_secs_f64())
            }
            ["idle", count] => {
                let count: usize = count.parse()?;
                idle = block_on(within(
                    Duration::from_secs(120),
                    "opening idle connections",
                    client::connect_many(addr, ECHO_PATH, count, 100, Some(config)),
                ))?;
                String::new()
            }
            ["close"] => {
                block_on(within(
                    Duration::from_secs(120),
                    "closing idle connections",
                    client::close_all(std::mem::take(&mut idle)),
                ))?;
                String::new()
            }
            ["exit"] => {
                println!("done");
                return Ok(());
            }
            _ => return Err(format!("unknown command {line:?}").into()),
        };
        println!("done {answer}");
    }
    Ok(())
}
