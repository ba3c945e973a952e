//! Readings from `/proc` (Linux only): resident memory, open descriptors,
//! the descriptor limit and TCP connection states of this process, and the
//! CPU time and resident memory of another process by its pid (the server
//! processes of `compare` and `large`).
//!
//! Each function reads its file once and returns `None` (or zero counts)
//! when the file is missing or unreadable, so a bench on another system
//! prints "n/a" rather than failing.

use std::fs;
use std::io::{BufRead, BufReader};

/// Resident set size of this process in KiB (`VmRSS` in
/// `/proc/self/status`).
pub fn rss_kib() -> Option<u64> {
    status_field("VmRSS:")
}

/// The anonymous part of [`rss_kib`] in KiB (`RssAnon`: heap, stacks),
/// without the pages of mapped files such as the program's own code.
pub fn rss_anon_kib() -> Option<u64> {
    status_field("RssAnon:")
}

/// Peak resident set size of this process in KiB (`VmHWM`).
pub fn peak_rss_kib() -> Option<u64> {
    status_field("VmHWM:")
}

/// Resident set size of process `pid` in KiB (`VmRSS` of
/// `/proc/<pid>/status`).
pub fn pid_rss_kib(pid: u32) -> Option<u64> {
    status_field_of(&pid.to_string(), "VmRSS:")
}

fn status_field(name: &str) -> Option<u64> {
    status_field_of("self", name)
}

fn status_field_of(process: &str, name: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Open file descriptors of this process: the entries of `/proc/self/fd`,
/// not counting the one used to list them.
pub fn open_fds() -> Option<usize> {
    let entries = fs::read_dir("/proc/self/fd").ok()?;
    Some(entries.count().saturating_sub(1))
}

/// The soft limit on open files (`ulimit -n`), from `/proc/self/limits`;
/// `None` when unknown or unlimited.
pub fn nofile_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many idle connections fit under `ulimit -n` when each process holds
/// one descriptor per connection plus `reserve` of its own: `wanted`, or
/// fewer (saying so) when the limit is lower.
#[allow(clippy::print_stdout, reason = "the reports say what they measure")]
pub fn idle_that_fit(wanted: usize, reserve: u64) -> usize {
    let Some(limit) = nofile_limit() else {
        return wanted;
    };
    let fit = usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
    if wanted > fit {
        println!(
            "note: ulimit -n is {limit}; measuring {fit} idle connections instead of {wanted}"
        );
        return fit;
    }
    wanted
}

/// TCP sockets in TIME_WAIT that involve port `port` on 127.0.0.1, by side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeWait {
    /// Sockets whose local port is `port`: the server closed first.
    pub server_side: usize,
    /// Sockets whose remote port is `port`: the client closed first (these
    /// hold the client's ephemeral port for the TIME_WAIT period).
    pub client_side: usize,
}

/// Counts TIME_WAIT sockets to and from `port` in `/proc/net/tcp` (IPv4;
/// the benches only use 127.0.0.1). The table is the network namespace's,
/// so the count includes other processes' sockets on that port, such as the
/// memory bench's client process.
pub fn time_wait(port: u16) -> TimeWait {
    let mut counts = TimeWait::default();
    // Line by line: with tens of thousands of sockets the table runs to
    // megabytes, which a single read would allocate in the process whose
    // memory the benches measure.
    let Ok(table) = fs::File::open("/proc/net/tcp") else {
        return counts;
    };
    let port_of = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
    };
    for line in BufReader::new(table).lines().skip(1) {
        let Ok(line) = line else {
            break;
        };
        let mut fields = line.split_whitespace();
        let (Some(_slot), Some(local), Some(remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // 06 is TCP_TIME_WAIT.
        if state != "06" {
            continue;
        }
        if port_of(local) == Some(port) {
            counts.server_side += 1;
        } else if port_of(remote) == Some(port) {
            counts.client_side += 1;
        }
    }
    counts
}

/// CPU time counters, in clock ticks, to tell how busy the machine was
/// around a measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// Ticks every core spent, busy or idle (`/proc/stat`'s first line).
    pub machine_total: u64,
    /// Ticks every core spent busy (not idle, not waiting for I/O).
    pub machine_busy: u64,
    /// Ticks this process's threads spent (user and system,
    /// `/proc/self/stat`).
    pub this_process: u64,
}

impl CpuTicks {
    /// The counters now; zero where unreadable.
    pub fn now() -> CpuTicks {
        let mut ticks = CpuTicks::default();
        if let Ok(stat) = fs::read_to_string("/proc/stat") {
            if let Some(line) = stat.lines().next() {
                let fields: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|f| f.parse().ok())
                    .collect();
                ticks.machine_total = fields.iter().sum();
                // user nice system idle iowait irq softirq steal ...
                let idle =
                    fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
                ticks.machine_busy = ticks.machine_total.saturating_sub(idle);
            }
        }
        ticks.this_process = process_ticks("self").unwrap_or(0);
        ticks
    }

    /// [`now`](Self::now), with the ticks of processes `pids` counted in
    /// [`this_process`](Self::this_process): ours too, so that
    /// [`others_busy_since`](Self::others_busy_since) leaves them out.
    pub fn now_with(pids: &[u32]) -> CpuTicks {
        let mut ticks = CpuTicks::now();
        for &pid in pids {
            ticks.this_process += pid_cpu_ticks(pid).unwrap_or(0);
        }
        ticks
    }

    /// The share of all cores' time, since `earlier`, that other processes
    /// kept busy: 0 on a quiet machine; anything above a few percent means
    /// the measurement shared the cores.
    pub fn others_busy_since(&self, earlier: &CpuTicks) -> f64 {
        let total = self.machine_total.saturating_sub(earlier.machine_total);
        let busy = self.machine_busy.saturating_sub(earlier.machine_busy);
        let ours = self.this_process.saturating_sub(earlier.this_process);
        if total == 0 {
            return 0.0;
        }
        busy.saturating_sub(ours) as f64 / total as f64
    }
}

/// Clock ticks per second of `/proc`'s CPU times (`USER_HZ`): 100 on
/// every Linux architecture the benches run on (`getconf CLK_TCK`).
pub const TICKS_PER_SECOND: u64 = 100;

/// CPU time process `pid` has run, user and system, all its threads
/// together, including threads that have exited (`utime` + `stime` of
/// `/proc/<pid>/stat`), in clock ticks ([`TICKS_PER_SECOND`]).
pub fn pid_cpu_ticks(pid: u32) -> Option<u64> {
    process_ticks(&pid.to_string())
}

/// [`pid_cpu_ticks`] of this process.
pub fn self_cpu_ticks() -> Option<u64> {
    process_ticks("self")
}

fn process_ticks(process: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{process}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at the
    // state; utime and stime are the 12th and 13th of them.
    let rest = stat.rsplit(')').next()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let parse = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(parse(11)? + parse(12)?)
}

/// The processes descended from process `pid` (children, their children,
/// ...), from the parent ids in `/proc/<pid>/stat`; empty when unreadable.
pub fn descendants(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|entry| {
            let child: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // After the command name: state, then the parent's id.
            let parent = stat.rsplit(')').next()?.split_whitespace().nth(1)?;
            Some((child, parent.parse().ok()?))
        })
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    found.remove(0);
    found
}

/// The kernel's id of the calling thread (from the `/proc/thread-self`
/// link, `PID/task/TID`).
pub fn current_thread_id() -> Option<u32> {
    let link = fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU time thread `tid` of this process has run, in nanoseconds, user
/// and system together (the first field of its `schedstat`). Unlike wall
/// time, it barely moves when other processes share the cores, so it
/// compares two servers' work on a busy machine.
pub fn thread_cpu_ns(tid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    stat.split_whitespace().next()?.parse().ok()
}
