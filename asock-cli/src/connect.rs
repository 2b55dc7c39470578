//! `asock connect`: a netcat-like client over TCP, TLS or a Unix socket, and its `--udp` mode.
//!
//! `connect --udp ADDR` (or `--udp --unix PATH`, a Unix datagram socket): each stdin line (with its `\n`) is one datagram; each reply is printed
//! (a `\n` added when it has none). At stdin's end it waits for the replies still due, at most
//! `--timeout` (default 1 s) of quiet, then exits. An ICMP "port unreachable" ends it with
//! `error: connection refused by ADDR`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asock::{a_socket, Error, SelectorManager};
use clap::Args;

use crate::common::{print_packet, seconds, spawn_stdin_lines, CliResult, Place};
use crate::log;
use crate::relay::relay;
use crate::shutdown::{signal_name, Stopper};
use crate::tls::{client_config, ClientOptions};

/// Options of `connect`.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Address to connect to (HOST:PORT).
    #[arg(required_unless_present = "unix")]
    pub addr: Option<String>,
    /// Send each stdin line as one UDP datagram (with `--unix`, a Unix datagram) and print each
    /// reply.
    #[arg(long)]
    pub udp: bool,
    /// Connect to the Unix-domain socket at PATH.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Speak TLS (verifying the server certificate).
    #[arg(long)]
    pub tls: bool,
    /// Trust this CA certificate (PEM) in addition to the system roots.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<PathBuf>,
    /// Name to verify the certificate against (default: the host in ADDR).
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub server_name: Option<String>,
    /// ALPN protocol to offer (repeatable).
    #[arg(long, value_name = "PROTO", requires = "tls")]
    pub alpn: Vec<String>,
    /// Do not verify the server certificate (testing only).
    #[arg(long, requires = "tls")]
    pub insecure: bool,
    /// Client certificate chain to present (PEM), for servers that ask for one.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    pub cert: Option<PathBuf>,
    /// Private key of `--cert` (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Give up when connecting, or when the connection is idle, for this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Once the peer has closed (or after a first SIGINT/SIGTERM), keep sending stdin for at
    /// most this many seconds, then exit (socat's -t).
    #[arg(short = 't', long, value_name = "SECS", default_value_t = 0.5)]
    pub linger: f64,
}

/// Runs `asock connect`.
pub fn run(args: ConnectArgs) -> CliResult {
    if args.udp {
        return udp(args);
    }
    let tls = if args.tls {
        Some(client_config(&ClientOptions {
            ca: args.ca.as_deref(),
            server_name: args.server_name.as_deref(),
            alpn: &args.alpn,
            insecure: args.insecure,
            client_cert: args.cert.as_deref().zip(args.key.as_deref()),
        })?)
    } else {
        None
    };
    let selector = SelectorManager::builder().threads(1).build()?;
    let timeout = args.timeout.map(seconds).transpose()?;
    let linger = seconds(args.linger)?;
    let place = Place::new(args.addr.as_deref(), args.unix.as_deref())?;
    let stopper = Stopper::install()?;
    let socket = selector.run_blocking(async {
        let mut builder = a_socket(&selector).tcp();
        if let Some(t) = timeout {
            builder = builder.connect_timeout(t).socket_timeout(t);
        }
        builder.connect(&place).await
    })?;
    if let Some(config) = tls {
        let socket = selector.run_blocking(socket.tls(&config))?;
        let (input, output) = (socket.open_read_channel(), socket.open_write_channel(true));
        return relay(input, output, linger, &stopper);
    }
    let (input, output) = (socket.open_read_channel(), socket.open_write_channel(true));
    relay(input, output, linger, &stopper)
}

/// How long `connect --udp` waits for missing replies after stdin ends, by default.
const DEFAULT_QUIET: Duration = Duration::from_secs(1);

/// What the stdin thread reports back.
#[derive(Default)]
struct StdinState {
    sent: AtomicU64,
    eof: AtomicBool,
    error: Mutex<Option<Error>>,
}

/// Runs `asock connect --udp ADDR`.
fn udp(args: ConnectArgs) -> CliResult {
    let place = Place::new(args.addr.as_deref(), args.unix.as_deref())?;
    let timeout = args.timeout.map(seconds).transpose()?;
    let quiet = timeout.unwrap_or(DEFAULT_QUIET);
    let selector = SelectorManager::builder().threads(1).build()?;
    let stopper = Stopper::install()?;
    let socket = Arc::new(
        selector.run_blocking(async { a_socket(&selector).udp().connect(&place, None).await })?,
    );

    let state = Arc::new(StdinState::default());
    // The first signal ends the stdin side: the replies still due are awaited as at its end.
    let stopped = state.clone();
    stopper.set(move |sig| {
        tracing::warn!(
            "{}: waiting for the replies still due (signal again to exit now)",
            signal_name(sig)
        );
        stopped.eof.store(true, Ordering::Release);
    });
    {
        let socket = socket.clone();
        let (state, ended) = (state.clone(), state.clone());
        spawn_stdin_lines(
            move |line| match asock::block_on(socket.send_packet(line.to_vec())) {
                Ok(()) => {
                    state.sent.fetch_add(1, Ordering::AcqRel);
                    true
                }
                Err(e) => {
                    *state.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    false
                }
            },
            move || ended.eof.store(true, Ordering::Release),
        )?;
    }

    let mut stdout = std::io::stdout().lock();
    let mut replies = 0u64;
    let mut last = Instant::now();
    let mut eof_at: Option<Instant> = None;
    let tick = Duration::from_millis(50);
    loop {
        if let Some(e) = state.error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e.into());
        }
        if state.eof.load(Ordering::Acquire) {
            let at = *eof_at.get_or_insert_with(Instant::now);
            if replies >= state.sent.load(Ordering::Acquire)
                || Instant::now().duration_since(last.max(at)) >= quiet
            {
                return Ok(());
            }
        } else if let Some(t) = timeout {
            if last.elapsed() >= t {
                return Err(Error::Timeout.into());
            }
        }
        match asock::block_on(asock::time::timeout(tick, socket.receive())) {
            Err(_) => {}
            Ok(Ok(d)) => {
                replies += 1;
                last = Instant::now();
                print_packet(&mut stdout, &d.packet)?;
            }
            Ok(Err(e @ Error::ConnectionRefused { .. })) => return Err(e.into()),
            Ok(Err(e)) => log!("receive: {e}"),
        }
    }
}
