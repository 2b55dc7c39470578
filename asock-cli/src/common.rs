//! Helpers every command shares: the error type, seconds on the command line, the first
//! stdout line, the connection log and Unix bind errors.

use std::io::Write;

use asock::{Error, SocketAddress};

/// An error the tool reports as one `error: ...` line.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<asock::Error> for CliError {
    fn from(e: asock::Error) -> Self {
        CliError(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError(e.to_string())
    }
}

/// The result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

/// Logs a connection-level event (accepted, closed, per-connection error) at `info`: shown
/// on stderr with `-v`.
#[macro_export]
macro_rules! log {
    ($($t:tt)*) => {
        tracing::info!($($t)*)
    };
}

/// Parses a seconds value given on the command line.
pub fn seconds(s: f64) -> CliResult<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(s)
        .map_err(|_| CliError(format!("invalid number of seconds: {s}")))
}

/// Prints a line on stdout and makes sure it leaves the process at once (stdout may be a pipe).
pub fn announce(line: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// The message for a failed bind on a Unix path: why the path is taken (a live server, or a
/// file that is not a socket), not only that it is.
pub fn unix_bind_error(e: Error) -> CliError {
    match &e {
        Error::AddressInUse {
            addr: SocketAddress::Unix(_),
            source: Some(why),
        } if why.raw_os_error().is_none() => CliError(format!("{e} ({why})")),
        _ => e.into(),
    }
}

/// Prints one datagram's payload as a line (a `\n` added when it has none).
pub fn print_packet(out: &mut impl Write, packet: &[u8]) -> CliResult {
    out.write_all(packet)?;
    if !packet.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
