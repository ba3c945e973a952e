//! Plumbing shared by the example programs in this folder: logging set-up
//! and the `--addr` flag. The programs themselves are `examples/*.rs`; run
//! one with `cargo run --example NAME`.

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

/// The address from `--addr HOST:PORT`, or `default`. Any other argument is
/// an error that names `program` and its usage.
pub fn addr_flag(program: &str, default: &str) -> wharf::Result<String> {
    let mut addr = default.to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(value)) => addr = value,
            _ => {
                return Err(wharf::Error::Config(format!(
                    "unexpected argument {arg:?}; usage: {program} [--addr HOST:PORT]"
                )))
            }
        }
    }
    Ok(addr)
}
