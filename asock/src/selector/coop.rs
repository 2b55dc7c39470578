//! Cooperative scheduling: a task may complete only so many I/O operations before it yields.
//!
//! Without it, a connection whose reads always find data (a fast stream) would keep its loop
//! to itself and every other connection's latency would grow without bound. The loop grants a
//! budget before running each task; [`IoSource::poll_io`](super::io::IoSource::poll_io) spends
//! it and, when it is gone, wakes the task and returns `Pending`, putting it at the back of the
//! run queue. Off the loops (a foreign executor) the budget is unlimited: that executor has its
//! own rules.

use std::cell::Cell;
use std::task::Context;

/// Operations a task may complete per turn (tokio uses the same number).
pub(crate) const BUDGET: u32 = 128;
const UNLIMITED: u32 = u32::MAX;

thread_local! {
    static LEFT: Cell<u32> = const { Cell::new(UNLIMITED) };
}

/// Grants a fresh budget; the loop calls it before running each task.
pub(crate) fn reset() {
    LEFT.with(|l| l.set(BUDGET));
}

/// Whether the current task may do another operation. When not, the task is woken so it runs
/// again after the others queued on its loop.
pub(crate) fn proceed(cx: &mut Context<'_>) -> bool {
    LEFT.with(|l| {
        if l.get() == 0 {
            cx.waker().wake_by_ref();
            false
        } else {
            true
        }
    })
}

/// Spends one unit after an operation made progress.
pub(crate) fn spend() {
    LEFT.with(|l| {
        let v = l.get();
        if v != UNLIMITED && v > 0 {
            l.set(v - 1);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn budget_runs_out_then_yields_with_a_wake() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        // Off a loop: unlimited.
        for _ in 0..10_000 {
            assert!(proceed(&mut cx));
            spend();
        }
        reset();
        for _ in 0..BUDGET {
            assert!(proceed(&mut cx));
            spend();
        }
        assert!(!proceed(&mut cx));
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "a yielding task is woken"
        );
        reset();
        assert!(proceed(&mut cx));
        LEFT.with(|l| l.set(UNLIMITED));
    }
}
