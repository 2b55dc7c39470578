//! `asock listen`: accept one connection and relay it, like `nc -l`, and its `--udp` mode.
//!
//! `listen --udp ADDR` (or `--udp --unix PATH`, a Unix datagram socket): waits for a first datagram, then relays with that sender only (stdin
//! lines to it, its datagrams to stdout) until killed; other senders are ignored.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use asock::{a_socket, Datagram, Error, SelectorManager, SocketAddress};
use clap::Args;

use crate::common::{
    bind_error, print_packet, seconds, spawn_stdin_lines, CliError, CliResult, Place,
};
use crate::log;
use crate::relay::relay;
use crate::shutdown::{signal_name, Stopper};

/// Options of `listen`.
#[derive(Args, Debug, Clone)]
pub struct ListenArgs {
    /// Address to listen on.
    #[arg(required_unless_present = "unix")]
    pub addr: Option<String>,
    /// Relay UDP (with `--unix`, Unix datagrams): answer the first sender.
    #[arg(long)]
    pub udp: bool,
    /// Listen on a Unix-domain socket at PATH.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Once the peer has closed (or after a first SIGINT/SIGTERM), keep sending stdin for at
    /// most this many seconds, then exit (socat's -t).
    #[arg(short = 't', long, value_name = "SECS", default_value_t = 0.5)]
    pub linger: f64,
}

/// Runs `asock listen`.
pub fn run(args: ListenArgs) -> CliResult {
    if args.udp {
        return udp(args);
    }
    let tls = crate::tls::server_config(args.tls_cert.as_deref(), args.tls_key.as_deref(), false)?;
    let selector = SelectorManager::builder().threads(1).build()?;
    let linger = seconds(args.linger)?;
    let place = Place::new(args.addr.as_deref(), args.unix.as_deref())?;
    let stopper = Stopper::install()?;
    let accepted = selector.run_blocking(async {
        let server = a_socket(&selector)
            .tcp()
            .replace_stale(place.is_unix())
            .bind(&place)
            .await
            .map_err(|e| bind_error(&place, e))?;
        let server = Arc::new(server);
        let closer = server.clone();
        // A signal while waiting closes the listener (removing a Unix socket file).
        stopper.set(move |sig| {
            tracing::warn!("{}: no longer listening", signal_name(sig));
            closer.close();
        });
        // stdout carries only the relayed bytes; the bound address (port 0) goes to the log.
        log!("Listening on {}", server.local_address());
        let socket = server.accept().await;
        // Closing removes a Unix socket file: one connection only.
        server.close();
        match socket {
            Ok(s) => Ok(Some(s)),
            Err(Error::Closed(_)) => Ok(None),
            Err(e) => Err(CliError::from(e)),
        }
    })?;
    let Some(socket) = accepted else {
        return Ok(());
    };
    if let Some((config, _)) = tls {
        let socket = selector.run_blocking(socket.tls_server(&config))?;
        let (input, output) = (socket.open_read_channel(), socket.open_write_channel(true));
        return relay(input, output, linger, &stopper);
    }
    let (input, output) = (socket.open_read_channel(), socket.open_write_channel(true));
    relay(input, output, linger, &stopper)
}

/// Runs `asock listen --udp ADDR`.
fn udp(args: ListenArgs) -> CliResult {
    let place = Place::new(args.addr.as_deref(), args.unix.as_deref())?;
    let selector = SelectorManager::builder().threads(1).build()?;
    let stopper = Stopper::install()?;
    let socket = Arc::new(selector.run_blocking(async {
        a_socket(&selector)
            .udp()
            .replace_stale(place.is_unix())
            .bind(&place)
            .await
            .map_err(|e| bind_error(&place, e))
    })?);
    // A signal closes the socket (removing a Unix socket file); the receive loop then ends.
    let closer = socket.clone();
    stopper.set(move |sig| {
        tracing::warn!("{}: closing", signal_name(sig));
        closer.close();
    });
    log!("listening on {}", socket.local_address());

    // The first sender, once known; stdin lines wait for it.
    let peer: Arc<(Mutex<Option<SocketAddress>>, Condvar)> = Arc::default();
    {
        let socket = socket.clone();
        let peer = peer.clone();
        spawn_stdin_lines(
            move |line| {
                let to = {
                    let (lock, cvar) = &*peer;
                    let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                    while p.is_none() {
                        p = cvar.wait(p).unwrap_or_else(|e| e.into_inner());
                    }
                    p.clone()
                };
                if let Some(to) = to {
                    let d = Datagram::new(line.to_vec(), to.clone());
                    if let Err(e) = asock::block_on(socket.send(d)) {
                        tracing::error!("send to {to}: {e}");
                    }
                }
                true
            },
            || {},
        )?;
    }

    let mut stdout = std::io::stdout().lock();
    let mut first: Option<SocketAddress> = None;
    loop {
        let d = match asock::block_on(socket.receive()) {
            Ok(d) => d,
            Err(Error::Closed(_)) => return Ok(()),
            Err(e) => {
                log!("receive: {e}");
                continue;
            }
        };
        match &first {
            None => {
                log!("first sender: {}", d.address);
                first = Some(d.address.clone());
                let (lock, cvar) = &*peer;
                *lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(d.address.clone());
                cvar.notify_all();
            }
            Some(p) if *p != d.address => {
                log!("ignored a datagram from {}", d.address);
                continue;
            }
            Some(_) => {}
        }
        print_packet(&mut stdout, &d.packet)?;
    }
}
