//! The live progress line on stderr.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::interrupted;
use super::stats::{totals, Shared};

/// Shows the current rate on stderr when it is a terminal.
pub struct Progress {
    pub on: bool,
    pub last: Instant,
    pub last_msgs: u64,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            last: Instant::now(),
            last_msgs: totals().0,
        }
    }

    pub fn tick(&mut self, label: &str, shared: &Shared) {
        if !self.on || self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        let (msgs, _) = totals();
        let rate = (msgs - self.last_msgs) as f64 / self.last.elapsed().as_secs_f64();
        self.last = Instant::now();
        self.last_msgs = msgs;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K{label}: {rate:.0} msgs/s, {} connected, {} errors",
            shared.connected.load(Ordering::Relaxed),
            shared.errors.load(Ordering::Relaxed)
        );
        let _ = err.flush();
    }

    pub fn clear(&self) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

/// Sleeps until `until`, updating the progress line; returns early at a signal.
pub fn wait(until: Instant, label: &str, progress: &mut Progress, shared: &Shared) {
    loop {
        let now = Instant::now();
        if now >= until || interrupted() {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
        progress.tick(label, shared);
    }
}
