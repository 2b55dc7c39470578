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

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use asock::tls::TlsConfig;
use asock::{a_socket, ByteReadChannel, ByteWriteChannel, JoinHandle, SelectorManager};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;

use crate::{seconds, CliError, CliResult};

/// Options of `bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Echo server to load (HOST:PORT).
    pub addr: String,
    /// Concurrent connections.
    #[arg(short, long, value_name = "N", default_value_t = 1)]
    pub connections: usize,
    /// Bytes per message (with `--lines`, including the `\r\n`).
    #[arg(short, long, value_name = "BYTES", default_value_t = 64)]
    pub size: usize,
    /// Length of the measured run, in seconds.
    #[arg(short, long, value_name = "SECS", default_value_t = 10.0)]
    pub duration: f64,
    /// Load applied before measuring starts, in seconds.
    #[arg(short, long, value_name = "SECS", default_value_t = 1.0)]
    pub warmup: f64,
    /// Ping-pong (one message in flight per connection), stream (send and receive at once),
    /// or idle (one round trip, then hold the connection until the end).
    #[arg(short, long, value_enum, default_value_t = BenchMode::Pingpong)]
    pub mode: BenchMode,
    /// Messages are lines ending in `\r\n`, for line-echo servers.
    #[arg(long)]
    pub lines: bool,
    /// Send exactly this many messages in all (spread over the connections), without warm-up,
    /// instead of running for `--duration`.
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,
    /// Event-loop threads of the load generator.
    #[arg(short, long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// Keep the load generator's loops polling this many microseconds before parking.
    #[arg(long, value_name = "MICROS")]
    pub busy_poll: Option<u64>,
    /// Also report this process's CPU time (the server's) per echoed message, from
    /// /proc/PID/stat over the measured run.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Load a UDP echo server: each connection is a connected UDP socket and each message one
    /// datagram (ping-pong only; a reply missing for a second counts as an error).
    #[arg(long)]
    pub udp: bool,
    /// Speak TLS.
    #[arg(long, conflicts_with = "udp")]
    pub tls: bool,
    /// Trust this CA certificate (PEM) for `--tls`.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<std::path::PathBuf>,
    /// Do not verify the server certificate (testing only).
    #[arg(long, requires = "tls")]
    pub insecure: bool,
}

/// How `bench` loads the server.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchMode {
    /// One message in flight per connection.
    Pingpong,
    /// Messages back to back, echoes read at the same time.
    Stream,
    /// One round trip, then an idle connection.
    Idle,
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// At most this many connection attempts are in flight at once (listen backlogs overflow).
const CONNECT_WAVE: usize = 128;
/// How long connections get to finish once the run is over.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Counters of one loop thread. Only that thread writes them.
struct ThreadStats {
    msgs: AtomicU64,
    bytes: AtomicU64,
    hist: Mutex<Histogram<u64>>,
}

static REGISTRY: Mutex<Vec<Arc<ThreadStats>>> = Mutex::new(Vec::new());

thread_local! {
    static STATS: Arc<ThreadStats> = {
        let s = Arc::new(ThreadStats {
            msgs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            hist: Mutex::new(new_histogram()),
        });
        lock(&REGISTRY).push(s.clone());
        s
    };
}

fn new_histogram() -> Histogram<u64> {
    // Nanoseconds, 1 ns to 100 s, three significant figures.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// State every connection task shares with the main thread.
struct Shared {
    phase: AtomicU8,
    /// Connections that are up (in `idle` mode: that made their round trip).
    connected: AtomicUsize,
    /// Connection tasks that ended, well or not.
    done: AtomicUsize,
    errors: AtomicUsize,
    first_error: Mutex<Option<String>>,
    stop_waiters: Mutex<Vec<Waker>>,
    stopped: AtomicBool,
}

impl Shared {
    fn fail(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.first_error).get_or_insert(e);
    }

    fn stop(&self) {
        self.phase.store(STOP, Ordering::Release);
        self.stopped.store(true, Ordering::Release);
        for w in std::mem::take(&mut *lock(&self.stop_waiters)) {
            w.wake();
        }
    }

    /// Completes when the run is over.
    async fn stopped(&self) {
        poll_fn(|cx| {
            if self.stopped.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            lock(&self.stop_waiters).push(cx.waker().clone());
            if self.stopped.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// Records one echoed message on this thread.
fn record(start: Instant, bytes: usize, phase: &AtomicU8) {
    let measuring = phase.load(Ordering::Relaxed) == MEASURE;
    let ns = if measuring {
        start.elapsed().as_nanos() as u64
    } else {
        0
    };
    STATS.with(|s| {
        s.msgs
            .store(s.msgs.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        s.bytes.store(
            s.bytes.load(Ordering::Relaxed) + bytes as u64,
            Ordering::Relaxed,
        );
        if measuring {
            lock(&s.hist).saturating_record(ns.max(1));
        }
    });
}

fn totals() -> (u64, u64) {
    lock(&REGISTRY).iter().fold((0, 0), |(m, b), s| {
        (
            m + s.msgs.load(Ordering::Relaxed),
            b + s.bytes.load(Ordering::Relaxed),
        )
    })
}

/// The messages connections send: printable ASCII (so line servers take them), in a few
/// variants so a repeated or reordered echo does not go unnoticed.
struct Pattern {
    variants: Vec<&'static [u8]>,
}

impl Pattern {
    fn new(size: usize, lines: bool) -> Pattern {
        let count = ((32usize << 20) / size.max(1)).clamp(2, 94);
        let variants = (0..count)
            .map(|v| {
                let body = if lines { size - 2 } else { size };
                let mut m: Vec<u8> = (0..body).map(|i| b'!' + ((i + v) % 94) as u8).collect();
                if lines {
                    m.extend_from_slice(b"\r\n");
                }
                // Lives as long as the run: leaked so datagrams can borrow it without a copy.
                &*Box::leak(m.into_boxed_slice())
            })
            .collect();
        Pattern { variants }
    }

    fn message(&self, conn: usize, k: u64) -> &'static [u8] {
        let n = self.variants.len();
        self.variants[(conn + (k % n as u64) as usize) % n]
    }
}

/// Reads `want.len()` bytes and checks them against `want`, in the channel's buffer.
async fn expect(input: &mut ByteReadChannel, want: &[u8]) -> Result<(), String> {
    let mut off = 0;
    while off < want.len() {
        let chunk = input.fill_buf().await.map_err(|e| format!("read: {e}"))?;
        if chunk.is_empty() {
            return Err(format!(
                "the server closed the connection {off} bytes into a {}-byte echo",
                want.len()
            ));
        }
        let n = chunk.len().min(want.len() - off);
        if chunk[..n] != want[off..off + n] {
            let at = off
                + chunk[..n]
                    .iter()
                    .zip(&want[off..off + n])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
            return Err(format!(
                "echo mismatch at byte {at} of a {}-byte message",
                want.len()
            ));
        }
        input.consume(n);
        off += n;
    }
    Ok(())
}

/// Expects the server to close after the last echo.
async fn expect_eof(input: &mut ByteReadChannel) -> Result<(), String> {
    let rest = input.fill_buf().await.map_err(|e| format!("read: {e}"))?;
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} unexpected bytes after the last echo",
            rest.len()
        ))
    }
}

/// Polls both futures until both are done, or one fails.
async fn try_join<A, B>(a: A, b: B) -> Result<(), String>
where
    A: Future<Output = Result<(), String>>,
    B: Future<Output = Result<(), String>>,
{
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut a_done, mut b_done) = (false, false);
    poll_fn(|cx| {
        if !a_done {
            if let Poll::Ready(r) = a.as_mut().poll(cx) {
                r?;
                a_done = true;
            }
        }
        if !b_done {
            if let Poll::Ready(r) = b.as_mut().poll(cx) {
                r?;
                b_done = true;
            }
        }
        if a_done && b_done {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// What one connection task needs.
struct Conn {
    id: usize,
    selector: SelectorManager,
    addr: SocketAddr,
    shared: Arc<Shared>,
    pattern: Arc<Pattern>,
    mode: BenchMode,
    /// Messages to send, or `None` to run until the stop.
    quota: Option<u64>,
    /// Speak TLS with this configuration.
    tls: Option<TlsConfig>,
    udp: bool,
}

impl Conn {
    fn done(&self, k: u64) -> bool {
        self.quota
            .map_or(self.shared.phase.load(Ordering::Relaxed) == STOP, |q| {
                k >= q
            })
    }
}

/// Connects, over TLS when asked, and opens the channels (the write channel flushing every
/// write when `auto_flush`).
async fn open(c: &Conn, auto_flush: bool) -> Result<(ByteReadChannel, ByteWriteChannel), String> {
    let socket = a_socket(&c.selector)
        .tcp()
        .no_delay(true)
        .connect_timeout(Duration::from_secs(10))
        .connect(c.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", c.addr))?;
    Ok(match &c.tls {
        Some(config) => {
            let tls = socket
                .tls(config)
                .await
                .map_err(|e| format!("TLS handshake with {}: {e}", c.addr))?;
            (tls.open_read_channel(), tls.open_write_channel(auto_flush))
        }
        None => (
            socket.open_read_channel(),
            socket.open_write_channel(auto_flush),
        ),
    })
}

/// Ping-pong over a connected UDP socket: one datagram out, the same datagram back.
async fn udp_connection(c: Conn) -> Result<(), String> {
    let socket = a_socket(&c.selector)
        .udp()
        .connect(c.addr, None)
        .await
        .map_err(|e| format!("connect {}: {e}", c.addr))?;
    c.shared.connected.fetch_add(1, Ordering::Relaxed);
    let mut k = 0u64;
    let mut lost = 0u64;
    while !c.done(k) {
        let msg = c.pattern.message(c.id, k);
        let start = Instant::now();
        socket
            .send_packet(msg)
            .await
            .map_err(|e| format!("send: {e}"))?;
        loop {
            match asock::time::timeout(Duration::from_secs(1), socket.receive()).await {
                Ok(Ok(d)) if d.packet[..] == *msg => {
                    record(start, msg.len(), &c.shared.phase);
                    break;
                }
                // A late reply to a datagram given up on: skip it.
                Ok(Ok(d)) if lost > 0 && d.packet.len() == msg.len() => {}
                Ok(Ok(d)) => {
                    return Err(format!(
                        "echo mismatch: a {}-byte datagram for a {}-byte message",
                        d.packet.len(),
                        msg.len()
                    ))
                }
                Ok(Err(e)) => return Err(format!("receive: {e}")),
                Err(_) => {
                    lost += 1;
                    c.shared
                        .fail(format!("no reply to a datagram within 1 s ({lost} so far)"));
                    break;
                }
            }
        }
        k += 1;
    }
    Ok(())
}

async fn connection(c: Conn) -> Result<(), String> {
    if c.udp {
        return udp_connection(c).await;
    }
    let (mut input, mut output) = open(&c, c.mode != BenchMode::Stream).await?;
    if c.mode != BenchMode::Idle {
        c.shared.connected.fetch_add(1, Ordering::Relaxed);
    }
    match c.mode {
        BenchMode::Pingpong | BenchMode::Idle => {
            let mut k = 0u64;
            loop {
                if c.done(k) {
                    break;
                }
                let msg = c.pattern.message(c.id, k);
                let start = Instant::now();
                output
                    .write_fully(msg)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                expect(&mut input, msg).await?;
                record(start, msg.len(), &c.shared.phase);
                k += 1;
                if c.mode == BenchMode::Idle {
                    c.shared.connected.fetch_add(1, Ordering::Relaxed);
                    c.shared.stopped().await;
                    break;
                }
            }
            output.close().await.map_err(|e| format!("close: {e}"))?;
        }
        BenchMode::Stream => {
            let sent_at = Mutex::new(VecDeque::<Instant>::new());
            let sent = AtomicU64::new(0);
            let writer_done = AtomicBool::new(false);
            let writer = async {
                let mut k = 0u64;
                while !c.done(k) {
                    let msg = c.pattern.message(c.id, k);
                    lock(&sent_at).push_back(Instant::now());
                    sent.store(k + 1, Ordering::Release);
                    output
                        .write_fully(msg)
                        .await
                        .map_err(|e| format!("write: {e}"))?;
                    k += 1;
                }
                writer_done.store(true, Ordering::Release);
                output.close().await.map_err(|e| format!("close: {e}"))
            };
            let reader = async {
                let mut j = 0u64;
                loop {
                    if j == sent.load(Ordering::Acquire) {
                        if writer_done.load(Ordering::Acquire) {
                            return Ok(());
                        }
                        // Nothing is owed yet: wait for bytes (or the writer's next message).
                        if !input
                            .await_content()
                            .await
                            .map_err(|e| format!("read: {e}"))?
                        {
                            if writer_done.load(Ordering::Acquire)
                                && j == sent.load(Ordering::Acquire)
                            {
                                return Ok(());
                            }
                            return Err("the server closed the connection early".into());
                        }
                    }
                    let msg = c.pattern.message(c.id, j);
                    expect(&mut input, msg).await?;
                    let start = lock(&sent_at).pop_front().unwrap_or_else(Instant::now);
                    record(start, msg.len(), &c.shared.phase);
                    j += 1;
                }
            };
            try_join(writer, reader).await?;
        }
    }
    expect_eof(&mut input).await
}

/// CPU time (user + system) a process used so far, from /proc/PID/stat.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which ends with the last ')': state is field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture that matters here.
    Some(Duration::from_millis(ticks * 10))
}

/// Busy CPU time of the whole machine so far (all cores, idle and I/O wait left out), from
/// /proc/stat.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    Some(Duration::from_millis(busy * 10))
}

/// What a run measured.
struct Report {
    msgs: u64,
    bytes: u64,
    secs: f64,
    hist: Histogram<u64>,
    errors: usize,
    connections: usize,
    server_cpu: Option<Duration>,
    client_cpu: Option<Duration>,
    /// CPU the rest of the machine used meanwhile (noise), when the server's is known.
    other_cpu: Option<Duration>,
}

impl Report {
    fn msgs_per_s(&self) -> f64 {
        self.msgs as f64 / self.secs
    }
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
    fn pct_us(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
    fn server_us_per_msg(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.msgs > 0).then(|| cpu.as_secs_f64() * 1e6 / self.msgs as f64)
    }
    fn cpu_pct(&self, cpu: Option<Duration>) -> Option<f64> {
        Some(cpu?.as_secs_f64() / self.secs * 100.0)
    }

    fn machine_line(&self) -> String {
        let mut s = format!(
            "msgs_per_s={:.0} mb_per_s={:.2} p50_us={:.1} p99_us={:.1} p999_us={:.1} errors={} \
             msgs={} secs={:.3} max_us={:.1}",
            self.msgs_per_s(),
            self.mb_per_s(),
            self.pct_us(0.5),
            self.pct_us(0.99),
            self.pct_us(0.999),
            self.errors,
            self.msgs,
            self.secs,
            self.hist.max() as f64 / 1000.0,
        );
        if let Some(c) = self.cpu_pct(self.client_cpu) {
            s += &format!(" client_cpu_pct={c:.1}");
        }
        if let (Some(us), Some(pct)) = (self.server_us_per_msg(), self.cpu_pct(self.server_cpu)) {
            s += &format!(" server_cpu_us_per_msg={us:.3} server_cpu_pct={pct:.1}");
        }
        if let Some(o) = self.cpu_pct(self.other_cpu) {
            s += &format!(" other_cpu_pct={o:.1}");
        }
        s
    }

    fn json(&self, args: &BenchArgs) -> String {
        let opt = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.3}"));
        format!(
            "{{\"addr\":{:?},\"mode\":\"{}\",\"lines\":{},\"connections\":{},\"size\":{},\
             \"secs\":{:.3},\"msgs\":{},\"bytes\":{},\"msgs_per_s\":{:.1},\"mb_per_s\":{:.3},\
             \"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\
             \"errors\":{},\"client_cpu_pct\":{},\"server_cpu_pct\":{},\
             \"server_cpu_us_per_msg\":{},\"other_cpu_pct\":{}}}",
            args.addr,
            mode_name(args.mode),
            args.lines,
            self.connections,
            args.size,
            self.secs,
            self.msgs,
            self.bytes,
            self.msgs_per_s(),
            self.mb_per_s(),
            self.pct_us(0.5),
            self.pct_us(0.9),
            self.pct_us(0.99),
            self.pct_us(0.999),
            self.hist.max() as f64 / 1000.0,
            self.errors,
            opt(self.cpu_pct(self.client_cpu)),
            opt(self.cpu_pct(self.server_cpu)),
            opt(self.server_us_per_msg()),
            opt(self.cpu_pct(self.other_cpu)),
        )
    }

    fn human(&self, args: &BenchArgs) -> String {
        let mut s = format!(
            "asock bench {}: {}{}, {} connection{} x {} B, {:.2} s measured\n",
            args.addr,
            mode_name(args.mode),
            if args.lines { " (lines)" } else { "" },
            self.connections,
            if self.connections == 1 { "" } else { "s" },
            args.size,
            self.secs,
        );
        s += &format!(
            "  messages    {} echoed, {:.0} msgs/s\n  throughput  {:.2} MB/s each way\n",
            self.msgs,
            self.msgs_per_s(),
            self.mb_per_s()
        );
        s += &format!(
            "  latency     p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us\n",
            self.pct_us(0.5),
            self.pct_us(0.9),
            self.pct_us(0.99),
            self.pct_us(0.999),
            self.hist.max() as f64 / 1000.0,
        );
        if let Some(c) = self.cpu_pct(self.client_cpu) {
            s += &format!("  load CPU    {c:.1}% of one core\n");
        }
        if let (Some(us), Some(pct)) = (self.server_us_per_msg(), self.cpu_pct(self.server_cpu)) {
            s += &format!("  server CPU  {pct:.1}% of one core, {us:.2} us per message\n");
        }
        if let Some(o) = self.cpu_pct(self.other_cpu) {
            s += &format!("  other CPU   {o:.1}% of one core (the rest of the machine: noise)\n");
        }
        s += &format!("  errors      {}\n", self.errors);
        s
    }
}

fn mode_name(m: BenchMode) -> &'static str {
    match m {
        BenchMode::Pingpong => "pingpong",
        BenchMode::Stream => "stream",
        BenchMode::Idle => "idle",
    }
}

/// Shows the current rate on stderr when it is a terminal.
struct Progress {
    on: bool,
    last: Instant,
    last_msgs: u64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            last: Instant::now(),
            last_msgs: totals().0,
        }
    }

    fn tick(&mut self, label: &str, shared: &Shared) {
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

    fn clear(&self) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

/// Sleeps until `until`, updating the progress line.
fn wait(until: Instant, label: &str, progress: &mut Progress, shared: &Shared) {
    loop {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
        progress.tick(label, shared);
    }
}

/// Runs `asock bench`.
pub fn run(args: BenchArgs) -> CliResult {
    if args.udp && args.mode != BenchMode::Pingpong {
        return Err(CliError("bench --udp supports --mode pingpong only".into()));
    }
    let tls = if args.tls {
        let mut b = TlsConfig::client();
        if let Some(ca) = &args.ca {
            b = b.add_root_pem_file(ca)?;
        }
        if args.insecure {
            b = b.danger_accept_invalid_certs();
        }
        Some(b.build()?)
    } else {
        None
    };
    if args.connections == 0 {
        return Err(CliError("--connections must be at least 1".into()));
    }
    if args.threads == 0 {
        return Err(CliError("--threads must be at least 1".into()));
    }
    if args.size < if args.lines { 2 } else { 1 } {
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
    });
    let pattern = Arc::new(Pattern::new(args.size, args.lines));
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
    while shared.connected.load(Ordering::Relaxed) + shared.done.load(Ordering::Relaxed) < n {
        std::thread::sleep(Duration::from_millis(1));
        progress.tick("connecting", &shared);
    }
    if shared.connected.load(Ordering::Relaxed) == 0 && shared.errors.load(Ordering::Relaxed) > 0 {
        progress.clear();
        let e = lock(&shared.first_error).take().unwrap_or_default();
        return Err(CliError(e));
    }
    if args.mode == BenchMode::Idle && !args.json {
        crate::echo::announce(&format!(
            "ready connections={}",
            shared.connected.load(Ordering::Relaxed)
        ))?;
    }

    let (end_msgs, end_cpu, secs) = if args.messages.is_some() {
        // A fixed number of messages: the run ends when every connection is done.
        while shared.done.load(Ordering::Acquire) < n {
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
    let drained = selector.run_blocking(async {
        let all = async {
            for h in handles {
                let _ = h.await;
            }
        };
        asock::time::timeout(DRAIN_LIMIT, all).await.is_ok()
    });
    if !drained {
        let stuck = n - shared.done.load(Ordering::Acquire);
        shared.fail(format!(
            "{stuck} connection(s) did not finish within {DRAIN_LIMIT:?} of the end"
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
    if report.errors > 0 {
        let first = lock(&shared.first_error).take().unwrap_or_default();
        return Err(CliError(format!(
            "{} connection(s) failed; first: {first}",
            report.errors
        )));
    }
    Ok(())
}
