//! Cooperative scheduling: a task may attempt only so many I/O operations before it yields.
//!
//! Without it, a connection whose reads always find data (a fast stream) would keep its loop
//! to itself and every other connection's latency would grow without bound. The loop grants a
//! budget before running each task; each I/O attempt spends a unit of it, and once it is gone
//! the next attempt wakes the task and returns `Pending`, putting it at the back of the run
//! queue. Off the loops (a foreign executor) the budget is unlimited: that executor has its
//! own rules.
//!
//! A task that has a long job to do piece by piece (a line search through megabytes that keep
//! arriving) can [`defer`] itself instead: it goes to the back of a second, low-priority lane
//! that the loop serves a few tasks of per iteration, after the tasks the last poll woke. So a
//! thousand peers streaming long lines cost an interactive connection one short turn each
//! iteration, not a thousand reads (issue 18).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::{Context, Waker};

/// I/O attempts a task may make per turn (tokio's budget is the same number, counting only the
/// operations that complete; here a turn's last attempt, the one that finds nothing and
/// waits, counts too).
pub(crate) const BUDGET: u32 = 128;
const UNLIMITED: u32 = u32::MAX;

/// Deferred tasks the loop wakes per iteration.
pub(crate) const DEFERRED_PER_TURN: usize = 4;

thread_local! {
    static LEFT: Cell<u32> = const { Cell::new(UNLIMITED) };
    /// The low-priority lane of the loop on this thread; `None` off the loops.
    static DEFERRED: RefCell<Option<VecDeque<Waker>>> = const { RefCell::new(None) };
    /// How many tasks wait in [`DEFERRED`]: what the loop checks every iteration.
    static WAITING: Cell<usize> = const { Cell::new(0) };
}

/// Opens the low-priority lane on this thread (a loop thread, before it runs tasks).
pub(crate) fn enter() {
    DEFERRED.with_borrow_mut(|d| *d = Some(VecDeque::new()));
}

/// Closes the lane: the deferred tasks' wakers are dropped (the loop is exiting and drops its
/// tasks anyway).
pub(crate) fn exit() {
    let lane = DEFERRED.with_borrow_mut(Option::take);
    WAITING.set(0);
    drop(lane);
}

/// Puts the current task at the back of the low-priority lane: it runs again once the loop
/// has served the tasks ahead of it there, each iteration after the ones I/O woke. Off the
/// loops it is an ordinary yield (woken at once).
pub(crate) fn defer(cx: &mut Context<'_>) {
    let queued = DEFERRED.with_borrow_mut(|d| match d {
        Some(lane) => {
            lane.push_back(cx.waker().clone());
            WAITING.set(lane.len());
            true
        }
        None => false,
    });
    if !queued {
        cx.waker().wake_by_ref();
    }
}

/// Whether deferred tasks wait (the loop must not block in `epoll_wait` then).
#[inline]
pub(crate) fn any_deferred() -> bool {
    WAITING.get() != 0
}

/// Wakes the first `n` deferred tasks (onto the ordinary run queue).
#[inline]
pub(crate) fn wake_deferred(n: usize) {
    if any_deferred() {
        wake_deferred_slow(n);
    }
}

#[inline(never)]
fn wake_deferred_slow(n: usize) {
    for _ in 0..n {
        let Some(w) = DEFERRED.with_borrow_mut(|d| d.as_mut().and_then(VecDeque::pop_front)) else {
            break;
        };
        WAITING.set(WAITING.get() - 1);
        w.wake();
    }
}

/// Gives back the lane's spare capacity (most of the loop's sockets left).
pub(crate) fn shrink() {
    DEFERRED.with_borrow_mut(|d| {
        if let Some(lane) = d {
            lane.shrink_to_fit();
        }
    });
}

/// Grants a fresh budget; the loop calls it before running each task.
pub(crate) fn reset() {
    LEFT.with(|l| l.set(BUDGET));
}

/// Whether the current task may do another operation, spending one unit of its budget if so
/// (an attempt costs a unit whether or not it makes progress: one thread-local access per
/// operation). When not, the task is woken so it runs again after the others queued on its
/// loop.
#[inline]
pub(crate) fn proceed(cx: &mut Context<'_>) -> bool {
    LEFT.with(|l| match l.get() {
        0 => {
            cx.waker().wake_by_ref();
            false
        }
        UNLIMITED => true,
        v => {
            l.set(v - 1);
            true
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::counting::counter;

    #[test]
    fn budget_runs_out_then_yields_with_a_wake() {
        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        // Off a loop: unlimited.
        for _ in 0..10_000 {
            assert!(proceed(&mut cx));
        }
        reset();
        for _ in 0..BUDGET {
            assert!(proceed(&mut cx));
        }
        assert!(!proceed(&mut cx));
        assert_eq!(count.get(), 1, "a yielding task is woken");
        reset();
        assert!(proceed(&mut cx));
        LEFT.with(|l| l.set(UNLIMITED));
    }

    #[test]
    fn deferred_tasks_wake_in_order_a_few_per_turn_and_off_the_loops_at_once() {
        let (counts, wakers): (Vec<_>, Vec<_>) = (0..6).map(|_| counter()).unzip();
        let woken = || -> Vec<usize> { counts.iter().map(|c| c.get()).collect() };
        // Off a loop there is no lane: deferring is an ordinary yield.
        defer(&mut Context::from_waker(&wakers[0]));
        assert_eq!(woken(), [1, 0, 0, 0, 0, 0]);
        assert!(!any_deferred());

        enter();
        for w in &wakers {
            defer(&mut Context::from_waker(w));
        }
        assert_eq!(woken(), [1, 0, 0, 0, 0, 0], "deferring wakes nobody yet");
        assert!(any_deferred());
        wake_deferred(4);
        assert_eq!(woken(), [2, 1, 1, 1, 0, 0], "the first four, in order");
        wake_deferred(4);
        assert_eq!(woken(), [2, 1, 1, 1, 1, 1]);
        assert!(!any_deferred());
        defer(&mut Context::from_waker(&wakers[5]));
        exit();
        assert!(!any_deferred(), "leaving the loop drops the lane");
        wake_deferred(4);
        assert_eq!(woken(), [2, 1, 1, 1, 1, 1]);
    }
}
