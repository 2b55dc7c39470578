//! Relaying between the terminal and a connection, shared by `connect` and `listen` (TCP, TLS
//! and Unix streams).
//!
//! Three threads: this one copies the socket to stdout; a stdin thread reads with blocking
//! reads and hands the chunks over a small bounded queue to a writer thread, which sends them
//! (the channel futures run there through `asock::block_on`, which asock's futures allow).
//!
//! How it ends, as socat does (its `-t`):
//! - stdin ends first: the write half is closed (the peer sees end of stream; TLS sends
//!   close_notify) and reading goes on until the peer closes.
//! - the peer ends first: what was read from stdin is always sent; stdin keeps being sent until
//!   it ends, the socket fails, or `linger` passes; then the relay returns (exit 0).
//! - a TLS peer that closes without close_notify (many HTTPS servers after `Connection: close`)
//!   is a warning, not an error, unless bytes from stdin could not be sent.
//! - the first SIGINT/SIGTERM ends the stdin side as if stdin had ended, then waits for the
//!   peer at most `linger` and exits 0.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use asock::{ByteReadChannel, ByteWriteChannel, Error, TlsReason};

use crate::common::{CliError, CliResult};
use crate::shutdown::{signal_name, Stopper};

/// What the stdin thread hands the writer.
enum Chunk {
    Data(Vec<u8>),
    /// Stdin ended, or a signal asked to stop.
    End,
}

/// How the writer finished: `None` when everything read was sent and the write half closed.
type WriterEnd = Option<Error>;

/// Relays stdin to `output` and `input` to stdout until both sides are done (see the module
/// docs); `stopper` gets the action the first signal takes.
pub fn relay(
    mut input: ByteReadChannel,
    mut output: ByteWriteChannel,
    linger: Duration,
    stopper: &Stopper,
) -> CliResult {
    let (chunks, queue) = mpsc::sync_channel::<Chunk>(4);
    let (ended, writer_end) = mpsc::channel::<WriterEnd>();

    let to_writer = chunks.clone();
    // Before any byte is relayed: a signal that comes once the peer has seen data must find
    // this action, not the one before it (listen's, which only closes its listener).
    stopper.set(move |sig| {
        tracing::warn!(
            "{}: closing the connection (signal again to exit now)",
            signal_name(sig)
        );
        // The queue may be full while the peer does not read: the deadline below still holds.
        std::thread::spawn(move || {
            let _ = chunks.send(Chunk::End);
        });
        std::thread::spawn(move || {
            std::thread::sleep(linger);
            crate::shutdown::exit_now(0);
        });
    });
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if to_writer.send(Chunk::Data(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            let _ = to_writer.send(Chunk::End);
        })?;

    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || {
            let mut result = None;
            while let Ok(Chunk::Data(bytes)) = queue.recv() {
                if let Err(e) = asock::block_on(output.write_fully(&bytes)) {
                    result = Some(e);
                    break;
                }
            }
            if result.is_none() {
                result = asock::block_on(output.close()).err();
            }
            let _ = ended.send(result);
        })?;

    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let truncated = loop {
        match asock::block_on(input.read_available(&mut buf)) {
            Ok(0) => break false,
            Ok(n) => {
                stdout.write_all(&buf[..n])?;
                stdout.flush()?;
            }
            Err(Error::Tls {
                reason: TlsReason::Truncated,
                ..
            }) => {
                tracing::warn!(
                    "the peer closed the TLS connection without close_notify: the data may be \
                     incomplete"
                );
                break true;
            }
            Err(e) => return Err(e.into()),
        }
    };
    // The peer is done: let stdin finish, for at most `linger`.
    match writer_end.recv_timeout(linger) {
        Ok(Some(e)) if truncated => Err(CliError(format!(
            "TLS connection closed without close_notify, and stdin could not be sent: {e}"
        ))),
        Ok(Some(e)) => {
            tracing::info!("the peer closed; sending stdin failed: {e}");
            Ok(())
        }
        Ok(None) | Err(_) => Ok(()),
    }
}
