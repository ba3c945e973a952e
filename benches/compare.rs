//! `compare`: Wharf, the bare async-tungstenite server with Wharf's read
//! buffer, and uWebSockets.js when installed, side by side with the same
//! clients, measured in interleaved blocks (a report, not asserted).
//!
//! Each server is a process of its own (see `wharf_benches::process`):
//! Wharf with default settings and the benches' echo handler (the text
//! `kick` closes with 1008 "Session expired"), the bare server
//! (`wharf_benches::start_bare`, read buffer `wharf::DEFAULT_READ_BUFFER_SIZE`),
//! both this binary re-executed with one executor thread, and
//! `node $WHARF_UWS_SERVER PORT` (default `/tmp/uws/server.js`; skipped,
//! saying why, when node or the script is missing). The servers run on the
//! first core, the clients (this process) on the second. A server's CPU
//! time is its whole process's (`utime` + `stime` of `/proc/<pid>/stat`,
//! every thread), so all three are measured alike.
//!
//! Loads, one section each, every section in rounds: one block per server
//! a round, rotating which goes first; the figures are medians over the
//! rounds and the ratios medians of the rounds' ratios:
//!
//! - churn (connect, upgrade, one 16-byte echo, closing handshake),
//!   client-initiated close, 32 clients at once and one at a time;
//! - churn with server-initiated close (the client sends `kick`, the
//!   server closes with 1008, the client answers), 32 clients at once;
//! - echo: 64 open connections, 64-byte binary messages, all at once;
//! - idle memory: the RSS growth of a fresh server process with 10,000
//!   idle connections open, per connection.
//!
//! The report ends with a table: per load, the server CPU per operation of
//! each server, and Wharf's over bare's and over uWebSockets.js's (the
//! targets of issue 14: at most 1.05 and 1.10; memory at most 4 KiB per
//! connection). Each section also prints the share of the cores that other
//! processes used meanwhile, and how busy the clients' core was (near 100%,
//! the clients set the pace and wall-clock rates say little; the CPU per
//! operation still holds).
//!
//! ```text
//! cargo bench -p wharf-benches --bench compare
//! WHARF_COMPARE_ROUNDS=31 cargo bench -p wharf-benches --bench compare
//! cargo bench -p wharf-benches --bench compare -- --test   # one tiny round
//! WHARF_COMPARE_STRACE=1 cargo bench -p wharf-benches --bench compare   # + syscalls per operation
//! ```
//!
//! Other variables: `WHARF_COMPARE_IDLE` (idle connections, 10,000),
//! `WHARF_COMPARE_WRAPPER` (a command prefix for every server process,
//! such as `valgrind --tool=callgrind`), `WHARF_UWS_SERVER`.

#![allow(
    clippy::print_stdout,
    reason = "the comparison report prints its results"
)]

use std::process::{Command, Stdio};
use std::time::Duration;

use async_std::task::block_on;
use async_tungstenite::tungstenite::Message;
use wharf_benches::client::{self, Client, CloseBy};
use wharf_benches::process::{Kind, ServerProcess, Spawner, PROCESS_ECHO_PATH};
use wharf_benches::procfs::{self, CpuTicks, TICKS_PER_SECOND};
use wharf_benches::report::{median, rounds, Sample};
use wharf_benches::{churn_limit, quick_mode, within, BenchResult};

/// The settings of one run.
#[derive(Debug)]
struct Plan {
    rounds: usize,
    /// Churn cycles a block with 32 clients, and with one.
    churn32: u64,
    churn1: u64,
    /// Round trips per connection a block of echo.
    echo: u64,
    /// Idle connections, and rounds of the memory section.
    idle: usize,
    memory_rounds: usize,
    strace: bool,
}

impl Plan {
    fn from_env() -> Plan {
        let quick = quick_mode();
        let var = wharf_benches::env_number::<usize>;
        let rounds = var("WHARF_COMPARE_ROUNDS")
            .unwrap_or(if quick { 1 } else { 21 })
            .max(1);
        let mut plan = if quick {
            Plan {
                rounds,
                churn32: 64,
                churn1: 16,
                echo: 4,
                idle: 200,
                memory_rounds: 1,
                strace: false,
            }
        } else {
            // Blocks of about half a second per server, so a block's
            // server CPU time is many clock ticks; 21 rounds take about
            // four minutes.
            Plan {
                rounds,
                churn32: 4_000,
                churn1: 1_000,
                echo: 400,
                idle: 10_000,
                memory_rounds: rounds.min(3),
                strace: false,
            }
        };
        if let Some(idle) = var("WHARF_COMPARE_IDLE") {
            plan.idle = idle.max(1);
        }
        plan.strace = std::env::var_os("WHARF_COMPARE_STRACE").is_some_and(|v| v != "0");
        // This process and the server each hold a descriptor per idle
        // connection, plus a few hundred of their own.
        plan.idle = procfs::idle_that_fit(plan.idle, 512);
        plan
    }
}

/// A load's results: per server, the samples of every round.
#[derive(Debug)]
struct Section {
    name: String,
    unit: &'static str,
    samples: Vec<Vec<Sample>>,
}

/// Prints a section's medians per server, and the share of the cores
/// other processes used since `start`.
fn print_section(section: &Section, servers: &[ServerProcess], start: &CpuTicks, detail: &str) {
    let pids: Vec<u32> = servers.iter().map(ServerProcess::pid).collect();
    let others = CpuTicks::now_with(&pids).others_busy_since(start);
    let unit = section.unit;
    println!();
    println!(
        "{}, {detail} (other processes used {:.0}% of the cores meanwhile)",
        section.name,
        others * 100.0
    );
    println!(
        "  {:<8} {:>12} {:>22} {:>14} {:>22} {:>20} {:>20}",
        "",
        format!("{unit}s/s"),
        format!("server CPU µs/{unit}"),
        "(all rounds)",
        format!("client CPU µs/{unit}"),
        "server's core busy",
        "clients' core busy"
    );
    for (server, samples) in servers.iter().zip(&section.samples) {
        let med = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        let busy = med(|s| s.client_busy);
        let pooled = pooled_us(samples);
        println!(
            "  {:<8} {:>12.0} {:>22.1} {:>14.1} {:>22.1} {:>19.0}% {:>19.0}%{}",
            server.name(),
            med(|s| s.rate),
            med(|s| s.server_us),
            pooled,
            med(|s| s.client_us),
            median(samples.iter().map(Sample::server_busy).collect()) * 100.0,
            busy * 100.0,
            if busy > 0.9 {
                "  (the clients may set the pace)"
            } else {
                ""
            }
        );
    }
}

/// The median over the rounds of `ours / theirs`, server CPU per
/// operation (above 1: ours spends more), with the smallest and largest.
fn cpu_ratio(ours: &[Sample], theirs: &[Sample]) -> (f64, f64, f64) {
    if quick_mode() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut ratios: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| a.server_us / b.server_us)
        .filter(|r| r.is_finite())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let lo = ratios.first().copied().unwrap_or(f64::NAN);
    let hi = ratios.last().copied().unwrap_or(f64::NAN);
    (median(ratios), lo, hi)
}

/// All rounds' server CPU ticks over all rounds' operations, in µs: free
/// of the 10 ms quantisation of one block's reading.
fn pooled_us(samples: &[Sample]) -> f64 {
    samples.iter().map(|s| s.server_ticks).sum::<f64>() * 1e6
        / TICKS_PER_SECOND as f64
        / samples.iter().map(|s| s.ops).sum::<f64>()
}

fn main() -> BenchResult<()> {
    wharf_benches::process::serve_if_child();
    if wharf_benches::filtered_out("compare") {
        return Ok(());
    }
    let plan = Plan::from_env();
    let spawner = Spawner::from_env("WHARF_COMPARE_WRAPPER");
    let pinned = spawner.pin_clients();
    let mut kinds = vec![Kind::WHARF, Kind::Bare];
    let mut skipped = None;
    let mut servers = vec![spawner.spawn(&Kind::WHARF)?, spawner.spawn(&Kind::Bare)?];
    match spawner.spawn(&Kind::Uws) {
        Ok(uws) => {
            kinds.push(Kind::Uws);
            servers.push(uws);
        }
        Err(err) => skipped = Some(err.to_string()),
    }
    println!(
        "compare: servers on {}, clients on {}; {} rounds; server CPU from /proc/<pid>/stat; bare read buffer {} bytes (wharf::DEFAULT_READ_BUFFER_SIZE)",
        pinned.map_or("any core".to_owned(), |(s, _)| format!("core {s}")),
        pinned.map_or("any core".to_owned(), |(_, c)| format!("core {c}")),
        plan.rounds,
        wharf::DEFAULT_READ_BUFFER_SIZE
    );
    if !spawner.wrapper.is_empty() {
        println!("server processes run under `{}`", spawner.wrapper.join(" "));
    }
    if let Some(reason) = &skipped {
        println!("skipped {reason}");
    }
    let mut sections = Vec::new();

    // Churn.
    for (close_by, clients, cycles) in [
        (CloseBy::Client, 32usize, plan.churn32),
        (CloseBy::Server, 32, plan.churn32),
        (CloseBy::Client, 1, plan.churn1),
    ] {
        let start = CpuTicks::now_with(&servers.iter().map(ServerProcess::pid).collect::<Vec<_>>());
        let run = |server: &ServerProcess| {
            let addr = server.addr();
            block_on(within(
                churn_limit(cycles),
                "churn",
                client::churn_on(addr, PROCESS_ECHO_PATH, close_by, clients, cycles),
            ))
        };
        let samples = rounds(&servers, plan.rounds, cycles, |i| run(&servers[i]))?;
        let section = Section {
            name: format!("churn, {}, C = {clients}", close_by.name()),
            unit: "cycle",
            samples,
        };
        print_section(
            &section,
            &servers,
            &start,
            &format!("{cycles} cycles a block"),
        );
        if plan.strace {
            for server in &servers {
                strace_block(server, cycles, "cycle", || run(server))?;
            }
        }
        sections.push(section);
    }

    // Echo: 64 connections to each server, open for the whole section.
    let msg = Message::binary(vec![0x5a; 64]);
    let mut clients: Vec<Vec<Client>> = Vec::new();
    for server in &servers {
        clients.push(block_on(client::connect_many(
            server.addr(),
            PROCESS_ECHO_PATH,
            64,
            64,
            Some(client::client_config()),
        ))?);
    }
    let ops = 64 * plan.echo;
    let start = CpuTicks::now_with(&servers.iter().map(ServerProcess::pid).collect::<Vec<_>>());
    let mut run = |i: usize| {
        block_on(within(
            Duration::from_secs(120),
            "echo",
            client::echo_rounds(&mut clients[i], plan.echo, &msg),
        ))
    };
    let samples = rounds(&servers, plan.rounds, ops, &mut run)?;
    let section = Section {
        name: "echo, 64 connections, 64-byte messages".to_owned(),
        unit: "message",
        samples,
    };
    print_section(
        &section,
        &servers,
        &start,
        &format!("{} round trips per connection a block", plan.echo),
    );
    if plan.strace {
        for (i, server) in servers.iter().enumerate() {
            strace_block(server, ops, "message", || run(i))?;
        }
    }
    sections.push(section);
    for set in clients {
        block_on(client::close_all(set))?;
    }

    // Idle memory, each round in fresh server processes.
    drop(servers);
    let memory = idle_memory(&spawner, &kinds, &plan)?;

    summary(&kinds, &sections, &memory, skipped.as_deref());
    Ok(())
}

/// Per server kind, the RSS growth per idle connection (KiB) of each
/// round: a fresh process, a few connections opened and closed (so lazy
/// start-up allocations are made), RSS read, `plan.idle` connections
/// opened, RSS read again.
fn idle_memory(spawner: &Spawner, kinds: &[Kind], plan: &Plan) -> BenchResult<Vec<Vec<f64>>> {
    let settle = || std::thread::sleep(Duration::from_millis(300));
    let n = kinds.len();
    let mut per_conn = vec![Vec::new(); n];
    let start = CpuTicks::now();
    for round in 0..plan.memory_rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let server = spawner.spawn(&kinds[i])?;
            let open = |count: usize| {
                block_on(within(
                    Duration::from_secs(300),
                    "opening idle connections",
                    client::connect_many(
                        server.addr(),
                        PROCESS_ECHO_PATH,
                        count,
                        100,
                        Some(client::client_config()),
                    ),
                ))
            };
            block_on(client::close_all(open(100)?))?;
            settle();
            let before = server.rss_kib();
            let idle = open(plan.idle)?;
            settle();
            let after = server.rss_kib();
            if let (Some(a), Some(b)) = (before, after) {
                per_conn[i].push((b as f64 - a as f64) / plan.idle as f64);
            }
            block_on(within(
                Duration::from_secs(300),
                "closing idle connections",
                client::close_all(idle),
            ))?;
        }
    }
    // The servers were fresh processes each round: this share leaves out
    // only this process, so it includes the servers' start-up.
    let others = CpuTicks::now().others_busy_since(&start);
    println!();
    println!(
        "idle memory, {} idle connections, a fresh server process each round, {} rounds (other processes, servers included, used {:.0}% of the cores meanwhile)",
        plan.idle,
        plan.memory_rounds,
        others * 100.0
    );
    for (kind, values) in kinds.iter().zip(&per_conn) {
        let shown: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
        println!(
            "  {:<8} {:>8.2} KiB RSS per connection (rounds: {})",
            kind.name(),
            median(values.clone()),
            shown.join(", ")
        );
    }
    Ok(per_conn)
}

/// Runs one more block under `strace -c -f -p PID` and prints the server's
/// system calls per operation.
fn strace_block(
    server: &ServerProcess,
    ops: u64,
    unit: &str,
    block: impl FnOnce() -> BenchResult<Duration>,
) -> BenchResult<()> {
    let out = std::env::temp_dir().join(format!("wharf-compare-strace-{}.txt", server.pid()));
    let mut strace = match Command::new("strace")
        .args(["-c", "-f", "-o"])
        .arg(&out)
        .args(["-p", &server.pid().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            println!("  {}: no strace: {err}", server.name());
            return Ok(());
        }
    };
    // strace attaches to every thread, then counts.
    std::thread::sleep(Duration::from_millis(500));
    let result = block();
    // SIGINT makes strace detach and write its summary.
    let _ = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    strace.wait()?;
    result?;
    let summary = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let mut calls: Vec<(String, u64, u64)> = Vec::new();
    let mut total = None;
    for line in summary.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let name = fields.last().copied().unwrap_or("");
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        match fields.len() {
            // % time, seconds, usecs/call, calls, [errors], syscall
            5 | 6 if name != "syscall" && number(3).is_some() => {
                let errors = if fields.len() == 6 { number(4) } else { None };
                calls.push((name.to_owned(), number(3).unwrap_or(0), errors.unwrap_or(0)));
            }
            // % time, seconds, [usecs/call], calls, [errors], "total"
            _ if name == "total" => total = fields.iter().rev().nth(1).map(|s| s.to_string()),
            _ => {}
        }
    }
    calls.retain(|(name, _, _)| name != "total");
    calls.sort_by_key(|c| std::cmp::Reverse(c.1));
    let per = |count: u64| count as f64 / ops as f64;
    let all: u64 = calls.iter().map(|c| c.1).sum();
    let top: Vec<String> = calls
        .iter()
        .take(10)
        .map(|(name, count, errors)| {
            if *errors > 0 {
                format!("{name} {:.2} ({:.2} failed)", per(*count), per(*errors))
            } else {
                format!("{name} {:.2}", per(*count))
            }
        })
        .collect();
    println!(
        "  {} syscalls per {unit} (strace -c -f, one more block; strace slows it, the counts matter): {:.2} in all{}; {}",
        server.name(),
        per(all),
        total.map_or(String::new(), |t| format!(" (strace's total line: {t})")),
        top.join(", ")
    );
    Ok(())
}

/// The closing table.
fn summary(kinds: &[Kind], sections: &[Section], memory: &[Vec<f64>], skipped: Option<&str>) {
    let uws = kinds.iter().position(|k| *k == Kind::Uws);
    println!();
    println!("summary: server CPU per operation (medians over the rounds); ratios are medians of the rounds' Wharf / other (smallest-largest round; pooled: all rounds' CPU over all rounds' operations); targets: Wharf / bare at most 1.05, Wharf / uWS at most 1.10");
    println!(
        "  {:<54} {:>10} {:>10} {:>10} {:>36} {:>36}",
        "load", "wharf", "bare", "uws", "wharf / bare", "wharf / uws"
    );
    let quick = quick_mode();
    let verdict = |ratio: f64, target: f64| {
        if quick || !ratio.is_finite() || ratio <= 0.0 {
            ""
        } else if ratio <= target {
            " ok"
        } else {
            " MISSED"
        }
    };
    let ratio_cell = |ours: &[Sample], theirs: Option<&Vec<Sample>>, target: f64| match theirs {
        Some(theirs) => {
            let (ratio, lo, hi) = cpu_ratio(ours, theirs);
            if !ratio.is_finite() {
                return "-".to_owned();
            }
            let pooled = pooled_us(ours) / pooled_us(theirs);
            format!(
                "{ratio:.2} ({lo:.2}-{hi:.2}; pooled {pooled:.2}){}",
                verdict(ratio, target)
            )
        }
        None => "-".to_owned(),
    };
    for section in sections {
        let cell = |i: Option<usize>| {
            i.and_then(|i| section.samples.get(i))
                .map_or("-".to_owned(), |s| {
                    format!("{:.1} µs", median(s.iter().map(|s| s.server_us).collect()))
                })
        };
        println!(
            "  {:<54} {:>10} {:>10} {:>10} {:>36} {:>36}",
            format!("{} (per {})", section.name, section.unit),
            cell(Some(0)),
            cell(Some(1)),
            cell(uws),
            ratio_cell(&section.samples[0], section.samples.get(1), 1.05),
            ratio_cell(
                &section.samples[0],
                uws.and_then(|i| section.samples.get(i)),
                1.10
            )
        );
    }
    let kib = |i: Option<usize>| {
        i.and_then(|i| memory.get(i))
            .map(|v| median(v.clone()))
            .unwrap_or(f64::NAN)
    };
    let mem_cell = |v: f64| {
        if v.is_nan() {
            "-".to_owned()
        } else {
            format!("{v:.2} KiB")
        }
    };
    let ratio = |i: Option<usize>| {
        let r = kib(Some(0)) / kib(i);
        if r.is_finite() {
            format!("{r:.2}")
        } else {
            "-".to_owned()
        }
    };
    println!(
        "  {:<54} {:>10} {:>10} {:>10} {:>36} {:>36}",
        "idle memory (RSS per connection)",
        mem_cell(kib(Some(0))),
        mem_cell(kib(Some(1))),
        mem_cell(kib(uws)),
        ratio(Some(1)),
        ratio(uws)
    );
    let memory_verdict = verdict(kib(Some(0)), 4.0);
    if !memory_verdict.is_empty() {
        println!("  wharf's idle memory against the target of at most 4 KiB per connection:{memory_verdict}");
    }
    if let Some(reason) = skipped {
        println!("  (no uws column, skipped {reason})");
    }
    if quick {
        println!("  (quick run: blocks far shorter than the 10 ms ticks of /proc's CPU times, so the CPU figures mean nothing; it checks that every load runs)");
    }
}
