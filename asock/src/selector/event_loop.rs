//! One event loop: a thread that owns a `mio::Poll`, a local run queue, a timer heap and an
//! injection queue that other threads push to.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use async_task::Runnable;
use mio::{Events, Poll, Token};
use slab::Slab;

use super::io::ScheduledIo;
use super::timer::{TimerEntry, TimerHeap};

/// Token of the loop's own `mio::Waker`; registrations use slab keys, which never reach it.
const WAKE_TOKEN: Token = Token(usize::MAX);
/// Tasks run between two polls for I/O, so sockets are not starved by a busy task set.
const TASK_BUDGET: usize = 64;

/// What other threads share with a loop: how to reach it and what it owns for them.
pub(crate) struct LoopShared {
    /// Identifies the manager this loop belongs to.
    pub(crate) manager_id: usize,
    registry: mio::Registry,
    waker: mio::Waker,
    inject: Mutex<Inject>,
    /// Registered I/O sources, by token. Locked once per poll batch, and to (de)register.
    ios: Mutex<Slab<Arc<ScheduledIo>>>,
    shutdown: AtomicBool,
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
    queue: RefCell<VecDeque<Runnable>>,
    timers: RefCell<TimerHeap>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Local>>> = const { RefCell::new(None) };
}

/// Runs `f` with the loop that owns the current thread, if any.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Local>) -> R) -> R {
    CURRENT.with(|c| f(c.borrow().as_deref()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated in a way that
    // matters (they are queues), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        }))
    }

    /// Schedules a task on this loop: straight onto the local queue when called on the loop's
    /// own thread (no lock, no wake-up), through the injection queue otherwise.
    pub(crate) fn schedule(self: &Arc<Self>, runnable: Runnable) {
        let runnable = with_current(|cur| match cur {
            Some(local) if Arc::ptr_eq(&local.shared, self) => {
                local.queue.borrow_mut().push_back(runnable);
                None
            }
            _ => Some(runnable),
        });
        if let Some(runnable) = runnable {
            let mut inj = lock(&self.inject);
            if inj.closed {
                drop(inj);
                drop(runnable);
                return;
            }
            inj.tasks.push_back(runnable);
            self.wake_if_sleeping(inj);
        }
    }

    /// Adds a timer from another thread.
    pub(crate) fn inject_timer(&self, timer: Arc<TimerEntry>) {
        let mut inj = lock(&self.inject);
        inj.timers.push(timer);
        self.wake_if_sleeping(inj);
    }

    fn wake_if_sleeping(&self, mut inj: MutexGuard<'_, Inject>) {
        let wake = std::mem::replace(&mut inj.sleeping, false);
        drop(inj);
        if wake {
            // A failed wake-up (eventfd full) means one is already pending.
            let _ = self.waker.wake();
        }
    }

    /// Asks the loop to exit after its current iteration.
    pub(crate) fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }

    pub(crate) fn register(
        &self,
        fd: std::os::fd::RawFd,
        io: Arc<ScheduledIo>,
    ) -> io::Result<usize> {
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

    pub(crate) fn deregister(&self, fd: std::os::fd::RawFd, key: usize) {
        // Errors here mean the fd is already gone from epoll; nothing to undo.
        let _ = self.registry.deregister(&mut mio::unix::SourceFd(&fd));
        let mut ios = lock(&self.ios);
        if ios.contains(key) {
            ios.remove(key);
        }
    }
}

impl Local {
    /// Adds a timer on the loop's own thread.
    pub(crate) fn add_timer(&self, timer: Arc<TimerEntry>) {
        self.timers.borrow_mut().push(timer);
    }
}

/// Settings a loop runs with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LoopConfig {
    /// Keep polling without blocking for this long after the last event before parking.
    pub(crate) busy_poll: Option<Duration>,
}

/// The body of a loop thread.
pub(crate) fn run(shared: Arc<LoopShared>, mut poll: Poll, config: LoopConfig) {
    let local = Rc::new(Local {
        shared: shared.clone(),
        queue: RefCell::new(VecDeque::with_capacity(64)),
        timers: RefCell::new(TimerHeap::default()),
    });
    CURRENT.with(|c| *c.borrow_mut() = Some(local.clone()));
    let mut events = Events::with_capacity(1024);
    let mut wakers: Vec<Waker> = Vec::with_capacity(64);
    let mut last_activity = Instant::now();

    loop {
        // 1. Run what is ready, up to a budget.
        let mut ran = 0;
        while ran < TASK_BUDGET {
            let next = local.queue.borrow_mut().pop_front();
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
            if !local.queue.borrow().is_empty() || busy {
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
        {
            let ios = lock(&shared.ios);
            for event in events.iter() {
                if event.token() == WAKE_TOKEN {
                    continue;
                }
                if let Some(io) = ios.get(event.token().0) {
                    io.set_readiness(event, &mut wakers);
                    any = true;
                }
            }
        }
        for w in wakers.drain(..) {
            w.wake();
        }

        // 5. Fire expired timers.
        let now = Instant::now();
        local.timers.borrow_mut().fire_expired(now);
        if any || !local.queue.borrow().is_empty() {
            last_activity = now;
        }
    }

    // Exit: refuse new work, drop queued tasks (cancelling them), leave the thread clean.
    let leftover = {
        let mut inj = lock(&shared.inject);
        inj.closed = true;
        std::mem::take(&mut inj.tasks)
    };
    drop(leftover);
    let queued = std::mem::take(&mut *local.queue.borrow_mut());
    drop(queued);
    CURRENT.with(|c| c.borrow_mut().take());
}

fn take_injected(local: &Local, inj: &mut Inject) {
    if !inj.tasks.is_empty() {
        local.queue.borrow_mut().extend(inj.tasks.drain(..));
    }
    if !inj.timers.is_empty() {
        let mut heap = local.timers.borrow_mut();
        for t in inj.timers.drain(..) {
            heap.push(t);
        }
    }
}
