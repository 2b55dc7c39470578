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

use async_task::Runnable;
use mio::{Events, Poll, Token};
use slab::Slab;

use super::source::LoopIo;
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
    /// Every live task placed on this loop, so closing the manager can drop them all.
    tasks: Mutex<Tasks>,
    shutdown: AtomicBool,
    /// The CPU the loop thread is pinned to, once it pinned itself.
    cpu: OnceLock<usize>,
}

/// The live tasks of a loop: a waker each, which schedules the task when woken.
#[derive(Default)]
struct Tasks {
    wakers: Slab<Option<Waker>>,
    /// The manager closed: no task may be added.
    closed: bool,
}

/// Work handed to the loop by other threads.
#[derive(Default)]
struct Inject {
    tasks: VecDeque<Runnable>,
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
    /// The run queue of the loop on this thread (a thread runs at most one loop). A
    /// thread-local of its own so that scheduling a task on its own loop is one address
    /// comparison and one push, with no lookup of the loop.
    static QUEUE: RefCell<VecDeque<Runnable>> = const { RefCell::new(VecDeque::new()) };
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
            tasks: Mutex::new(Tasks::default()),
            shutdown: AtomicBool::new(false),
            cpu: OnceLock::new(),
        }))
    }

    /// The CPU this loop's thread is pinned to (`SelectorManager::builder().pin_threads(true)`).
    pub(crate) fn cpu(&self) -> Option<usize> {
        self.cpu.get().copied()
    }

    /// Schedules a task on this loop: straight onto the local queue when called on the loop's
    /// own thread (no lock, no wake-up), through the injection queue otherwise.
    pub(crate) fn schedule(self: &Arc<Self>, runnable: Runnable) {
        if HOME.get() == Arc::as_ptr(self) {
            QUEUE.with_borrow_mut(|q| q.push_back(runnable));
            return;
        }
        let mut inj = lock(&self.inject);
        if inj.closed {
            drop(inj);
            drop_tasks([runnable]);
            return;
        }
        inj.tasks.push_back(runnable);
        self.wake_if_sleeping(inj);
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

    /// Records a new task (its waker) so [`close_all`](Self::close_all) can drop it; `None`
    /// once the manager closed. Pair with [`forget_task`](Self::forget_task).
    pub(crate) fn track_task(&self) -> Option<usize> {
        let mut tasks = lock(&self.tasks);
        (!tasks.closed).then(|| tasks.wakers.insert(None))
    }

    /// Sets the waker of a tracked task (before it first runs).
    pub(crate) fn set_task_waker(&self, key: usize, waker: Waker) {
        if let Some(slot) = lock(&self.tasks).wakers.get_mut(key) {
            *slot = Some(waker);
        }
    }

    /// The task finished or was dropped.
    pub(crate) fn forget_task(&self, key: usize) {
        let mut tasks = lock(&self.tasks);
        if tasks.wakers.contains(key) {
            tasks.wakers.remove(key);
        }
    }

    fn wake_if_sleeping(&self, mut inj: MutexGuard<'_, Inject>) {
        let wake = std::mem::replace(&mut inj.sleeping, false);
        drop(inj);
        if wake {
            // A failed wake-up (eventfd full) means one is already pending.
            let _ = self.waker.wake();
        }
    }

    /// Asks the loop to exit after its current iteration. From now on work handed to it from
    /// other threads is dropped (a dropped task is cancelled).
    pub(crate) fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        let leftover = {
            let mut inj = lock(&self.inject);
            inj.closed = true;
            std::mem::take(&mut inj.tasks)
        };
        drop_tasks(leftover);
        let _ = self.waker.wake();
    }

    /// After the loop thread exited (or from a loop thread that cannot wait for it): drops
    /// every task still alive, and fails every wait on and releases every descriptor still
    /// registered.
    pub(crate) fn close_all(&self) {
        let wakers: Vec<Waker> = {
            let mut tasks = lock(&self.tasks);
            tasks.closed = true;
            std::mem::take(&mut tasks.wakers)
                .into_iter()
                .filter_map(|(_, w)| w)
                .collect()
        };
        // Waking schedules each task on this closed loop, which drops (cancels) it.
        for w in wakers {
            w.wake();
        }
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
            let next = QUEUE.with_borrow_mut(VecDeque::pop_front);
            match next {
                Some(task) => {
                    super::coop::reset();
                    task.run();
                    ran += 1;
                }
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
            take_injected(&local, &mut inj);
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
            take_injected(&local, &mut inj);
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
                    shrink_tables(&shared, &mut ios);
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
        if any || !QUEUE.with_borrow(VecDeque::is_empty) {
            last_activity = now;
        }
    }

    // Exit: refuse new work, drop queued tasks (cancelling them), hand armed timers back to
    // their owners (a sleep polled off the loops re-arms elsewhere), leave the thread clean.
    let (leftover, timers) = {
        let mut inj = lock(&shared.inject);
        inj.closed = true;
        (
            std::mem::take(&mut inj.tasks),
            std::mem::take(&mut inj.timers),
        )
    };
    drop_tasks(leftover);
    for t in timers {
        t.orphan();
    }
    loop {
        let queued = QUEUE.with_borrow_mut(std::mem::take);
        if queued.is_empty() {
            break;
        }
        drop(queued);
    }
    local.timers.borrow_mut().orphan_all();
    super::coop::exit();
    HOME.set(std::ptr::null());
    CURRENT.with(|c| c.borrow_mut().take());
}

/// Drops tasks that will never run again (their loop closed), cancelling them.
///
/// A task's drop may wake another task from inside a lock that the second task's drop needs
/// (a channel's last sender, dropped with the first task, wakes the receiving task from inside
/// `event-listener`'s list lock, and the receiver's drop takes that lock to unlist itself).
/// Dropping the second task inside that wake-up would deadlock, so while a drop is under way on
/// this thread every further one is queued, and the outermost call drops them afterwards.
fn drop_tasks(tasks: impl IntoIterator<Item = Runnable>) {
    thread_local! {
        static DEFERRED: std::cell::RefCell<Option<Vec<Runnable>>> =
            const { std::cell::RefCell::new(None) };
    }
    let mut tasks = tasks.into_iter();
    // `None`: a drop is under way on this thread and took the tasks; otherwise this call is
    // the outermost and drops them itself.
    let outermost = DEFERRED.try_with(|d| {
        let mut d = d.borrow_mut();
        match &mut *d {
            Some(list) => {
                list.extend(&mut tasks);
                false
            }
            None => {
                *d = Some(Vec::new());
                true
            }
        }
    });
    match outermost {
        Ok(false) => {}
        Ok(true) => {
            for task in tasks {
                drop(task);
            }
            while let Some(task) = DEFERRED.with(|d| d.borrow_mut().as_mut().and_then(Vec::pop)) {
                drop(task);
            }
            DEFERRED.with(|d| *d.borrow_mut() = None);
        }
        // The thread is exiting and its locals are gone: nothing can be deferred.
        Err(_) => tasks.for_each(drop),
    }
}

/// Shrinks the loop's tables after most of its sockets left (a burst of connections came and
/// went).
fn shrink_tables(shared: &LoopShared, ios: &mut Slab<Arc<dyn LoopIo>>) {
    // Keys stay valid: only vacant entries at the end go.
    ios.shrink_to_fit();
    lock(&shared.tasks).wakers.shrink_to_fit();
    QUEUE.with_borrow_mut(VecDeque::shrink_to_fit);
    super::coop::shrink();
}

fn take_injected(local: &Local, inj: &mut Inject) {
    if !inj.tasks.is_empty() {
        QUEUE.with_borrow_mut(|q| q.extend(inj.tasks.drain(..)));
    }
    if !inj.timers.is_empty() {
        let mut heap = local.timers.borrow_mut();
        for t in inj.timers.drain(..) {
            heap.push(t);
        }
    }
}
