//! The connection cap of a listener ([`ServerSocket::set_max_connections`]): a count of the
//! accepted sockets still alive, and the accepts waiting for one of them to go.
//!
//! [`ServerSocket::set_max_connections`]: crate::ServerSocket::set_max_connections

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::util::lock;

/// How many connections a listener's accepted sockets hold, against its cap.
#[derive(Debug)]
pub(crate) struct ConnectionLimit {
    /// The cap; `usize::MAX` when there is none.
    max: AtomicUsize,
    live: AtomicUsize,
    /// Fast path: true only while an accept waits for a connection to go.
    waiting: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
    /// When accepting last had to wait: a wait within a second of it continues the burst.
    last_wait: Mutex<Option<Instant>>,
}

/// Waits closer together than this are one burst, reported once.
const BURST_GAP: Duration = Duration::from_secs(1);

/// One accepted connection's place under the cap: given back when dropped (when the socket,
/// its channels and any TLS session on it are all gone).
#[derive(Debug)]
pub(crate) struct Permit {
    limit: Arc<ConnectionLimit>,
}

impl ConnectionLimit {
    pub(crate) fn new() -> ConnectionLimit {
        ConnectionLimit {
            max: AtomicUsize::new(usize::MAX),
            live: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            wakers: Mutex::new(Vec::new()),
            last_wait: Mutex::new(None),
        }
    }

    /// Sets the cap (`None`: no cap).
    pub(crate) fn set_max(&self, max: Option<usize>) {
        self.max.store(max.unwrap_or(usize::MAX), Ordering::Relaxed);
        self.wake_all();
    }

    /// The cap, if one is set.
    pub(crate) fn max(&self) -> Option<usize> {
        match self.max.load(Ordering::Relaxed) {
            usize::MAX => None,
            m => Some(m),
        }
    }

    /// Connections alive now.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether the cap is reached (no connection may be accepted now).
    pub(crate) fn full(&self) -> bool {
        self.live.load(Ordering::SeqCst) >= self.max.load(Ordering::Relaxed)
    }

    /// A permit if the cap leaves room, taken atomically: two loops that accepted at once can
    /// never both pass a cap of one.
    pub(crate) fn try_permit(self: &Arc<Self>) -> Option<Permit> {
        let max = self.max.load(Ordering::Relaxed);
        self.live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |live| {
                (live < max).then_some(live + 1)
            })
            .ok()
            .map(|_| Permit {
                limit: self.clone(),
            })
    }

    /// Accepting has to wait: whether this starts a burst of waits (to be reported).
    pub(crate) fn wait_starts_burst(&self) -> bool {
        let now = Instant::now();
        let mut last = lock(&self.last_wait);
        let first = last.is_none_or(|t| now.duration_since(t) > BURST_GAP);
        *last = Some(now);
        first
    }

    /// Ready once the cap leaves room for a connection.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.full() {
            return Poll::Ready(());
        }
        {
            let mut w = lock(&self.wakers);
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            self.waiting.store(true, Ordering::SeqCst);
        }
        // A connection that went between the check and the registration is seen here.
        if self.full() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    fn wake_all(&self) {
        if !self.waiting.swap(false, Ordering::SeqCst) {
            return;
        }
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for w in wakers {
            w.wake();
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limit.live.fetch_sub(1, Ordering::SeqCst);
        self.limit.wake_all();
    }
}
