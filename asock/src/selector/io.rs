//! Readiness of one registered file descriptor, and the registration that ties it to a loop.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use atomic_waker::AtomicWaker;

use super::event_loop::LoopShared;
use super::SelectorManager;
use crate::error::Error;

/// Readiness bits, kept in the low bits of [`ScheduledIo::readiness`].
pub(crate) mod ready {
    /// Reading may make progress.
    pub const READABLE: usize = 1;
    /// Writing may make progress.
    pub const WRITABLE: usize = 2;
    /// The peer shut its write half: reads return end of stream from now on (sticky).
    pub const READ_CLOSED: usize = 4;
    /// Closed locally: every wait ends with [`Error::Closed`](crate::Error::Closed) (sticky).
    pub const CLOSED: usize = 8;
    /// Both directions, for sources that start out optimistic.
    pub const ALL: usize = READABLE | WRITABLE;
}
use ready::*;

const BITS_MASK: usize = 0xffff;
const TICK_SHIFT: usize = 16;

/// A direction of I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Reading, receiving, accepting.
    Read,
    /// Writing, sending, connecting.
    Write,
}

impl Direction {
    fn mask(self) -> usize {
        match self {
            Direction::Read => READABLE | READ_CLOSED | CLOSED,
            Direction::Write => WRITABLE | CLOSED,
        }
    }
    fn clearable(self) -> usize {
        match self {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        }
    }
}

/// Readiness that was observed, with the event generation ("tick") it was observed at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadyEvent {
    tick: usize,
    bits: usize,
    dir: Direction,
}

impl ReadyEvent {
    /// The source was closed locally.
    pub(crate) fn is_closed(&self) -> bool {
        self.bits & CLOSED != 0
    }
}

/// Readiness state and waiters of one file descriptor; the event loop updates it.
pub(crate) struct ScheduledIo {
    /// Low 16 bits: readiness; the rest: a tick bumped by every event.
    readiness: AtomicUsize,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl ScheduledIo {
    fn new(initial: usize) -> Self {
        ScheduledIo {
            readiness: AtomicUsize::new(initial),
            reader: AtomicWaker::new(),
            writer: AtomicWaker::new(),
        }
    }

    /// Records an event from the poller and collects the wakers to wake.
    pub(crate) fn set_readiness(&self, event: &mio::event::Event, wakers: &mut Vec<Waker>) {
        let mut bits = 0;
        if event.is_readable() || event.is_error() {
            bits |= READABLE;
        }
        if event.is_read_closed() {
            bits |= READABLE | READ_CLOSED;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            bits |= WRITABLE;
        }
        self.add(bits);
        if bits & READABLE != 0 {
            wakers.extend(self.reader.take());
        }
        if bits & WRITABLE != 0 {
            wakers.extend(self.writer.take());
        }
    }

    fn add(&self, bits: usize) {
        let _ = self
            .readiness
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                let tick = (cur >> TICK_SHIFT).wrapping_add(1);
                Some((tick << TICK_SHIFT) | (cur & BITS_MASK) | bits)
            });
    }

    fn poll_ready(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<ReadyEvent> {
        let event = |cur: usize| ReadyEvent {
            tick: cur >> TICK_SHIFT,
            bits: cur & BITS_MASK,
            dir,
        };
        let cur = self.readiness.load(Ordering::Acquire);
        if cur & dir.mask() != 0 {
            return Poll::Ready(event(cur));
        }
        let waker = match dir {
            Direction::Read => &self.reader,
            Direction::Write => &self.writer,
        };
        waker.register(cx.waker());
        // An event may have landed between the load and the registration.
        let cur = self.readiness.load(Ordering::Acquire);
        if cur & dir.mask() != 0 {
            Poll::Ready(event(cur))
        } else {
            Poll::Pending
        }
    }

    /// Clears the readiness `event` reported, unless a newer event arrived since.
    fn clear(&self, event: ReadyEvent) {
        let _ = self
            .readiness
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                if cur >> TICK_SHIFT != event.tick {
                    return None;
                }
                Some(cur & !(event.dir.clearable() & event.bits))
            });
    }

    fn close(&self) {
        self.add(CLOSED);
        self.reader.wake();
        self.writer.wake();
    }
}

struct Registered {
    lp: Arc<LoopShared>,
    key: usize,
    io: Arc<ScheduledIo>,
}

/// A file descriptor with non-blocking I/O driven by an event loop.
///
/// The descriptor registers (edge-triggered, for both directions) with the loop of the task that
/// first waits on it, so a connection's readiness and its task share a thread. Dropping the
/// source deregisters it before the descriptor closes.
pub(crate) struct IoSource<S: AsRawFd> {
    inner: S,
    manager: SelectorManager,
    initial: usize,
    registered: OnceLock<Result<Registered, io::ErrorKind>>,
}

impl<S: AsRawFd> IoSource<S> {
    /// Wraps a non-blocking descriptor. `initial` is the readiness assumed before the first
    /// event: [`ready::ALL`] lets the first operation try the syscall at once.
    pub(crate) fn new(inner: S, manager: &SelectorManager, initial: usize) -> Self {
        IoSource {
            inner,
            manager: manager.clone(),
            initial,
            registered: OnceLock::new(),
        }
    }

    /// The wrapped descriptor.
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The manager whose loops drive this source.
    pub(crate) fn manager(&self) -> &SelectorManager {
        &self.manager
    }

    fn registered(&self) -> io::Result<&Registered> {
        let reg = self.registered.get_or_init(|| {
            let lp = self.manager.loop_for_current_thread();
            let io = Arc::new(ScheduledIo::new(self.initial));
            match lp.register(self.inner.as_raw_fd(), io.clone()) {
                Ok(key) => Ok(Registered { lp, key, io }),
                Err(e) => Err(e.kind()),
            }
        });
        reg.as_ref()
            .map_err(|kind| io::Error::new(*kind, "cannot register socket with the event loop"))
    }

    /// Waits until `dir` may make progress.
    pub(crate) fn poll_ready(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
    ) -> Poll<io::Result<ReadyEvent>> {
        let reg = match self.registered() {
            Ok(r) => r,
            Err(e) => return Poll::Ready(Err(e)),
        };
        match reg.io.poll_ready(cx, dir) {
            Poll::Ready(ev) if ev.is_closed() => Poll::Ready(Err(closed_error())),
            Poll::Ready(ev) => Poll::Ready(Ok(ev)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Forgets readiness observed in `event` (the operation would block).
    pub(crate) fn clear_readiness(&self, event: ReadyEvent) {
        if let Some(Ok(reg)) = self.registered.get() {
            reg.io.clear(event);
        }
    }

    /// Runs `op` when `dir` is ready, retrying on `WouldBlock`. When `drained` says the result
    /// shows the kernel buffer is now empty (a short read) the readiness is cleared too, which
    /// saves the extra syscall that would only return `WouldBlock`.
    ///
    /// Each completed operation spends one unit of the task's cooperative budget; with none
    /// left the task yields to the others on its loop (see `coop`).
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut op: impl FnMut(&S) -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        if !super::coop::proceed(cx) {
            return Poll::Pending;
        }
        loop {
            let event = match self.poll_ready(cx, dir) {
                Poll::Ready(Ok(ev)) => ev,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            match op(&self.inner) {
                Ok(r) => {
                    if drained(&r) {
                        self.clear_readiness(event);
                    }
                    super::coop::spend();
                    return Poll::Ready(Ok(r));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear_readiness(event),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Marks the source closed: every pending and future wait ends with `Error::Closed`.
    pub(crate) fn close(&self) {
        if let Ok(reg) = self.registered() {
            reg.io.close();
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        match self.registered.get() {
            Some(Ok(reg)) => reg.io.readiness.load(Ordering::Acquire) & CLOSED != 0,
            _ => false,
        }
    }
}

impl<S: AsRawFd> Drop for IoSource<S> {
    fn drop(&mut self) {
        if let Some(Ok(reg)) = self.registered.get() {
            reg.lp.deregister(self.inner.as_raw_fd(), reg.key);
        }
    }
}

/// The error a wait on a locally closed source ends with.
pub(crate) fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, Error::Closed("socket"))
}
