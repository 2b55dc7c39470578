//! Byte channels: [`ByteReadChannel`] and [`ByteWriteChannel`], Ktor's buffered reader and
//! writer over a connected socket.
//!
//! Both work over any byte source: a plain TCP or Unix stream, or a TLS session. A channel owns
//! its buffer and moves bytes between it and the source directly, with no pump task and no
//! second buffer in between.

pub(crate) mod budget;
pub(crate) mod buffer;
mod copy;
#[doc(hidden)]
pub mod memory;
mod read;
mod write;

use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

pub use copy::relay;
pub(crate) use copy::Splice;
pub use read::{ByteReadChannel, DEFAULT_MAX_LINE_LENGTH};
pub use write::ByteWriteChannel;

use crate::selector::Handle;
use crate::time::WaitTimer;

/// What an operation on `src` that has to wait returns: `Ready(Err(Error::Timeout))` once its
/// wait passed the source's `socket_timeout`, else `Pending`. Without a timeout (the common
/// case) this is one call and no clock read.
#[inline]
pub(crate) fn poll_timed_out<T>(
    wait: &mut WaitTimer,
    cx: &mut Context<'_>,
    src: &dyn Source,
) -> Poll<crate::error::Result<T>> {
    let Some(timeout) = src.timeout() else {
        return Poll::Pending;
    };
    match wait.poll_expired(cx, Some(timeout), src.manager()) {
        Poll::Ready(()) => Poll::Ready(Err(crate::error::Error::Timeout)),
        Poll::Pending => Poll::Pending,
    }
}

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
    /// Whether [`poll_flush`](Self::poll_flush) can have work to do; `false` lets a write
    /// channel skip the call after every auto-flushed write (a plain socket buffers nothing).
    fn buffers_writes(&self) -> bool {
        true
    }
    /// Ends the write half: the peer sees end of stream.
    fn poll_shutdown_write(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// How long one read or write may wait (`socket_timeout`).
    fn timeout(&self) -> Option<Duration>;
    /// The manager that runs background work for this source (flush on drop, timeouts);
    /// `None` for sources no event loop drives (in-memory ones).
    fn manager(&self) -> Option<&Handle>;
    /// The source was closed (the socket's `close`): both channels report closed.
    fn is_closed(&self) -> bool {
        false
    }
    /// Closes the source now (the memory budget shed its connection).
    fn close(&self) {}
    /// The read channel is finished: `at_end` when it read the end of stream (the peer sends
    /// nothing more), otherwise it was cancelled or dropped first.
    fn read_finished(&self, _at_end: bool) {}
    /// The write channel is finished (closed or dropped).
    fn write_finished(&self) {}
    /// The kernel's zero-copy operations on this source (a plain stream socket on Linux), used
    /// by `copy_to` and `send_file`; `None` makes them copy through a buffer.
    fn splice(&self) -> Option<&dyn copy::Splice> {
        None
    }
}
