//! Channels over bytes in memory, for benchmarks and tests: no socket, no event loop.
//!
//! Hidden from the docs: not part of the supported API.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::{ByteReadChannel, Source};
use crate::selector::Handle;

/// A source that reads from a byte slice in pieces of at most `chunk` bytes (like a socket
/// that has that much ready each time) and discards writes.
struct MemorySource {
    data: Arc<[u8]>,
    pos: AtomicUsize,
    chunk: usize,
}

impl Source for MemorySource {
    fn poll_read(&self, _cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let pos = self.pos.load(Ordering::Relaxed);
        let n = buf.len().min(self.chunk).min(self.data.len() - pos);
        buf[..n].copy_from_slice(&self.data[pos..pos + n]);
        self.pos.store(pos + n, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn poll_write(&self, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_shutdown_write(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn timeout(&self) -> Option<Duration> {
        None
    }

    fn manager(&self) -> Option<&Handle> {
        None
    }
}

/// A read channel over `data`: every read of the underlying "socket" returns at most `chunk`
/// bytes, and end of stream follows the last byte. Its futures never wait.
#[doc(hidden)]
pub fn read_channel(data: Arc<[u8]>, chunk: usize) -> ByteReadChannel {
    ByteReadChannel::new(Arc::new(MemorySource {
        data,
        pos: AtomicUsize::new(0),
        chunk: chunk.max(1),
    }))
}
