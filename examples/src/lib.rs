//! Plumbing shared by the example programs in this folder: logging set-up
//! and the value parsers their command lines share. The programs
//! themselves are `examples/*.rs`; run one with `cargo run --example NAME`.
//!
//! Each example's command line is a `clap` derive (`--help` lists the
//! flags; a wrong one exits with status 2). These parsers add the checks
//! clap does not know: milliseconds and counts that must be at least 1.

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

/// A whole number of at least 1: `--max-conns 0` is a mistake, not "no
/// limit" (leave the flag out for that).
///
/// # Examples
///
/// ```
/// assert_eq!(wharf_examples::positive::<usize>("64"), Ok(64));
/// assert!(wharf_examples::positive::<usize>("0").is_err());
/// assert!(wharf_examples::positive::<u32>("1k").is_err());
/// ```
pub fn positive<T>(value: &str) -> Result<T, String>
where
    T: std::str::FromStr + Default + PartialEq,
{
    match value.parse::<T>() {
        Ok(n) if n != T::default() => Ok(n),
        _ => Err("expected a whole number of at least 1".into()),
    }
}

/// A duration given in whole milliseconds, at least 1.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(wharf_examples::millis("250"), Ok(Duration::from_millis(250)));
/// assert!(wharf_examples::millis("-1").is_err());
/// ```
pub fn millis(value: &str) -> Result<Duration, String> {
    positive::<u64>(value).map(Duration::from_millis)
}
