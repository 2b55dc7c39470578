//! The runtime: [`SelectorManager`] owns event-loop threads; tasks, readiness and timers run on
//! them. It knows nothing of sockets: they wrap a [`source::IoSource`], which waits through a
//! [`registration::ScheduledIo`].
//!
//! Module map (imports run downwards only): `mod.rs` (the manager, tasks, `block_on`) →
//! `source.rs` (a descriptor tied to a loop) → `event_loop.rs` (one loop thread) →
//! `registration.rs` (readiness and waiters), `timer.rs` (the timer heap), `coop.rs` (the
//! cooperative budget), all three leaves.

pub(crate) mod coop;
pub(crate) mod event_loop;
pub(crate) mod registration;
pub(crate) mod source;
pub(crate) mod task;
pub(crate) mod timer;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread, ThreadId};
use std::time::Duration;

use event_loop::{with_current, LoopConfig, LoopShared};
pub use task::JoinHandle;

use crate::channel::budget::Budget;
pub use crate::channel::budget::MemoryShed;
use crate::error::{Error, Result};
use crate::util::lock;

static NEXT_MANAGER_ID: AtomicUsize = AtomicUsize::new(1);

/// A group of event loops, one thread each, that drive sockets and run tasks.
///
/// Ktor's `SelectorManager`. Cloning is cheap and gives another handle to the same loops.
///
/// A connection's task, its readiness and its wakers stay on one loop, so the hot path takes no
/// lock and makes no cross-thread wake-up.
///
/// # Lifecycle
/// The loops stop when [`close`](Self::close) is called or the last `SelectorManager` handle is
/// dropped. Sockets, channels and tasks do not count as handles: a task that owns a socket does
/// not keep the loops alive (a task that owns a `SelectorManager` clone does, like any handle).
/// Closing, by either way:
/// - drops every task still on the loops (its [`JoinHandle`] resolves to
///   [`Error::Cancelled`]), and refuses new ones the same way;
/// - ends every pending wait on a socket registered with the loops (accept, read, write,
///   receive, send, connect) with [`Error::Closed`], and releases those sockets' descriptors;
/// - makes every later operation on them, and every new `bind` or `connect`, fail at once with
///   [`Error::Closed`];
/// - joins the loop threads (unless called from one of them: those exit on their own);
/// - leaves [`time::sleep`](crate::time::sleep)s polled from other threads running: they move
///   to asock's background loop and complete at their deadline.
///
/// ```
/// use asock::SelectorManager;
/// let selector = SelectorManager::builder().threads(1).build()?;
/// let answer = selector.run_blocking(async {
///     let task = selector.launch(async { 6 * 7 });
///     task.await
/// })?;
/// assert_eq!(answer, 42);
/// # Ok::<(), asock::Error>(())
/// ```
#[derive(Clone)]
pub struct SelectorManager {
    user: Arc<UserHandle>,
}

/// What user handles share: the last one closes the manager.
struct UserHandle {
    handle: Handle,
}

impl Drop for UserHandle {
    fn drop(&mut self) {
        self.handle.shared.close();
    }
}

/// The crate's own reference to a manager's loops (sockets, channels, timers hold it). It does
/// not keep the loops running: only [`SelectorManager`] handles do.
#[derive(Clone)]
pub(crate) struct Handle {
    shared: Arc<ManagerShared>,
}

struct ManagerShared {
    id: usize,
    loops: Vec<Arc<LoopShared>>,
    next: AtomicUsize,
    threads: Mutex<Vec<(ThreadId, thread::JoinHandle<()>)>>,
    closed: AtomicBool,
    /// The memory budget of its channels' buffers, if one was set.
    budget: Option<Arc<Budget>>,
}

impl std::fmt::Debug for SelectorManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = &self.user.handle.shared;
        f.debug_struct("SelectorManager")
            .field("id", &shared.id)
            .field("threads", &shared.loops.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.shared.id)
            .finish()
    }
}

/// Settings for a [`SelectorManager`]; see [`SelectorManager::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    threads: usize,
    name: String,
    busy_poll: Option<Duration>,
    pin_threads: bool,
    max_memory: Option<usize>,
}

impl Builder {
    /// Number of event-loop threads (default: one per available core).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Name prefix of the loop threads (default `asock-loop`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Latency mode: after its last event a loop keeps polling without blocking for `spin`
    /// before it parks in `epoll_wait`. Waking a parked thread can cost tens of microseconds on
    /// virtual machines; spinning trades a bounded amount of CPU for lower round-trip latency.
    pub fn busy_poll(mut self, spin: Duration) -> Self {
        self.busy_poll = (!spin.is_zero()).then_some(spin);
        self
    }

    /// Pins loop `i` to the `i`-th CPU the process may run on (wrapping around when there are
    /// more loops than CPUs; Linux only, elsewhere a no-op). Default off.
    ///
    /// Pinned loops are what per-CPU connection steering needs: a listener opened per loop
    /// (see [`TcpSocketBuilder::listener_per_loop`](crate::TcpSocketBuilder::listener_per_loop))
    /// then asks the kernel, with `SO_INCOMING_CPU`, for the connections that arrive on its
    /// loop's CPU. A loop whose CPU cannot be set runs unpinned (and its listener unsteered).
    pub fn pin_threads(mut self, on: bool) -> Self {
        self.pin_threads = on;
        self
    }

    /// A memory budget for the read buffers of every channel on these loops, in bytes
    /// (default: none). When a buffer would take the total past it, the connections holding
    /// the most buffered-but-unconsumed bytes (the oldest first among equals) are shed: their
    /// socket is closed and their pending reads fail with [`Error::MemoryBudget`]. If the
    /// connection asking holds the most, its own read fails that way. See
    /// [`SelectorManager::on_memory_shed`].
    ///
    /// The cost is one relaxed atomic add and sub per buffer taken and given back.
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// Starts the loops.
    pub fn build(self) -> Result<SelectorManager> {
        // Now, while descriptors are plentiful: `close` needs it later.
        crate::sys::prepare_close_in_place();
        let id = NEXT_MANAGER_ID.fetch_add(1, Ordering::Relaxed);
        let cpus = if self.pin_threads {
            crate::sys::allowed_cpus()
        } else {
            Vec::new()
        };
        let mut loops = Vec::with_capacity(self.threads);
        let mut threads = Vec::with_capacity(self.threads);
        let start = |i: usize| -> std::io::Result<(Arc<LoopShared>, thread::JoinHandle<()>)> {
            let poll = mio::Poll::new()?;
            let config = LoopConfig {
                busy_poll: self.busy_poll,
                cpu: (!cpus.is_empty()).then(|| cpus[i % cpus.len()]),
            };
            let shared = LoopShared::new(&poll, id)?;
            let for_thread = shared.clone();
            let (pinned_tx, pinned_rx) = std::sync::mpsc::sync_channel(1);
            let handle = thread::Builder::new()
                .name(format!("{}-{i}", self.name))
                .spawn(move || event_loop::run(for_thread, poll, config, pinned_tx))?;
            // A pinned loop reports where it runs before it takes work, so its CPU is settled
            // before any listener asks for it.
            if config.cpu.is_some() {
                let _ = pinned_rx.recv();
            }
            Ok((shared, handle))
        };
        for i in 0..self.threads {
            match start(i) {
                Ok((shared, handle)) => {
                    loops.push(shared);
                    threads.push((handle.thread().id(), handle));
                }
                Err(e) => {
                    for l in &loops {
                        l.shutdown();
                    }
                    for (_, t) in threads {
                        let _ = t.join();
                    }
                    return Err(Error::io("start event loop", e));
                }
            }
        }
        let handle = Handle {
            shared: Arc::new(ManagerShared {
                id,
                loops,
                next: AtomicUsize::new(0),
                threads: Mutex::new(threads),
                closed: AtomicBool::new(false),
                budget: self.max_memory.map(|m| Arc::new(Budget::new(m))),
            }),
        };
        Ok(SelectorManager {
            user: Arc::new(UserHandle { handle }),
        })
    }
}

impl SelectorManager {
    /// Starts one event loop per available core.
    pub fn new() -> Result<SelectorManager> {
        Self::builder().build()
    }

    /// Settings for a manager: thread count, thread names, busy-polling.
    pub fn builder() -> Builder {
        Builder {
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            name: "asock-loop".to_string(),
            busy_poll: None,
            pin_threads: false,
            max_memory: None,
        }
    }

    /// Number of event loops.
    pub fn threads(&self) -> usize {
        self.handle().shared.loops.len()
    }

    /// Runs `future` as a task on one of the loops (round-robin), returning a handle to await
    /// its output. Dropping the handle lets the task run on, detached. On a closed manager the
    /// task never runs and the handle resolves to [`Error::Cancelled`].
    pub fn launch<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle().launch(future)
    }

    /// Runs `future` to completion on the calling thread, like Ktor's `runBlocking`. Sockets it
    /// uses are driven by this manager's loops, which wake the calling thread.
    ///
    /// # Panics
    /// When called from a task running on one of asock's loops (it would block that loop); see
    /// [`block_on`].
    pub fn run_blocking<F: Future>(&self, future: F) -> F::Output {
        block_on(future)
    }

    /// Closes the manager now; see [Lifecycle](Self#lifecycle) for what that does to tasks,
    /// sockets and timers. Idempotent.
    pub fn close(&self) {
        self.handle().shared.close();
    }

    /// Whether the manager is closed.
    pub fn is_closed(&self) -> bool {
        self.handle().is_closed()
    }

    /// The crate's own, non-owning handle.
    pub(crate) fn handle(&self) -> &Handle {
        &self.user.handle
    }

    /// The memory budget set with [`Builder::max_memory`], the bytes its channels' read
    /// buffers hold now, and how many connections it shed so far; `None` without a budget.
    pub fn memory_usage(&self) -> Option<MemoryUsage> {
        self.handle().budget().map(|b| MemoryUsage {
            limit: b.limit(),
            used: b.used(),
            shed: b.total_shed(),
        })
    }

    /// Calls `handler` when the memory budget sheds a connection and no connection was shed
    /// in the second before: once per burst, so a server can log it without flooding its log.
    /// It runs on the thread whose channel hit the budget (an event loop): keep it short. Does
    /// nothing without a budget.
    pub fn on_memory_shed(&self, handler: impl Fn(&MemoryShed) + Send + Sync + 'static) {
        if let Some(b) = self.handle().budget() {
            b.set_handler(Box::new(handler));
        }
    }
}

/// What [`SelectorManager::memory_usage`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryUsage {
    /// The budget, in bytes.
    pub limit: usize,
    /// Bytes held by channel read buffers now.
    pub used: usize,
    /// Connections shed so far.
    pub shed: u64,
}

impl Handle {
    /// See [`SelectorManager::launch`].
    pub(crate) fn launch<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.launch_on(self.next_loop().clone(), future)
    }

    /// The manager's loops, in order (loop `i` runs on thread `<name>-i`).
    pub(crate) fn loops(&self) -> &[Arc<LoopShared>] {
        &self.shared.loops
    }

    /// Like [`launch`](Self::launch), on the loop `lp` (one of this manager's).
    pub(crate) fn launch_on<F>(&self, lp: Arc<LoopShared>, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        task::launch(lp, future)
    }

    /// Whether the manager is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// The memory budget of this manager's channels, if one was set.
    pub(crate) fn budget(&self) -> Option<&Arc<Budget>> {
        self.shared.budget.as_ref()
    }

    /// The next loop, round-robin.
    pub(crate) fn next_loop(&self) -> &Arc<LoopShared> {
        let loops = &self.shared.loops;
        if loops.len() == 1 {
            return &loops[0];
        }
        &loops[self.shared.next.fetch_add(1, Ordering::Relaxed) % loops.len()]
    }

    /// The loop running on this thread if it is one of ours, else the next one round-robin.
    pub(crate) fn loop_for_current_thread(&self) -> Arc<LoopShared> {
        self.current_loop()
            .unwrap_or_else(|| self.next_loop().clone())
    }

    /// The loop running on this thread, if it is one of ours.
    pub(crate) fn current_loop(&self) -> Option<Arc<LoopShared>> {
        with_current(|cur| match cur {
            Some(local) if local.shared.manager_id == self.shared.id => Some(local.shared.clone()),
            _ => None,
        })
    }
}

impl ManagerShared {
    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for l in &self.loops {
            l.shutdown();
        }
        let me = thread::current().id();
        let threads = std::mem::take(&mut *lock(&self.threads));
        // A loop thread cannot join itself (nor wait for its siblings, which might wait for it):
        // the loops exit on their own after their current turn.
        if !threads.iter().any(|(id, _)| *id == me) {
            for (_, t) in threads {
                let _ = t.join();
            }
        }
        for l in &self.loops {
            l.close_all();
        }
    }
}

impl Drop for ManagerShared {
    fn drop(&mut self) {
        self.close();
    }
}

/// The manager that drives timers polled from outside any asock loop, started on first use.
///
/// `None` when it cannot start (no descriptors or threads left); a later call tries again.
pub(crate) fn background() -> Option<&'static SelectorManager> {
    static BACKGROUND: OnceLock<SelectorManager> = OnceLock::new();
    static STARTING: Mutex<()> = Mutex::new(());
    if let Some(m) = BACKGROUND.get() {
        return Some(m);
    }
    let _guard = lock(&STARTING);
    if let Some(m) = BACKGROUND.get() {
        return Some(m);
    }
    let m = SelectorManager::builder()
        .threads(1)
        .name("asock-background")
        .build()
        .ok()?;
    Some(BACKGROUND.get_or_init(|| m))
}

struct ThreadWaker {
    thread: Thread,
    notified: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.thread.unpark();
        }
    }
}

/// Runs a future to completion on the current thread, parking it between polls. asock's
/// sockets and timers work from any thread: their loops wake this one.
///
/// # Panics
/// When called from a task running on an asock event loop: blocking there would stall every
/// connection on that loop (and could never finish if the future waits for that loop). `.await`
/// the future instead. This is a programming error, like a `RefCell` borrowed twice; nothing
/// from the network can cause it.
///
/// ```
/// let v = asock::block_on(async { 1 + 1 });
/// assert_eq!(v, 2);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    assert!(
        with_current(|cur| cur.is_none()),
        "asock::block_on / run_blocking called from a task on an asock event loop; .await the \
         future instead"
    );
    let mut future = std::pin::pin!(future);
    let tw = Arc::new(ThreadWaker {
        thread: thread::current(),
        notified: AtomicBool::new(false),
    });
    let waker = Waker::from(tw.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        while !tw.notified.swap(false, Ordering::AcqRel) {
            thread::park();
        }
    }
}
