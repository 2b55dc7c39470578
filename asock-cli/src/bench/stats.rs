//! Counters: per loop thread (one writer each, no shared cache line), latencies in a per-thread
//! HDR histogram; and the state every connection task shares with the main thread.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Instant;

use hdrhistogram::Histogram;

pub const WARMUP: u8 = 0;
pub const MEASURE: u8 = 1;
pub const STOP: u8 = 2;
/// Counters of one loop thread. Only that thread writes them.
pub struct ThreadStats {
    pub msgs: AtomicU64,
    pub bytes: AtomicU64,
    pub hist: Mutex<Histogram<u64>>,
}

pub static REGISTRY: Mutex<Vec<Arc<ThreadStats>>> = Mutex::new(Vec::new());

thread_local! {
    static STATS: Arc<ThreadStats> = {
        let s = Arc::new(ThreadStats {
            msgs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            hist: Mutex::new(new_histogram()),
        });
        lock(&REGISTRY).push(s.clone());
        s
    };
}

pub fn new_histogram() -> Histogram<u64> {
    // Nanoseconds, 1 ns to 100 s, three significant figures.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// State every connection task shares with the main thread.
pub struct Shared {
    pub phase: AtomicU8,
    /// Connections that are up (in `idle` mode: that made their round trip).
    pub connected: AtomicUsize,
    /// Connection tasks that ended, well or not.
    pub done: AtomicUsize,
    pub errors: AtomicUsize,
    pub first_error: Mutex<Option<String>>,
    pub stop_waiters: Mutex<Vec<Waker>>,
    pub stopped: AtomicBool,
    /// `--udp --mode stream`: what the connections sent, lost and saw out of order.
    pub udp: UdpCounts,
}

/// Datagram counts of `--udp --mode stream`, over the whole run (warm-up and drain included).
#[derive(Default)]
pub struct UdpCounts {
    /// Datagrams sent.
    pub sent: AtomicU64,
    /// Datagrams echoed, verified.
    pub echoed: AtomicU64,
    /// Echoes that came after one of a later datagram.
    pub reordered: AtomicU64,
}

impl UdpCounts {
    /// Sent, echoed, lost (sent and never echoed) and reordered.
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        let sent = self.sent.load(Ordering::Relaxed);
        let echoed = self.echoed.load(Ordering::Relaxed);
        (
            sent,
            echoed,
            sent.saturating_sub(echoed),
            self.reordered.load(Ordering::Relaxed),
        )
    }
}

impl Shared {
    pub fn fail(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.first_error).get_or_insert(e);
    }

    pub fn stop(&self) {
        self.phase.store(STOP, Ordering::Release);
        self.stopped.store(true, Ordering::Release);
        for w in std::mem::take(&mut *lock(&self.stop_waiters)) {
            w.wake();
        }
    }

    /// Completes when the run is over.
    pub async fn stopped(&self) {
        poll_fn(|cx| {
            if self.stopped.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            lock(&self.stop_waiters).push(cx.waker().clone());
            if self.stopped.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// Records one echoed message on this thread.
pub fn record(start: Instant, bytes: usize, phase: &AtomicU8) {
    let measuring = phase.load(Ordering::Relaxed) == MEASURE;
    let ns = if measuring {
        start.elapsed().as_nanos() as u64
    } else {
        0
    };
    STATS.with(|s| {
        s.msgs
            .store(s.msgs.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        s.bytes.store(
            s.bytes.load(Ordering::Relaxed) + bytes as u64,
            Ordering::Relaxed,
        );
        if measuring {
            lock(&s.hist).saturating_record(ns.max(1));
        }
    });
}

pub fn totals() -> (u64, u64) {
    lock(&REGISTRY).iter().fold((0, 0), |(m, b), s| {
        (
            m + s.msgs.load(Ordering::Relaxed),
            b + s.bytes.load(Ordering::Relaxed),
        )
    })
}
