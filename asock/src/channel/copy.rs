//! Copies between channels: [`ByteReadChannel::copy_to`] and
//! [`copy_and_close`](ByteReadChannel::copy_and_close) (Ktor's `copyTo`/`copyAndClose`),
//! [`relay`] (both ways at once, for proxies) and [`ByteWriteChannel::send_file`].
//!
//! # The zero-copy path
//! Between two plain stream sockets (TCP or Unix) on Linux, once the read channel's buffered
//! bytes are written, a copy moves bytes with `splice(2)`: socket → pipe → socket, the bytes
//! never entering the process. Each copy in flight holds one non-blocking pipe, sized with
//! `F_SETPIPE_SZ` to [`PIPE_SIZE`], taken from a per-thread pool and given back whenever the
//! pipe is empty and the source has nothing to read (an idle connection holds no pipe).
//!
//! - **Readiness.** Every `splice` is non-blocking (`SPLICE_F_NONBLOCK`, non-blocking pipe and
//!   socket) and runs through the socket's readiness like any read or write. Bytes enter the
//!   pipe only while it is empty, so a `WouldBlock` into the pipe always means "the socket has
//!   nothing to read" and one out of it "the destination is full": readiness is cleared only
//!   for the socket that really would block.
//! - **Only for bulk.** A copy uses `splice` while transfers are large; once one brings less
//!   than 8 KiB it reads into the channel's buffer instead (a read and a write cost less than
//!   two splices for a few bytes, and a short read proves the socket empty where a short
//!   `splice` does not), and it goes back to `splice` when a read brings 8 KiB or more.
//! - **Back-pressure.** At most one pipe's worth of bytes is in flight per copy: when the
//!   destination stops reading, the copy stops taking bytes from the source.
//! - **Timeouts and budget.** A wait on either socket is bounded by that socket's
//!   `socket_timeout`; each `splice` spends the cooperative budget like any other operation.
//! - **Cancel safety.** Bytes taken from the source and still in the pipe belong to the
//!   destination channel: they count as [`queued`](ByteWriteChannel::queued) bytes and go out
//!   before anything written after them, with the next copy, write, `flush`, `close`, or the
//!   channel's background flush on drop. So dropping a copy loses no byte: every byte taken
//!   from the source is delivered (or fails with the destination), in order, once. What a
//!   dropped copy loses is its count; [`total_bytes_read`](ByteReadChannel::total_bytes_read)
//!   and [`total_bytes_written`](ByteWriteChannel::total_bytes_written) keep counting.
//!
//! Other sources and destinations (TLS sessions, other platforms, no pipe to be had) take the
//! buffer path: from the read channel's buffer straight to the destination socket, one copy in
//! user space, with the same guarantees (a chunk is consumed from the source only once the
//! destination took it).

use std::cell::RefCell;
use std::fs::File;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::task::{ready, Context, Poll};

use super::{ByteReadChannel, ByteWriteChannel, Source};
use crate::error::{Error, Result};
use crate::sys::{self, Pipe};
use crate::time::WaitTimer;

/// The capacity asked for each copy's pipe (the kernel's default is 64 KiB).
pub(crate) const PIPE_SIZE: usize = 256 * 1024;
/// Empty pipes kept per thread at most.
const POOL_MAX: usize = 64;
/// Transfers below this size take the buffer path: for a few bytes a `splice` in and out (and
/// the extra `splice` that finds the socket empty, since a short `splice` does not prove it is)
/// cost more than a read and a write. A copy switches to `splice` when a read brings at least
/// this much, and back when a `splice` brings less.
const SPLICE_MIN: usize = 8 * 1024;
/// Chunk of the `send_file` fallback (a buffered read of the file, then a write).
const FILE_CHUNK: usize = 64 * 1024;

thread_local! {
    static PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

fn take_pipe() -> io::Result<Pipe> {
    match PIPES.with(|p| p.borrow_mut().pop()) {
        Some(p) => Ok(p),
        None => sys::pipe(PIPE_SIZE),
    }
}

fn give_pipe(pipe: Pipe) {
    // `try_with`: a thread being torn down just closes the pipe.
    let _ = PIPES.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(pipe);
        }
    });
}

/// The kernel's zero-copy operations on a stream socket, each through the socket's readiness
/// (they return `Pending` with the task registered, never block).
pub(crate) trait Splice: Send + Sync {
    /// Moves up to `len` bytes from the socket into the pipe whose write end is `pipe`;
    /// `Ok(0)` is end of stream.
    fn poll_splice_in(
        &self,
        cx: &mut Context<'_>,
        pipe: RawFd,
        len: usize,
    ) -> Poll<io::Result<usize>>;
    /// Moves up to `len` bytes from the pipe whose read end is `pipe` to the socket.
    fn poll_splice_out(
        &self,
        cx: &mut Context<'_>,
        pipe: RawFd,
        len: usize,
    ) -> Poll<io::Result<usize>>;
    /// Sends up to `len` bytes of `file` from `offset` (which moves on); `Ok(0)`: the file ends.
    fn poll_send_file(
        &self,
        cx: &mut Context<'_>,
        file: RawFd,
        offset: &mut u64,
        len: usize,
    ) -> Poll<io::Result<usize>>;
}

/// A copy's pipe and how many bytes it holds, kept by the destination channel.
#[derive(Debug)]
pub(crate) struct Spliced {
    pipe: Pipe,
    pending: usize,
}

impl Spliced {
    /// Bytes in the pipe, taken from the source and not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }
}

/// Writes out what a copy left in the pipe (the first thing every write path of the
/// destination does, so those bytes keep their place in the stream).
pub(super) fn poll_drain(
    src: &dyn Source,
    spliced: &mut Option<Spliced>,
    wait: &mut WaitTimer,
    cx: &mut Context<'_>,
) -> Poll<Result<()>> {
    let Some(s) = spliced.as_mut() else {
        return Poll::Ready(Ok(()));
    };
    while s.pending > 0 {
        let Some(out) = src.splice() else {
            // Only a splice-capable destination ever gets a pipe.
            return Poll::Ready(Err(Error::io(
                "splice",
                io::Error::from(io::ErrorKind::Unsupported),
            )));
        };
        match out.poll_splice_out(cx, s.pipe.read_fd(), s.pending) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Err(Error::io(
                    "splice",
                    io::Error::new(io::ErrorKind::WriteZero, "socket accepted no bytes"),
                )))
            }
            Poll::Ready(Ok(n)) => {
                s.pending -= n.min(s.pending);
                wait.restart();
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::io("splice", e))),
            Poll::Pending => return super::poll_timed_out(wait, cx, src),
        }
    }
    Poll::Ready(Ok(()))
}

/// Gives an empty pipe back to the pool.
fn release_pipe(spliced: &mut Option<Spliced>) {
    if spliced.as_ref().is_some_and(|s| s.pending == 0) {
        if let Some(s) = spliced.take() {
            give_pipe(s.pipe);
        }
    }
}

/// Progress of one copy.
struct Copy {
    limit: u64,
    copied: u64,
    /// Cleared when no pipe could be had: the rest of this copy takes the buffer path.
    zero_copy: bool,
    /// The last transfer was large: `splice` pays (see [`SPLICE_MIN`]).
    bulk: bool,
}

impl Copy {
    fn poll(
        &mut self,
        src: &mut ByteReadChannel,
        dst: &mut ByteWriteChannel,
        cx: &mut Context<'_>,
    ) -> Poll<Result<()>> {
        let rsrc = src.source().clone();
        let wsrc = dst.source().clone();
        let splice_in = rsrc.splice().filter(|_| self.zero_copy);
        let can_splice_out = wsrc.splice().is_some();
        loop {
            // What the destination already holds goes first (bytes in the pipe, then queued
            // writes): the pipe is empty whenever bytes enter it.
            if dst.queued() > 0 {
                ready!(dst.poll_queue(cx))?;
            }
            if self.copied >= self.limit {
                return Poll::Ready(Ok(()));
            }
            let left = usize::try_from(self.limit - self.copied).unwrap_or(usize::MAX);
            let splice_in = match splice_in {
                Some(s) if self.bulk && can_splice_out && src.can_splice() => s,
                _ => {
                    // The buffer path, and the bytes the read channel had buffered already.
                    let chunk = ready!(src.poll_fill_buf(cx))?;
                    if chunk.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    self.bulk = chunk.len() >= SPLICE_MIN;
                    let n = chunk.len().min(left);
                    let w = ready!(dst.poll_write_some(cx, &chunk[..n]))?;
                    src.consume(w);
                    self.copied += w as u64;
                    continue;
                }
            };
            let spliced = dst.spliced_mut();
            if spliced.is_none() {
                match take_pipe() {
                    Ok(pipe) => *spliced = Some(Spliced { pipe, pending: 0 }),
                    Err(_) => {
                        // Out of descriptors or pipe budget: copy through the buffer instead.
                        self.zero_copy = false;
                        return self.poll(src, dst, cx);
                    }
                }
            }
            let Some(s) = spliced.as_mut() else {
                continue;
            };
            let len = s.pipe.capacity().min(left);
            match splice_in.poll_splice_in(cx, s.pipe.write_fd(), len) {
                Poll::Ready(r) => {
                    let n = src.spliced(r)?;
                    if n == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    self.bulk = n >= SPLICE_MIN;
                    s.pending += n;
                    dst.count_written(n);
                    self.copied += n as u64;
                }
                Poll::Pending => {
                    // Nothing to read: an idle copy holds no pipe.
                    release_pipe(dst.spliced_mut());
                    return src.poll_idle(cx);
                }
            }
        }
    }
}

impl ByteReadChannel {
    /// Copies bytes from this channel to `dst` until end of stream or until `limit` bytes were
    /// copied, whichever comes first, then flushes `dst`; returns how many bytes were copied
    /// (Ktor's `copyTo(channel, limit)`). Pass `u64::MAX` for no limit.
    ///
    /// Bytes already buffered in this channel go first. Between two plain TCP or Unix stream
    /// sockets on Linux the rest moves inside the kernel with `splice` (see the
    /// [`channel`](crate::channel) module docs on `copy_to`); otherwise through this channel's
    /// buffer. Either way at most a bounded amount (one pipe, or one buffer) is in flight: a
    /// destination that stops reading stops the copy, which then fails with
    /// [`Error::Timeout`] if `dst`'s socket timeout is set. Errors of either side end the copy.
    ///
    /// Cancel-safe in this sense: no byte taken from this channel is lost or duplicated when
    /// the future is dropped. Bytes in flight are queued in `dst` and go out before anything
    /// written to it later (its next write, `flush`, `close`, or its drop). The count of a
    /// dropped copy is lost; [`total_bytes_read`](Self::total_bytes_read) still tells.
    ///
    /// ```
    /// # use asock::{a_socket, SelectorManager};
    /// # let selector = SelectorManager::builder().threads(1).build()?;
    /// # selector.run_blocking(async {
    /// let server = a_socket(&selector).tcp().bind("127.0.0.1:0").await?;
    /// let client = a_socket(&selector).tcp().connect(server.local_address().clone()).await?;
    /// let accepted = server.accept().await?;
    /// let mut out = client.open_write_channel(false);
    /// out.write_str("hello, world").await?;
    /// out.close().await?;
    /// // Echo it back: from the accepted socket's read side to its write side.
    /// let mut input = accepted.open_read_channel();
    /// let mut output = accepted.open_write_channel(false);
    /// assert_eq!(input.copy_and_close(&mut output, u64::MAX).await?, 12);
    /// let reply = client.open_read_channel().read_remaining(100).await?;
    /// assert_eq!(reply, b"hello, world");
    /// # Ok::<(), asock::Error>(())
    /// # })?;
    /// # Ok::<(), asock::Error>(())
    /// ```
    pub async fn copy_to(&mut self, dst: &mut ByteWriteChannel, limit: u64) -> Result<u64> {
        dst.begin_copy()?;
        self.begin_copy();
        let mut copy = Copy {
            limit,
            copied: 0,
            zero_copy: sys::HAS_SPLICE,
            bulk: true,
        };
        poll_fn(|cx| copy.poll(self, dst, cx)).await?;
        poll_fn(|cx| dst.poll_flush_copy(cx)).await?;
        release_pipe(dst.spliced_mut());
        Ok(copy.copied)
    }

    /// [`copy_to`](Self::copy_to), then closes `dst` (Ktor's `copyAndClose`): flush, then a
    /// half-close the peer sees as end of stream. On an error `dst` is left open.
    ///
    /// Cancel-safe like [`copy_to`](Self::copy_to); dropped after the copy, `dst` is not
    /// closed yet (its drop closes it in the background).
    pub async fn copy_and_close(&mut self, dst: &mut ByteWriteChannel, limit: u64) -> Result<u64> {
        let n = self.copy_to(dst, limit).await?;
        dst.close().await?;
        Ok(n)
    }
}

impl ByteWriteChannel {
    /// Sends `len` bytes of `file` starting at `offset` (or up to the file's end, if sooner),
    /// after everything already queued; returns how many bytes were sent.
    ///
    /// On a plain TCP or Unix stream socket on Linux this is `sendfile(2)`: the bytes go from
    /// the page cache to the socket without entering the process, each call waiting for
    /// writability like any write and bounded by the socket timeout. Elsewhere (TLS, other
    /// platforms, files `sendfile` refuses) the file is read in 64 KiB pieces with positioned
    /// reads and written through the channel. The file's own position is not used or moved.
    ///
    /// Not cancel-safe for the count: dropped part-way, some bytes were sent and the future
    /// that knew how many is gone. [`total_bytes_written`](Self::total_bytes_written) counts
    /// them, so a caller can resume at the right offset.
    pub async fn send_file(&mut self, file: &File, offset: u64, len: u64) -> Result<u64> {
        self.begin_copy()?;
        self.flush().await?;
        let src = self.source().clone();
        let mut sent = 0u64;
        let mut pos = offset;
        if let Some(out) = src.splice() {
            let fd = file.as_raw_fd();
            let r = poll_fn(|cx| loop {
                if sent >= len {
                    return Poll::Ready(Ok(()));
                }
                let want = usize::try_from(len - sent).unwrap_or(usize::MAX);
                match out.poll_send_file(cx, fd, &mut pos, want) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Ok(n)) => {
                        sent += n as u64;
                        self.count_written(n);
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        return self
                            .poll_blocked(cx)
                            .map_err(|e| io::Error::new(e.io_kind(), e))
                    }
                }
            })
            .await;
            match r {
                Ok(()) => return Ok(sent),
                // Not a file sendfile can read (a pipe, some special files): read it instead.
                Err(e)
                    if sent == 0
                        && matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {}
                Err(e) => return Err(Error::io("sendfile", e)),
            }
        }
        self.send_file_buffered(file, pos, len - sent).await
    }

    /// `send_file` through a buffer: positioned reads, channel writes.
    async fn send_file_buffered(&mut self, file: &File, offset: u64, len: u64) -> Result<u64> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; FILE_CHUNK.min(usize::try_from(len).unwrap_or(FILE_CHUNK))];
        let mut sent = 0u64;
        while sent < len && !buf.is_empty() {
            let want = buf
                .len()
                .min(usize::try_from(len - sent).unwrap_or(usize::MAX));
            let n = match file.read_at(&mut buf[..want], offset + sent) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read file", e)),
            };
            self.write_fully(&buf[..n]).await?;
            sent += n as u64;
        }
        self.flush().await?;
        Ok(sent)
    }
}

/// Relays between two connections until both directions are done: bytes from `a_input` go to
/// `b_output` and from `b_input` to `a_output`, each with
/// [`copy_and_close`](ByteReadChannel::copy_and_close), so a half-close on one side reaches the
/// other and the relay ends once both sides have closed their write halves. Returns the bytes
/// copied each way: `(a to b, b to a)`. The thing a proxy or tunnel needs, in one call; see
/// [`Connection::relay`](crate::Connection::relay) for two sockets' connections.
///
/// The first error in either direction ends the relay with that error (the other direction
/// stops too; bytes it had in flight stay queued in its destination channel).
pub async fn relay(
    a_input: &mut ByteReadChannel,
    a_output: &mut ByteWriteChannel,
    b_input: &mut ByteReadChannel,
    b_output: &mut ByteWriteChannel,
) -> Result<(u64, u64)> {
    let mut ab = pin!(a_input.copy_and_close(b_output, u64::MAX));
    let mut ba = pin!(b_input.copy_and_close(a_output, u64::MAX));
    let (mut done_ab, mut done_ba) = (None, None);
    poll_fn(|cx| {
        if done_ab.is_none() {
            if let Poll::Ready(r) = ab.as_mut().poll(cx) {
                done_ab = Some(r?);
            }
        }
        if done_ba.is_none() {
            if let Poll::Ready(r) = ba.as_mut().poll(cx) {
                done_ba = Some(r?);
            }
        }
        match (done_ab, done_ba) {
            (Some(x), Some(y)) => Poll::Ready(Ok((x, y))),
            _ => Poll::Pending,
        }
    })
    .await
}
