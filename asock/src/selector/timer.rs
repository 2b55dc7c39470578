//! Per-loop timers: a binary heap of deadlines. The public [`Sleep`](crate::time::Sleep)
//! future is built on it in `crate::time`.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use atomic_waker::AtomicWaker;

/// One armed timer, shared between its owner (a sleep) and the heap of the loop that fires it.
pub(crate) struct TimerEntry {
    deadline: Instant,
    fired: AtomicBool,
    cancelled: AtomicBool,
    /// The loop that held it closed before the deadline: the owner must re-arm it elsewhere.
    orphaned: AtomicBool,
    waker: AtomicWaker,
}

impl TimerEntry {
    /// A timer for `deadline` that wakes `waker`.
    pub(crate) fn new(deadline: Instant, waker: &Waker) -> Arc<TimerEntry> {
        let entry = Arc::new(TimerEntry {
            deadline,
            fired: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            orphaned: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        entry.waker.register(waker);
        entry
    }

    /// The deadline passed: wakes the owner.
    pub(crate) fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// The loop closed first: wakes the owner, which finds [`is_orphaned`](Self::is_orphaned).
    pub(crate) fn orphan(&self) {
        self.orphaned.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// When it fires.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline passed.
    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Whether the loop closed before the deadline.
    pub(crate) fn is_orphaned(&self) -> bool {
        self.orphaned.load(Ordering::Acquire)
    }

    /// The owner no longer wants it; the heap drops it lazily.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Replaces the waker to wake.
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }
}

impl std::fmt::Debug for TimerEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerEntry")
            .field("deadline", &self.deadline)
            .finish()
    }
}

struct HeapItem {
    deadline: Instant,
    seq: u64,
    timer: Arc<TimerEntry>,
}

impl PartialEq for HeapItem {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for HeapItem {}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapItem {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Reversed: BinaryHeap is a max-heap and the earliest deadline must come out first.
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

/// The timers of one loop. Cancelled timers are dropped lazily when they reach the top, or in a
/// sweep when they outnumber the live ones.
#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<HeapItem>,
    seq: u64,
}

impl TimerHeap {
    pub(crate) fn push(&mut self, timer: Arc<TimerEntry>) {
        self.seq += 1;
        self.heap.push(HeapItem {
            deadline: timer.deadline,
            seq: self.seq,
            timer,
        });
        if self.heap.len() >= 4096 && self.heap.len().is_power_of_two() {
            self.heap
                .retain(|item| !item.timer.cancelled.load(Ordering::Relaxed));
        }
    }

    /// The earliest deadline still armed.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|item| item.deadline)
    }

    /// Fires every timer whose deadline is at or before `now`, earliest first.
    pub(crate) fn fire_expired(&mut self, now: Instant) {
        while let Some(top) = self.heap.peek() {
            if top.deadline > now {
                break;
            }
            if let Some(item) = self.heap.pop() {
                if !item.timer.cancelled.load(Ordering::Relaxed) {
                    item.timer.fire();
                }
            }
        }
    }

    /// The loop is closing: every live timer is handed back to its owner.
    pub(crate) fn orphan_all(&mut self) {
        for item in std::mem::take(&mut self.heap) {
            if !item.timer.cancelled.load(Ordering::Relaxed) {
                item.timer.orphan();
            }
        }
    }

    /// Timers held, cancelled ones included (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::counting::counter;
    use std::time::Duration;

    #[test]
    fn fires_in_deadline_order_and_only_when_due() {
        let (count, waker) = counter();
        let t0 = Instant::now();
        let mut heap = TimerHeap::default();
        let late = TimerEntry::new(t0 + Duration::from_secs(2), &waker);
        let early = TimerEntry::new(t0 + Duration::from_secs(1), &waker);
        let same = TimerEntry::new(t0 + Duration::from_secs(1), &waker);
        heap.push(late.clone());
        heap.push(early.clone());
        heap.push(same.clone());
        assert_eq!(heap.next_deadline(), Some(t0 + Duration::from_secs(1)));
        heap.fire_expired(t0);
        assert!(!early.is_fired());
        heap.fire_expired(t0 + Duration::from_secs(1));
        assert!(early.is_fired() && same.is_fired() && !late.is_fired());
        assert_eq!(count.get(), 2);
        assert_eq!(heap.next_deadline(), Some(t0 + Duration::from_secs(2)));
        heap.fire_expired(t0 + Duration::from_secs(5));
        assert!(late.is_fired());
        assert_eq!(heap.next_deadline(), None);
    }

    #[test]
    fn cancelled_timers_never_fire_and_are_swept() {
        let (count, waker) = counter();
        let t0 = Instant::now();
        let mut heap = TimerHeap::default();
        for i in 0..5000u64 {
            let t = TimerEntry::new(t0 + Duration::from_millis(i), &waker);
            t.cancel();
            heap.push(t);
        }
        assert!(heap.len() < 5000, "a sweep dropped cancelled timers");
        heap.fire_expired(t0 + Duration::from_secs(10));
        assert_eq!(count.get(), 0);
    }

    #[test]
    fn orphan_all_hands_live_timers_back() {
        let (count, waker) = counter();
        let mut heap = TimerHeap::default();
        let live = TimerEntry::new(Instant::now() + Duration::from_secs(60), &waker);
        let gone = TimerEntry::new(Instant::now() + Duration::from_secs(60), &waker);
        gone.cancel();
        heap.push(live.clone());
        heap.push(gone.clone());
        heap.orphan_all();
        assert!(live.is_orphaned() && !live.is_fired());
        assert!(!gone.is_orphaned());
        assert_eq!(count.get(), 1);
        assert_eq!(heap.next_deadline(), None);
    }
}
