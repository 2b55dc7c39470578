//! Connection-churn load on tokio: `churn-load ADDR [--clients N] [--duration SECS]
//! [--warmup SECS] [--total N] [--size BYTES] [--threads N] [--sources N]`.
//!
//! Each of `--clients` tasks loops: connect, write one `--size` message, read its echo, close.
//! With `--sources N` (N > 1, an address in 127.0.0.0/8) client i connects from 127.0.0.(2 + i
//! mod N): the client closes first, so its side keeps every connection in TIME_WAIT, and from
//! one source address the kernel's search for a free port among them caps the rate (here about
//! 14,000 connections/s whatever the server); spread over N addresses it no longer does.
//! It counts the connections that completed during `--duration` seconds after `--warmup`, or,
//! with `--total N`, runs until N connections completed (no warm-up). The last stdout line is
//! machine-readable: `conns_per_s=.. conns=.. secs=.. errors=.. p50_us=.. p99_us=.. p999_us=..`
//! (latency of one whole connect-echo-close). An independent load generator: it shares no code
//! with the servers it measures.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const USAGE: &str = "churn-load ADDR [--clients N] [--duration SECS] [--warmup SECS] [--total N] \
                     [--size BYTES] [--threads N] [--sources N]";

struct Opts {
    addr: String,
    clients: usize,
    duration: f64,
    warmup: f64,
    total: Option<u64>,
    size: usize,
    threads: usize,
    sources: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        addr: String::new(),
        clients: 64,
        duration: 5.0,
        warmup: 1.0,
        total: None,
        size: 64,
        threads: 1,
        sources: 1,
    };
    let fail = |msg: String| -> ! {
        eprintln!("error: {msg}\nusage: {USAGE}");
        std::process::exit(2)
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> f64 {
            let v = it
                .next()
                .unwrap_or_else(|| fail(format!("{name} needs a value")));
            v.parse::<f64>()
                .ok()
                .filter(|n| *n >= 0.0)
                .unwrap_or_else(|| fail(format!("bad value for {name}: {v}")))
        };
        match arg.as_str() {
            "--clients" => o.clients = value(&arg).max(1.0) as usize,
            "--duration" => o.duration = value(&arg),
            "--warmup" => o.warmup = value(&arg),
            "--total" => o.total = Some(value(&arg) as u64),
            "--size" => o.size = value(&arg).max(1.0) as usize,
            "--threads" => o.threads = value(&arg).max(1.0) as usize,
            "--sources" => o.sources = (value(&arg).max(1.0) as usize).min(250),
            "-h" | "--help" => {
                println!("usage: {USAGE}");
                std::process::exit(0);
            }
            s if s.starts_with('-') => fail(format!("unknown option {s}")),
            s => o.addr = s.to_string(),
        }
    }
    if o.addr.is_empty() {
        fail("an address is needed".into());
    }
    if o.sources > 1 {
        match o.addr.parse::<SocketAddr>() {
            Ok(SocketAddr::V4(a)) if a.ip().is_loopback() => {}
            _ => fail("--sources needs an address in 127.0.0.0/8".into()),
        }
    }
    o
}

/// One connection: connect (from `source` when given), one echo, close.
async fn churn_once(
    addr: &str,
    source: Option<SocketAddr>,
    msg: &[u8],
    back: &mut [u8],
) -> std::io::Result<()> {
    let mut s = match source {
        None => TcpStream::connect(addr).await?,
        Some(from) => {
            let target: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
            let socket = TcpSocket::new_v4()?;
            socket.bind(from)?;
            socket.connect(target).await?
        }
    };
    s.set_nodelay(true)?;
    s.write_all(msg).await?;
    s.read_exact(back).await?;
    if back != msg {
        return Err(std::io::Error::other("echo differs"));
    }
    Ok(())
}

fn main() {
    let o = opts();
    let rt = if o.threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.threads)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .unwrap_or_else(|e| asock_bench_peers::die(e));

    let measuring = Arc::new(AtomicBool::new(o.total.is_some()));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let addr: Arc<str> = o.addr.clone().into();
    let msg: Arc<[u8]> = (0..o.size).map(|i| b'a' + (i % 26) as u8).collect();

    let (secs, conns) = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..o.clients {
            let source = (o.sources > 1).then(|| {
                SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2 + (i % o.sources) as u8), 0))
            });
            let (measuring, stop, done, errors, latencies, addr, msg) = (
                measuring.clone(),
                stop.clone(),
                done.clone(),
                errors.clone(),
                latencies.clone(),
                addr.clone(),
                msg.clone(),
            );
            let total = o.total;
            tasks.push(tokio::spawn(async move {
                let mut back = vec![0u8; msg.len()];
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    match churn_once(&addr, source, &msg, &mut back).await {
                        Ok(()) if measuring.load(Ordering::Relaxed) => {
                            mine.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            if total.is_some_and(|t| n >= t) {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                        Ok(()) => {}
                        Err(_) => {
                            if measuring.load(Ordering::Relaxed) {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::task::yield_now().await;
                        }
                    }
                }
                latencies.lock().unwrap().extend(mine);
            }));
        }
        // The clock runs on a plain thread (this crate's tokio has no timer).
        let clock = {
            let (measuring, stop, done) = (measuring.clone(), stop.clone(), done.clone());
            let (timed, warmup, duration) = (o.total.is_none(), o.warmup, o.duration);
            std::thread::spawn(move || {
                if timed {
                    std::thread::sleep(Duration::from_secs_f64(warmup));
                    measuring.store(true, Ordering::Relaxed);
                }
                let start = Instant::now();
                if timed {
                    std::thread::sleep(Duration::from_secs_f64(duration));
                    stop.store(true, Ordering::Relaxed);
                    let n = done.load(Ordering::Relaxed);
                    (start, Some((start.elapsed().as_secs_f64(), n)))
                } else {
                    (start, None)
                }
            })
        };
        for t in tasks {
            let _ = t.await;
        }
        let (start, timed) = clock.join().expect("clock thread");
        timed.unwrap_or_else(|| (start.elapsed().as_secs_f64(), done.load(Ordering::Relaxed)))
    });

    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    lat.sort_unstable();
    let pct = |p: f64| -> u32 {
        if lat.is_empty() {
            return 0;
        }
        lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
    };
    println!(
        "conns_per_s={:.0} conns={conns} secs={secs:.3} errors={} p50_us={} p99_us={} p999_us={}",
        conns as f64 / secs,
        errors.load(Ordering::Relaxed),
        pct(0.50),
        pct(0.99),
        pct(0.999)
    );
}
