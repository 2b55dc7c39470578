//! `asock echo-server`: the echo server from Ktor's docs, in each of its variants: over TCP or
//! a Unix stream socket ([`stream`]), over TLS ([`tls`]) and over UDP ([`udp`]).

mod stream;
mod tls;
mod udp;

use std::path::PathBuf;
use std::time::Duration;

use asock::SelectorManager;
use clap::Args;

use crate::common::{CliError, CliResult};

/// Options of `echo-server`.
#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:2323")]
    pub addr: String,
    /// Echo bytes as they come instead of lines.
    #[arg(long)]
    pub raw: bool,
    /// Echo UDP datagrams instead of a TCP stream (with `--unix`, Unix datagrams).
    #[arg(long)]
    pub udp: bool,
    /// Listen on a Unix-domain socket at PATH instead of ADDR.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve TLS with a freshly made self-signed certificate (its CA is written to a file).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,
    /// Event-loop threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Longest line accepted in line mode, in bytes; a longer one closes that connection.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub max_line: usize,
    /// Keep polling this many microseconds before parking a loop (lower latency, more CPU).
    #[arg(long, value_name = "MICROS")]
    pub busy_poll: Option<u64>,
    /// Close connections idle for this many seconds (0: never, the default).
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<f64>,
    /// Connections served at once; at the cap new clients wait in the kernel's backlog (TLS:
    /// pending handshakes count, and the oldest silent one is dropped for a new client).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Memory budget of all connections' read buffers (e.g. 512M, 2G; 0: none). When reached,
    /// the connections holding the most unconsumed bytes are dropped, never the server.
    #[arg(long, value_name = "SIZE", default_value = DEFAULT_MAX_MEMORY, value_parser = parse_size)]
    pub max_memory: usize,
    /// At SIGINT/SIGTERM: stop accepting, give open connections this long to finish, then close
    /// them and exit 0 (a second signal exits at once).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub grace: f64,
}

/// How a connection is echoed.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Line by line, each line back with `\r\n`; longer lines than the limit end the connection.
    Lines {
        /// The longest line accepted, in bytes.
        max_line: usize,
    },
    /// Bytes as they come.
    Raw,
}

impl Mode {
    /// The mode `args` ask for.
    pub fn of(args: &EchoArgs) -> Mode {
        if args.raw {
            Mode::Raw
        } else {
            Mode::Lines {
                max_line: args.max_line,
            }
        }
    }
}

/// Default `--max-connections`: with the default budget, what the write queues of that many
/// connections can hold (about 128 KiB each) still leaves the server well inside a 2 GB
/// address space.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default `--max-memory`: the budget of all read buffers.
pub const DEFAULT_MAX_MEMORY: &str = "512M";

/// A size in bytes: a number with an optional K, M or G suffix (powers of 1024).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&t[..t.len() - 1], 1usize << 10),
        Some(b'M') => (&t[..t.len() - 1], 1 << 20),
        Some(b'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("invalid size {s:?}: expected bytes, or a number with K, M or G"))
}

/// Starts the selector `args` ask for.
fn selector(args: &EchoArgs) -> CliResult<SelectorManager> {
    let mut b = SelectorManager::builder().name("asock-echo");
    if args.max_memory > 0 {
        b = b.max_memory(args.max_memory);
    }
    if let Some(n) = args.threads {
        if n == 0 {
            return Err(CliError("--threads must be at least 1".into()));
        }
        b = b.threads(n);
    }
    if let Some(us) = args.busy_poll {
        b = b.busy_poll(Duration::from_micros(us));
    }
    Ok(b.build()?)
}

/// Runs `asock echo-server`.
pub fn run(args: EchoArgs) -> CliResult {
    if args.udp {
        return udp::run(args);
    }
    stream::run(args)
}
