//! [`IoSource`]: a non-blocking descriptor tied to an event loop through a [`ScheduledIo`].
//!
//! Every socket type (TCP stream and listener, UDP, Unix stream, listener and datagram; TLS
//! through the stream it wraps) is a thin wrapper over one `IoSource`. It owns:
//! - the descriptor. [`close`](IoSource::close) releases the socket behind it *at once*, even
//!   while the value is shared: the descriptor is atomically pointed at a dead socket
//!   (`sys::close_in_place`), so the original closes (port freed, peer told) as soon as no
//!   syscall on it is in flight, while the number stays a valid descriptor until the owner
//!   drops it. The I/O path takes no lock for this;
//! - the lazy registration: the descriptor registers (edge-triggered, both directions) with the
//!   loop of the task that first waits on it, so a connection's readiness and its task share a
//!   thread;
//! - the cooperative budget check around each operation (`coop`).
//!
//! A loop keeps a reference to each registered source's shared part, so closing the
//! [`SelectorManager`](super::SelectorManager) can fail every wait and release every socket
//! still registered with it.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use super::event_loop::LoopShared;
use super::registration::{Direction, ReadyEvent, ScheduledIo};
use super::Handle;
use crate::error::Error;
use crate::util::lock;

/// What a loop holds of a registered source: its readiness, and a way to shut it.
pub(crate) trait LoopIo: Send + Sync {
    /// The readiness the loop updates.
    fn scheduled(&self) -> &ScheduledIo;
    /// Closes the source because its manager closed: fails every wait and releases the socket
    /// (its epoll instance is already gone).
    fn shut(&self);
}

/// The part of a source its loop shares.
struct Shared {
    io: ScheduledIo,
    fd: RawFd,
    state: Mutex<FdState>,
}

/// What may still be done to the descriptor; changed only under the lock, so a close and the
/// owner's drop never race (a closed-and-reused number is never touched).
#[derive(Default)]
struct FdState {
    /// The owner dropped (or is dropping) the descriptor.
    dropped: bool,
    /// The socket behind it was released (`close_in_place`).
    released: bool,
    /// The registration was removed from its loop.
    deregistered: bool,
}

impl Shared {
    /// Releases the socket behind the descriptor, once, while the owner still holds it.
    fn release(&self, state: &mut FdState) {
        if !state.dropped && !state.released {
            state.released = true;
            // Failure leaves the socket open until the owner drops it; waits fail regardless.
            let _ = crate::sys::close_in_place(self.fd);
        }
    }
}

impl LoopIo for Shared {
    fn scheduled(&self) -> &ScheduledIo {
        &self.io
    }

    fn shut(&self) {
        self.io.close();
        let mut state = lock(&self.state);
        state.deregistered = true;
        self.release(&mut state);
    }
}

struct Registration {
    lp: Arc<LoopShared>,
    key: usize,
}

/// A non-blocking descriptor driven by an event loop; see the module docs.
pub(crate) struct IoSource<S: AsRawFd> {
    inner: S,
    shared: Arc<Shared>,
    handle: Handle,
    registered: OnceLock<Result<Registration, io::ErrorKind>>,
}

impl<S: AsRawFd> IoSource<S> {
    /// Wraps a non-blocking descriptor. `initial` is the readiness assumed before the first
    /// event: [`ready::ALL`](super::registration::ready::ALL) lets the first operation try the
    /// syscall at once.
    pub(crate) fn new(inner: S, handle: &Handle, initial: usize) -> Self {
        IoSource {
            shared: Arc::new(Shared {
                io: ScheduledIo::new(initial),
                fd: inner.as_raw_fd(),
                state: Mutex::new(FdState::default()),
            }),
            inner,
            handle: handle.clone(),
            registered: OnceLock::new(),
        }
    }

    /// The wrapped descriptor. After [`close`](Self::close) it is a dead socket on which every
    /// operation fails; prefer [`with`](Self::with), which says `Error::Closed`.
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Runs `f` on the descriptor, or fails with `Error::Closed` once the source is closed.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&S) -> io::Result<R>) -> io::Result<R> {
        if self.is_closed() {
            return Err(closed_error());
        }
        f(&self.inner)
    }

    /// The manager whose loops drive this source.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    #[cold]
    fn registered(&self) -> io::Result<&Registration> {
        self.registered_with(|| self.handle.loop_for_current_thread())
    }

    /// Registers the source with `lp` (one of its manager's loops) now, instead of with the
    /// loop of the first task that waits on it. No effect when it is registered already.
    pub(crate) fn register_on(&self, lp: &Arc<LoopShared>) -> io::Result<()> {
        self.registered_with(|| lp.clone()).map(|_| ())
    }

    fn registered_with(&self, pick: impl FnOnce() -> Arc<LoopShared>) -> io::Result<&Registration> {
        let reg = self.registered.get_or_init(|| {
            if self.handle.is_closed() {
                return Err(io::ErrorKind::NotConnected);
            }
            let lp = pick();
            let shared: Arc<dyn LoopIo> = self.shared.clone();
            match lp.register(self.shared.fd, shared) {
                Ok(key) => Ok(Registration { lp, key }),
                Err(e) => Err(e.kind()),
            }
        });
        match reg {
            Ok(r) => Ok(r),
            Err(io::ErrorKind::NotConnected) => Err(closed_error()),
            Err(kind) => Err(io::Error::new(
                *kind,
                "cannot register socket with the event loop",
            )),
        }
    }

    /// Waits until `dir` may make progress. A closed source (or manager) ends the wait with
    /// `Error::Closed`.
    #[inline]
    pub(crate) fn poll_ready(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
    ) -> Poll<io::Result<ReadyEvent>> {
        if !matches!(self.registered.get(), Some(Ok(_))) {
            if let Err(e) = self.registered() {
                return Poll::Ready(Err(e));
            }
        }
        match self.shared.io.poll_ready(cx, dir) {
            Poll::Ready(ev) if ev.is_closed() => Poll::Ready(Err(closed_error())),
            Poll::Ready(ev) => Poll::Ready(Ok(ev)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Forgets readiness observed in `event` (the operation would block).
    pub(crate) fn clear_readiness(&self, event: ReadyEvent) {
        self.shared.io.clear(event);
    }

    /// Runs `op` when `dir` is ready, retrying on `WouldBlock`. When `drained` says the result
    /// shows the kernel buffer is now empty (a short read) the readiness is cleared too, which
    /// saves the extra syscall that would only return `WouldBlock`.
    ///
    /// Each completed operation spends one unit of the task's cooperative budget; with none
    /// left the task yields to the others on its loop (see `coop`).
    #[inline]
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
            let r = op(&self.inner);
            if self.is_closed() {
                // Closed while the syscall ran (it may have hit the dead socket, or seen the
                // end of stream the close itself caused): a closed source only says so.
                return Poll::Ready(Err(closed_error()));
            }
            match r {
                Ok(r) => {
                    if drained(&r) {
                        self.clear_readiness(event);
                    }
                    return Poll::Ready(Ok(r));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear_readiness(event),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Closes the source now: every pending and later wait ends with `Error::Closed`, the
    /// registration is removed, and the socket is released (see the module docs). Idempotent.
    pub(crate) fn close(&self) {
        self.close_with(|_| {});
    }

    /// [`close`](Self::close), running `last` on the socket after every waiter was told and
    /// before the socket is released (a graceful `shutdown`, say). `last` runs at most once.
    pub(crate) fn close_with(&self, last: impl FnOnce(&S)) {
        self.shared.io.close();
        let mut state = lock(&self.shared.state);
        if !state.released && !state.dropped {
            last(&self.inner);
        }
        self.deregister(&mut state);
        self.shared.release(&mut state);
    }

    /// [`close`](Self::close) for a source on which nothing more can move (a stream that read
    /// the peer's end of stream and shut its write half): every wait ends with `Error::Closed`
    /// and the registration goes at once, but the socket is left for the owner's drop to
    /// close, with no `dup3` onto the dead socket. A later [`close`](Self::close) still
    /// releases it in place.
    pub(crate) fn close_finished(&self) {
        self.shared.io.close();
        let mut state = lock(&self.shared.state);
        self.deregister(&mut state);
    }

    /// Whether [`close`](Self::close) was called (or the manager closed it).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.io.is_closed()
    }

    /// Ready once the source is closed, by [`close`](Self::close) or by its manager.
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.shared.io.poll_closed(cx)
    }

    fn deregister(&self, state: &mut FdState) {
        if state.deregistered || state.dropped {
            return;
        }
        state.deregistered = true;
        if let Some(Ok(reg)) = self.registered.get() {
            reg.lp.deregister(self.shared.fd, reg.key);
        }
    }
}

impl<S: AsRawFd> Drop for IoSource<S> {
    fn drop(&mut self) {
        // Before `inner` closes the descriptor, so neither epoll nor a late close ever sees a
        // reused number.
        let mut state = lock(&self.shared.state);
        self.deregister(&mut state);
        state.dropped = true;
    }
}

/// The error a wait on a locally closed source ends with.
pub(crate) fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, Error::Closed("socket"))
}
