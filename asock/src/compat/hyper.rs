//! hyper 1.x on asock (feature `hyper`).
//!
//! hyper brings no runtime of its own: it asks for an I/O type implementing its [`rt::Read`]/
//! [`rt::Write`], and, for HTTP/2 and for timeouts, an [`Executor`](::hyper::rt::Executor) and a
//! [`Timer`](::hyper::rt::Timer). This module gives all three from asock, with no tokio and no
//! hyper-util:
//!
//! - [`Connection`] and [`TlsConnection`](crate::tls::TlsConnection) implement hyper's
//!   `Read` and `Write`, so `socket.connection(false)` goes straight into hyper's
//!   `serve_connection` or `handshake`;
//! - [`AsockExecutor`] runs hyper's background futures (HTTP/2 streams, a client
//!   connection's driver) as tasks on a [`SelectorManager`]'s loops;
//! - [`AsockTimer`] gives hyper sleeps on the loops' timers ([`crate::time`]), so
//!   `header_read_timeout` (30 s by default in hyper's HTTP/1.1 server) and HTTP/2 keep-alive
//!   work.
//!
//! An HTTP/1.1 server, each connection a task on asock's loops:
//!
//! ```no_run
//! # // hyper's `server` and `http1` features and http-body-util are the application's
//! # // dependencies; asock only needs the `hyper` feature.
//! use asock::compat::hyper::AsockTimer;
//! use asock::{a_socket, SelectorManager};
//! use http_body_util::Full;
//! use hyper::body::{Bytes, Incoming};
//! use hyper::{service::service_fn, Request, Response};
//!
//! async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
//!     Ok(Response::new(Full::new(Bytes::from_static(b"Hello, world!\n"))))
//! }
//!
//! let selector = SelectorManager::new()?;
//! let served: asock::Result<()> = selector.run_blocking(async {
//!     let server = a_socket(&selector).tcp().bind("127.0.0.1:8080").await?;
//!     loop {
//!         let connection = server.accept().await?.connection(false);
//!         selector.launch(async move {
//!             let _ = hyper::server::conn::http1::Builder::new()
//!                 .timer(AsockTimer::new())
//!                 .serve_connection(connection, service_fn(hello))
//!                 .await;
//!         });
//!     }
//! });
//! # served?;
//! # Ok::<(), asock::Error>(())
//! ```
//!
//! The cost over hyper on tokio's `TcpStream`: hyper reads into its own buffer, so a read
//! copies once from the read channel's buffer into hyper's (tokio's stream reads straight into
//! it); writes go from hyper's buffer straight to the socket when nothing is queued. hyper
//! flattens headers and body into one buffer before writing, since the channels do not take
//! vectored writes.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use ::hyper::rt;
use futures_io::{AsyncBufRead, AsyncWrite};

use crate::{Connection, SelectorManager};

/// Implements hyper's `Read` and `Write` for a type with `input: ByteReadChannel` and
/// `output: ByteWriteChannel` fields, through the channels' futures-io impls.
macro_rules! hyper_io {
    ($t:ty) => {
        impl rt::Read for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                mut buf: rt::ReadBufCursor<'_>,
            ) -> Poll<io::Result<()>> {
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                let input = &mut self.get_mut().input;
                let n = {
                    let data = ready!(Pin::new(&mut *input).poll_fill_buf(cx))?;
                    let n = data.len().min(buf.remaining());
                    buf.put_slice(&data[..n]);
                    n
                };
                input.consume(n);
                Poll::Ready(Ok(()))
            }
        }

        impl rt::Write for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().output).poll_write(cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().output).poll_flush(cx)
            }

            /// Flushes, then half-closes the write side ([`ByteWriteChannel::close`]).
            ///
            /// [`ByteWriteChannel::close`]: crate::ByteWriteChannel::close
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().output).poll_close(cx)
            }
        }
    };
}

hyper_io!(Connection);
#[cfg(feature = "tls")]
hyper_io!(crate::tls::TlsConnection);

/// hyper's [`Executor`](rt::Executor) on asock: each future hyper hands over (an HTTP/2
/// stream, a client connection's driver) becomes a detached task on the selector's loops
/// ([`SelectorManager::launch`]).
///
/// ```
/// use asock::compat::hyper::AsockExecutor;
/// let selector = asock::SelectorManager::builder().threads(1).build()?;
/// let executor = AsockExecutor::new(&selector);
/// // hyper::server::conn::http2::Builder::new(executor) ...
/// # let _ = executor;
/// # Ok::<(), asock::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct AsockExecutor {
    selector: SelectorManager,
}

impl AsockExecutor {
    /// An executor that launches tasks on `selector`'s loops.
    pub fn new(selector: &SelectorManager) -> AsockExecutor {
        AsockExecutor {
            selector: selector.clone(),
        }
    }
}

impl From<SelectorManager> for AsockExecutor {
    fn from(selector: SelectorManager) -> AsockExecutor {
        AsockExecutor { selector }
    }
}

impl<F> rt::Executor<F> for AsockExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        // Detached: hyper keeps its own handles (channels) to what these futures do.
        drop(self.selector.launch(future));
    }
}

/// hyper's [`Timer`](rt::Timer) on asock's loop timers ([`crate::time::sleep_until`]).
///
/// A sleep arms its timer on the loop of the task that polls it (or on asock's background loop
/// when polled from another executor), like every asock timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsockTimer {
    _private: (),
}

impl AsockTimer {
    /// The timer. It holds no state: every sleep lives on the loop that polls it.
    pub fn new() -> AsockTimer {
        AsockTimer { _private: () }
    }
}

impl rt::Timer for AsockTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn rt::Sleep>> {
        Box::pin(HyperSleep::new(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(mut ours) => ours.as_mut().get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

thread_local! {
    /// An armed asock timer that a dropped [`HyperSleep`] left on this thread, for the next one.
    ///
    /// hyper's HTTP/1.1 server makes a new 30-second sleep (its header read timeout) for every
    /// request on a keep-alive connection and drops it when the request's head has arrived.
    /// Arming an asock timer costs an allocation and a push onto the loop's timer heap; handing
    /// the armed timer on to the next sleep, which wants to wake a little later, saves both.
    static SPARE: Cell<Option<crate::time::Sleep>> = const { Cell::new(None) };
}

/// A hyper sleep on an asock [`Sleep`](crate::time::Sleep).
///
/// The asock timer may be set earlier than `deadline` (when it was taken over from a dropped
/// sleep): it never fires late, and when it fires early the sleep moves it to `deadline` and
/// waits on.
struct HyperSleep {
    /// When hyper wants the sleep to complete.
    deadline: Instant,
    /// The timer: at `deadline`, or a little before it.
    sleep: crate::time::Sleep,
    /// Whether `sleep` has armed its timer (was polled and is pending).
    armed: bool,
    /// The waker of the last pending poll: when a reset has to re-arm the timer, it wakes this
    /// so the task polls again (hyper expects a reset sleep to stay registered).
    waker: Option<Waker>,
}

impl HyperSleep {
    fn new(deadline: Instant) -> HyperSleep {
        let now = Instant::now();
        // Take over the spare timer if it fires before `deadline`, but not before halfway
        // there (so an early wake-up stays rare).
        let spare = SPARE.try_with(Cell::take).ok().flatten().filter(|spare| {
            let at = spare.deadline();
            at <= deadline && at > now && at - now >= (deadline - now) / 2
        });
        match spare {
            Some(sleep) => HyperSleep {
                deadline,
                sleep,
                armed: true,
                waker: None,
            },
            None => HyperSleep {
                deadline,
                sleep: crate::time::sleep_until(deadline),
                armed: false,
                waker: None,
            },
        }
    }

    fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if deadline >= self.sleep.deadline() && self.armed {
            // The armed timer fires first; `poll` then moves it on.
            return;
        }
        self.sleep.reset(deadline);
        self.armed = false;
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.sleep).poll(cx) {
                Poll::Ready(()) if this.sleep.deadline() >= this.deadline => {
                    this.armed = false;
                    this.waker = None;
                    return Poll::Ready(());
                }
                // The timer was set early: move it to the real deadline (the next poll arms it,
                // or completes at once if that has passed too).
                Poll::Ready(()) => this.sleep.reset(this.deadline),
                Poll::Pending => {
                    this.armed = true;
                    match &mut this.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        slot => *slot = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for HyperSleep {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let sleep = std::mem::replace(&mut self.sleep, crate::time::sleep_until(self.deadline));
        // The spare it replaces (if any) is dropped, which cancels its timer.
        let _ = SPARE.try_with(|spare| spare.set(Some(sleep)));
    }
}

impl rt::Sleep for HyperSleep {}

#[cfg(test)]
mod tests {
    use super::*;
    use ::hyper::rt::Timer;

    #[test]
    fn sleep_fires_and_reset_moves_it() {
        let timer = AsockTimer::new();
        crate::block_on(async {
            let start = Instant::now();
            timer.sleep(Duration::from_millis(20)).await;
            assert!(start.elapsed() >= Duration::from_millis(20));

            // A polled, pending sleep moved earlier still fires (the reset re-arms it).
            let mut sleep = timer.sleep(Duration::from_secs(60));
            let start = Instant::now();
            let first = std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx))).await;
            assert!(first.is_pending());
            timer.reset(&mut sleep, Instant::now() + Duration::from_millis(20));
            sleep.as_mut().await;
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(20) && took < Duration::from_secs(30));
        });
    }

    #[test]
    fn a_sleep_that_takes_over_a_spare_timer_never_completes_early() {
        let timer = AsockTimer::new();
        crate::block_on(async {
            // A sleep armed, then dropped: its timer (due in 200 ms) becomes the spare.
            let mut first = timer.sleep(Duration::from_millis(200));
            let pending = std::future::poll_fn(|cx| Poll::Ready(first.as_mut().poll(cx))).await;
            assert!(pending.is_pending());
            drop(first);
            // The next one (due in 300 ms) takes it over: it fires at 200 ms, is moved on, and
            // the sleep completes at 300 ms, not before.
            let start = Instant::now();
            timer.sleep(Duration::from_millis(300)).await;
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(300), "{took:?}");
            assert!(took < Duration::from_secs(30), "{took:?}");
        });
    }

    #[test]
    fn executor_runs_on_the_loops() {
        let selector = SelectorManager::builder().threads(1).build().unwrap();
        let exec = AsockExecutor::new(&selector);
        let (tx, rx) = std::sync::mpsc::channel();
        rt::Executor::execute(&exec, async move {
            tx.send(std::thread::current().name().map(str::to_string))
                .unwrap();
        });
        let name = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(name.unwrap().starts_with("asock-loop"));
    }
}
