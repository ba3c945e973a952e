//! A real `redis-server` for the cluster tests: started on a free
//! 127.0.0.1 port with persistence off, killed when dropped, and a tiny
//! blocking client to look inside it and to publish what Wharf would not.
//!
//! A machine without `redis-server` fails the test that asks for one,
//! saying how to install it: never a silent skip (`.ci/run` installs it).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    password: Option<String>,
}

/// One reply of Redis, as the tiny client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK` and other simple strings.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// A bulk string; `None` for nil.
    Bulk(Option<Vec<u8>>),
    /// An array; `None` for nil.
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The integer of an integer reply.
    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// A flat array of bulk strings, as text (`HGETALL`, `KEYS`).
    pub fn strings(&self) -> Vec<String> {
        match self {
            Resp::Array(Some(items)) => items
                .iter()
                .map(|item| match item {
                    Resp::Bulk(Some(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
                    other => panic!("expected a bulk string, got {other:?}"),
                })
                .collect(),
            other => panic!("expected an array reply, got {other:?}"),
        }
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// Starts `redis-server` on a free port, persistence off, and waits
    /// until it answers.
    pub fn start() -> RedisServer {
        Self::start_with_password(None)
    }

    /// The same, requiring `password` (`requirepass`).
    pub fn start_with_password(password: Option<&str>) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            password: password.map(str::to_owned),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(err) => panic!(
                "cannot start redis-server ({err}): the cluster tests need a real Redis; \
                 install it with `apt-get update && apt-get install -y redis-server` \
                 (.ci/run does)"
            ),
        };
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                if let Some(password) = &self.password {
                    let _ = request(&mut stream, &[b"AUTH", password.as_bytes()]);
                }
                if matches!(request(&mut stream, &[b"PING"]), Ok(Resp::Simple(ref s)) if s == "PONG")
                {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not answer within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `redis://127.0.0.1:PORT` (with the password, if any).
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Kills the server (SIGKILL): what a crash looks like to its clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty (persistence is off).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends one command and returns the reply (blocking, 127.0.0.1).
    pub fn command(&self, args: &[&[u8]]) -> Resp {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        if let Some(password) = &self.password {
            request(&mut stream, &[b"AUTH", password.as_bytes()]).expect("AUTH");
        }
        request(&mut stream, args).expect("a reply from redis")
    }

    /// [`command`](Self::command) with text arguments.
    pub fn cmd(&self, args: &[&str]) -> Resp {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.command(&args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn request(stream: &mut TcpStream, args: &[&[u8]]) -> std::io::Result<Resp> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out)?;
    let mut reader = BufReader::new(stream);
    read(&mut reader)
}

fn read(reader: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad reply");
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    Ok(match kind {
        "+" => Resp::Simple(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(rest.parse().map_err(|_| bad())?),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            if len < 0 {
                Resp::Bulk(None)
            } else {
                let mut data = vec![0u8; len as usize + 2];
                reader.read_exact(&mut data)?;
                data.truncate(len as usize);
                Resp::Bulk(Some(data))
            }
        }
        "*" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            if len < 0 {
                Resp::Array(None)
            } else {
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(read(reader)?);
                }
                Resp::Array(Some(items))
            }
        }
        _ => return Err(bad()),
    })
}
