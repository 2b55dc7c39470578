//! [`ByteReadChannel`]: the read half of a connection, with line, delimiter and typed reads.
//!
//! Longer than most files here, on purpose: it is one type, Ktor's read API (lines, delimiters,
//! exact and typed reads, discard, remaining) over one buffer whose rules (bounds, the memory
//! budget, giving the buffer back while idle, fairness under long lines) every method shares.
//! Split by method, each part would have to reach into the others' invariants.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use memchr::{memchr, memmem};

use super::budget::{Budget, Holder};
use super::buffer::{self, BULK, CHUNK};
use super::Source;
use crate::error::{Error, Result};
use crate::time::WaitTimer;

/// The largest single read a channel grows to for a bulk stream.
const MAX_READ_SIZE: usize = BULK;
/// A buffer grown for a long line is zeroed and read into this much at a time: what one turn
/// of the loop costs a connection sending a long line fast (issue 18: 1,000 peers sending
/// 4 MiB lines to one loop; a probe's round trip waits for one turn of each of them).
const GROWTH_STEP: usize = 16 * 1024;

/// A line search that holds this much without finding its delimiter makes each further read in
/// the loop's low-priority lane ([`coop::defer`](crate::selector::coop::defer)), one read per
/// turn: a long line waits behind interactive connections, never they behind it (issue 18).
/// One pooled chunk, so an ordinary line never waits there.
const DEFER_LINE_AT: usize = CHUNK;

/// The default limit of [`ByteReadChannel::read_line`]: 1 MiB.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 1 << 20;

/// The read side of a connection: Ktor's `ByteReadChannel`.
///
/// It reads from the socket straight into its own buffer, only when that buffer cannot answer a
/// call, and holds no buffer at all while it waits on an idle connection.
///
/// # Cancel safety
/// Every `async` method here except [`discard`](Self::discard) is cancel-safe: a future dropped
/// before it completes consumes nothing, and the bytes that arrived meanwhile stay buffered for
/// the next call (tests/cancel.rs proves it for each).
///
/// # Example
/// ```
/// # use asock::{a_socket, SelectorManager};
/// # let selector = SelectorManager::builder().threads(1).build()?;
/// # selector.run_blocking(async {
/// # let server = a_socket(&selector).tcp().bind("127.0.0.1:0").await?;
/// # let addr = server.local_address().clone();
/// # let sel = selector.clone();
/// # selector.launch(async move {
/// #     let s = a_socket(&sel).tcp().connect(addr).await.unwrap();
/// #     s.open_write_channel(true).write_str("hello\r\nworld").await.unwrap();
/// # });
/// let socket = server.accept().await?;
/// let mut input = socket.open_read_channel();
/// assert_eq!(input.read_utf8_line().await?.as_deref(), Some("hello"));
/// assert_eq!(input.read_utf8_line().await?.as_deref(), Some("world"));
/// assert_eq!(input.read_utf8_line().await?, None);
/// # Ok::<(), asock::Error>(())
/// # })?;
/// # Ok::<(), asock::Error>(())
/// ```
pub struct ByteReadChannel {
    src: Arc<dyn Source>,
    /// Buffered bytes are `buf[start..end]`; `buf` is empty while idle.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// How many buffered bytes from `start` are known not to hold the delimiter being searched.
    scanned: usize,
    /// Whether reads still go to the source (one check on the hot path for end of stream,
    /// failure and cancel alike).
    state: State,
    notified: bool,
    /// This turn came from the low-priority lane: a long line search may make its one read.
    granted: bool,
    max_line: usize,
    /// How much to read at once: starts at one pooled chunk and doubles (up to
    /// [`MAX_READ_SIZE`]) while reads keep filling the buffer, so a bulk stream makes few large
    /// reads while a chatty connection keeps a small buffer.
    read_size: usize,
    /// Bytes consumed by the reader, in all.
    consumed: u64,
    wait: WaitTimer,
    /// The manager's memory budget and this channel's share of it, when one was set.
    budget: Option<(Arc<Budget>, Arc<Holder>)>,
    /// Bytes of `buf` counted against the budget.
    counted: usize,
}

/// Where reading stands.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Reads go to the source.
    Open,
    /// The source reached end of stream: reads return what is buffered, then nothing.
    Eof,
    /// A read failed (a reset, say): every later read fails the same way instead of
    /// mistaking the silence after it for end of stream.
    Failed(Failure),
    /// The reader cancelled: every later read fails with [`Error::Closed`].
    Cancelled,
}

/// A read error kept to be reported again.
#[derive(Clone, Copy, Debug)]
struct Failure {
    kind: io::ErrorKind,
    os: Option<i32>,
}

impl Failure {
    fn of(e: &io::Error) -> Failure {
        Failure {
            kind: e.kind(),
            os: e.raw_os_error(),
        }
    }

    fn error(self) -> Error {
        let e = match self.os {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::from(self.kind),
        };
        Error::io("read", e)
    }
}

impl std::fmt::Debug for ByteReadChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteReadChannel")
            .field("available", &self.available_for_read())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The future of [`ByteReadChannel::read_line`], its poll inlined into the caller's.
struct ReadLine<'a> {
    /// Taken when the line is returned: the line borrows the channel's buffer.
    ch: Option<&'a mut ByteReadChannel>,
}

impl<'a> Future for ReadLine<'a> {
    type Output = Result<Option<&'a [u8]>>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let slot = &mut self.get_mut().ch;
        let ch = slot
            .as_mut()
            .expect("`read_line` polled after it completed");
        let found = ready!(ch.poll_line(cx));
        let ch = slot.take().expect("taken only here");
        Poll::Ready(found.map(|f| f.map(|f| &ch.buf[f.start..f.end])))
    }
}

/// The future of [`ByteReadChannel::fill_buf`], its poll inlined into the caller's.
struct FillBuf<'a> {
    /// Taken when the bytes are returned: they borrow the channel's buffer.
    ch: Option<&'a mut ByteReadChannel>,
}

impl<'a> Future for FillBuf<'a> {
    type Output = Result<&'a [u8]>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let slot = &mut self.get_mut().ch;
        let ch = slot.as_mut().expect("`fill_buf` polled after it completed");
        let r = ready!(ch.poll_ensure(cx, 1));
        let ch = slot.take().expect("taken only here");
        Poll::Ready(r.map(|_| ch.buffered()))
    }
}

/// A region of the buffer found by a search: the content and how far to consume.
struct Found {
    start: usize,
    end: usize,
}

macro_rules! typed_reads {
    ($($t:ty => $be:ident, $le:ident;)*) => {$(
        #[doc = concat!("Reads a big-endian (network order) `", stringify!($t), "`.")]
        #[doc = ""]
        #[doc = "Cancel-safe: dropped before it completes, it consumes nothing."]
        pub async fn $be(&mut self) -> Result<$t> {
            Ok(<$t>::from_be_bytes(self.read_array().await?))
        }
        #[doc = concat!("Reads a little-endian `", stringify!($t), "`.")]
        #[doc = ""]
        #[doc = "Cancel-safe: dropped before it completes, it consumes nothing."]
        pub async fn $le(&mut self) -> Result<$t> {
            Ok(<$t>::from_le_bytes(self.read_array().await?))
        }
    )*};
}

impl ByteReadChannel {
    pub(crate) fn new(src: Arc<dyn Source>) -> Self {
        let budget = src
            .manager()
            .and_then(|m| m.budget())
            .map(|b| (b.clone(), Arc::new(Holder::new(&src))));
        ByteReadChannel {
            budget,
            counted: 0,
            src,
            buf: Vec::new(),
            start: 0,
            end: 0,
            scanned: 0,
            state: State::Open,
            notified: false,
            granted: false,
            max_line: DEFAULT_MAX_LINE_LENGTH,
            read_size: CHUNK,
            consumed: 0,
            wait: WaitTimer::default(),
        }
    }

    /// The longest line (or [`read_until`](Self::read_until) record) accepted, in bytes,
    /// without its terminator. Default [`DEFAULT_MAX_LINE_LENGTH`].
    pub fn max_line_length(&self) -> usize {
        self.max_line
    }

    /// Sets the longest line accepted. A peer that sends more without a terminator gets
    /// [`Error::LineTooLong`], and the channel never buffers much more than this for a line.
    pub fn set_max_line_length(&mut self, limit: usize) {
        self.max_line = limit.max(1);
    }

    /// Bytes buffered and readable without waiting.
    #[inline]
    pub fn available_for_read(&self) -> usize {
        self.end - self.start
    }

    /// The bytes buffered now, readable without waiting (a peek: nothing is consumed).
    #[inline]
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Whether a whole line (a `\n`) is buffered, so [`read_line`](Self::read_line) will not
    /// wait. Servers use it to flush replies once per batch of pipelined lines.
    #[inline]
    pub fn has_line(&self) -> bool {
        let rest = self.buffered();
        !rest.is_empty() && memchr(b'\n', rest).is_some()
    }

    /// Whether nothing more can be read: end of stream reached (or a read failed) and the
    /// buffer is empty, or the channel was cancelled, or the socket was closed.
    pub fn is_closed_for_read(&self) -> bool {
        let done = match self.state {
            State::Open => false,
            State::Eof | State::Failed(_) => self.start == self.end,
            State::Cancelled => true,
        };
        done || self.src.is_closed()
    }

    /// Bytes the reader has consumed from this channel so far (Ktor's `totalBytesRead`),
    /// through its own methods and the `futures-io`/tokio reader traits alike. Bytes buffered
    /// but not yet consumed do not count.
    pub fn total_bytes_read(&self) -> u64 {
        self.consumed
    }

    /// Stops reading: buffered bytes are dropped and every later read fails with
    /// [`Error::Closed`].
    pub fn cancel(&mut self) {
        self.state = State::Cancelled;
        self.release();
        self.start = 0;
        self.end = 0;
        self.scanned = 0;
        self.notify_finished();
    }

    /// Waits until at least one byte is buffered (`true`) or the stream ended (`false`).
    ///
    /// Cancel-safe: dropped before it completes, it consumes nothing.
    pub async fn await_content(&mut self) -> Result<bool> {
        self.begin();
        poll_fn(|cx| self.poll_ensure(cx, 1)).await
    }

    /// Reads a line as bytes, without its `\n` or `\r\n`, borrowing the channel's buffer (no
    /// copy). At end of stream an unterminated last line is returned, then `None`.
    ///
    /// A line longer than [`max_line_length`](Self::max_line_length) fails with
    /// [`Error::LineTooLong`] and consumes nothing.
    ///
    /// Cancel-safe: dropped before it completes, it consumes nothing.
    #[inline]
    pub fn read_line(&mut self) -> impl Future<Output = Result<Option<&[u8]>>> + '_ {
        self.begin();
        ReadLine { ch: Some(self) }
    }

    /// Reads a line as text, like Ktor's `readUTF8Line`: `\n` and `\r\n` both end a line, the
    /// terminator is not returned, an unterminated last line is returned at end of stream, and
    /// `None` comes after that.
    ///
    /// Errors: [`Error::LineTooLong`] (nothing consumed), [`Error::InvalidUtf8`] (the line is
    /// consumed and its bytes are in the error).
    ///
    /// Cancel-safe: dropped before it completes, it consumes nothing.
    pub async fn read_utf8_line(&mut self) -> Result<Option<String>> {
        match self.read_line().await? {
            None => Ok(None),
            Some(line) => match std::str::from_utf8(line) {
                Ok(s) => Ok(Some(s.to_owned())),
                Err(e) => Err(Error::InvalidUtf8 {
                    line: line.to_vec(),
                    valid_up_to: e.valid_up_to(),
                }),
            },
        }
    }

    /// Reads up to (not including) `delimiter`, which is consumed. At end of stream the rest is
    /// returned if there is any, then `None`. Records are limited like lines.
    ///
    /// Cancel-safe: dropped before it completes, it consumes nothing.
    pub async fn read_until(&mut self, delimiter: &[u8]) -> Result<Option<&[u8]>> {
        if delimiter.is_empty() {
            return Err(Error::Io {
                op: "read_until",
                source: io::Error::new(io::ErrorKind::InvalidInput, "empty delimiter"),
            });
        }
        self.begin();
        let found = poll_fn(|cx| self.poll_find(cx, delimiter, false)).await?;
        Ok(found.map(|f| &self.buf[f.start..f.end]))
    }

    /// Fills `dst` completely, or fails with [`Error::UnexpectedEof`] (consuming nothing) if
    /// the stream ends first.
    ///
    /// Cancel-safe: dropped before it completes, it consumes nothing.
    pub async fn read_exact(&mut self, dst: &mut [u8]) -> Result<()> {
        let n = dst.len();
        self.begin();
        if !poll_fn(|cx| self.poll_ensure(cx, n)).await? && n > 0 {
            return Err(Error::UnexpectedEof {
                needed: n,
                got: self.available_for_read(),
            });
        }
        dst.copy_from_slice(&self.buf[self.start..self.start + n]);
        self.advance(n);
        Ok(())
    }

    /// Reads exactly `n` bytes into a new vector; see [`read_exact`](Self::read_exact).
    ///
    /// Cancel-safe: dropped before it completes, it consumes nothing.
    pub async fn read_bytes(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut v = vec![0; n];
        self.read_exact(&mut v).await?;
        Ok(v)
    }

    /// Waits for buffered bytes and returns them all without consuming them (empty at end of
    /// stream), like `BufRead::fill_buf`; follow with [`consume`](Self::consume). Lets a relay
    /// write straight from the channel's buffer, without a copy.
    ///
    /// Cancel-safe: dropped before it completes, it consumes nothing.
    #[inline]
    pub fn fill_buf(&mut self) -> impl Future<Output = Result<&[u8]>> + '_ {
        self.begin();
        FillBuf { ch: Some(self) }
    }

    /// Consumes `n` buffered bytes (at most [`available_for_read`](Self::available_for_read)).
    #[inline]
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.available_for_read());
        self.advance(n);
    }

    /// Reads whatever is available, at least one byte, into `dst`; `Ok(0)` at end of stream
    /// (or when `dst` is empty).
    ///
    /// Cancel-safe: dropped before it completes, it consumes nothing.
    pub async fn read_available(&mut self, dst: &mut [u8]) -> Result<usize> {
        self.begin();
        poll_fn(|cx| self.poll_read_available(cx, dst)).await
    }

    /// Reads everything up to end of stream; fails with [`Error::TooMuchData`] (consuming
    /// nothing) when more than `limit` bytes come.
    ///
    /// Cancel-safe: dropped before it completes, it consumes nothing.
    pub async fn read_remaining(&mut self, limit: usize) -> Result<Vec<u8>> {
        self.begin();
        poll_fn(|cx| loop {
            if self.available_for_read() > limit {
                return Poll::Ready(Err(Error::TooMuchData { limit }));
            }
            if ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Ok(()));
            }
        })
        .await?;
        let v = self.buf[self.start..self.end].to_vec();
        self.advance(v.len());
        Ok(v)
    }

    /// Skips up to `n` bytes; returns how many were skipped (fewer only at end of stream).
    ///
    /// Not cancel-safe: bytes skipped before the future is dropped stay skipped, and how many
    /// is lost with the future. To skip while keeping count, loop on
    /// [`fill_buf`](Self::fill_buf) and [`consume`](Self::consume).
    pub async fn discard(&mut self, n: u64) -> Result<u64> {
        let mut left = n;
        self.begin();
        while left > 0 {
            if self.available_for_read() == 0 && !poll_fn(|cx| self.poll_ensure(cx, 1)).await? {
                break;
            }
            let k = (self.available_for_read() as u64).min(left) as usize;
            self.advance(k);
            left -= k as u64;
        }
        Ok(n - left)
    }

    /// Reads one byte.
    ///
    /// Cancel-safe: dropped before it completes, it consumes nothing.
    pub async fn read_u8(&mut self) -> Result<u8> {
        Ok(self.read_array::<1>().await?[0])
    }

    /// Reads one signed byte.
    ///
    /// Cancel-safe: dropped before it completes, it consumes nothing.
    pub async fn read_i8(&mut self) -> Result<i8> {
        Ok(self.read_array::<1>().await?[0] as i8)
    }

    typed_reads! {
        u16 => read_u16, read_u16_le;
        u32 => read_u32, read_u32_le;
        u64 => read_u64, read_u64_le;
        u128 => read_u128, read_u128_le;
        i16 => read_i16, read_i16_le;
        i32 => read_i32, read_i32_le;
        i64 => read_i64, read_i64_le;
        i128 => read_i128, read_i128_le;
        f32 => read_f32, read_f32_le;
        f64 => read_f64, read_f64_le;
    }

    /// Reads exactly `N` bytes.
    ///
    /// Cancel-safe: dropped before it completes, it consumes nothing.
    pub async fn read_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        // Fast path, the usual case for typed reads: the bytes are buffered already.
        if let Some(bytes) = self.buffered().get(..N) {
            let mut a = [0; N];
            a.copy_from_slice(bytes);
            self.advance(N);
            return Ok(a);
        }
        let mut a = [0; N];
        self.read_exact(&mut a).await?;
        Ok(a)
    }

    // ---- the machinery ----

    #[inline]
    fn advance(&mut self, n: usize) {
        self.consumed += n as u64;
        self.start += n;
        self.scanned = self.scanned.saturating_sub(n);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
        }
    }

    /// Records an OS read error (a reset, say) so later reads report it too. Timeouts are not
    /// kept (the next read waits again), nor errors of the source's own (TLS keeps those).
    fn fail(&mut self, e: io::Error) -> Error {
        let kept = Failure::of(&e);
        let err = Error::io("read", e);
        if kept.os.is_some() && !matches!(err, Error::Timeout) {
            self.state = State::Failed(kept);
        }
        err
    }

    /// A new operation starts: its wait gets a full `socket_timeout`.
    fn begin(&mut self) {
        self.wait.restart();
    }

    /// Gives the buffer back to the pool and its bytes back to the budget.
    #[inline]
    fn release(&mut self) {
        // Bytes are counted only under a budget: one check without one.
        if self.counted > 0 {
            if let Some((b, h)) = &self.budget {
                b.give(h, self.counted);
            }
            self.counted = 0;
        }
        buffer::give(std::mem::take(&mut self.buf));
    }

    /// Counts the buffer's growth to `len` bytes against the memory budget, if there is one.
    /// `false`: the budget shed this channel (or refuses it more), and the read must fail.
    #[inline(always)]
    fn count(&mut self, len: usize) -> bool {
        let Some((b, h)) = &self.budget else {
            return true;
        };
        if len <= self.counted {
            return true;
        }
        let extra = len - self.counted;
        let ok = if self.counted == 0 && len <= CHUNK {
            b.take(h, extra)
        } else {
            b.grow(h, self.counted, extra)
        };
        if ok {
            self.counted = len;
        }
        ok
    }

    /// The error of a channel the memory budget shed.
    fn shed_error(&self) -> Option<Error> {
        match &self.budget {
            Some((b, h)) if h.is_shed() => Some(Error::MemoryBudget { limit: b.limit() }),
            _ => None,
        }
    }

    /// Retires the channel without finishing the read side (TLS takes the socket over):
    /// returns the bytes it had buffered.
    #[cfg(feature = "tls")]
    pub(crate) fn detach(mut self) -> Vec<u8> {
        self.notified = true;
        let rest = self.buf[self.start..self.end].to_vec();
        self.start = 0;
        self.end = 0;
        rest
    }

    fn notify_finished(&mut self) {
        if !self.notified {
            self.notified = true;
            self.src.read_finished(matches!(self.state, State::Eof));
        }
    }

    /// Makes room after `end`: takes a buffer, compacts, or grows, never past `cap` bytes
    /// (the buffer compacts instead; a caller's cap leaves room for what it buffers plus one
    /// read). Growth reserves exactly: a capped buffer never gets the allocator's doubling.
    ///
    /// Returns `false` when the memory budget refuses the room (the channel is shed).
    #[inline(always)]
    fn make_room(&mut self, cap: usize) -> bool {
        // The usual cases, decided here: bytes buffered with room after them, or nothing
        // buffered, so reads start over at the front of a buffer (taken now if none is held)
        // of the size they want.
        let room = if self.start == self.end {
            if self.buf.is_empty() && !self.take_buffer() {
                return false;
            }
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
            self.buf.len() >= self.read_size
        } else {
            self.end < self.buf.len()
        };
        room || self.make_room_slow(cap)
    }

    /// Takes a buffer from the pool: a channel holds none while it waits on an empty one.
    /// A bulk stream gets its full-size buffer back (pooled, so not zeroed again).
    #[inline]
    fn take_buffer(&mut self) -> bool {
        let size = if self.read_size >= BULK { BULK } else { CHUNK };
        if !self.count(size) {
            return false;
        }
        self.buf = buffer::take(size);
        true
    }

    /// [`make_room`](Self::make_room) when it has to take, compact or grow the buffer.
    #[inline(never)]
    fn make_room_slow(&mut self, cap: usize) -> bool {
        if self.start == self.end {
            // Empty, at the start of a buffer smaller than reads want (make_room took it).
            if self.buf.len() < self.read_size {
                if !self.count(self.read_size) {
                    return false;
                }
                self.buf.resize(self.read_size, 0);
            }
        }
        if self.end < self.buf.len() {
            return true;
        }
        if self.buf.len() < self.buf.capacity() {
            // Room reserved (and counted) by an earlier growth: zero one step more.
            let len = self.buf.capacity().min(self.buf.len() + GROWTH_STEP);
            self.buf.resize(len, 0);
            return true;
        }
        let len = self.buf.len().saturating_mul(2).min(cap);
        if self.start > 0 && (self.start >= self.buf.len() / 2 || len <= self.buf.len()) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        } else {
            let len = len.max(self.buf.len() + 1);
            if !self.count(len) {
                return false;
            }
            self.buf.reserve_exact(len - self.buf.len());
            // Zeroed (and faulted in) a step at a time as reads need it, not all at once: a
            // turn of the loop never pays for megabytes of a long line's buffer.
            let now = len.min(self.buf.len() + GROWTH_STEP);
            self.buf.resize(now, 0);
        }
        true
    }

    /// The read failed because the memory budget shed this channel: its buffer goes now.
    fn shed(&mut self) -> Poll<Result<usize>> {
        let e = self
            .shed_error()
            .unwrap_or(Error::MemoryBudget { limit: 0 });
        self.release();
        self.start = 0;
        self.end = 0;
        self.scanned = 0;
        Poll::Ready(Err(e))
    }

    /// Reads more bytes from the source into the buffer. `Ok(0)` means end of stream.
    #[inline]
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize>> {
        self.poll_fill_capped(cx, usize::MAX)
    }

    /// [`poll_fill`](Self::poll_fill) with the buffer kept within `cap` bytes.
    #[inline(always)]
    fn poll_fill_capped(&mut self, cx: &mut Context<'_>, cap: usize) -> Poll<Result<usize>> {
        if !matches!(self.state, State::Open) {
            return Poll::Ready(self.stopped());
        }
        // A shed channel needs no check here: shedding closes its source, so the read below
        // fails and is reported as shed.
        if !self.make_room(cap) {
            return self.shed();
        }
        // One read's worth at most, even into a buffer grown for a long line.
        let upto = self.buf.len().min(self.end + MAX_READ_SIZE);
        let asked = upto - self.end;
        match self.src.poll_read(cx, &mut self.buf[self.end..upto]) {
            Poll::Ready(Ok(n)) if n > 0 => {
                if n == asked && asked >= self.read_size && self.read_size < MAX_READ_SIZE {
                    self.read_size *= 2;
                }
                self.end += n;
                self.wait.restart();
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                if self.start == self.end {
                    self.release();
                }
                super::poll_timed_out(&mut self.wait, cx, &*self.src)
            }
            Poll::Ready(r) => self.read_ended(r),
        }
    }

    /// What a read returns once reading stopped: nothing at end of stream, else the error.
    #[cold]
    fn stopped(&self) -> Result<usize> {
        match self.state {
            State::Open | State::Eof => Ok(0),
            State::Failed(f) => Err(f.error()),
            State::Cancelled => Err(Error::Closed("read channel")),
        }
    }

    /// A read from the source brought end of stream (`Ok(0)`) or an error.
    #[cold]
    fn read_ended(&mut self, r: io::Result<usize>) -> Poll<Result<usize>> {
        if self.shed_error().is_some() {
            // A shed connection's socket is closed under it: that is no end of stream.
            return self.shed();
        }
        match r {
            Ok(_) => {
                self.state = State::Eof;
                self.notify_finished();
                Poll::Ready(Ok(0))
            }
            Err(e) => Poll::Ready(Err(self.fail(e))),
        }
    }

    /// Waits until `n` bytes are buffered (`true`) or the stream ended short of that (`false`).
    #[inline]
    fn poll_ensure(&mut self, cx: &mut Context<'_>, n: usize) -> Poll<Result<bool>> {
        while self.available_for_read() < n {
            if ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Ok(false));
            }
        }
        Poll::Ready(Ok(true))
    }

    fn poll_read_available(&mut self, cx: &mut Context<'_>, dst: &mut [u8]) -> Poll<Result<usize>> {
        if dst.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.available_for_read() == 0 {
            if dst.len() >= CHUNK && matches!(self.state, State::Open) {
                // Big destination, nothing buffered: read straight into it.
                return match self.src.poll_read(cx, dst) {
                    Poll::Ready(Ok(0)) => {
                        self.state = State::Eof;
                        self.notify_finished();
                        Poll::Ready(Ok(0))
                    }
                    Poll::Ready(Ok(n)) => {
                        self.consumed += n as u64;
                        self.wait.restart();
                        Poll::Ready(Ok(n))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(self.fail(e))),
                    Poll::Pending => {
                        self.release();
                        super::poll_timed_out(&mut self.wait, cx, &*self.src)
                    }
                };
            }
            if !ready!(self.poll_ensure(cx, 1))? {
                return Poll::Ready(Ok(0));
            }
        }
        let n = dst.len().min(self.available_for_read());
        dst[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.advance(n);
        Poll::Ready(Ok(n))
    }

    /// [`poll_find`](Self::poll_find) for a line: `\n`, with a `\r` before it left out. A copy
    /// of its own, compiled for these constants (no delimiter length or `\r` flag to look at).
    fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Found>>> {
        self.poll_find(cx, b"\n", true)
    }

    /// Finds the next record ending in `delim` and consumes it with its delimiter; with
    /// `strip_cr` a `\r` before the delimiter is left out of the record too.
    #[inline(always)]
    fn poll_find(
        &mut self,
        cx: &mut Context<'_>,
        delim: &[u8],
        strip_cr: bool,
    ) -> Poll<Result<Option<Found>>> {
        let slack = delim.len() + usize::from(strip_cr);
        loop {
            let from = self.start + self.scanned;
            // Nothing new to search (the usual case right after a record): no call.
            if from < self.end {
                let hay = &self.buf[from..self.end];
                let hit = if delim.len() == 1 {
                    memchr(delim[0], hay)
                } else {
                    find_delimiter(hay, delim)
                };
                if let Some(i) = hit {
                    return Poll::Ready(self.take_record(from + i, delim.len(), strip_cr));
                }
            }
            let buffered = self.available_for_read();
            self.scanned = buffered.saturating_sub(delim.len() - 1);
            if buffered > self.max_line + slack - 1 {
                return Poll::Ready(Err(Error::LineTooLong {
                    limit: self.max_line,
                }));
            }
            if buffered >= DEFER_LINE_AT {
                // A long line: each read waits its turn in the low-priority lane (the search
                // resumes where it stopped), however much the kernel holds for it.
                if !std::mem::take(&mut self.granted) {
                    self.granted = true;
                    crate::selector::coop::defer(cx);
                    return Poll::Pending;
                }
            }
            // The most a search ever buffers: a record at the limit, its terminator, one read.
            let cap = self
                .max_line
                .saturating_add(slack)
                .saturating_add(MAX_READ_SIZE);
            if ready!(self.poll_fill_capped(cx, cap))? == 0 {
                return Poll::Ready(self.take_last_record());
            }
        }
    }

    /// Consumes the record whose delimiter (`delim_len` bytes) starts at `at`.
    #[inline]
    fn take_record(
        &mut self,
        at: usize,
        delim_len: usize,
        strip_cr: bool,
    ) -> Result<Option<Found>> {
        let mut end = at;
        if strip_cr && end > self.start && self.buf[end - 1] == b'\r' {
            end -= 1;
        }
        if end - self.start > self.max_line {
            return Err(Error::LineTooLong {
                limit: self.max_line,
            });
        }
        let found = Found {
            start: self.start,
            end,
        };
        // Consume without resetting offsets: the caller borrows `buf[start..end]`.
        self.consumed += (at + delim_len - self.start) as u64;
        self.start = at + delim_len;
        self.scanned = 0;
        Ok(Some(found))
    }

    /// End of stream during a search: what is buffered is the last record, without its
    /// terminator (none when nothing is).
    #[cold]
    fn take_last_record(&mut self) -> Result<Option<Found>> {
        let buffered = self.available_for_read();
        if buffered == 0 {
            return Ok(None);
        }
        // The search leaves room for a terminator that never came.
        if buffered > self.max_line {
            return Err(Error::LineTooLong {
                limit: self.max_line,
            });
        }
        let found = Found {
            start: self.start,
            end: self.end,
        };
        self.consumed += buffered as u64;
        self.start = self.end;
        self.scanned = 0;
        Ok(Some(found))
    }
}

/// Where `delim` (two bytes or more) first occurs in `hay`. Kept out of line: its searcher is
/// large, and the one-byte line search it would sit beside runs on every message.
#[inline(never)]
fn find_delimiter(hay: &[u8], delim: &[u8]) -> Option<usize> {
    memmem::find(hay, delim)
}

impl Drop for ByteReadChannel {
    fn drop(&mut self) {
        self.release();
        self.notify_finished();
        if let Some((b, h)) = self.budget.take() {
            b.leave(h);
        }
    }
}

/// The poll functions behind the I/O traits (`compat/futures_io.rs`, `compat/tokio.rs`).
#[cfg(any(feature = "futures-io", feature = "tokio"))]
impl ByteReadChannel {
    #[cfg(feature = "futures-io")] // tokio's read goes through the buffer (poll_fill_buf_io)
    pub(crate) fn poll_read_io(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_available(cx, buf).map_err(io::Error::from)
    }

    pub(crate) fn poll_fill_buf_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        if ready!(self.poll_ensure(cx, 1)).map_err(io::Error::from)? {
            Poll::Ready(Ok(self.buffered()))
        } else {
            Poll::Ready(Ok(&[]))
        }
    }

    pub(crate) fn consume_io(&mut self, amt: usize) {
        self.consume(amt);
    }
}

/// Hooks for `copy_to` (copy.rs), which moves bytes past the buffer with `splice`.
impl ByteReadChannel {
    /// The source the channel reads from.
    pub(super) fn source(&self) -> &Arc<dyn Source> {
        &self.src
    }

    /// Whether the next bytes may be taken from the source directly: nothing is buffered and
    /// the stream has not ended, failed or been cancelled.
    pub(super) fn can_splice(&self) -> bool {
        self.start == self.end && matches!(self.state, State::Open)
    }

    /// A copy starts: its waits get a full `socket_timeout`.
    pub(super) fn begin_copy(&mut self) {
        self.begin();
    }

    /// `fill_buf` as a poll function.
    pub(super) fn poll_fill_buf(&mut self, cx: &mut Context<'_>) -> Poll<Result<&[u8]>> {
        ready!(self.poll_ensure(cx, 1))?;
        Poll::Ready(Ok(self.buffered()))
    }

    /// Accounts for a read the copy made from the source past the buffer: `Ok(0)` is end of
    /// stream, bytes count as consumed, errors are kept like the channel's own.
    pub(super) fn spliced(&mut self, r: io::Result<usize>) -> Result<usize> {
        match r {
            Ok(0) => {
                self.state = State::Eof;
                self.notify_finished();
                Ok(0)
            }
            Ok(n) => {
                self.consumed += n as u64;
                self.wait.restart();
                Ok(n)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The source has nothing to read: waits (no buffer held) until the socket timeout.
    pub(super) fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.start == self.end {
            self.release();
        }
        super::poll_timed_out(&mut self.wait, cx, &*self.src)
    }
}
