//! Timers that run on asock's event loops: [`sleep`] and [`timeout`], and the per-wait
//! deadline behind `socket_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::selector::event_loop::with_current;
use crate::selector::timer::TimerEntry;
use crate::selector::{background, Handle};

/// A future that completes at a deadline; see [`sleep`].
///
/// It arms its timer on the loop of the thread that first polls it, or on asock's background
/// loop when polled from another executor. If the loop holding it closes first (its
/// [`SelectorManager`](crate::SelectorManager) was closed), the sleep moves to the background
/// loop and still completes at its deadline, no earlier.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    entry: Option<Arc<TimerEntry>>,
    /// The manager whose loop keeps the timer when polled outside any loop (default: the
    /// lazily started background manager).
    home: Option<Handle>,
}

impl Sleep {
    pub(crate) fn until(deadline: Instant) -> Sleep {
        Sleep {
            deadline,
            entry: None,
            home: None,
        }
    }

    /// A sleep whose timer, when polled outside any loop, goes to `handle`'s loops rather than
    /// the background manager. Code that must keep working when the process is out of
    /// descriptors uses it: starting the background loop then would fail.
    pub(crate) fn until_on(deadline: Instant, handle: &Handle) -> Sleep {
        Sleep {
            deadline,
            entry: None,
            home: Some(handle.clone()),
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
            entry.cancel();
        }
    }

    /// Puts `entry` on a loop: this thread's, else the home manager's, else the background
    /// one, else a plain thread.
    fn arm(&self, entry: Arc<TimerEntry>) {
        let here = with_current(|cur| cur.map(|local| local.shared.clone()));
        if let Some(lp) = here {
            lp.add_timer(entry);
            return;
        }
        match self.home.as_ref().filter(|h| !h.is_closed()) {
            Some(home) => home.next_loop().add_timer(entry),
            None => match background() {
                Some(m) => m.handle().next_loop().add_timer(entry),
                None => wake_from_thread(entry),
            },
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(entry) = &self.entry {
            if entry.is_fired() {
                return Poll::Ready(());
            }
            if !entry.is_orphaned() {
                entry.register(cx.waker());
                if entry.is_fired() {
                    return Poll::Ready(());
                }
                return Poll::Pending;
            }
            // Its loop closed: arm it again elsewhere, on no closed manager.
            self.entry = None;
            self.home = None;
        }
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let entry = TimerEntry::new(self.deadline, cx.waker());
        self.arm(entry.clone());
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
    let deadline = entry.deadline();
    let _ = std::thread::Builder::new()
        .name("asock-timer".into())
        .spawn(move || {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            entry.fire();
        });
}

/// The deadline of one wait: how `socket_timeout` is enforced on reads, writes and receives.
///
/// A wait gets the whole period: the clock starts when an operation first has to wait (not
/// when the last byte moved), and [`restart`](Self::restart) (a new operation, or progress)
/// stops it. One timer serves many waits: an early one is re-armed, never one per operation.
#[derive(Debug, Default)]
pub(crate) struct WaitTimer {
    /// When the current wait began.
    since: Option<Instant>,
    sleep: Option<Sleep>,
}

impl WaitTimer {
    /// A new operation starts, or the current one made progress: the next wait gets a full
    /// period.
    pub(crate) fn restart(&mut self) {
        self.since = None;
    }

    /// Called when an operation is about to wait; `Ready` means it waited `timeout` in all.
    /// The timer is armed on `home`'s loops when no loop runs this thread, so a timeout never
    /// depends on asock's background loop (which may fail to start when the process is out of
    /// descriptors).
    #[inline]
    pub(crate) fn poll_expired(
        &mut self,
        cx: &mut Context<'_>,
        timeout: Option<Duration>,
        home: Option<&Handle>,
    ) -> Poll<()> {
        match timeout {
            // Without a timeout a wait costs nothing here (the common case on the hot path).
            None => Poll::Pending,
            Some(t) => self.poll_deadline(cx, t, home),
        }
    }

    #[inline(never)]
    fn poll_deadline(
        &mut self,
        cx: &mut Context<'_>,
        timeout: Duration,
        home: Option<&Handle>,
    ) -> Poll<()> {
        let deadline = *self.since.get_or_insert_with(Instant::now) + timeout;
        loop {
            let sleep = self.sleep.get_or_insert_with(|| match home {
                Some(h) => Sleep::until_on(deadline, h),
                None => sleep_until(deadline),
            });
            if sleep.deadline() > deadline {
                // The timeout was shortened.
                sleep.reset(deadline);
            }
            match Pin::new(&mut *sleep).poll(cx) {
                Poll::Ready(()) if Instant::now() >= deadline => {
                    self.sleep = None;
                    self.since = None;
                    return Poll::Ready(());
                }
                // Armed for an earlier wait: arm it for this one.
                Poll::Ready(()) => sleep.reset(deadline),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Completes after `duration`.
///
/// ```
/// # asock::block_on(async {
/// let start = std::time::Instant::now();
/// asock::time::sleep(std::time::Duration::from_millis(20)).await;
/// assert!(start.elapsed() >= std::time::Duration::from_millis(20));
/// # });
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    Sleep::until(Instant::now() + duration)
}

/// Completes at `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep::until(deadline)
}

/// Runs `future`, failing with [`Error::Timeout`] if it does not finish within `duration`.
///
/// ```
/// # asock::block_on(async {
/// use std::time::Duration;
/// let slow = asock::time::sleep(Duration::from_secs(10));
/// let r = asock::time::timeout(Duration::from_millis(10), slow).await;
/// assert!(matches!(r, Err(asock::Error::Timeout)));
/// # });
/// ```
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep(duration),
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`timeout`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Sleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Error::Timeout)),
            Poll::Pending => Poll::Pending,
        }
    }
}
