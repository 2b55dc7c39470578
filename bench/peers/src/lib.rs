//! Peer echo servers for asock's benchmarks (see `bench/README.md`).
//!
//! Every binary takes an address (`127.0.0.1:0` picks a free port), prints
//! `Started <what> at <bound address>` as its first stdout line, and then echoes until killed,
//! so scripts drive them exactly like `asock echo-server`.
//!
//! - `tokio-echo` / `tokio-lines`: raw byte echo and `BufReader::read_line` line echo, on a
//!   tokio `current_thread` runtime, or `multi_thread` with `--multi-thread`.
//! - `tokio-udp-echo`: datagram echo on tokio `current_thread`.
//! - `mio-echo`: the floor, a bare mio loop with no runtime.
//! - `uring-echo` (Linux): the io_uring floor, one io_uring on one thread with no runtime
//!   (multishot accept and receive, a provided buffer ring, one `io_uring_enter` per turn).

use std::io::Write;

/// Options shared by the peer servers.
#[derive(Debug, Clone)]
pub struct Args {
    /// Address to listen on.
    pub addr: String,
    /// Use tokio's `multi_thread` runtime instead of `current_thread`.
    pub multi_thread: bool,
    /// Worker threads of the `multi_thread` runtime (default: tokio's, one per core).
    pub threads: Option<usize>,
    /// Read buffer size per connection (raw echo).
    pub buf: usize,
}

/// Parses `[ADDR] [--multi-thread] [--threads N] [--buf BYTES]`; exits with status 2 on a
/// usage error.
pub fn args(usage: &str) -> Args {
    let mut a = Args {
        addr: "127.0.0.1:2323".into(),
        multi_thread: false,
        threads: None,
        buf: 8 * 1024,
    };
    let mut it = std::env::args().skip(1);
    let fail = |msg: String| -> ! {
        eprintln!("error: {msg}\nusage: {usage}");
        std::process::exit(2)
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--multi-thread" => a.multi_thread = true,
            "--threads" | "--buf" => {
                let v = it
                    .next()
                    .unwrap_or_else(|| fail(format!("{arg} needs a value")));
                let n: usize = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| fail(format!("bad value for {arg}: {v}")));
                if arg == "--threads" {
                    a.threads = Some(n);
                } else {
                    a.buf = n;
                }
            }
            "-h" | "--help" => {
                println!("usage: {usage}");
                std::process::exit(0);
            }
            s if s.starts_with('-') => fail(format!("unknown option {s}")),
            s => a.addr = s.to_string(),
        }
    }
    a
}

/// Builds the tokio runtime `args` ask for.
pub fn runtime(args: &Args) -> tokio::runtime::Runtime {
    let mut b = if args.multi_thread {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = args.threads {
            b.worker_threads(n);
        }
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_io().build().unwrap_or_else(|e| die(e))
}

/// The name of the runtime flavour, for the `Started` line.
pub fn flavour(args: &Args) -> &'static str {
    if args.multi_thread {
        "multi_thread"
    } else {
        "current_thread"
    }
}

/// Prints the first stdout line and flushes it (stdout is usually a pipe).
pub fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints one `error: ...` line and exits with status 1.
pub fn die(e: impl std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1)
}
