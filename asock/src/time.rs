//! Timers that run on asock's event loops: [`sleep`] and [`timeout`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
pub use crate::selector::timer::Sleep;

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
