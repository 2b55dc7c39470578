//! `asock bench`: an echo load generator, built on the asock library like any other user.
//!
//! Each connection is one task on the tool's own event loops. Every echoed byte is compared
//! with what was sent (in place, in the read channel's buffer: no copy); a mismatch ends that
//! connection with an error. Counters are per loop thread (one writer each, no shared cache
//! line), latencies go to a per-thread HDR histogram, and the main thread only samples.
//!
//! Modes:
//! - `pingpong`: one message in flight per connection; latency is the round trip.
//! - `stream`: a writer and a reader per connection; the writer sends messages back to back,
//!   the reader verifies them; latency is the time from a message's write to its full echo.
//! - `idle`: one verified round trip per connection, then the connection waits, idle, until
//!   the end (for memory measurements: `bench/memory.sh`).

mod args;
mod cpu;
mod driver;
mod pattern;
mod progress;
mod report;
mod stats;
mod udp;

use std::io::Write;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asock::{JoinHandle, SelectorManager};

pub use args::{BenchArgs, BenchMode};
use cpu::{cpu_time, machine_busy};
use driver::{connection, Conn};
use pattern::Pattern;
use progress::{wait, Progress};
use report::Report;
use stats::{lock, new_histogram, totals, Shared, MEASURE, REGISTRY, STOP, WARMUP};

use crate::common::{announce, seconds, CliError, CliResult};
use crate::tls::{client_config, ClientOptions};

/// At most this many connection attempts are in flight at once (listen backlogs overflow).
const CONNECT_WAVE: usize = 128;
/// How long connections get to finish once the run is over.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How long they get when not one echo came back (waiting longer would not help), or after a
/// signal.
const SHORT_DRAIN: Duration = Duration::from_secs(1);

/// The signal that interrupted the run (0: none).
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// Whether a SIGINT/SIGTERM asked to end the run early.
fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Acquire) != 0
}

/// Runs `asock bench`.
pub fn run(args: BenchArgs) -> CliResult {
    if args.udp && args.mode == BenchMode::Idle {
        return Err(CliError(
            "bench --udp supports --mode pingpong and stream".into(),
        ));
    }
    if args.udp && args.mode == BenchMode::Stream {
        if args.size() < udp::SEQ_LEN {
            return Err(CliError(format!(
                "--udp --mode stream needs --size of at least {} (each datagram starts with its sequence number)",
                udp::SEQ_LEN
            )));
        }
        if args.window == 0 {
            return Err(CliError("--window must be at least 1".into()));
        }
    }
    let tls = if args.tls {
        Some(client_config(&ClientOptions {
            ca: args.ca.as_deref(),
            insecure: args.insecure,
            ..ClientOptions::default()
        })?)
    } else {
        None
    };
    if args.connections == 0 {
        return Err(CliError("--connections must be at least 1".into()));
    }
    if args.threads == 0 {
        return Err(CliError("--threads must be at least 1".into()));
    }
    if args.size() < if args.lines { 2 } else { 1 } {
        return Err(CliError(
            "--size must be at least 1 (2 with --lines, for the \\r\\n)".into(),
        ));
    }
    let duration = seconds(args.duration)?;
    let warmup = if args.messages.is_some() {
        Duration::ZERO
    } else {
        seconds(args.warmup)?
    };
    if let Some(pid) = args.server_pid {
        if cpu_time(&pid.to_string()).is_none() {
            return Err(CliError(format!("cannot read /proc/{pid}/stat")));
        }
    }
    let addr = args
        .addr
        .to_socket_addrs()
        .map_err(|e| CliError(format!("bad address {}: {e}", args.addr)))?
        .next()
        .ok_or_else(|| CliError(format!("no address for {}", args.addr)))?;

    // The first signal ends the run early: what was measured so far is reported, then the
    // process exits 128 + the signal (130 for Ctrl-C). A second exits at once.
    crate::shutdown::on_signal(|sig| INTERRUPTED.store(sig, Ordering::Release))?;

    let mut builder = SelectorManager::builder()
        .threads(args.threads)
        .name("asock-bench");
    if let Some(us) = args.busy_poll {
        builder = builder.busy_poll(Duration::from_micros(us));
    }
    let selector = builder.build()?;
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(if warmup.is_zero() { MEASURE } else { WARMUP }),
        connected: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        first_error: Mutex::new(None),
        stop_waiters: Mutex::new(Vec::new()),
        stopped: AtomicBool::new(false),
        udp: Default::default(),
    });
    let pattern = Arc::new(Pattern::new(args.size(), args.lines));
    let server_pid = args.server_pid.map(|p| p.to_string());
    let cpu_now = || {
        (
            server_pid.as_deref().and_then(cpu_time),
            cpu_time("self"),
            machine_busy(),
        )
    };

    let mut progress = Progress::new();
    let (mut start_cpu, mut start) = (cpu_now(), Instant::now());
    let mut start_msgs = totals();

    // Connect in waves so listen backlogs do not overflow into SYN retries.
    let n = args.connections;
    let mut handles: Vec<JoinHandle<()>> = Vec::with_capacity(n);
    for id in 0..n {
        if interrupted() {
            break;
        }
        while handles.len()
            >= shared.connected.load(Ordering::Relaxed)
                + shared.done.load(Ordering::Relaxed)
                + CONNECT_WAVE
        {
            std::thread::sleep(Duration::from_micros(200));
            progress.tick("connecting", &shared);
        }
        let quota = args
            .messages
            .map(|m| m / n as u64 + u64::from((id as u64) < m % n as u64));
        let conn = Conn {
            id,
            selector: selector.clone(),
            addr,
            shared: shared.clone(),
            pattern: pattern.clone(),
            mode: args.mode,
            quota,
            tls: tls.clone(),
            udp: args.udp,
            window: args.window,
        };
        let sh = shared.clone();
        handles.push(selector.launch(async move {
            if let Err(e) = connection(conn).await {
                sh.fail(e);
            }
            sh.done.fetch_add(1, Ordering::Release);
        }));
    }
    // Wait for every connection to be up (or failed).
    while shared.connected.load(Ordering::Relaxed) + shared.done.load(Ordering::Relaxed) < n
        && !interrupted()
    {
        std::thread::sleep(Duration::from_millis(1));
        progress.tick("connecting", &shared);
    }
    if shared.connected.load(Ordering::Relaxed) == 0 && shared.errors.load(Ordering::Relaxed) > 0 {
        progress.clear();
        let e = lock(&shared.first_error).take().unwrap_or_default();
        return Err(CliError(e));
    }
    if args.mode == BenchMode::Idle && !args.json {
        announce(&format!(
            "ready connections={}",
            shared.connected.load(Ordering::Relaxed)
        ))?;
    }

    let (end_msgs, end_cpu, secs) = if args.messages.is_some() {
        // A fixed number of messages: the run ends when every connection is done.
        while shared.done.load(Ordering::Acquire) < n && !interrupted() {
            std::thread::sleep(Duration::from_micros(500));
            progress.tick("running", &shared);
        }
        (totals(), cpu_now(), start.elapsed().as_secs_f64())
    } else {
        if !warmup.is_zero() {
            wait(Instant::now() + warmup, "warm-up", &mut progress, &shared);
            (start_cpu, start) = (cpu_now(), Instant::now());
            start_msgs = totals();
            shared.phase.store(MEASURE, Ordering::Release);
        } else {
            (start_cpu, start) = (cpu_now(), Instant::now());
            start_msgs = totals();
        }
        wait(start + duration, "running", &mut progress, &shared);
        let r = (totals(), cpu_now(), start.elapsed().as_secs_f64());
        shared.phase.store(STOP, Ordering::Release);
        r
    };
    shared.stop();
    progress.clear();

    // Let every connection finish its last echo and see the server close.
    let started = handles.len();
    let no_echo = totals().0 == 0;
    let limit = if no_echo || interrupted() {
        SHORT_DRAIN
    } else {
        DRAIN_LIMIT
    };
    let drained = selector.run_blocking(async {
        let all = async {
            for h in handles {
                let _ = h.await;
            }
        };
        asock::time::timeout(limit, all).await.is_ok()
    });
    if !drained && !interrupted() {
        let stuck = started - shared.done.load(Ordering::Acquire);
        let hint = if !no_echo {
            "; the server stopped answering them"
        } else if args.lines {
            "; not one echo came back: does the server echo at all?"
        } else {
            "; not one echo came back: a line echo server (asock echo-server without --raw) \
             answers only complete lines, so add --lines"
        };
        shared.fail(format!(
            "{stuck} connection(s) still waiting for an echo {limit:?} after the end{hint}"
        ));
        shared
            .errors
            .fetch_add(stuck.saturating_sub(1), Ordering::Relaxed);
    }

    let mut hist = new_histogram();
    for s in lock(&REGISTRY).iter() {
        let _ = hist.add(&*lock(&s.hist));
    }
    let diff = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
    let report = Report {
        msgs: end_msgs.0 - start_msgs.0,
        bytes: end_msgs.1 - start_msgs.1,
        secs: secs.max(1e-9),
        hist,
        errors: shared.errors.load(Ordering::Relaxed),
        connections: n,
        server_cpu: diff(start_cpu.0, end_cpu.0),
        client_cpu: diff(start_cpu.1, end_cpu.1),
        other_cpu: (|| {
            let busy = diff(start_cpu.2, end_cpu.2)?;
            let ours = diff(start_cpu.0, end_cpu.0)? + diff(start_cpu.1, end_cpu.1)?;
            Some(busy.saturating_sub(ours))
        })(),
        udp: (args.udp && args.mode == BenchMode::Stream).then(|| shared.udp.totals()),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", report.json(&args))?;
    } else {
        write!(out, "{}", report.human(&args))?;
        writeln!(out, "{}", report.machine_line())?;
    }
    out.flush()?;
    drop(out);
    selector.close();
    if let sig @ 1.. = INTERRUPTED.load(Ordering::Acquire) {
        tracing::warn!(
            "{}: the run was cut short; the figures above cover what was measured",
            crate::shutdown::signal_name(sig)
        );
        std::process::exit(128 + sig);
    }
    if report.errors > 0 {
        let first = lock(&shared.first_error).take().unwrap_or_default();
        return Err(CliError(format!(
            "{} connection(s) failed; first: {first}",
            report.errors
        )));
    }
    Ok(())
}
