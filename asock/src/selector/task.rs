//! asock's tasks: a shared header that wakers point at, and the future itself, which lives in
//! its loop's own table and is touched by that loop's thread alone.
//!
//! A task is woken far more often than it is created (once per readiness edge of its socket),
//! so the wake is what this is built around: one atomic `fetch_or` on the header and, when the
//! task is neither queued nor running, a push of the header onto its loop's run queue. Running
//! it is one atomic flip into `RUNNING`, a table lookup, the poll (with a waker made once, when
//! the task was created) and one atomic clear. The future needs no lock, because no other
//! thread can reach it, and no `unsafe`.
//!
//! # Lifecycle
//! - A new task travels to its loop with its future ([`NewTask`]); the loop enters it in its
//!   table and runs it.
//! - The output (or the panic's message) waits for the [`JoinHandle`]; dropping the handle
//!   detaches the task, and its output is dropped with it.
//! - [`JoinHandle::cancel`] marks the task cancelled and queues it: its loop drops the future at
//!   its next turn, or as soon as the poll under way returns.
//! - A loop that exits drops every future in its table; a task handed to a closed loop is
//!   dropped at once. Either way the handle resolves to [`Error::Cancelled`].

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use slab::Slab;

use crate::error::{Error, Result};
use crate::util::lock;

/// On a run queue (or on its way to one): a wake-up adds nothing.
const SCHEDULED: u8 = 1;
/// Its poll is under way.
const RUNNING: u8 = 2;
/// Cancelled: the loop drops the future at its next run (or when the current poll returns).
const CANCELLED: u8 = 4;
/// The future is gone from its loop's table: the task never runs again.
const DONE: u8 = 8;

/// Where a task runs: its event loop, seen from here (the loop is above this module, and
/// names itself as `S`, so the calls are direct).
pub(crate) trait Schedule: Send + Sync + Sized + 'static {
    /// Puts a woken task on its loop's run queue (from any thread; the loop is
    /// [`Task::home`]).
    fn schedule(task: Arc<Task<Self>>);
    /// Hands a new task to the loop; on a closed loop it is dropped at once.
    fn spawn(&self, new: NewTask<Self>);
}

/// What a task's wakers and its handle share: its state, its loop and its output.
pub(crate) struct Task<S> {
    state: AtomicU8,
    /// Its entry in the loop's table, set by the loop when it takes the task in.
    key: AtomicUsize,
    lp: Arc<S>,
    output: Mutex<Output>,
}

/// What the [`JoinHandle`] waits for. The value is boxed as `Any`, so the header needs no type
/// parameter for it: boxing `()` (a connection's task) allocates nothing.
struct Output {
    value: Option<Result<Box<dyn Any + Send>>>,
    /// The future is gone: `value` was set (and maybe taken), or the task was cancelled.
    finished: bool,
    joiner: Option<Waker>,
}

impl<S: Schedule> Task<S> {
    /// The loop the task runs on.
    pub(crate) fn home(&self) -> &Arc<S> {
        &self.lp
    }

    /// Ends the task's output: `value` (`None` for a cancelled task); wakes the joiner.
    fn finish(&self, value: Option<Result<Box<dyn Any + Send>>>) {
        let joiner = {
            let mut out = lock(&self.output);
            out.value = value;
            out.finished = true;
            out.joiner.take()
        };
        if let Some(w) = joiner {
            w.wake();
        }
    }

    /// Queues the task unless it is queued, running (its run requeues it) or done.
    fn schedule_if_idle(self: Arc<Self>, prev: u8) {
        if prev & (SCHEDULED | RUNNING | DONE) == 0 {
            S::schedule(self);
        }
    }
}

/// What a [`JoinHandle`] can do with its task, whatever its loop's type.
trait Join: Send + Sync {
    /// Marks the task cancelled and queues it, so its loop drops the future.
    fn cancel(self: Arc<Self>);
    /// The output once the future is gone (`None` inside: it was cancelled).
    fn poll_output(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Box<dyn Any + Send>>>>;
    /// Whether the future is gone.
    fn is_finished(&self) -> bool;
}

impl<S: Schedule> Join for Task<S> {
    fn cancel(self: Arc<Self>) {
        let prev = self.state.fetch_or(CANCELLED | SCHEDULED, Ordering::AcqRel);
        self.schedule_if_idle(prev);
    }

    fn poll_output(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Box<dyn Any + Send>>>> {
        let mut out = lock(&self.output);
        if out.finished {
            return Poll::Ready(out.value.take());
        }
        if !out.joiner.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            out.joiner = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    fn is_finished(&self) -> bool {
        lock(&self.output).finished
    }
}

impl<S: Schedule> Wake for Task<S> {
    fn wake(self: Arc<Self>) {
        let prev = self.state.fetch_or(SCHEDULED, Ordering::AcqRel);
        self.schedule_if_idle(prev);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let prev = self.state.fetch_or(SCHEDULED, Ordering::AcqRel);
        if prev & (SCHEDULED | RUNNING | DONE) == 0 {
            S::schedule(self.clone());
        }
    }
}

/// A launched future, type-erased: it reports its own output (see [`Body`]).
type BoxedFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A task on its way to its loop, with its future.
pub(crate) struct NewTask<S> {
    task: Arc<Task<S>>,
    future: BoxedFuture,
}

/// The futures of the tasks on one loop; only that loop's thread holds it.
#[derive(Default)]
pub(crate) struct LocalTasks {
    entries: Slab<Entry>,
}

struct Entry {
    future: BoxedFuture,
    /// Made once per task: a poll lends it, with no reference count touched.
    waker: Waker,
}

impl LocalTasks {
    /// Enters a new task in the table; returns its header, to be queued for its first run.
    pub(crate) fn admit<S: Schedule>(&mut self, new: NewTask<S>) -> Arc<Task<S>> {
        let entry = self.entries.vacant_entry();
        new.task.key.store(entry.key(), Ordering::Relaxed);
        entry.insert(Entry {
            future: new.future,
            waker: Waker::from(new.task.clone()),
        });
        new.task
    }

    /// Runs a task taken off this loop's run queue: polls it once, requeues it if it was woken
    /// meanwhile, and drops its future once it finished or was cancelled.
    #[inline]
    pub(crate) fn run<S: Schedule>(&mut self, task: Arc<Task<S>>) {
        // On the queue means SCHEDULED and not RUNNING: the flip clears the one and sets the
        // other in one step, keeping a CANCELLED that arrives at the same time.
        let prev = task.state.fetch_xor(SCHEDULED | RUNNING, Ordering::AcqRel);
        if prev & DONE != 0 {
            // Queued by a wake-up that raced with its end; its key may name another task now.
            return;
        }
        let key = task.key.load(Ordering::Relaxed);
        if prev & CANCELLED == 0 {
            let Some(entry) = self.entries.get_mut(key) else {
                return;
            };
            let mut cx = Context::from_waker(&entry.waker);
            if entry.future.as_mut().poll(&mut cx).is_pending() {
                let prev = task.state.fetch_and(!RUNNING, Ordering::AcqRel);
                if prev & CANCELLED == 0 {
                    if prev & SCHEDULED != 0 {
                        // Woken while it ran (or it yielded): to the back of the queue.
                        S::schedule(task);
                    }
                    return;
                }
            }
        }
        task.state.fetch_or(DONE, Ordering::AcqRel);
        // The future's drop may wake or cancel other tasks: they only queue themselves.
        drop(self.entries.try_remove(key));
    }

    /// Gives back the table's spare capacity (most of the loop's tasks ended).
    pub(crate) fn shrink(&mut self) {
        self.entries.shrink_to_fit();
    }
}

pin_project_lite::pin_project! {
    /// A launched future that reports its output (or its panic) to its task's header, and
    /// that the task was cancelled if it is dropped before it finished. Either way the future
    /// is dropped first, so a handle that says "done" or "cancelled" never races its drop.
    struct Body<F, S: Schedule> {
        #[pin]
        future: Option<F>,
        task: Arc<Task<S>>,
    }

    impl<F, S: Schedule> PinnedDrop for Body<F, S> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.future.is_some() {
                this.future.set(None);
                this.task.finish(None);
            }
        }
    }
}

impl<F, S> Future for Body<F, S>
where
    F: Future,
    F::Output: Send + 'static,
    S: Schedule,
{
    type Output = ();

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        let value = match std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => Ok(Box::new(v) as Box<dyn Any + Send>),
            Err(payload) => Err(Error::Panicked(panic_message(&*payload))),
        };
        this.future.set(None);
        this.task.finish(Some(value));
        Poll::Ready(())
    }
}

/// The message of a panic's payload (`panic!` with a literal or a formatted string).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Starts `future` as a task on `lp`. On a closed loop the future is dropped at once and the
/// handle resolves to [`Error::Cancelled`].
pub(crate) fn launch<S, F>(lp: Arc<S>, future: F) -> JoinHandle<F::Output>
where
    S: Schedule,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = Arc::new(Task {
        state: AtomicU8::new(SCHEDULED),
        key: AtomicUsize::new(usize::MAX),
        lp: lp.clone(),
        output: Mutex::new(Output {
            value: None,
            finished: false,
            joiner: None,
        }),
    });
    lp.spawn(NewTask {
        task: task.clone(),
        future: Box::pin(Body {
            future: Some(future),
            task: task.clone(),
        }),
    });
    JoinHandle {
        task: Some(task),
        output: PhantomData,
    }
}

/// A handle to a launched task: await it for the task's output.
///
/// Dropping it detaches the task; [`cancel`](Self::cancel) stops it.
pub struct JoinHandle<T> {
    task: Option<Arc<dyn Join>>,
    output: PhantomData<fn() -> T>,
}

impl<T> JoinHandle<T> {
    /// Cancels the task: its future is dropped at the next point it is not running.
    pub fn cancel(mut self) {
        if let Some(task) = self.task.take() {
            task.cancel();
        }
    }

    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle").finish_non_exhaustive()
    }
}

impl<T: 'static> Future for JoinHandle<T> {
    /// The task's output, [`Error::Cancelled`] if it was cancelled (or its loop stopped), or
    /// [`Error::Panicked`] if it panicked.
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let Some(task) = &self.task else {
            return Poll::Ready(Err(Error::Cancelled));
        };
        let Poll::Ready(output) = task.poll_output(cx) else {
            return Poll::Pending;
        };
        self.task = None;
        Poll::Ready(match output {
            // The task stored its future's output, of type `T`: the downcast cannot miss.
            Some(Ok(value)) => value
                .downcast::<T>()
                .map(|v| *v)
                .map_err(|_| Error::Cancelled),
            Some(Err(e)) => Err(e),
            None => Err(Error::Cancelled),
        })
    }
}
