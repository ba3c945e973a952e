//! Plumbing shared by the example programs in this folder: logging set-up
//! and a small command-line parser. The programs themselves are
//! `examples/*.rs`; run one with `cargo run --example NAME`.
//!
//! The parser knows only what the examples need: every flag takes one value
//! (`--flag VALUE` or `--flag=VALUE`), a flag may be repeated (the last
//! value wins, or [`Args::all`] reads every one), and `--help` (`-h`) asks
//! for the usage. It never prints by itself except in
//! [`Cli::parse_env_or_exit`], the one function that talks to the terminal
//! and ends the process.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;
use std::time::Duration;

/// Logs to stderr at `info`, or at the level `RUST_LOG` names.
pub fn init_logging() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// One flag a program accepts. Every flag takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// The flag as typed, with its dashes: `"--addr"`.
    pub name: &'static str,
    /// The value's placeholder in the usage: `"HOST:PORT"`.
    pub value: &'static str,
    /// One line saying what the flag does, including its default.
    pub help: &'static str,
}

/// A program's command line: its name, one line about it, and its flags.
///
/// # Examples
///
/// ```
/// use wharf_examples::{Cli, CliError, Flag};
///
/// const CLI: Cli = Cli {
///     program: "demo",
///     about: "A demo server.",
///     flags: &[Flag { name: "--addr", value: "HOST:PORT", help: "listen address" }],
/// };
///
/// let args = CLI.parse(["--addr", "127.0.0.1:1"]).unwrap();
/// assert_eq!(args.get("--addr"), Some("127.0.0.1:1"));
/// assert_eq!(
///     CLI.parse(["--port", "1"]).unwrap_err(),
///     CliError::UnknownFlag("--port".into())
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Cli {
    /// The program's name, as in `cargo run --example NAME`.
    pub program: &'static str,
    /// What the program does, in one line.
    pub about: &'static str,
    /// The flags it accepts (besides `--help`).
    pub flags: &'static [Flag],
}

impl Cli {
    /// Parses `args` (without the program name). Fails on an unknown flag,
    /// a flag without its value, a bare argument, or `--help`
    /// ([`CliError::Help`]).
    pub fn parse<I, S>(&self, args: I) -> Result<Args, CliError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut values = Vec::new();
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Err(CliError::Help);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
                _ => (arg.as_str(), None),
            };
            let Some(flag) = self.flags.iter().find(|flag| flag.name == name) else {
                return Err(if name.starts_with('-') {
                    CliError::UnknownFlag(name.to_owned())
                } else {
                    CliError::UnexpectedArgument(arg)
                });
            };
            // `--addr --ttl-ms 5` is a forgotten value, not an address
            // called "--ttl-ms".
            let value = match inline {
                Some(value) => value,
                None => match args.next() {
                    Some(value) if !value.starts_with("--") => value,
                    _ => return Err(CliError::MissingValue(flag.name)),
                },
            };
            values.push((flag.name, value));
        }
        Ok(Args { values })
    }

    /// Writes the usage: the program, what it does, and each flag.
    pub fn write_usage(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", self.about)?;
        writeln!(out)?;
        self.write_usage_line(out)?;
        writeln!(out)?;
        let width = self
            .flags
            .iter()
            .map(|flag| flag.name.len() + 1 + flag.value.len())
            .max()
            .unwrap_or(0)
            .max("--help".len());
        for flag in self.flags {
            let left = format!("{} {}", flag.name, flag.value);
            writeln!(out, "  {left:width$}  {}", flag.help)?;
        }
        writeln!(out, "  {:width$}  print this help", "--help")
    }

    fn write_usage_line(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "usage: cargo run --example {} -- [FLAGS]",
            self.program
        )
    }

    /// Parses the process's arguments and hands them to `build`, which
    /// reads the values it needs.
    ///
    /// `--help` writes the usage to stdout and exits with status 0; a
    /// mistake (from the parser or from `build`) writes it and the usage
    /// line to stderr and exits with status 2, the usual status for a bad
    /// command line.
    pub fn parse_env_or_exit<T>(&self, build: impl FnOnce(&Args) -> Result<T, CliError>) -> T {
        let parsed = self.parse(std::env::args().skip(1));
        match parsed.and_then(|args| build(&args)) {
            Ok(value) => value,
            Err(err) => {
                let code = err.exit_code();
                if err == CliError::Help {
                    let _ = self.write_usage(&mut io::stdout().lock());
                } else {
                    let mut out = io::stderr().lock();
                    let _ = writeln!(out, "{}: {err}", self.program);
                    let _ = self.write_usage_line(&mut out);
                    let _ = writeln!(out, "--help lists the flags");
                }
                std::process::exit(code)
            }
        }
    }
}

/// The flags given on a command line, with their values as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    values: Vec<(&'static str, String)>,
}

impl Args {
    /// The value of `flag`, the last one when it was given more than once.
    pub fn get(&self, flag: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(name, _)| *name == flag)
            .map(|(_, value)| value.as_str())
    }

    /// The value of `flag`, or `default` when it was not given.
    pub fn get_or(&self, flag: &str, default: &str) -> String {
        self.get(flag).unwrap_or(default).to_owned()
    }

    /// Every value of a repeatable `flag`, in command-line order.
    pub fn all<'a>(&'a self, flag: &'a str) -> impl Iterator<Item = &'a str> {
        self.values
            .iter()
            .filter(move |(name, _)| *name == flag)
            .map(|(_, value)| value.as_str())
    }

    /// The value of `flag` as a whole number of at least 1, or `None` when
    /// the flag was not given. Zero, signs, fractions and text are
    /// [`CliError::BadValue`].
    pub fn positive<T>(&self, flag: &'static str) -> Result<Option<T>, CliError>
    where
        T: FromStr + Default + PartialEq,
    {
        let Some(value) = self.get(flag) else {
            return Ok(None);
        };
        match value.parse::<T>() {
            Ok(number) if number != T::default() => Ok(Some(number)),
            _ => Err(CliError::BadValue {
                flag,
                value: value.to_owned(),
                expected: "a whole number of at least 1",
            }),
        }
    }

    /// The value of `flag`, a number of milliseconds of at least 1, as a
    /// duration.
    pub fn millis(&self, flag: &'static str) -> Result<Option<Duration>, CliError> {
        Ok(self.positive::<u64>(flag)?.map(Duration::from_millis))
    }
}

/// Why a command line was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CliError {
    /// `--help` or `-h`: not a mistake, but the program should print its
    /// usage instead of running.
    Help,
    /// A flag the program does not know.
    UnknownFlag(String),
    /// An argument that is not a flag.
    UnexpectedArgument(String),
    /// A flag given without its value.
    MissingValue(&'static str),
    /// A value the flag cannot use.
    BadValue {
        /// The flag.
        flag: &'static str,
        /// The value as typed.
        value: String,
        /// What the flag expects instead.
        expected: &'static str,
    },
}

impl CliError {
    /// The process exit status for this outcome: 0 for `--help`, 2 for a
    /// mistake.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Help => 0,
            _ => 2,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Help => f.write_str("help requested"),
            CliError::UnknownFlag(flag) => write!(f, "unknown flag {flag:?}"),
            CliError::UnexpectedArgument(arg) => write!(f, "unexpected argument {arg:?}"),
            CliError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            CliError::BadValue {
                flag,
                value,
                expected,
            } => write!(f, "{flag} {value:?}: expected {expected}"),
        }
    }
}

impl std::error::Error for CliError {}

#[cfg(test)]
mod tests {
    use super::*;

    const CLI: Cli = Cli {
        program: "demo",
        about: "A demo.",
        flags: &[
            Flag {
                name: "--addr",
                value: "HOST:PORT",
                help: "listen address (default 127.0.0.1:1)",
            },
            Flag {
                name: "--ttl-ms",
                value: "N",
                help: "session lifetime",
            },
            Flag {
                name: "--origin",
                value: "URL",
                help: "allowed origin; repeatable",
            },
        ],
    };

    #[test]
    fn no_arguments_give_no_values() {
        let args = CLI.parse(Vec::<String>::new()).unwrap();
        assert_eq!(args, Args::default());
        assert_eq!(args.get("--addr"), None);
        assert_eq!(args.get_or("--addr", "127.0.0.1:1"), "127.0.0.1:1");
        assert_eq!(args.millis("--ttl-ms"), Ok(None));
    }

    #[test]
    fn values_after_a_space_or_an_equals_sign() {
        let args = CLI
            .parse(["--addr", "127.0.0.1:9", "--ttl-ms=250"])
            .unwrap();
        assert_eq!(args.get("--addr"), Some("127.0.0.1:9"));
        assert_eq!(args.get_or("--addr", "127.0.0.1:1"), "127.0.0.1:9");
        assert_eq!(
            args.millis("--ttl-ms"),
            Ok(Some(Duration::from_millis(250)))
        );
    }

    #[test]
    fn repeated_flags_keep_every_value_and_the_last_wins() {
        let args = CLI
            .parse([
                "--origin",
                "http://a.test",
                "--origin=http://b.test",
                "--addr",
                "x:1",
                "--addr",
                "y:2",
            ])
            .unwrap();
        let origins: Vec<&str> = args.all("--origin").collect();
        assert_eq!(origins, ["http://a.test", "http://b.test"]);
        assert_eq!(args.get("--addr"), Some("y:2"));
    }

    #[test]
    fn an_equals_sign_inside_a_value_is_kept() {
        let args = CLI.parse(["--origin=http://a.test/?x=1"]).unwrap();
        assert_eq!(args.get("--origin"), Some("http://a.test/?x=1"));
    }

    #[test]
    fn help_in_any_position() {
        assert_eq!(CLI.parse(["--help"]), Err(CliError::Help));
        assert_eq!(CLI.parse(["--addr", "x:1", "-h"]), Err(CliError::Help));
        assert_eq!(CliError::Help.exit_code(), 0);
    }

    #[test]
    fn unknown_flags_are_refused() {
        let err = CLI.parse(["--adr", "x:1"]).unwrap_err();
        assert_eq!(err, CliError::UnknownFlag("--adr".into()));
        assert_eq!(err.to_string(), "unknown flag \"--adr\"");
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            CLI.parse(["--adr=x:1"]),
            Err(CliError::UnknownFlag("--adr".into()))
        );
        assert_eq!(CLI.parse(["-x"]), Err(CliError::UnknownFlag("-x".into())));
    }

    #[test]
    fn bare_arguments_are_refused() {
        let err = CLI.parse(["127.0.0.1:1"]).unwrap_err();
        assert_eq!(err, CliError::UnexpectedArgument("127.0.0.1:1".into()));
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_flag_without_its_value_is_refused() {
        assert_eq!(CLI.parse(["--addr"]), Err(CliError::MissingValue("--addr")));
        let err = CLI.parse(["--addr", "--ttl-ms", "5"]).unwrap_err();
        assert_eq!(err, CliError::MissingValue("--addr"));
        assert_eq!(err.to_string(), "--addr needs a value");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn numbers_must_be_whole_and_at_least_one() {
        for bad in ["0", "-5", "1.5", "ten", "", "99999999999999999999999"] {
            let args = CLI.parse([format!("--ttl-ms={bad}")]).unwrap();
            let err = args.millis("--ttl-ms").unwrap_err();
            assert_eq!(
                err,
                CliError::BadValue {
                    flag: "--ttl-ms",
                    value: bad.into(),
                    expected: "a whole number of at least 1",
                },
                "{bad:?}"
            );
            assert_eq!(err.exit_code(), 2);
        }
        let args = CLI.parse(["--ttl-ms", "ten"]).unwrap();
        assert_eq!(
            args.positive::<usize>("--ttl-ms").unwrap_err().to_string(),
            "--ttl-ms \"ten\": expected a whole number of at least 1"
        );
        let args = CLI.parse(["--ttl-ms", "300"]).unwrap();
        assert_eq!(args.positive::<u32>("--ttl-ms"), Ok(Some(300)));
        let args = CLI.parse(["--ttl-ms", "70000"]).unwrap();
        assert!(
            args.positive::<u16>("--ttl-ms").is_err(),
            "out of range for the type"
        );
    }

    #[test]
    fn usage_lists_every_flag_and_help() {
        let mut out = Vec::new();
        CLI.write_usage(&mut out).unwrap();
        let usage = String::from_utf8(out).unwrap();
        assert!(usage.starts_with("A demo.\n"), "{usage}");
        assert!(
            usage.contains("usage: cargo run --example demo -- [FLAGS]"),
            "{usage}"
        );
        for flag in CLI.flags {
            let line = usage
                .lines()
                .find(|line| line.trim_start().starts_with(flag.name))
                .unwrap_or_else(|| panic!("{} missing from\n{usage}", flag.name));
            assert!(line.contains(flag.value), "{line}");
            assert!(line.ends_with(flag.help), "{line}");
        }
        assert!(usage.contains("--help"), "{usage}");
    }
}
