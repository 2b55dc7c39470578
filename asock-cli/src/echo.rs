//! `asock echo-server`: the echo server from Ktor's docs, over TCP or a Unix socket.

use std::io::Write;
use std::time::Duration;

use asock::{a_socket, ByteReadChannel, ByteWriteChannel, Error, SelectorManager, SocketAddress};

use crate::shutdown::Graceful;
use crate::{log, seconds, CliError, CliResult, EchoArgs};

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

/// Starts the selector `args` ask for.
pub fn selector(args: &EchoArgs) -> CliResult<SelectorManager> {
    let mut b = SelectorManager::builder().name("asock-echo");
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
        return crate::udp::echo_server(args);
    }
    let tls = crate::tls::server_config(
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
        args.tls_self_signed,
    )?;
    let selector = selector(&args)?;
    let idle = args.idle_timeout.map(seconds).transpose()?;
    let grace = seconds(args.grace)?;
    let mode = Mode::of(&args);
    let target = match &args.unix {
        Some(path) => SocketAddress::Unix(path.clone()).to_string(),
        None => args.addr.clone(),
    };
    selector.run_blocking(async {
        let mut builder = a_socket(&selector).tcp().replace_stale(args.unix.is_some());
        if let Some(t) = idle {
            builder = builder.socket_timeout(t);
        }
        let server = builder
            .bind(target.as_str())
            .await
            .map_err(crate::udp::unix_bind_error)?;
        crate::shutdown::log_accept_backoff(&server);
        let graceful = Graceful::new(grace);
        if let Some((config, ca)) = tls {
            return crate::tls::serve_echo(&selector, server, config, ca, mode, graceful).await;
        }
        let server = std::sync::Arc::new(server);
        let closer = server.clone();
        graceful.install(move || closer.close())?;
        announce(&format!(
            "Started echo telnet server at {}",
            server.local_address()
        ))?;
        // Accepts on every loop, each connection served on the loop that accepted it.
        let tracker = graceful.clone();
        server
            .serve(move |socket| echo_connection(socket, tracker.track(), mode))
            .await?;
        graceful.drain().await;
        Ok(())
    })
}

/// Echoes one connection while `tracked` counts it open.
fn echo_connection<S: EchoSocket>(
    socket: S,
    tracked: crate::shutdown::Tracked,
    mode: Mode,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let peer = socket.describe();
    log!("Socket accepted: {peer}");
    async move {
        let _tracked = tracked;
        let (input, output) = socket.channels();
        match serve(input, output, mode).await {
            Ok(()) => log!("{peer}: closed"),
            Err(e) => eprintln!("{peer}: {e}"),
        }
        // The socket lives until the echo is done (a TLS socket sends close_notify as it goes).
        drop(socket);
    }
}

/// A connection the echo server can serve: a plain or a TLS socket.
pub trait EchoSocket: Send + 'static {
    /// How the connection is named in the log.
    fn describe(&self) -> String;
    /// Its read and write channels (the write side flushes per batch, not per write).
    fn channels(&self) -> (ByteReadChannel, ByteWriteChannel);
}

impl EchoSocket for asock::Socket {
    fn describe(&self) -> String {
        self.remote_address().to_string()
    }
    fn channels(&self) -> (ByteReadChannel, ByteWriteChannel) {
        (self.open_read_channel(), self.open_write_channel(false))
    }
}

/// Accepts until the server is closed (by a signal), echoing each connection in a task of its
/// own, then waits for the open connections to finish (within the grace period).
pub async fn accept_and_echo<S: EchoSocket>(
    selector: &SelectorManager,
    graceful: &Graceful,
    mode: Mode,
    mut accept: impl AsyncFnMut() -> asock::Result<S>,
) -> CliResult {
    loop {
        let socket = match accept().await {
            Ok(s) => s,
            Err(Error::Closed(_)) => {
                graceful.drain().await;
                return Ok(());
            }
            Err(e) => {
                log!("accept: {e}");
                continue;
            }
        };
        selector.launch(echo_connection(socket, graceful.track(), mode));
    }
}

/// Prints the first line and makes sure it leaves the process at once (stdout may be a pipe).
pub fn announce(line: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Echoes one connection until the peer closes its write half, then closes ours.
///
/// Replies are flushed once per batch: when no further complete line is already buffered, so
/// pipelined lines cost one write between them.
pub async fn serve(
    mut input: ByteReadChannel,
    mut output: ByteWriteChannel,
    mode: Mode,
) -> asock::Result<()> {
    match mode {
        Mode::Lines { max_line } => {
            input.set_max_line_length(max_line);
            while let Some(line) = input.read_line().await? {
                output.write_fully(line).await?;
                output.write_fully(b"\r\n").await?;
                if !input.has_line() {
                    output.flush().await?;
                }
            }
        }
        Mode::Raw => {
            // Straight from the read channel's buffer to the socket: no copy, and no buffer
            // held while the connection is idle.
            output.set_auto_flush(true);
            loop {
                let chunk = input.fill_buf().await?;
                if chunk.is_empty() {
                    break;
                }
                let n = chunk.len();
                output.write_fully(chunk).await?;
                input.consume(n);
            }
        }
    }
    output.close().await
}
