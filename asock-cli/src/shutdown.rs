//! Graceful shutdown of `echo-server` on SIGINT/SIGTERM, and the descriptor-exhaustion log.
//!
//! The first signal closes the listener (no new connections; a Unix socket file is removed),
//! then open connections get `--grace` seconds to finish before the server returns and the
//! process exits 0. A second signal exits at once with status 128 + the signal number.
//!
//! Signals reach the program through a self-pipe: the handler only `write`s the signal number
//! to a pipe (async-signal-safe), and a plain thread reads it and does the rest.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asock::{AcceptBackoff, ServerSocket};

use crate::common::{CliError, CliResult};

/// The pipe's write end, for the signal handler (-1 until installed).
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
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
        // in; `on_signal` has the signature sa_sigaction expects without SA_SIGINFO and only
        // calls async-signal-safe functions.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
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
            first(sig);
            if let Some(sig) = next(&mut reader) {
                eprintln!("asock: {}: exiting now", signal_name(sig));
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}

fn signal_name(sig: i32) -> &'static str {
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
        }
    }

    /// Handles SIGINT/SIGTERM from now on: the first calls `stop_accepting` (which must make the
    /// accept loop end), the second exits at once.
    pub fn install(&self, stop_accepting: impl FnOnce() + Send + 'static) -> CliResult {
        let active = self.active.clone();
        let grace = self.grace;
        install(move |sig| {
            eprintln!(
                "asock: {}: no longer accepting; {} connection(s) open, waiting up to {:.1} s \
                 (signal again to exit now)",
                signal_name(sig),
                active.load(Ordering::Acquire),
                grace.as_secs_f64()
            );
            stop_accepting();
        })
        .map_err(|e| CliError(format!("cannot install signal handlers: {e}")))
    }

    /// Counts a connection until the returned guard is dropped.
    pub fn track(&self) -> Tracked {
        self.active.fetch_add(1, Ordering::AcqRel);
        Tracked(self.active.clone())
    }

    /// After the listener closed: waits until every connection finished or the grace period
    /// ran out. The caller then returns, which closes what is left.
    pub async fn drain(&self) {
        let deadline = Instant::now() + self.grace;
        while self.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            asock::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.active.load(Ordering::Acquire);
        if left > 0 {
            eprintln!("asock: grace period over: closing {left} connection(s)");
        }
    }
}

/// Logs descriptor exhaustion on `server` once per burst (the library backs off meanwhile).
pub fn log_accept_backoff(server: &ServerSocket) {
    server.on_accept_backoff(|event| match event {
        AcceptBackoff::Started { error } => eprintln!(
            "asock: accept: {error}: out of descriptors, backing off (new clients wait in the \
             backlog)"
        ),
        AcceptBackoff::Ended { retries, waited } => eprintln!(
            "asock: accepting again after {:.1} s ({retries} retries)",
            waited.as_secs_f64()
        ),
        _ => {}
    });
}
