//! Servers as processes of their own: Wharf and the bare baseline (this
//! bench binary, re-executed), and uWebSockets.js (`node`), each measured
//! from outside through `/proc/<pid>`.
//!
//! `compare` and `large` put every server in a separate process so that
//! the same readings apply to all of them: the CPU time of the whole
//! process (`utime` + `stime`, every thread, see [`procfs::pid_cpu_ticks`])
//! and its resident memory. A Rust server process is the bench's own
//! binary started with [`SERVER_ENV`] set; its `main` calls
//! [`serve_if_child`] first, which then never returns. The child runs the
//! server with one executor thread (`ASYNC_STD_THREAD_COUNT=1`) and prints
//! `listening ADDR` on its standard output; it exits when its standard
//! input closes (or is killed when the [`ServerProcess`] is dropped).
//!
//! Every server process starts on the server's core: the parent pins its
//! own thread there around the `fork` ([`pin::on_core`]), and a child and
//! all its threads inherit that affinity, whatever program it runs.
//!
//! uWebSockets.js is `node SERVER_JS PORT` with `SERVER_JS` from
//! [`UWS_ENV`] (default [`UWS_DEFAULT`]); install it once as
//! `benches/README.md` says. When node or the script is missing, or the
//! server does not come up, [`Spawner::spawn`] fails with the
//! reason and the bench skips that server. Nothing in the project
//! depends on it.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use core_affinity::CoreId;

use crate::{pin, procfs, BenchResult};

/// Set in a server child: which server to run, `wharf` or `bare`.
pub const SERVER_ENV: &str = "WHARF_BENCH_SERVER";

/// Set in a server child: the read buffer size in bytes (Wharf's
/// `Server::read_buffer_size`, or the bare server's tungstenite
/// `read_buffer_size`); unset, each server's benchmark default.
pub const READ_BUFFER_ENV: &str = "WHARF_BENCH_SERVER_READ_BUFFER";

/// Where the uWebSockets.js echo server script is
/// (default [`UWS_DEFAULT`]).
pub const UWS_ENV: &str = "WHARF_UWS_SERVER";

/// The uWebSockets.js echo server script's default location.
pub const UWS_DEFAULT: &str = "/tmp/uws/server.js";

/// The path every server process serves its echo on: uWebSockets.js
/// serves `/` only; Wharf's fallback and the bare server take any path.
pub const PROCESS_ECHO_PATH: &str = "/";

/// Which server a [`ServerProcess`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// [`WharfServer`](crate::WharfServer) with default settings, or with
    /// this read buffer size.
    Wharf {
        /// `Server::read_buffer_size`, when not the default.
        read_buffer: Option<usize>,
    },
    /// The bare async-tungstenite server ([`crate::start_bare`], Wharf's
    /// read buffer size).
    Bare,
    /// uWebSockets.js under node.
    Uws,
}

impl Kind {
    /// Wharf with default settings.
    pub const WHARF: Kind = Kind::Wharf { read_buffer: None };

    /// The row label: `wharf`, `bare` or `uws`.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Wharf { .. } => "wharf",
            Kind::Bare => "bare",
            Kind::Uws => "uws",
        }
    }
}

/// When this process was started as a server child ([`SERVER_ENV`] set),
/// runs that server until standard input closes, then exits the process;
/// otherwise returns at once. Call it first in `main`.
pub fn serve_if_child() {
    let Ok(kind) = std::env::var(SERVER_ENV) else {
        return;
    };
    let code = match serve(&kind) {
        Ok(()) => 0,
        Err(err) => {
            let _ = writeln!(std::io::stdout(), "error {err}");
            1
        }
    };
    std::process::exit(code);
}

fn serve(kind: &str) -> BenchResult<()> {
    let read_buffer: Option<usize> = match std::env::var(READ_BUFFER_ENV) {
        Ok(v) => Some(v.trim().parse()?),
        Err(_) => None,
    };
    let addr = async_std::task::block_on(async {
        BenchResult::Ok(match kind {
            "wharf" => {
                let server = crate::WharfServer::start_with(|server| match read_buffer {
                    Some(bytes) => server.read_buffer_size(bytes),
                    None => server,
                })
                .await?;
                let addr = server.addr();
                // The server runs until the process exits.
                std::mem::forget(server);
                addr
            }
            "bare" => {
                let mut config = crate::servers::bare_config();
                if let Some(bytes) = read_buffer {
                    config = config.read_buffer_size(bytes);
                }
                crate::servers::start_bare_with(config).await?
            }
            other => return Err(format!("unknown server {other:?}").into()),
        })
    })?;
    let mut out = std::io::stdout();
    writeln!(out, "listening {addr}")?;
    out.flush()?;
    // Serve until the parent closes our standard input (or kills us).
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    Ok(())
}

/// How to start server processes.
#[derive(Debug, Clone, Default)]
pub struct Spawner {
    /// The server's core, and the core to put the calling thread back on.
    pub cores: Option<(CoreId, CoreId)>,
    /// A command prefix for the server process (`strace -f -o FILE`,
    /// `valgrind --tool=...`): the measured pid is then the wrapper's,
    /// which is the server's own when the wrapper runs it in place
    /// (valgrind, `env`, `taskset`).
    pub wrapper: Vec<String>,
}

impl Spawner {
    /// The cores of [`pin::process_cores`] and the wrapper from the
    /// variable `wrapper_env`, when set (split at whitespace).
    pub fn from_env(wrapper_env: &str) -> Spawner {
        Spawner {
            cores: pin::process_cores(),
            wrapper: std::env::var(wrapper_env)
                .map(|w| w.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    }

    /// Pins the calling thread (which drives the clients) to the clients'
    /// core; returns the two cores' numbers, when pinned.
    pub fn pin_clients(&self) -> Option<(usize, usize)> {
        let (server, client) = self.cores?;
        core_affinity::set_for_current(client).then_some((server.id, client.id))
    }

    /// Starts a server process of `kind` and waits until it accepts
    /// connections.
    pub fn spawn(&self, kind: &Kind) -> BenchResult<ServerProcess> {
        let (mut command, port) = match kind {
            Kind::Wharf { read_buffer } => {
                let mut command = self.command(std::env::current_exe()?.into_os_string());
                command.env(SERVER_ENV, "wharf");
                if let Some(bytes) = read_buffer {
                    command.env(READ_BUFFER_ENV, bytes.to_string());
                }
                (command, None)
            }
            Kind::Bare => {
                let mut command = self.command(std::env::current_exe()?.into_os_string());
                command.env(SERVER_ENV, "bare");
                (command, None)
            }
            Kind::Uws => {
                let script = uws_script()?;
                let port = free_port()?;
                let mut command = self.command("node".into());
                command.arg(script).arg(port.to_string());
                (command, Some(port))
            }
        };
        command
            .env("ASYNC_STD_THREAD_COUNT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let (server_core, client_core) = match self.cores {
            Some((s, c)) => (Some(s), Some(c)),
            None => (None, None),
        };
        let mut child = pin::on_core(server_core, client_core, || command.spawn())
            .map_err(|err| format!("{}: cannot start: {err}", kind.name()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut process = ServerProcess {
            name: kind.name(),
            exits_on_eof: *kind != Kind::Uws,
            pid: child.id(),
            child,
            stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0))),
        };
        match port {
            None => {
                let stdout = stdout.ok_or("no stdout")?;
                let mut lines = BufReader::new(stdout);
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line)? == 0 {
                        return Err(format!("{}: the server process exited", kind.name()).into());
                    }
                    if let Some(addr) = line.trim().strip_prefix("listening ") {
                        process.addr = addr.parse()?;
                        break;
                    }
                    if let Some(err) = line.trim().strip_prefix("error ") {
                        return Err(format!("{}: {err}", kind.name()).into());
                    }
                }
            }
            Some(_) => process.wait_listening(Duration::from_secs(15))?,
        }
        Ok(process)
    }

    fn command(&self, program: std::ffi::OsString) -> Command {
        match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
            None => Command::new(program),
        }
    }
}

/// The uWebSockets.js script, when it and `node` are there.
fn uws_script() -> BenchResult<PathBuf> {
    let script = PathBuf::from(std::env::var(UWS_ENV).unwrap_or_else(|_| UWS_DEFAULT.into()));
    if !script.is_file() {
        return Err(format!(
            "uws: no {} (install it as benches/README.md says, or set {UWS_ENV})",
            script.display()
        )
        .into());
    }
    match Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(script),
        Ok(status) => Err(format!("uws: `node --version` failed: {status}").into()),
        Err(err) => Err(format!("uws: no node: {err}").into()),
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> BenchResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A server process; ended when dropped: a Rust server exits when its
/// standard input closes (so a wrapper such as `perf record` ends cleanly
/// and writes its output), and is killed if it has not within two
/// seconds; node is killed at once, with any processes it (or its wrapper)
/// started.
#[derive(Debug)]
pub struct ServerProcess {
    name: &'static str,
    /// Whether it exits by itself once its standard input closes.
    exits_on_eof: bool,
    pid: u32,
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
}

impl ServerProcess {
    /// The row label of its [`Kind`].
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// CPU time of the whole process so far in clock ticks
    /// ([`procfs::pid_cpu_ticks`]); NaN once unreadable.
    pub fn cpu_ticks(&self) -> f64 {
        procfs::pid_cpu_ticks(self.pid).map_or(f64::NAN, |t| t as f64)
    }

    /// Its resident set size in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        procfs::pid_rss_kib(self.pid)
    }

    fn wait_listening(&mut self, limit: Duration) -> BenchResult<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("{}: the server process exited: {status}", self.name).into());
            }
            if TcpStream::connect(self.addr).is_ok() {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(
                    format!("{}: not listening on {} in {limit:?}", self.name, self.addr).into(),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if self.exits_on_eof {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Under a wrapper the server is the child's descendant: end those
        // too, before they are orphaned.
        let descendants = procfs::descendants(self.pid);
        if !descendants.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(descendants.iter().map(u32::to_string))
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
