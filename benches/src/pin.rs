//! Server on one core, clients on the other.
//!
//! The servers run on async-std's global executor; the clients are futures
//! driven by `block_on` on the bench's main thread (they never spawn). So
//! [`init`] makes the executor one thread (`ASYNC_STD_THREAD_COUNT=1`,
//! unless the variable is already set), pins that thread to the first core
//! this process may use and the calling (main) thread to the second.
//!
//! What stays unpinned: async-io's reactor thread, which polls the sockets
//! only while no `block_on` is doing it (both sides' threads drive the
//! reactor themselves as they wait), and criterion's own bookkeeping, which
//! runs on the main thread between measurements.
//!
//! Pinning is skipped when fewer than two cores are available (for example
//! under `taskset -c 0`), when `WHARF_BENCH_PIN=0`, or, for the server side
//! only, when `ASYNC_STD_THREAD_COUNT` is set to anything but 1.

use std::fmt;
use std::sync::OnceLock;

use core_affinity::CoreId;

use crate::procfs;

/// Where [`init`] put the two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinning {
    /// The core of the server's executor thread, when pinned.
    pub server: Option<usize>,
    /// The core of the clients' (main) thread, when pinned.
    pub client: Option<usize>,
    /// The kernel thread id of the server's executor thread, when the
    /// executor has exactly one (for [`procfs::thread_cpu_ns`]).
    pub server_thread: Option<u32>,
}

impl fmt::Display for Pinning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core =
            |c: Option<usize>| c.map_or_else(|| "unpinned".to_owned(), |c| format!("core {c}"));
        write!(
            f,
            "server executor: {}, clients: {}",
            core(self.server),
            core(self.client)
        )
    }
}

static PINNING: OnceLock<Pinning> = OnceLock::new();

/// Sets the server/client split up once per process (later calls return
/// the first result) and pins the calling thread as the client thread.
///
/// Call it on the thread that will drive the clients, before anything
/// else uses async-std: the executor reads its thread count when it starts.
pub fn init() -> Pinning {
    *PINNING.get_or_init(|| {
        let none = Pinning {
            server: None,
            client: None,
            server_thread: None,
        };
        if std::env::var_os("WHARF_BENCH_PIN").is_some_and(|v| v == "0") {
            return none;
        }
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let [server_core, client_core, ..] = cores[..] else {
            return none;
        };
        let one_thread = match std::env::var("ASYNC_STD_THREAD_COUNT") {
            Ok(count) => count.trim() == "1",
            Err(_) => {
                // Only the main thread runs yet: nothing reads the
                // environment concurrently.
                std::env::set_var("ASYNC_STD_THREAD_COUNT", "1");
                true
            }
        };
        let (server, server_thread) = if one_thread {
            async_std::task::block_on(async_std::task::spawn(async move {
                (
                    core_affinity::set_for_current(server_core),
                    procfs::current_thread_id(),
                )
            }))
        } else {
            (false, None)
        };
        let client = core_affinity::set_for_current(client_core);
        Pinning {
            server: server.then_some(server_core.id),
            client: client.then_some(client_core.id),
            server_thread,
        }
    })
}

/// Pins the calling thread to the second available core (the clients'
/// core of [`init`]), or leaves it where it is when the process may use
/// one core only; returns that core, or `None` when pinning is off or
/// failed. The memory bench's client process calls it.
pub fn pin_as_client() -> Option<usize> {
    if std::env::var_os("WHARF_BENCH_PIN").is_some_and(|v| v == "0") {
        return None;
    }
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let core: CoreId = match cores[..] {
        // Already confined to one core (a child inherits the affinity of
        // the thread that spawned it, the parent's client thread).
        [only] => return Some(only.id),
        [_, second, ..] => second,
        [] => return None,
    };
    core_affinity::set_for_current(core).then_some(core.id)
}

impl Pinning {
    /// Prints the split to standard error, once per bench binary, so each
    /// report says how it was measured.
    #[allow(clippy::print_stderr, reason = "benches report how they ran")]
    pub fn announce(&self, bench: &str) {
        eprintln!("{bench}: {self}");
    }
}

/// The cores of a bench whose servers are processes of their own
/// (`compare`, `large`): the first core this process may use for the
/// servers, the second for the clients; `None` when pinning is off
/// (`WHARF_BENCH_PIN=0`) or fewer than two cores are available.
///
/// Call it before pinning anything: it reads the cores the process may use.
pub fn process_cores() -> Option<(CoreId, CoreId)> {
    if std::env::var_os("WHARF_BENCH_PIN").is_some_and(|v| v == "0") {
        return None;
    }
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    match cores[..] {
        [server, client, ..] => Some((server, client)),
        _ => None,
    }
}

/// Runs `f` with the calling thread pinned to `core`, then pins it to
/// `back`. A child process started in `f` inherits `core` (the affinity of
/// the thread that forks), and so do all its threads: this is how the
/// server processes land on the server's core whatever program they run.
pub fn on_core<T>(core: Option<CoreId>, back: Option<CoreId>, f: impl FnOnce() -> T) -> T {
    if let Some(core) = core {
        core_affinity::set_for_current(core);
    }
    let result = f();
    if let Some(back) = back {
        core_affinity::set_for_current(back);
    }
    result
}
