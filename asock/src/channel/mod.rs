//! Byte channels: [`ByteReadChannel`] and [`ByteWriteChannel`], Ktor's buffered reader and
//! writer over a connected socket.
//!
//! Both work over any byte source: a plain TCP or Unix stream, or a TLS session. A channel owns
//! its buffer and moves bytes between it and the source directly, with no pump task and no
//! second buffer in between.

mod buffer;
#[doc(hidden)]
pub mod memory;
mod read;
mod write;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use read::{ByteReadChannel, DEFAULT_MAX_LINE_LENGTH};
pub use write::ByteWriteChannel;

use crate::selector::timer::Sleep;
use crate::SelectorManager;

/// A connected byte stream that channels read from and write to.
///
/// Implemented by asock's stream sockets and TLS sessions. All methods take `&self`: the read
/// and write channels share one source.
pub(crate) trait Source: Send + Sync + 'static {
    /// Reads into `buf`; `Ok(0)` is end of stream.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes some of `buf`.
    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    /// Pushes out anything the source itself buffers (TLS records).
    fn poll_flush(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    /// Ends the write half: the peer sees end of stream.
    fn poll_shutdown_write(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Idle timeout for reads and writes (`socket_timeout`).
    fn timeout(&self) -> Option<Duration>;
    /// The manager that runs background work for this source (flush on drop, idle timers);
    /// `None` for sources no event loop drives (in-memory ones).
    fn manager(&self) -> Option<&SelectorManager>;
    /// The read channel is finished (end of stream seen, or cancelled).
    fn read_finished(&self) {}
    /// The write channel is finished (closed or dropped).
    fn write_finished(&self) {}
}

/// Enforces an idle timeout: fails a wait when no progress was made for the whole period.
///
/// One timer per period, not one per operation: progress only records a timestamp.
#[derive(Debug, Default)]
pub(crate) struct IdleTimer {
    sleep: Option<Sleep>,
    last_progress: Option<Instant>,
}

impl IdleTimer {
    /// Records progress (bytes moved).
    pub(crate) fn progress(&mut self, timeout: Option<Duration>) {
        if timeout.is_some() {
            self.last_progress = Some(Instant::now());
        }
    }

    /// Called when an operation is about to wait; `Ready` means the timeout expired.
    /// The timer is armed on `home`'s loops when no loop runs this thread, so an idle timeout
    /// never depends on asock's background loop (which may fail to start when the process is
    /// out of descriptors).
    pub(crate) fn poll_expired(
        &mut self,
        cx: &mut Context<'_>,
        timeout: Option<Duration>,
        home: Option<&SelectorManager>,
    ) -> Poll<()> {
        let Some(timeout) = timeout else {
            return Poll::Pending;
        };
        let last = *self.last_progress.get_or_insert_with(Instant::now);
        loop {
            let deadline = last + timeout;
            let sleep = self.sleep.get_or_insert_with(|| match home {
                Some(m) => Sleep::until_on(deadline, m),
                None => crate::time::sleep_until(deadline),
            });
            match Pin::new(sleep).poll(cx) {
                Poll::Ready(()) if Instant::now() >= deadline => {
                    self.sleep = None;
                    self.last_progress = None;
                    return Poll::Ready(());
                }
                // Progress moved the deadline since this timer was armed: arm the next one.
                Poll::Ready(()) => self.sleep = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
