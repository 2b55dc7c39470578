//! [`ByteWriteChannel`]: the write half of a connection.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use super::copy::{self, Spliced};
use super::Source;
use crate::error::{Error, Result};
use crate::time::WaitTimer;

/// Queued bytes past which a write waits for a flush (back-pressure), and the size above which
/// a write goes straight to the socket instead of through the buffer.
const FLUSH_AT: usize = 64 * 1024;
/// How long a dropped channel may take to flush in the background when no socket timeout is set.
const DROP_FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// The write side of a connection: Ktor's `ByteWriteChannel`.
///
/// Writes are buffered and sent by [`flush`](Self::flush), when 64 KiB are queued, or, with
/// `auto_flush`, before each write call returns. When nothing is queued, a write goes straight
/// from the caller's bytes to the socket, without a copy.
///
/// [`close`](Self::close) flushes and then shuts down the write half, which the peer sees as end
/// of stream. Dropping the channel does the same in the background: nothing written is lost.
///
/// # Cancel safety
/// The write methods are cancel-safe in the sense that matters: once a write call was polled,
/// its bytes are either sent or queued in the channel, and a later `flush` or the drop sends
/// them. `flush` and `close` can be retried.
///
/// # Example
/// ```
/// use asock::{a_socket, SelectorManager};
///
/// let selector = SelectorManager::builder().threads(1).build()?;
/// selector.run_blocking(async {
///     let server = a_socket(&selector).tcp().bind("127.0.0.1:0").await?;
///     let socket = a_socket(&selector).tcp().connect(server.local_address().clone()).await?;
///     let peer = server.accept().await?;
///     let mut output = socket.open_write_channel(false); // buffered until flush
///     output.write_str("GET / HTTP/1.0\r\n").await?;
///     output.write_u16(0x0d0a).await?; // big-endian: "\r\n"
///     assert_eq!(output.queued(), 18);
///     output.close().await?; // flush, then half-close
///     assert_eq!(output.total_bytes_written(), 18);
///     let all = peer.open_read_channel().read_remaining(1024).await?;
///     assert_eq!(all, b"GET / HTTP/1.0\r\n\r\n");
///     Ok::<(), asock::Error>(())
/// })?;
/// # Ok::<(), asock::Error>(())
/// ```
pub struct ByteWriteChannel {
    src: Arc<dyn Source>,
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    pos: usize,
    auto_flush: bool,
    /// The source holds written bytes of its own (TLS records) that a flush must push out.
    source_buffers: bool,
    closed: bool,
    /// Bytes handed to the channel by write calls, in all.
    written: u64,
    wait: WaitTimer,
    /// Bytes a zero-copy `copy_to` took from its source into a pipe and has not written yet
    /// (copy.rs): they are queued bytes, sent before `buf`.
    spliced: Option<Spliced>,
}

impl std::fmt::Debug for ByteWriteChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteWriteChannel")
            .field("queued", &self.queued())
            .field("auto_flush", &self.auto_flush)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

macro_rules! typed_writes {
    ($($t:ty => $be:ident, $le:ident;)*) => {$(
        #[doc = concat!("Writes a big-endian (network order) `", stringify!($t), "`.")]
        #[doc = ""]
        #[doc = "Cancel-safe once polled, like [`write_fully`](Self::write_fully)."]
        pub async fn $be(&mut self, v: $t) -> Result<()> {
            self.write_fully(&v.to_be_bytes()).await
        }
        #[doc = concat!("Writes a little-endian `", stringify!($t), "`.")]
        #[doc = ""]
        #[doc = "Cancel-safe once polled, like [`write_fully`](Self::write_fully)."]
        pub async fn $le(&mut self, v: $t) -> Result<()> {
            self.write_fully(&v.to_le_bytes()).await
        }
    )*};
}

impl ByteWriteChannel {
    pub(crate) fn new(src: Arc<dyn Source>, auto_flush: bool) -> Self {
        ByteWriteChannel {
            source_buffers: src.buffers_writes(),
            src,
            buf: Vec::new(),
            pos: 0,
            auto_flush,
            closed: false,
            written: 0,
            wait: WaitTimer::default(),
            spliced: None,
        }
    }

    /// Bytes handed to this channel by write calls so far, through its own methods and the
    /// `futures-io`/tokio writer traits alike (Ktor's `totalBytesWritten`). Bytes still
    /// [`queued`](Self::queued) count: they were written to the channel, not yet sent.
    pub fn total_bytes_written(&self) -> u64 {
        self.written
    }

    /// Whether every write call flushes before it returns.
    pub fn auto_flush(&self) -> bool {
        self.auto_flush
    }

    /// Turns auto-flush on or off.
    pub fn set_auto_flush(&mut self, on: bool) {
        self.auto_flush = on;
    }

    /// Bytes written but not yet handed to the socket (including bytes a dropped
    /// [`copy_to`](crate::ByteReadChannel::copy_to) left in flight: they go out first).
    #[inline]
    pub fn queued(&self) -> usize {
        self.buf.len() - self.pos + self.spliced.as_ref().map_or(0, Spliced::pending)
    }

    /// Whether nothing more can be written: [`close`](Self::close) was called, or the socket
    /// was closed.
    pub fn is_closed_for_write(&self) -> bool {
        self.closed || self.src.is_closed()
    }

    /// Writes all of `data`.
    ///
    /// Cancel-safe once polled: from its first poll its bytes are sent or queued in the channel,
    /// never half-queued, so a later write, [`flush`](Self::flush), `close` or the drop sends
    /// them once, in order.
    #[inline]
    pub fn write_fully<'a>(&'a mut self, data: &'a [u8]) -> impl Future<Output = Result<()>> + 'a {
        WriteFully {
            ch: self,
            data,
            then: None,
        }
    }

    /// The first poll of a write: sends what the socket takes at once (when nothing is queued
    /// and the write is to be flushed or is large) and queues the rest. Says what must follow.
    #[inline(always)]
    fn start_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Result<AfterWrite> {
        if self.closed {
            return Err(Error::Closed("write channel"));
        }
        self.wait.restart();
        self.written += data.len() as u64;
        let mut rest = data;
        let mut queued = self.queued();
        if queued == 0 && (self.auto_flush || data.len() >= FLUSH_AT) {
            rest = self.write_direct(cx, data)?;
        }
        if !rest.is_empty() {
            self.buf.extend_from_slice(rest);
            queued += rest.len();
        }
        Ok(if queued > 0 && (self.auto_flush || queued >= FLUSH_AT) {
            AfterWrite::Flush
        } else if self.auto_flush && self.source_buffers {
            // The bytes went straight to the source; a TLS session may still hold records.
            AfterWrite::FlushSource
        } else {
            AfterWrite::Done
        })
    }

    /// Writes a string's UTF-8 bytes.
    ///
    /// Cancel-safe once polled, like [`write_fully`](Self::write_fully).
    pub async fn write_str(&mut self, s: &str) -> Result<()> {
        self.write_fully(s.as_bytes()).await
    }

    /// Writes one byte.
    ///
    /// Cancel-safe once polled, like [`write_fully`](Self::write_fully).
    pub async fn write_u8(&mut self, v: u8) -> Result<()> {
        self.write_fully(&[v]).await
    }

    /// Writes one signed byte.
    ///
    /// Cancel-safe once polled, like [`write_fully`](Self::write_fully).
    pub async fn write_i8(&mut self, v: i8) -> Result<()> {
        self.write_fully(&v.to_be_bytes()).await
    }

    typed_writes! {
        u16 => write_u16, write_u16_le;
        u32 => write_u32, write_u32_le;
        u64 => write_u64, write_u64_le;
        u128 => write_u128, write_u128_le;
        i16 => write_i16, write_i16_le;
        i32 => write_i32, write_i32_le;
        i64 => write_i64, write_i64_le;
        i128 => write_i128, write_i128_le;
        f32 => write_f32, write_f32_le;
        f64 => write_f64, write_f64_le;
    }

    /// Sends everything queued.
    ///
    /// Cancel-safe: a dropped flush leaves the rest queued; call it again.
    #[inline]
    pub fn flush(&mut self) -> impl Future<Output = Result<()>> + '_ {
        self.wait.restart();
        Flush { ch: self }
    }

    /// Flushes, then shuts down the write half: the peer reads end of stream. Later writes fail
    /// with [`Error::Closed`]. Closing twice is fine.
    ///
    /// Cancel-safe: dropped before it completes, the channel is not closed yet and queued
    /// bytes stay queued; call it again (or drop the channel to finish in the background).
    pub async fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.flush().await?;
        let r = poll_fn(|cx| self.src.poll_shutdown_write(cx)).await;
        self.closed = true;
        self.src.write_finished();
        r.map_err(|e| Error::io("shutdown", e))
    }

    /// Retires the channel without shutting the write half down (TLS takes the socket over).
    /// Queued bytes are dropped: flush first.
    #[cfg(feature = "tls")]
    pub(crate) fn detach(mut self) {
        self.closed = true;
    }

    /// Writes from `data` while the socket takes it without waiting; returns the rest.
    #[inline]
    fn write_direct<'a>(&mut self, cx: &mut Context<'_>, mut data: &'a [u8]) -> Result<&'a [u8]> {
        while !data.is_empty() {
            match self.src.poll_write(cx, data) {
                Poll::Ready(Ok(0)) => return Err(write_zero()),
                Poll::Ready(Ok(n)) => {
                    data = &data[n..];
                    self.wait.restart();
                }
                Poll::Ready(Err(e)) => return Err(Error::io("write", e)),
                Poll::Pending => break,
            }
        }
        Ok(data)
    }

    /// Writes the queue out.
    #[inline(always)]
    fn poll_write_queue(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.spliced.is_some() {
            ready!(copy::poll_drain(
                &*self.src,
                &mut self.spliced,
                &mut self.wait,
                cx
            ))?;
        }
        while self.pos < self.buf.len() {
            match self.src.poll_write(cx, &self.buf[self.pos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(write_zero())),
                Poll::Ready(Ok(n)) => {
                    self.pos += n;
                    self.wait.restart();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::io("write", e))),
                Poll::Pending => {
                    return super::poll_timed_out(&mut self.wait, cx, &*self.src);
                }
            }
        }
        self.pos = 0;
        self.buf.clear();
        if self.buf.capacity() > 2 * FLUSH_AT {
            self.buf = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    #[inline(always)]
    fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        ready!(self.poll_write_queue(cx))?;
        if !self.source_buffers {
            return Poll::Ready(Ok(()));
        }
        self.src.poll_flush(cx).map_err(|e| Error::io("flush", e))
    }
}

/// The future of [`ByteWriteChannel::write_fully`]: one type with the steps as states, so a
/// write that completes at once (the usual case) costs one poll, inlined into the caller's.
struct WriteFully<'a> {
    ch: &'a mut ByteWriteChannel,
    data: &'a [u8],
    /// What follows the first poll, once it ran.
    then: Option<AfterWrite>,
}

impl Future for WriteFully<'_> {
    type Output = Result<()>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let next = match this.then {
            Some(next) => next,
            None => *this.then.insert(this.ch.start_write(cx, this.data)?),
        };
        match next {
            AfterWrite::Done => Poll::Ready(Ok(())),
            AfterWrite::Flush => this.ch.poll_flush_all(cx),
            AfterWrite::FlushSource => this
                .ch
                .src
                .poll_flush(cx)
                .map_err(|e| Error::io("flush", e)),
        }
    }
}

/// The future of [`ByteWriteChannel::flush`].
struct Flush<'a> {
    ch: &'a mut ByteWriteChannel,
}

impl Future for Flush<'_> {
    type Output = Result<()>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().ch.poll_flush_all(cx)
    }
}

/// What a write waits for after its bytes were sent or queued.
#[derive(Clone, Copy)]
enum AfterWrite {
    /// Nothing.
    Done,
    /// The queue to be written out, then the source flushed.
    Flush,
    /// The source flushed (a TLS session's records).
    FlushSource,
}

fn write_zero() -> Error {
    Error::io(
        "write",
        io::Error::new(io::ErrorKind::WriteZero, "socket accepted no bytes"),
    )
}

impl Drop for ByteWriteChannel {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if self.queued() == 0 {
            // The common case: shut down now if the source can do it without waiting.
            let mut cx = Context::from_waker(Waker::noop());
            if self.src.poll_shutdown_write(&mut cx).is_ready() {
                self.src.write_finished();
                return;
            }
        }
        let src = self.src.clone();
        let buf = std::mem::take(&mut self.buf);
        let pos = self.pos;
        let spliced = self.spliced.take();
        let limit = src.timeout().unwrap_or(DROP_FLUSH_LIMIT);
        let Some(manager) = src.manager().cloned() else {
            // No loop drives this source: nothing can flush in the background.
            src.write_finished();
            return;
        };
        let task = manager.launch(async move {
            let mut ch = ByteWriteChannel {
                source_buffers: src.buffers_writes(),
                src,
                buf,
                pos,
                auto_flush: false,
                closed: false,
                written: 0,
                wait: WaitTimer::default(),
                spliced,
            };
            // Errors have no one to go to: the peer is gone or too slow, and the socket closes.
            let _ = crate::time::timeout(limit, ch.close()).await;
            ch.closed = true;
            ch.src.write_finished();
        });
        drop(task);
    }
}

/// The poll functions behind the I/O traits (`compat/futures_io.rs`, `compat/tokio.rs`); the
/// close is [`ByteWriteChannel::close`]: flush, then half-close.
#[cfg(any(feature = "futures-io", feature = "tokio"))]
impl ByteWriteChannel {
    pub(crate) fn poll_write_io(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self;
        if this.closed {
            return Poll::Ready(Err(Error::Closed("write channel").into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.queued() == 0 {
            match this.src.poll_write(cx, data) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    this.written += n as u64;
                    return Poll::Ready(Ok(n));
                }
                Poll::Ready(Ok(_)) => return Poll::Ready(Err(write_zero().into())),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if this.queued() >= FLUSH_AT {
            ready!(this.poll_write_queue(cx)).map_err(io::Error::from)?;
        }
        let n = data.len().min(2 * FLUSH_AT - this.queued());
        this.buf.extend_from_slice(&data[..n]);
        this.written += n as u64;
        Poll::Ready(Ok(n))
    }

    pub(crate) fn poll_flush_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush_all(cx).map_err(io::Error::from)
    }

    pub(crate) fn poll_close_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self;
        if this.closed {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_flush_all(cx)).map_err(io::Error::from)?;
        ready!(this.src.poll_shutdown_write(cx))?;
        this.closed = true;
        this.src.write_finished();
        Poll::Ready(Ok(()))
    }
}

/// Hooks for `copy_to` and `send_file` (copy.rs).
impl ByteWriteChannel {
    /// The source the channel writes to.
    pub(super) fn source(&self) -> &Arc<dyn Source> {
        &self.src
    }

    /// Fails with `Error::Closed` once the channel is closed; otherwise a new operation starts
    /// and its waits get a full `socket_timeout`.
    pub(super) fn begin_copy(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed("write channel"));
        }
        self.wait.restart();
        Ok(())
    }

    /// The pipe of a zero-copy copy, with the bytes it holds.
    pub(super) fn spliced_mut(&mut self) -> &mut Option<Spliced> {
        &mut self.spliced
    }

    /// Accounts for `n` bytes a copy handed to the channel past its buffer.
    pub(super) fn count_written(&mut self, n: usize) {
        self.written += n as u64;
        self.wait.restart();
    }

    /// Writes some of `data` (at least one byte, straight to the socket or queued within the
    /// back-pressure bound): cancel-safe, what it returns was taken.
    pub(super) fn poll_write_some(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<Result<usize>> {
        if self.closed {
            return Poll::Ready(Err(Error::Closed("write channel")));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.queued() == 0 {
            match self.src.poll_write(cx, data) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(write_zero())),
                Poll::Ready(Ok(n)) => {
                    self.written += n as u64;
                    self.wait.restart();
                    return Poll::Ready(Ok(n));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::io("write", e))),
                Poll::Pending => {}
            }
        }
        if self.queued() >= FLUSH_AT {
            ready!(self.poll_write_queue(cx))?;
        }
        let n = data.len().min((2 * FLUSH_AT).saturating_sub(self.queued()));
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        Poll::Ready(Ok(n))
    }

    /// Writes out everything queued (pipe, then buffer).
    pub(super) fn poll_queue(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_write_queue(cx)
    }

    /// `flush` as a poll function.
    pub(super) fn poll_flush_copy(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_flush_all(cx)
    }

    /// The socket cannot take more now: waits until the socket timeout.
    pub(super) fn poll_blocked(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        super::poll_timed_out(&mut self.wait, cx, &*self.src)
    }
}
