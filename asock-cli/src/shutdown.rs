//! Graceful shutdown on SIGINT/SIGTERM in every mode, and the descriptor-exhaustion log.
//!
//! The first signal stops gracefully and the process exits 0: a stream echo server closes its
//! listener (no new connections; a Unix socket file is removed), then open connections get
//! `--grace` seconds to finish; a UDP echo server closes its socket; `connect` and `listen`
//! send what they read from stdin, close their side and exit ([`Stopper`]). A second signal
//! exits at once with status 128 + the signal number.
//!
//! The handlers are installed whatever the signal's disposition was, so a server started in the
//! background from a script (where SIGINT is ignored) still stops on `kill -INT`.
//!
//! Signals reach the program through a self-pipe: the handler only `write`s the signal number
//! to a pipe (async-signal-safe), and a plain thread reads it and does the rest.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use asock::{AcceptBackoff, ServerSocket};

use crate::common::{CliError, CliResult};

/// The pipe's write end, for the signal handler (-1 until installed).
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn handle_signal(sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) is async-signal-safe; `byte` outlives the call and the length is 1.
        // A full pipe (EAGAIN, the end is non-blocking) only drops a redundant signal.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// Installs the SIGINT and SIGTERM handlers and starts the thread that acts on them: `first`
/// runs at the first signal; at the second the process exits at once.
pub fn on_signal(first: impl FnOnce(i32) + Send + 'static) -> CliResult {
    install(first).map_err(|e| CliError(format!("cannot install signal handlers: {e}")))
}

fn install(first: impl FnOnce(i32) + Send + 'static) -> io::Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two new descriptors into the two-element array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fds[1] is the pipe's write end we just created; F_SETFL only changes its flags.
    if unsafe { libc::fcntl(fds[1], libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fds[0] is a new descriptor that nothing else owns; the File closes it.
    let mut reader = unsafe { File::from_raw_fd(fds[0]) };
    // The write end stays open for the life of the process (the handler may run at any time).
    PIPE_WRITE.store(fds[1], Ordering::Relaxed);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid value (no flags, empty mask) that we then fill
        // in; `handle_signal` has the signature sa_sigaction expects without SA_SIGINFO and only
        // calls async-signal-safe functions.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handle_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let next = move |reader: &mut File| -> Option<i32> {
        let mut b = [0u8; 1];
        loop {
            match reader.read(&mut b) {
                Ok(1) => return Some(i32::from(b[0])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => return None,
            }
        }
    };
    std::thread::Builder::new()
        .name("asock-signals".into())
        .spawn(move || {
            let Some(sig) = next(&mut reader) else { return };
            *lock(&FIRST.0) = Some(false);
            first(sig);
            *lock(&FIRST.0) = Some(true);
            FIRST.1.notify_all();
            if let Some(sig) = next(&mut reader) {
                tracing::warn!("{}: exiting now", signal_name(sig));
                exit_now(128 + sig);
            }
        })?;
    Ok(())
}

/// Whether the first signal's action has started (`Some(false)`) or finished (`Some(true)`).
static FIRST: (Mutex<Option<bool>>, Condvar) = (Mutex::new(None), Condvar::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called before the process exits: when a first signal's action is still running on the
/// signal thread (closing a socket, removing its file), waits for it, at most 2 s, so that
/// returning from `main` does not cut it short.
pub fn settle() {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut state = lock(&FIRST.0);
    while *state == Some(false) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        state = FIRST
            .1
            .wait_timeout(state, left)
            .map_or_else(|e| e.into_inner().0, |r| r.0);
    }
}

/// Ends the process from a thread other than main, at once. `std::process::exit` would first
/// flush stdout, whose lock the relaying main thread may hold while it waits for the socket
/// (a deadlock); the tool flushes stdout after every write, so nothing is lost.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) is always safe to call; it ends the process without running atexit
    // handlers or touching Rust's stdio locks.
    unsafe { libc::_exit(code) }
}

/// The name of a signal the tool handles.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// Open connections of a server, and the grace period they get at shutdown.
#[derive(Clone, Debug)]
pub struct Graceful {
    active: Arc<AtomicUsize>,
    grace: Duration,
    /// When the first signal came: the grace period runs from then.
    stopped: Arc<std::sync::OnceLock<Instant>>,
}

/// Counts one open connection while it lives.
#[derive(Debug)]
pub struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Graceful {
    /// Connections get `grace` to finish after the first signal.
    pub fn new(grace: Duration) -> Self {
        Graceful {
            active: Arc::new(AtomicUsize::new(0)),
            grace,
            stopped: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// Handles SIGINT/SIGTERM from now on: the first calls `stop_accepting` (which must make the
    /// accept loop end), the second exits at once.
    pub fn install(&self, stop_accepting: impl FnOnce() + Send + 'static) -> CliResult {
        let active = self.active.clone();
        let grace = self.grace;
        let stopped = self.stopped.clone();
        on_signal(move |sig| {
            let _ = stopped.set(Instant::now());
            tracing::warn!(
                "{}: no longer accepting; {} connection(s) open, waiting up to {:.1} s \
                 (signal again to exit now)",
                signal_name(sig),
                active.load(Ordering::Acquire),
                grace.as_secs_f64()
            );
            stop_accepting();
        })
    }

    /// Counts a connection until the returned guard is dropped.
    pub fn track(&self) -> Tracked {
        self.active.fetch_add(1, Ordering::AcqRel);
        Tracked(self.active.clone())
    }

    /// When the grace period ends: `grace` after the first signal (or from now, before one).
    pub fn deadline(&self) -> Instant {
        self.stopped.get().copied().unwrap_or_else(Instant::now) + self.grace
    }

    /// After the listener closed: waits until every connection finished or the grace period
    /// ran out. The caller then returns, which closes what is left.
    pub async fn drain(&self) {
        let deadline = self.deadline();
        while self.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            asock::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.active.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!("grace period over: closing {left} connection(s)");
        }
    }
}

/// Logs descriptor exhaustion on `server` once per burst (the library backs off meanwhile).
pub fn log_accept_backoff(server: &ServerSocket) {
    server.on_accept_backoff(|event| match event {
        AcceptBackoff::Started { error } => tracing::warn!(
            "accept: {error}: out of descriptors, backing off (new clients wait in the backlog)"
        ),
        AcceptBackoff::Ended { retries, waited } => tracing::warn!(
            "accepting again after {:.1} s ({retries} retries)",
            waited.as_secs_f64()
        ),
        AcceptBackoff::ConnectionLimit { max } => tracing::warn!(
            "{max} connections open (--max-connections): new clients wait in the backlog"
        ),
        _ => {}
    });
}

/// What the first signal stops in `connect`, `listen` and the UDP echo server: the action
/// registered last (closing a listener or a socket, ending the relay's stdin side). With none
/// registered yet (still connecting) the process exits 0 at once.
#[derive(Clone, Default)]
pub struct Stopper {
    action: Arc<Mutex<Option<StopAction>>>,
}

type StopAction = Box<dyn FnOnce(i32) + Send>;

impl Stopper {
    /// Installs the signal handlers; from now on the first signal runs the current action.
    pub fn install() -> CliResult<Stopper> {
        let stopper = Stopper::default();
        let action = stopper.action.clone();
        on_signal(move |sig| {
            let act = action.lock().unwrap_or_else(|e| e.into_inner()).take();
            match act {
                Some(act) => act(sig),
                None => {
                    tracing::warn!("{}: stopping", signal_name(sig));
                    exit_now(0);
                }
            }
        })?;
        Ok(stopper)
    }

    /// Makes `action` what the first signal does (replacing the previous one).
    pub fn set(&self, action: impl FnOnce(i32) + Send + 'static) {
        *self.action.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(action));
    }
}
