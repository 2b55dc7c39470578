//! Per-loop timers: a binary heap of deadlines, and the [`Sleep`] future built on it.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use atomic_waker::AtomicWaker;

use super::event_loop::with_current;

/// One armed timer, shared between its [`Sleep`] and the heap of the loop that fires it.
pub(crate) struct TimerEntry {
    deadline: Instant,
    fired: AtomicBool,
    cancelled: AtomicBool,
    waker: AtomicWaker,
}

impl TimerEntry {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.waker.wake();
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
}

/// A future that completes at a deadline; see [`crate::time::sleep`].
///
/// It arms its timer on the loop of the thread that first polls it, or on asock's background
/// loop when polled from another executor.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    entry: Option<Arc<TimerEntry>>,
    /// The manager whose loop keeps the timer when polled outside any loop (default: the
    /// lazily started background manager).
    home: Option<super::SelectorManager>,
}

impl std::fmt::Debug for TimerEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerEntry")
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Sleep {
    pub(crate) fn until(deadline: Instant) -> Sleep {
        Sleep {
            deadline,
            entry: None,
            home: None,
        }
    }

    /// A sleep whose timer, when polled outside any loop, goes to `manager`'s loops rather than
    /// the background manager. Code that must keep working when the process is out of
    /// descriptors uses it: starting the background loop then would fail.
    pub(crate) fn until_on(deadline: Instant, manager: &super::SelectorManager) -> Sleep {
        Sleep {
            deadline,
            entry: None,
            home: Some(manager.clone()),
        }
    }

    /// When this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline; the sleep is pending again until then.
    pub fn reset(&mut self, deadline: Instant) {
        self.cancel();
        self.deadline = deadline;
    }

    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    fn cancel(&mut self) {
        if let Some(entry) = self.entry.take() {
            entry.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(entry) = &self.entry {
            entry.waker.register(cx.waker());
            if entry.fired.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            return Poll::Pending;
        }
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let entry = Arc::new(TimerEntry {
            deadline: self.deadline,
            fired: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        entry.waker.register(cx.waker());
        let remote = with_current(|cur| match cur {
            Some(local) => {
                local.add_timer(entry.clone());
                None
            }
            None => Some(entry.clone()),
        });
        if let Some(entry) = remote {
            match self.home.as_ref().or_else(|| super::background()) {
                Some(m) => m.random_loop().inject_timer(entry),
                None => wake_from_thread(entry),
            }
        }
        self.entry = Some(entry);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Last resort when no event loop can run a timer (the background loop could not start): a
/// plain thread sleeps until the deadline. If even that thread cannot start, the timer never
/// fires; it does not spin and does not panic.
fn wake_from_thread(entry: Arc<TimerEntry>) {
    let _ = std::thread::Builder::new()
        .name("asock-timer".into())
        .spawn(move || {
            std::thread::sleep(entry.deadline.saturating_duration_since(Instant::now()));
            entry.fire();
        });
}
