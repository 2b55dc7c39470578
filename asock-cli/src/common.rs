//! Helpers every command shares: the error type, seconds on the command line, the first
//! stdout line, the connection log and Unix bind errors.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use asock::address::Target;
use asock::{Error, SocketAddress, ToSocketAddress};

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

/// Where a command listens or connects: `HOST:PORT` as given, or a Unix path kept as an
/// `OsStr` end to end (a path that is not UTF-8 binds or reaches exactly that path).
#[derive(Debug, Clone)]
pub enum Place {
    /// `HOST:PORT`, `[V6]:PORT` or `unix:PATH`, resolved by the library.
    Inet(String),
    /// A Unix-domain socket path (`--unix PATH`).
    Unix(PathBuf),
}

impl Place {
    /// The place for `ADDR` or `--unix PATH` (the path wins); a port out of range is named.
    pub fn new(addr: Option<&str>, unix: Option<&Path>) -> CliResult<Place> {
        match (unix, addr) {
            (Some(path), _) => Ok(Place::Unix(path.to_path_buf())),
            (None, Some(addr)) => {
                check_port(addr)?;
                Ok(Place::Inet(addr.to_string()))
            }
            (None, None) => Err(CliError("an address is required".into())),
        }
    }

    /// Whether this is a Unix path.
    pub fn is_unix(&self) -> bool {
        matches!(self, Place::Unix(_))
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Inet(a) => f.write_str(a),
            Place::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl ToSocketAddress for Place {
    fn to_target(&self) -> asock::Result<Target> {
        match self {
            Place::Inet(a) => a.to_target(),
            Place::Unix(p) => Ok(Target::Resolved(SocketAddress::Unix(p.clone()))),
        }
    }
}

/// A port written as digits but beyond 65535 gets its own message, not "expected host:port".
pub fn check_port(addr: &str) -> CliResult {
    if let Some((_, port)) = addr.rsplit_once(':') {
        if !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_err()
        {
            return Err(CliError(format!(
                "invalid address {addr}: port {port} is out of range (0-65535)"
            )));
        }
    }
    Ok(())
}

/// The message for a failed bind: which address, and why, with a hint for the usual causes
/// (ports below 1024 need privileges; a Unix path that is taken).
pub fn bind_error(place: &Place, e: Error) -> CliError {
    if let Error::Io { source, .. } = &e {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            let low = match place {
                Place::Inet(a) => a
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_some_and(|p| p != 0 && p < 1024),
                Place::Unix(_) => false,
            };
            let hint = if low {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE; try a port above 1023)"
            } else {
                ""
            };
            return CliError(format!("cannot bind {place}: permission denied{hint}"));
        }
        return CliError(format!("cannot bind {place}: {source}"));
    }
    unix_bind_error(e)
}

/// Repeated per-connection errors, between two summary lines.
struct Summary {
    count: u64,
    last: String,
}

static SUMMARY: std::sync::Mutex<Summary> = std::sync::Mutex::new(Summary {
    count: 0,
    last: String::new(),
});

/// Logs an error that ended one connection (a reset, an idle timeout, a line too long, a failed
/// TLS handshake), as the help promises: each one at `-v`; at the default level at most one
/// summary line per second (a flood of failing clients never floods stderr); nothing at `-q`.
pub fn connection_error(peer: &dyn std::fmt::Display, e: &dyn std::fmt::Display) {
    use tracing::level_filters::LevelFilter;
    let level = LevelFilter::current();
    if level >= LevelFilter::INFO {
        tracing::info!("{peer}: {e}");
        return;
    }
    if level < LevelFilter::WARN {
        return;
    }
    static TICKER: std::sync::Once = std::sync::Once::new();
    TICKER.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("error-summary".into())
            .spawn(|| loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let (count, last) = {
                    let mut s = SUMMARY.lock().unwrap_or_else(|e| e.into_inner());
                    (std::mem::take(&mut s.count), std::mem::take(&mut s.last))
                };
                match count {
                    0 => {}
                    1 => tracing::warn!("a connection ended with an error: {last} (-v shows each)"),
                    n => tracing::warn!(
                        "{n} connections ended with an error in the last second; the last: \
                         {last} (-v shows each)"
                    ),
                }
            });
    });
    let mut s = SUMMARY.lock().unwrap_or_else(|e| e.into_inner());
    s.count += 1;
    s.last = format!("{peer}: {e}");
}

/// Reads standard input line by line (each line with its `\n`) on a thread of its own, the way
/// the `--udp` modes send what the user types: `on_line` gets each line and returns whether to
/// go on; `at_end` runs when input ends, fails or `on_line` stops.
pub fn spawn_stdin_lines(
    mut on_line: impl FnMut(&[u8]) -> bool + Send + 'static,
    at_end: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdin.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if !on_line(&line) {
                    break;
                }
            }
            at_end();
        })
        .map(drop)
}
