//! The `--udp` side of `echo-server`, `connect` and `listen`.
//!
//! - `echo-server --udp [ADDR]`: every datagram goes back to its sender (replies are queued on
//!   the socket's outgoing sender, so a busy server sends many per system call).
//! - `connect --udp ADDR`: each stdin line (with its `\n`) is one datagram; each reply is printed
//!   (a `\n` added when it has none). At stdin's end it waits for the replies still due, at most
//!   `--timeout` (default 1 s) of quiet, then exits. An ICMP "port unreachable" ends it with
//!   `error: connection refused by ADDR`.
//! - `listen --udp ADDR`: waits for a first datagram, then relays with that sender only (stdin
//!   lines to it, its datagrams to stdout) until killed; other senders are ignored.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use asock::{a_socket, Datagram, Error, SelectorManager, SocketAddress};

use crate::echo::announce;
use crate::{log, seconds, CliError, CliResult, ConnectArgs, EchoArgs, ListenArgs};

/// How long `connect --udp` waits for missing replies after stdin ends, by default.
const DEFAULT_QUIET: Duration = Duration::from_secs(1);

/// Runs `asock echo-server --udp`.
pub fn echo_server(args: EchoArgs) -> CliResult {
    let selector = crate::echo::selector(&args)?;
    selector.run_blocking(async {
        let socket = a_socket(&selector).udp().bind(args.addr.as_str()).await?;
        announce(&format!(
            "Started echo UDP server at {}",
            socket.local_address()
        ))?;
        // The echo runs as a task on an event loop, where the socket's readiness is: no
        // cross-thread wake-up per datagram.
        selector.launch(echo(socket)).await?;
        Ok(())
    })
}

/// Sends every datagram `socket` receives back to its sender, until the socket is closed.
async fn echo(socket: asock::BoundDatagramSocket) {
    let out = socket.outgoing();
    loop {
        match socket.receive().await {
            Ok(d) => {
                log!("{}: {} bytes", d.address, d.packet.len());
                match out.send(d).await {
                    Ok(()) => {}
                    Err(Error::Closed(_)) => return,
                    // A reply the kernel refused (e.g. a sender that vanished) is skipped.
                    Err(e) => log!("send: {e}"),
                }
            }
            Err(Error::Closed(_)) => return,
            // One bad datagram never stops the server.
            Err(e) => log!("receive: {e}"),
        }
    }
}

/// Prints one datagram's payload as a line.
fn print_packet(out: &mut impl Write, packet: &[u8]) -> CliResult {
    out.write_all(packet)?;
    if !packet.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// What the stdin thread reports back.
#[derive(Default)]
struct StdinState {
    sent: AtomicU64,
    eof: AtomicBool,
    error: Mutex<Option<Error>>,
}

/// Runs `asock connect --udp ADDR`.
pub fn connect(args: ConnectArgs) -> CliResult {
    let addr = args
        .addr
        .clone()
        .ok_or_else(|| CliError("an address is required".into()))?;
    let timeout = args.timeout.map(seconds).transpose()?;
    let quiet = timeout.unwrap_or(DEFAULT_QUIET);
    let selector = SelectorManager::builder().threads(1).build()?;
    let socket =
        Arc::new(selector.run_blocking(async {
            a_socket(&selector).udp().connect(addr.as_str(), None).await
        })?);

    let state = Arc::new(StdinState::default());
    {
        let socket = socket.clone();
        let state = state.clone();
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
                    match asock::block_on(socket.send_packet(line.clone())) {
                        Ok(()) => {
                            state.sent.fetch_add(1, Ordering::AcqRel);
                        }
                        Err(e) => {
                            *state.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                            break;
                        }
                    }
                }
                state.eof.store(true, Ordering::Release);
            })?;
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

/// Runs `asock listen --udp ADDR`.
pub fn listen(args: ListenArgs) -> CliResult {
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
