//! Small helpers shared across the crate.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Locks `m`, ignoring poisoning: every mutex in asock guards data (queues, lists, slabs) that
/// a panic cannot leave half-updated in a way that matters.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `d` in nanoseconds, saturating, and at least 1 (0 means "none" where it is stored).
pub(crate) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// Test wakers that count their wake-ups.
#[cfg(test)]
pub(crate) mod counting {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    /// How many times a [`counter`] waker was woken.
    pub(crate) struct Count(AtomicUsize);

    impl Count {
        /// The wake-ups so far.
        pub(crate) fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A waker and the count of its wake-ups.
    pub(crate) fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }
}
