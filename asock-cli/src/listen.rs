//! `asock listen`: accept one connection and relay it, like `nc -l`, and its `--udp` mode.
//!
//! `listen --udp ADDR`: waits for a first datagram, then relays with that sender only (stdin
//! lines to it, its datagrams to stdout) until killed; other senders are ignored.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use asock::{a_socket, Datagram, Error, SelectorManager, SocketAddress};
use clap::Args;

use crate::common::{print_packet, unix_bind_error, CliError, CliResult};
use crate::log;
use crate::relay::relay;

/// Options of `listen`.
#[derive(Args, Debug, Clone)]
pub struct ListenArgs {
    /// Address to listen on.
    #[arg(required_unless_present = "unix")]
    pub addr: Option<String>,
    /// Relay UDP: answer the first sender.
    #[arg(long, conflicts_with = "unix")]
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
}

/// Runs `asock listen`.
pub fn run(args: ListenArgs) -> CliResult {
    if args.udp {
        return udp(args);
    }
    let tls = crate::tls::server_config(args.tls_cert.as_deref(), args.tls_key.as_deref(), false)?;
    let selector = SelectorManager::builder().threads(1).build()?;
    let target = match (&args.unix, &args.addr) {
        (Some(path), _) => SocketAddress::Unix(path.clone()).to_string(),
        (None, Some(addr)) => addr.clone(),
        (None, None) => return Err(CliError("an address is required".into())),
    };
    let socket = selector.run_blocking(async {
        let server = a_socket(&selector)
            .tcp()
            .replace_stale(args.unix.is_some())
            .bind(target.as_str())
            .await
            .map_err(unix_bind_error)?;
        // stdout carries only the relayed bytes; the bound address (port 0) goes to the log.
        log!("Listening on {}", server.local_address());
        let socket = server.accept().await;
        server.close();
        socket.map_err(CliError::from)
    })?;
    if let Some((config, _)) = tls {
        let socket = selector.run_blocking(socket.tls_server(&config))?;
        return relay(socket.open_read_channel(), socket.open_write_channel(true));
    }
    let input = socket.open_read_channel();
    let output = socket.open_write_channel(true);
    relay(input, output)
}

/// Runs `asock listen --udp ADDR`.
fn udp(args: ListenArgs) -> CliResult {
    let addr = args
        .addr
        .clone()
        .ok_or_else(|| CliError("an address is required".into()))?;
    let selector = SelectorManager::builder().threads(1).build()?;
    let socket = Arc::new(
        selector.run_blocking(async { a_socket(&selector).udp().bind(addr.as_str()).await })?,
    );
    log!("listening on {}", socket.local_address());

    // The first sender, once known; stdin lines wait for it.
    let peer: Arc<(Mutex<Option<SocketAddress>>, Condvar)> = Arc::default();
    {
        let socket = socket.clone();
        let peer = peer.clone();
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
                    let to = {
                        let (lock, cvar) = &*peer;
                        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                        while p.is_none() {
                            p = cvar.wait(p).unwrap_or_else(|e| e.into_inner());
                        }
                        p.clone()
                    };
                    if let Some(to) = to {
                        let d = Datagram::new(line.clone(), to);
                        if let Err(e) = asock::block_on(socket.send(d)) {
                            eprintln!("error: {e}");
                        }
                    }
                }
            })?;
    }

    let mut stdout = std::io::stdout().lock();
    let mut first: Option<SocketAddress> = None;
    loop {
        let d = match asock::block_on(socket.receive()) {
            Ok(d) => d,
            Err(e @ Error::Closed(_)) => return Err(e.into()),
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
