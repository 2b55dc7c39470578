//! The stream echo servers, TCP and Unix: one echo of a connection that the TLS server shares.

use asock::{a_socket, ByteReadChannel, ByteWriteChannel, SelectorManager};

use super::{selector, EchoArgs, Mode};
use crate::common::{announce, bind_error, connection_error, seconds, CliError, CliResult, Place};
use crate::log;
use crate::shutdown::{log_accept_backoff, Graceful};

/// Runs `asock echo-server` over TCP, a Unix socket, or either with TLS.
pub fn run(args: EchoArgs) -> CliResult {
    let tls = crate::tls::server_config(
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
        args.tls_self_signed,
    )?;
    let selector = selector(&args)?;
    log_memory_shed(&selector);
    return_freed_memory(&selector);
    if args.max_connections == 0 {
        return Err(CliError("--max-connections must be at least 1".into()));
    }
    // 0 means no idle timeout.
    let idle = args
        .idle_timeout
        .map(seconds)
        .transpose()?
        .filter(|t| !t.is_zero());
    let grace = seconds(args.grace)?;
    let mode = Mode::of(&args);
    let place = Place::new(Some(&args.addr), args.unix.as_deref())?;
    selector.run_blocking(async {
        // A backlog as deep as the cap (the kernel clips it to somaxconn): clients past the
        // cap, and a flood of silent TLS connections reopened as they are shed, wait there
        // instead of overflowing it into SYN retries a second apart.
        let backlog = u32::try_from(args.max_connections).unwrap_or(u32::MAX);
        let mut builder = a_socket(&selector)
            .tcp()
            .backlog(backlog)
            .replace_stale(place.is_unix());
        if let Some(t) = idle {
            builder = builder.socket_timeout(t);
        }
        let server = builder
            .bind(&place)
            .await
            .map_err(|e| bind_error(&place, e))?;
        log_accept_backoff(&server);
        server.set_max_connections(Some(args.max_connections));
        let graceful = Graceful::new(grace);
        if let Some((config, ca)) = tls {
            return super::tls::serve(&selector, server, config, ca, mode, graceful).await;
        }
        let server = std::sync::Arc::new(server);
        let closer = server.clone();
        graceful.install(move || closer.close())?;
        announce(&format!(
            "Started echo telnet server at {}",
            server.local_address()
        ))?;
        // Accepts on every loop (one listener each), each connection served on the loop that
        // accepted it.
        let tracker = graceful.clone();
        server
            .serve(move |socket| echo_connection(socket, tracker.track(), mode))
            .await?;
        graceful.drain().await;
        Ok(())
    })
}

/// Replies are written in pieces of this size, so a long line is streamed back through a
/// bounded write queue instead of being copied into it whole when the peer reads slowly.
const WRITE_PIECE: usize = 64 * 1024;

/// Replies to lines up to this long are assembled with their `\r\n` on the stack and written
/// in one call, instead of two writes into the queue (bench/callgrind.sh: 1,654 -> 1,560
/// instructions per 64-byte line echo).
const SHORT_LINE: usize = 254;

/// Blocks from this size up (buffers grown for long lines) get a mapping of their own: glibc's
/// threshold otherwise rises to the largest block freed (up to 32 MiB), after which a growing
/// 4 MiB line buffer is reallocated by copying into fresh pages instead of by `mremap`, and
/// the copies of many connections in one loop turn held a probe's round trip up for hundreds
/// of milliseconds (bench/hostile.sh, target 2).
const MAPPED_FROM: usize = 128 * 1024;

/// Gives memory freed by closed connections back to the system: long-line buffers at once
/// (they are mapped on their own from [`MAPPED_FROM`] up), the rest every two seconds. glibc
/// keeps freed buffers of a few tens of KiB in its heaps, so without this the server's RSS
/// stayed at five times its idle figure after 300 hostile peers left (bench/hostile.sh,
/// target 1).
fn return_freed_memory(selector: &SelectorManager) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy (a fixed threshold above which
    // blocks are mapped on their own); called before any buffer of that size exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MAPPED_FROM as libc::c_int);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    selector.launch(async {
        loop {
            asock::time::sleep(std::time::Duration::from_secs(2)).await;
            // SAFETY: malloc_trim only returns free heap pages to the kernel; it takes
            // glibc's own locks and touches no memory the program owns.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = selector;
}

/// Logs the memory budget shedding connections, once per burst.
fn log_memory_shed(selector: &SelectorManager) {
    selector.on_memory_shed(|e| {
        tracing::warn!(
            "memory budget of {} MiB reached: dropping the connections that hold the most \
             ({} dropped so far)",
            e.limit >> 20,
            e.total_shed
        )
    });
}

/// Echoes one connection while `tracked` counts it open.
pub fn echo_connection<S: EchoSocket>(
    socket: S,
    tracked: crate::shutdown::Tracked,
    mode: Mode,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    // The peer's name is formatted only for a log line that is written: a churned connection
    // at the default level never pays for it.
    log!("Socket accepted: {}", socket.describe());
    async move {
        let _tracked = tracked;
        let (input, output) = socket.channels();
        match serve(input, output, mode).await {
            Ok(()) => log!("{}: closed", socket.describe()),
            Err(e) => connection_error(&socket.describe(), &e),
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
            let mut short = [0; SHORT_LINE + 2];
            while let Some(line) = input.read_line().await? {
                if line.len() <= SHORT_LINE {
                    // The line and its terminator as one write: one copy into the queue.
                    let n = line.len();
                    short[..n].copy_from_slice(line);
                    short[n..n + 2].copy_from_slice(b"\r\n");
                    output.write_fully(&short[..n + 2]).await?;
                } else {
                    for piece in line.chunks(WRITE_PIECE) {
                        output.write_fully(piece).await?;
                    }
                    output.write_fully(b"\r\n").await?;
                }
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
