//! One event loop: a thread that owns a `mio::Poll`, a local run queue, a timer heap and an
//! injection queue that other threads push to.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use slab::Slab;

use super::source::LoopIo;
use super::task::{LocalTasks, NewTask, Schedule, Task};
use super::timer::{TimerEntry, TimerHeap};
use crate::util::lock;

/// Token of the loop's own `mio::Waker`; registrations use slab keys, which never reach it.
const WAKE_TOKEN: Token = Token(usize::MAX);
/// Tasks run between two polls for I/O, so sockets are not starved by a busy task set.
const TASK_BUDGET: usize = 64;
/// Tables sized for fewer sockets than this are never shrunk.
const SHRINK_FROM: usize = 1024;

/// What other threads share with a loop: how to reach it and what it owns for them.
pub(crate) struct LoopShared {
    /// Identifies the manager this loop belongs to.
    pub(crate) manager_id: usize,
    registry: mio::Registry,
    waker: mio::Waker,
    inject: Mutex<Inject>,
    /// Registered I/O sources, by token. Locked once per poll batch, and to (de)register.
    ios: Mutex<Slab<Arc<dyn LoopIo>>>,
    shutdown: AtomicBool,
    /// The CPU the loop thread is pinned to, once it pinned itself.
    cpu: OnceLock<usize>,
}

/// Work handed to the loop by other threads: tasks woken or launched there, and timers. The
/// loop moves the tasks onto its thread-local [`QUEUE`] every iteration (one shared queue for
/// every wake-up took fewer instructions but cost more CPU: two atomics per wake).
#[derive(Default)]
struct Inject {
    tasks: VecDeque<Arc<Task<LoopShared>>>,
    /// Tasks launched since the loop last looked, with their futures.
    new: Vec<NewTask<LoopShared>>,
    timers: Vec<Arc<TimerEntry>>,
    /// The loop is (about to be) blocked in `epoll_wait` and needs a wake-up to see new work.
    sleeping: bool,
    /// The loop has exited: new work is dropped (which cancels a task).
    closed: bool,
}

/// What only the loop's own thread touches.
pub(crate) struct Local {
    pub(crate) shared: Arc<LoopShared>,
    timers: RefCell<TimerHeap>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Local>>> = const { RefCell::new(None) };
    /// The loop running on this thread (null for none), compared by address: the one check a
    /// wake-up makes to know whether it may push straight onto [`QUEUE`].
    static HOME: Cell<*const LoopShared> = const { Cell::new(std::ptr::null()) };
    /// The run queue of the loop on this thread: a wake-up on the task's own loop pushes here
    /// with no lock and no atomic.
    static QUEUE: RefCell<VecDeque<Arc<Task<LoopShared>>>> = const { RefCell::new(VecDeque::new()) };
}

/// Runs `f` with the loop that owns the current thread, if any.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Local>) -> R) -> R {
    CURRENT.with(|c| f(c.borrow().as_deref()))
}

impl LoopShared {
    pub(crate) fn new(poll: &Poll, manager_id: usize) -> io::Result<Arc<LoopShared>> {
        Ok(Arc::new(LoopShared {
            manager_id,
            registry: poll.registry().try_clone()?,
            waker: mio::Waker::new(poll.registry(), WAKE_TOKEN)?,
            inject: Mutex::new(Inject::default()),
            ios: Mutex::new(Slab::new()),
            shutdown: AtomicBool::new(false),
            cpu: OnceLock::new(),
        }))
    }

    /// The CPU this loop's thread is pinned to (`SelectorManager::builder().pin_threads(true)`).
    pub(crate) fn cpu(&self) -> Option<usize> {
        self.cpu.get().copied()
    }

    /// Arms a timer on this loop: straight into its heap on the loop's own thread, through the
    /// injection queue otherwise. On a closed loop the timer is orphaned at once (its owner
    /// re-arms it elsewhere).
    pub(crate) fn add_timer(self: &Arc<Self>, timer: Arc<TimerEntry>) {
        let timer = with_current(|cur| match cur {
            Some(local) if Arc::ptr_eq(&local.shared, self) => {
                local.timers.borrow_mut().push(timer);
                None
            }
            _ => Some(timer),
        });
        if let Some(timer) = timer {
            let mut inj = lock(&self.inject);
            if inj.closed {
                drop(inj);
                timer.orphan();
                return;
            }
            inj.timers.push(timer);
            self.wake_if_sleeping(inj);
        }
    }

    /// Queues a task woken on another thread, waking the loop if it sleeps.
    fn inject(&self, task: Arc<Task<Self>>) {
        let mut inj = lock(&self.inject);
        if inj.closed {
            // Its future was dropped when the loop exited.
            return;
        }
        inj.tasks.push_back(task);
        self.wake_if_sleeping(inj);
    }

    /// Moves the tasks queued from other threads onto this thread's run queue, new ones
    /// (entered in `local`) after them: `false` when there were none.
    fn take_tasks(&self, local: &mut LocalTasks) -> bool {
        take_tasks(&mut lock(&self.inject), local)
    }

    fn wake_if_sleeping(&self, inj: MutexGuard<'_, Inject>) {
        if inj.sleeping {
            self.wake_sleeping(inj);
        }
    }

    /// Wakes the loop from `epoll_wait` to see the work just handed to it.
    #[cold]
    fn wake_sleeping(&self, mut inj: MutexGuard<'_, Inject>) {
        inj.sleeping = false;
        drop(inj);
        // A failed wake-up (eventfd full) means one is already pending.
        let _ = self.waker.wake();
    }

    /// Asks the loop to exit after its current iteration. From now on work handed to it from
    /// other threads is dropped (a dropped task is cancelled).
    pub(crate) fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        let leftover = {
            let mut inj = lock(&self.inject);
            inj.closed = true;
            (std::mem::take(&mut inj.tasks), std::mem::take(&mut inj.new))
        };
        // Dropped outside the lock: a future's drop may wake or launch tasks.
        drop(leftover);
        let _ = self.waker.wake();
    }

    /// After the loop thread exited (or from a loop thread that cannot wait for it): fails
    /// every wait on and releases every descriptor still registered. (The loop drops its
    /// tasks itself as it exits.)
    pub(crate) fn close_all(&self) {
        let ios = std::mem::take(&mut *lock(&self.ios));
        for (_, io) in ios {
            io.shut();
        }
    }

    /// Registers a descriptor (edge-triggered, both directions); its events go to `io`.
    pub(crate) fn register(
        &self,
        fd: std::os::fd::RawFd,
        io: Arc<dyn LoopIo>,
    ) -> io::Result<usize> {
        if self.shutdown.load(Ordering::Acquire) {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        }
        let key = lock(&self.ios).insert(io);
        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
        if let Err(e) = self
            .registry
            .register(&mut mio::unix::SourceFd(&fd), Token(key), interest)
        {
            lock(&self.ios).remove(key);
            return Err(e);
        }
        Ok(key)
    }

    /// Removes a registration; the descriptor must still be open.
    pub(crate) fn deregister(&self, fd: std::os::fd::RawFd, key: usize) {
        // Errors here mean the fd is already gone from epoll; nothing to undo.
        let _ = self.registry.deregister(&mut mio::unix::SourceFd(&fd));
        let mut ios = lock(&self.ios);
        if ios.contains(key) {
            ios.remove(key);
        }
    }
}

impl Schedule for LoopShared {
    /// Schedules a task on its loop: on the loop's own thread a push onto [`QUEUE`] (no lock,
    /// no atomic), from any other thread through the injection queue.
    #[inline]
    fn schedule(task: Arc<Task<Self>>) {
        if HOME.get() == Arc::as_ptr(task.home()) {
            QUEUE.with_borrow_mut(|q| q.push_back(task));
            return;
        }
        task.home().clone().inject(task);
    }

    /// Hands a new task to this loop. On a closed loop it is dropped at once (its handle
    /// then says it was cancelled).
    fn spawn(&self, new: NewTask<Self>) {
        let mut inj = lock(&self.inject);
        if inj.closed {
            drop(inj);
            drop(new);
            return;
        }
        inj.new.push(new);
        self.wake_if_sleeping(inj);
    }
}

/// Settings a loop runs with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LoopConfig {
    /// Keep polling without blocking for this long after the last event before parking.
    pub(crate) busy_poll: Option<Duration>,
    /// Pin the loop thread to this CPU.
    pub(crate) cpu: Option<usize>,
}

/// The body of a loop thread. With `config.cpu` it first pins itself and reports on `pinned`.
pub(crate) fn run(
    shared: Arc<LoopShared>,
    mut poll: Poll,
    config: LoopConfig,
    pinned: std::sync::mpsc::SyncSender<()>,
) {
    if let Some(cpu) = config.cpu {
        if crate::sys::pin_current_thread(cpu) {
            let _ = shared.cpu.set(cpu);
        }
    }
    // The builder waits for this only when pinning (the channel holds one message).
    let _ = pinned.try_send(());
    drop(pinned);
    let local = Rc::new(Local {
        shared: shared.clone(),
        timers: RefCell::new(TimerHeap::default()),
    });
    CURRENT.with(|c| *c.borrow_mut() = Some(local.clone()));
    // The futures of this loop's tasks (only this thread touches them).
    let mut tasks = LocalTasks::default();
    HOME.set(Arc::as_ptr(&shared));
    QUEUE.with_borrow_mut(|q| q.reserve(64));
    super::coop::enter();
    let mut events = Events::with_capacity(1024);
    let mut wakers: Vec<Waker> = Vec::with_capacity(64);
    let mut last_activity = Instant::now();
    // When the tables were last shrunk: the socket table's capacity then, and the socket count
    // below which to try again (a table whose last entries are still in use cannot shrink, so
    // it is retried only once half of its sockets have left since, or after it grew again).
    let mut shrunk = (0, usize::MAX);
    let mut last_registered = 0;

    loop {
        // 1. Run what is ready, up to a budget.
        let mut ran = 0;
        while ran < TASK_BUDGET {
            match QUEUE.with_borrow_mut(VecDeque::pop_front) {
                Some(task) => {
                    super::coop::reset();
                    tasks.run(task);
                    ran += 1;
                }
                None if shared.take_tasks(&mut tasks) => {}
                None => break,
            }
        }
        if shared.shutdown.load(Ordering::Acquire) {
            break;
        }

        // 2. Decide how long to block, announcing the sleep so injectors wake us.
        let mut timeout = None;
        {
            let mut inj = lock(&shared.inject);
            take_timers(&local, &mut inj);
            // Every iteration, not only when the queue runs dry: a task that keeps yielding
            // must not keep the tasks woken from other threads off the queue.
            take_tasks(&mut inj, &mut tasks);
            let busy = config
                .busy_poll
                .is_some_and(|spin| last_activity.elapsed() < spin);
            if !QUEUE.with_borrow(VecDeque::is_empty) || super::coop::any_deferred() || busy {
                timeout = Some(Duration::ZERO);
            } else {
                inj.sleeping = true;
                if let Some(deadline) = local.timers.borrow().next_deadline() {
                    timeout = Some(deadline.saturating_duration_since(Instant::now()));
                }
            }
        }

        // 3. Wait for I/O.
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                // epoll_wait only fails on programming errors; back off rather than spin.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        {
            let mut inj = lock(&shared.inject);
            inj.sleeping = false;
            take_timers(&local, &mut inj);
        }

        // 4. Turn events into readiness and wake whoever waits for it.
        let mut any = false;
        let registered = {
            let mut ios = lock(&shared.ios);
            for event in events.iter() {
                if event.token() == WAKE_TOKEN {
                    continue;
                }
                if let Some(io) = ios.get(event.token().0) {
                    io.scheduled().set_readiness(event, &mut wakers);
                    any = true;
                }
            }
            if ios.len() * 4 < ios.capacity() && ios.capacity() > SHRINK_FROM {
                if ios.capacity() > shrunk.0 {
                    shrunk.1 = usize::MAX;
                }
                if ios.len() < shrunk.1 {
                    // Most sockets left: give back what the tables grew to for them.
                    shrink_tables(&shared, &mut ios, &mut tasks);
                    shrunk = (ios.capacity(), ios.len() / 2);
                }
            }
            ios.len()
        };
        for w in wakers.drain(..) {
            w.wake();
        }
        // A few deferred tasks, behind the ones I/O just woke.
        super::coop::wake_deferred(super::coop::DEFERRED_PER_TURN);
        if registered < last_registered {
            // Sockets left: pooled buffers beyond what the rest could use go back.
            crate::channel::buffer::fit_pools(registered);
        }
        last_registered = registered;

        // 5. Fire expired timers.
        let now = Instant::now();
        local.timers.borrow_mut().fire_expired(now);
        if any || ran > 0 || !QUEUE.with_borrow(VecDeque::is_empty) {
            last_activity = now;
        }
    }

    // Exit: refuse new work, drop queued tasks (cancelling them), hand armed timers back to
    // their owners (a sleep polled off the loops re-arms elsewhere), leave the thread clean.
    let (leftover, timers) = {
        let mut inj = lock(&shared.inject);
        inj.closed = true;
        (
            (std::mem::take(&mut inj.tasks), std::mem::take(&mut inj.new)),
            std::mem::take(&mut inj.timers),
        )
    };
    // From here wake-ups go to the closed injection queue, which drops them.
    HOME.set(std::ptr::null());
    let queued = QUEUE.with_borrow_mut(std::mem::take);
    drop((queued, leftover));
    // Every task of the loop ends here, on its own thread (its handle says cancelled).
    drop(tasks);
    for t in timers {
        t.orphan();
    }
    local.timers.borrow_mut().orphan_all();
    super::coop::exit();
    CURRENT.with(|c| c.borrow_mut().take());
}

/// Shrinks the loop's tables after most of its sockets left (a burst of connections came and
/// went).
fn shrink_tables(shared: &LoopShared, ios: &mut Slab<Arc<dyn LoopIo>>, tasks: &mut LocalTasks) {
    // Keys stay valid: only vacant entries at the end go.
    ios.shrink_to_fit();
    tasks.shrink();
    lock(&shared.inject).tasks.shrink_to_fit();
    QUEUE.with_borrow_mut(VecDeque::shrink_to_fit);
    super::coop::shrink();
}

/// Moves the tasks in `inj` onto this thread's run queue (new ones entered in `local`):
/// `false` when there were none.
fn take_tasks(inj: &mut Inject, local: &mut LocalTasks) -> bool {
    if inj.tasks.is_empty() && inj.new.is_empty() {
        return false;
    }
    QUEUE.with_borrow_mut(|q| {
        q.append(&mut inj.tasks);
        for new in inj.new.drain(..) {
            q.push_back(local.admit(new));
        }
    });
    true
}

fn take_timers(local: &Local, inj: &mut Inject) {
    if !inj.timers.is_empty() {
        let mut heap = local.timers.borrow_mut();
        for t in inj.timers.drain(..) {
            heap.push(t);
        }
    }
}
