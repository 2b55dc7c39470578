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
