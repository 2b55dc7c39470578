//! The registration leaf: readiness of one descriptor and the tasks waiting on it.
//!
//! [`ScheduledIo`] is what every socket type waits through (tokio's `ScheduledIo`, async-io's
//! `Source`). It holds:
//! - **readiness per direction** in one atomic, with a *tick* bumped by every event, so that an
//!   operation that hit `WouldBlock` clears only the readiness it saw, never an event that
//!   arrived meanwhile;
//! - **a list of waiters per direction**: any number of tasks may wait on one socket (several
//!   `accept()` or `receive()` callers, `incoming()` and `outgoing()` at once). A readiness edge
//!   wakes every waiter of its direction; each retries its operation and the ones that find
//!   `WouldBlock` wait again;
//! - the **close** hook: [`close`](ScheduledIo::close) makes every pending and later wait end
//!   with `Error::Closed` and wakes every waiter of both directions.
//!
//! It knows nothing of loops, sockets or timers; `source.rs` ties it to a loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Readiness bits, kept in the low bits of [`ScheduledIo`]'s state word.
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

/// Some task waits to read (set and cleared under the waiter lock): lets an event skip the lock
/// when nobody waits in its direction.
const READ_WAITERS: usize = 16;
/// Some task waits to write.
const WRITE_WAITERS: usize = 32;
/// Some task waits for the close.
const CLOSE_WAITERS: usize = 64;

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
    /// The bits that end a wait in this direction.
    fn mask(self) -> usize {
        match self {
            Direction::Read => READABLE | READ_CLOSED | CLOSED,
            Direction::Write => WRITABLE | CLOSED,
        }
    }

    /// The bits an operation that would block may clear.
    fn clearable(self) -> usize {
        match self {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        }
    }

    /// The flag that says someone waits in this direction.
    fn waiters_flag(self) -> usize {
        match self {
            Direction::Read => READ_WAITERS,
            Direction::Write => WRITE_WAITERS,
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
    fn at(state: usize, dir: Direction) -> ReadyEvent {
        ReadyEvent {
            tick: state >> TICK_SHIFT,
            bits: state & BITS_MASK,
            dir,
        }
    }

    /// The source was closed locally.
    pub(crate) fn is_closed(&self) -> bool {
        self.bits & CLOSED != 0
    }
}

/// The tasks waiting on one descriptor, per direction.
#[derive(Default)]
struct Waiters {
    read: WaitList,
    write: WaitList,
    /// Tasks waiting for the close itself (`await_closed`).
    closed: Vec<Waker>,
}

impl Waiters {
    fn list(&mut self, dir: Direction) -> &mut WaitList {
        match dir {
            Direction::Read => &mut self.read,
            Direction::Write => &mut self.write,
        }
    }
}

/// The wakers of one direction: the first in a slot of its own (a connection has one task per
/// direction, so that is the common case and costs no vector), any others after it.
#[derive(Default)]
struct WaitList {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl WaitList {
    /// Adds the task of `waker` unless it waits already; `true` if it was added.
    fn add(&mut self, waker: &Waker) -> bool {
        match &self.first {
            None => self.first = Some(waker.clone()),
            Some(w) if w.will_wake(waker) => return false,
            Some(_) if self.rest.iter().any(|w| w.will_wake(waker)) => return false,
            Some(_) => self.rest.push(waker.clone()),
        }
        true
    }

    /// Takes back the waker [`add`](Self::add) added last.
    fn undo_add(&mut self) {
        if self.rest.pop().is_none() {
            self.first = None;
        }
    }

    /// Moves every waker into `wake`.
    fn drain_into(&mut self, wake: &mut Vec<Waker>) {
        if let Some(w) = self.first.take() {
            wake.push(w);
            if !self.rest.is_empty() {
                wake.append(&mut self.rest);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }
}

/// Readiness state and waiters of one descriptor; the event loop updates it.
pub(crate) struct ScheduledIo {
    /// Low 16 bits: readiness; the rest: a tick bumped by every event.
    readiness: AtomicUsize,
    waiters: Mutex<Waiters>,
}

impl ScheduledIo {
    /// State for a new descriptor; `initial` is the readiness assumed before the first event.
    pub(crate) fn new(initial: usize) -> Self {
        ScheduledIo {
            readiness: AtomicUsize::new(initial & BITS_MASK),
            waiters: Mutex::new(Waiters::default()),
        }
    }

    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        // The lists stay consistent whatever panicked while they were held.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an event from the poller and moves the wakers to wake into `wake`.
    pub(crate) fn set_readiness(&self, event: &mio::event::Event, wake: &mut Vec<Waker>) {
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
        self.wake(bits, wake);
    }

    /// Adds `bits` (bumping the tick) and moves the waiters they concern into `wake`.
    fn wake(&self, bits: usize, wake: &mut Vec<Waker>) {
        let state = self.add(bits);
        let mut concerned = 0;
        if bits & (READABLE | CLOSED) != 0 {
            concerned |= READ_WAITERS;
        }
        if bits & (WRITABLE | CLOSED) != 0 {
            concerned |= WRITE_WAITERS;
        }
        if bits & CLOSED != 0 {
            concerned |= CLOSE_WAITERS;
        }
        // The flags are set by a waiter's own read-modify-write of the state, so either this
        // `add` saw the flag, or the waiter saw these bits and did not wait.
        if state & concerned == 0 {
            return;
        }
        let mut w = self.waiters();
        if concerned & READ_WAITERS != 0 {
            w.read.drain_into(wake);
        }
        if concerned & WRITE_WAITERS != 0 {
            w.write.drain_into(wake);
        }
        if concerned & CLOSE_WAITERS != 0 {
            wake.append(&mut w.closed);
        }
        self.readiness.fetch_and(!concerned, Ordering::AcqRel);
    }

    /// Adds `bits` and bumps the tick; returns the new state.
    fn add(&self, bits: usize) -> usize {
        let prev = self
            .readiness
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                let tick = (cur >> TICK_SHIFT).wrapping_add(1);
                Some((tick << TICK_SHIFT) | (cur & BITS_MASK) | bits)
            })
            .unwrap_or_else(|cur| cur);
        (((prev >> TICK_SHIFT).wrapping_add(1)) << TICK_SHIFT) | (prev & BITS_MASK) | bits
    }

    /// Ready when `dir` may make progress; otherwise the task joins the waiters of `dir`.
    #[inline]
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<ReadyEvent> {
        let cur = self.readiness.load(Ordering::Acquire);
        if cur & dir.mask() != 0 {
            return Poll::Ready(ReadyEvent::at(cur, dir));
        }
        self.wait(cx, dir)
    }

    /// The slow path of [`poll_ready`](Self::poll_ready): join the waiters, unless readiness
    /// arrived meanwhile.
    #[inline(never)]
    fn wait(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<ReadyEvent> {
        let mut w = self.waiters();
        let new = w.list(dir).add(cx.waker());
        // Flag and check in one step: an event either comes after it (and sees the flag) or
        // before it (and its bits are seen here).
        let cur = self
            .readiness
            .fetch_or(dir.waiters_flag(), Ordering::AcqRel);
        if cur & dir.mask() != 0 {
            if new {
                w.list(dir).undo_add();
            }
            return Poll::Ready(ReadyEvent::at(cur, dir));
        }
        Poll::Pending
    }

    /// Clears the readiness `event` reported, unless a newer event arrived since.
    pub(crate) fn clear(&self, event: ReadyEvent) {
        let _ = self
            .readiness
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                if cur >> TICK_SHIFT != event.tick {
                    return None;
                }
                Some(cur & !(event.dir.clearable() & event.bits))
            });
    }

    /// Marks the descriptor closed and wakes every waiter: their waits end with
    /// `Error::Closed`, and so does every later one.
    pub(crate) fn close(&self) {
        let mut wake = Vec::new();
        self.wake(CLOSED, &mut wake);
        for w in wake {
            w.wake();
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.readiness.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Ready once [`close`](Self::close) was called; until then the task waits for it.
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_closed() {
            return Poll::Ready(());
        }
        let mut w = self.waiters();
        if !w.closed.iter().any(|x| x.will_wake(cx.waker())) {
            w.closed.push(cx.waker().clone());
        }
        if self.readiness.fetch_or(CLOSE_WAITERS, Ordering::AcqRel) & CLOSED != 0 {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// How many tasks wait in `dir` (tests).
    #[cfg(test)]
    fn waiting(&self, dir: Direction) -> usize {
        self.waiters().list(dir).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::counting::{counter, Count};
    use std::sync::Arc;

    fn woken(c: &Count) -> usize {
        c.get()
    }

    #[test]
    fn readiness_set_between_load_and_clear_is_never_lost() {
        let io = ScheduledIo::new(READABLE);
        let (_, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let Poll::Ready(seen) = io.poll_ready(&mut cx, Direction::Read) else {
            panic!("initially readable");
        };
        // An event arrives after the operation observed readiness but before it cleared it
        // (its syscall returned WouldBlock just before the kernel queued new bytes).
        let mut wake = Vec::new();
        io.wake(READABLE, &mut wake);
        io.clear(seen);
        assert!(
            io.poll_ready(&mut cx, Direction::Read).is_ready(),
            "the newer event survives the stale clear"
        );
        // Without an event in between, the clear takes effect.
        let Poll::Ready(seen) = io.poll_ready(&mut cx, Direction::Read) else {
            unreachable!()
        };
        io.clear(seen);
        assert!(io.poll_ready(&mut cx, Direction::Read).is_pending());
    }

    #[test]
    fn clearing_one_direction_keeps_the_other() {
        let io = ScheduledIo::new(ALL);
        let (_, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let Poll::Ready(seen) = io.poll_ready(&mut cx, Direction::Read) else {
            unreachable!()
        };
        io.clear(seen);
        assert!(io.poll_ready(&mut cx, Direction::Read).is_pending());
        assert!(io.poll_ready(&mut cx, Direction::Write).is_ready());
    }

    #[test]
    fn read_closed_is_sticky_and_not_clearable() {
        let io = ScheduledIo::new(0);
        let (_, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        io.wake(READABLE | READ_CLOSED, &mut Vec::new());
        let Poll::Ready(seen) = io.poll_ready(&mut cx, Direction::Read) else {
            unreachable!()
        };
        io.clear(seen);
        assert!(io.poll_ready(&mut cx, Direction::Read).is_ready());
    }

    #[test]
    fn every_waiter_of_a_direction_is_woken_by_its_edge() {
        let io = ScheduledIo::new(0);
        let readers: Vec<_> = (0..5).map(|_| counter()).collect();
        let (writer, wwaker) = counter();
        for (_, w) in &readers {
            assert!(io
                .poll_ready(&mut Context::from_waker(w), Direction::Read)
                .is_pending());
        }
        assert!(io
            .poll_ready(&mut Context::from_waker(&wwaker), Direction::Write)
            .is_pending());
        assert_eq!(io.waiting(Direction::Read), 5);
        let mut wake = Vec::new();
        io.wake(READABLE, &mut wake);
        assert_eq!(wake.len(), 5, "one readable edge wakes all five readers");
        wake.into_iter().for_each(Waker::wake);
        for (c, _) in &readers {
            assert_eq!(woken(c), 1);
        }
        assert_eq!(woken(&writer), 0, "the writer waits for a writable edge");
        assert_eq!(io.waiting(Direction::Read), 0);
        assert_eq!(io.waiting(Direction::Write), 1);
    }

    #[test]
    fn a_wait_list_keeps_each_task_once_and_undoes_the_last_add() {
        let (_, a) = counter();
        let (_, b) = counter();
        let (_, c) = counter();
        let mut list = WaitList::default();
        assert!(list.add(&a));
        assert!(!list.add(&a), "the first waiter again");
        assert!(list.add(&b));
        assert!(list.add(&c));
        assert!(!list.add(&b), "a later waiter again");
        assert_eq!(list.len(), 3);
        list.undo_add();
        assert_eq!(list.len(), 2);
        let mut woken = Vec::new();
        list.drain_into(&mut woken);
        assert_eq!(woken.len(), 2);
        assert!(woken[0].will_wake(&a) && woken[1].will_wake(&b), "in order");
        assert_eq!(list.len(), 0);
        assert!(list.add(&c));
        list.undo_add();
        assert_eq!(list.len(), 0, "undoing the only waiter empties the slot");
    }

    #[test]
    fn a_task_polling_twice_waits_once() {
        let io = ScheduledIo::new(0);
        let (c, w) = counter();
        for _ in 0..3 {
            assert!(io
                .poll_ready(&mut Context::from_waker(&w), Direction::Read)
                .is_pending());
        }
        assert_eq!(io.waiting(Direction::Read), 1);
        let mut wake = Vec::new();
        io.wake(READABLE, &mut wake);
        wake.into_iter().for_each(Waker::wake);
        assert_eq!(woken(&c), 1);
    }

    #[test]
    fn close_wakes_every_waiter_of_both_directions_and_sticks() {
        let io = ScheduledIo::new(0);
        let all: Vec<_> = (0..8).map(|_| counter()).collect();
        for (i, (_, w)) in all.iter().enumerate() {
            let dir = if i % 2 == 0 {
                Direction::Read
            } else {
                Direction::Write
            };
            assert!(io.poll_ready(&mut Context::from_waker(w), dir).is_pending());
        }
        let (closer, cw) = counter();
        assert!(io.poll_closed(&mut Context::from_waker(&cw)).is_pending());
        io.close();
        for (c, _) in &all {
            assert_eq!(woken(c), 1, "close wakes every waiter");
        }
        assert_eq!(woken(&closer), 1, "and whoever awaits the close");
        assert!(io.poll_closed(&mut Context::from_waker(&cw)).is_ready());
        assert!(io.is_closed());
        let (_, w) = counter();
        for dir in [Direction::Read, Direction::Write] {
            match io.poll_ready(&mut Context::from_waker(&w), dir) {
                Poll::Ready(ev) => {
                    assert!(ev.is_closed());
                    io.clear(ev);
                }
                Poll::Pending => panic!("a closed source is always ready (with an error)"),
            }
        }
        assert!(io.is_closed(), "clearing never clears CLOSED");
    }

    #[test]
    fn concurrent_events_and_clears_never_lose_an_edge() {
        // A writer thread keeps raising READABLE; the reader clears what it saw. After the
        // writer's last event the reader must still see readiness.
        let io = Arc::new(ScheduledIo::new(0));
        let raiser = {
            let io = io.clone();
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    io.wake(READABLE, &mut Vec::new());
                }
            })
        };
        let (_, w) = counter();
        let mut cx = Context::from_waker(&w);
        for _ in 0..20_000 {
            if let Poll::Ready(ev) = io.poll_ready(&mut cx, Direction::Read) {
                io.clear(ev);
            }
        }
        raiser.join().unwrap();
        io.wake(READABLE, &mut Vec::new());
        assert!(io.poll_ready(&mut cx, Direction::Read).is_ready());
    }
}
