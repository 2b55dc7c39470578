//! TLS load client (tokio-rustls, so both servers face the same client).
//!
//! Every mode prints one line: the rate, then the count it was measured over
//! (`RATE COUNT`), so a caller can divide the server's CPU time by the count.
//!
//! SECS may instead be a count with an `x` suffix (`500x`): each connection (each task, for
//! handshakes) does exactly that many units (64 KiB writes, messages, handshakes) and stops,
//! for instruction counts under callgrind (`bench/tls_callgrind.sh`).
//!
//! `tls-load handshakes ADDR CA.pem SECS [CONNS]` — full handshakes per second: each of CONNS
//!   tasks connects, handshakes (no resumption), echoes one byte and closes, in a loop.
//!   Prints `handshakes/s handshakes`.
//! `tls-load resumed ADDR CA.pem SECS [CONNS]` — the same with TLS 1.3 session resumption (one
//!   full handshake per task first, not counted). Prints `handshakes/s handshakes`.
//! `tls-load bulk ADDR CA.pem SECS [CONNS]` — CONNS connections each streaming 64 KiB writes
//!   while reading the echo. Prints `MB/s MB` (echoed, one direction).
//! `tls-load pingpong ADDR CA.pem SECS [CONNS] [SIZE]` — CONNS connections each with one
//!   SIZE-byte (default 64) message in flight. Prints `msgs/s msgs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!(
            "usage: tls-load handshakes|resumed|bulk|pingpong ADDR CA.pem SECS [CONNS] [SIZE]"
        );
        std::process::exit(2);
    }
    let (mode, addr, ca) = (args[1].clone(), args[2].clone(), args[3].clone());
    let budget = Budget::parse(&args[4]);
    let default_conns = if mode == "bulk" { 1 } else { 8 };
    let conns: usize = args
        .get(5)
        .map(|c| c.parse().expect("CONNS"))
        .unwrap_or(default_conns);
    let size: usize = args.get(6).map(|s| s.parse().expect("SIZE")).unwrap_or(64);
    let config = match mode.as_str() {
        "resumed" => asock_bench_tls_peer::resuming_client_config(&ca),
        _ => asock_bench_tls_peer::client_config(&ca),
    };
    let connector = TlsConnector::from(config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dur = budget;
    let (rate, count) = rt.block_on(async move {
        match mode.as_str() {
            "handshakes" | "resumed" => {
                handshakes(connector, &addr, dur, conns, mode == "resumed").await
            }
            "bulk" => bulk(connector, &addr, dur, conns).await,
            "pingpong" => pingpong(connector, &addr, dur, conns, size).await,
            m => panic!("unknown mode {m}"),
        }
    });
    println!("{rate:.1} {count:.3}");
}

/// How long each connection runs: a time, or a number of units.
#[derive(Clone, Copy)]
enum Budget {
    Time(Duration),
    Count(u64),
}

impl Budget {
    fn parse(s: &str) -> Budget {
        match s.strip_suffix('x') {
            Some(n) => Budget::Count(n.parse().expect("COUNTx")),
            None => Budget::Time(Duration::from_secs_f64(s.parse().expect("SECS"))),
        }
    }

    /// Whether a connection that started at `start` and did `done` units goes on.
    fn more(self, start: Instant, done: u64) -> bool {
        match self {
            Budget::Time(d) => start.elapsed() < d,
            Budget::Count(n) => done < n,
        }
    }
}

fn server_name() -> rustls_pki_types::ServerName<'static> {
    rustls_pki_types::ServerName::try_from("localhost").expect("name")
}

async fn connect(
    connector: &TlsConnector,
    addr: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    connector
        .connect(server_name(), tcp)
        .await
        .expect("handshake")
}

/// Handshakes per second, and how many.
async fn handshakes(
    connector: TlsConnector,
    addr: &str,
    dur: Budget,
    conns: usize,
    resumed: bool,
) -> (f64, f64) {
    let done = Arc::new(AtomicU64::new(0));
    if resumed {
        // One full handshake per task fills the client's session cache with tickets.
        for _ in 0..conns {
            let mut tls = connect(&connector, addr).await;
            one_byte_echo(&mut tls).await;
        }
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (c, a, d) = (connector.clone(), addr.to_owned(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while dur.more(start, n) {
                n += 1;
                let mut tls = connect(&c, &a).await;
                one_byte_echo(&mut tls).await;
                if resumed {
                    assert!(
                        tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
                        "the handshake did not resume"
                    );
                }
                d.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let n = done.load(Ordering::Relaxed) as f64;
    (n / start.elapsed().as_secs_f64(), n)
}

/// Writes one byte, reads its echo, closes (the echo makes the server finish the handshake and
/// receive the client's tickets before the close).
async fn one_byte_echo(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) {
    tls.write_all(b"x").await.expect("write");
    let mut b = [0u8; 1];
    tls.read_exact(&mut b).await.expect("read");
    let _ = tls.shutdown().await;
}

/// Echoed MB/s (one direction) over `conns` streaming connections, and how many MB.
async fn bulk(connector: TlsConnector, addr: &str, dur: Budget, conns: usize) -> (f64, f64) {
    let mut streams = Vec::new();
    for _ in 0..conns {
        streams.push(connect(&connector, addr).await);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for tls in streams {
        tasks.push(tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(tls);
            let writer = tokio::spawn(async move {
                let chunk = vec![0x5au8; 64 * 1024];
                let mut n = 0;
                while dur.more(start, n) {
                    w.write_all(&chunk).await.expect("write");
                    n += 1;
                }
                w.flush().await.expect("flush");
                w.shutdown().await.expect("shutdown");
            });
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                match r.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
            writer.await.expect("writer");
            total
        }));
    }
    let mut total = 0u64;
    for t in tasks {
        total += t.await.expect("task");
    }
    let mb = total as f64 / 1e6;
    (mb / start.elapsed().as_secs_f64(), mb)
}

/// Ping-pong messages per second over `conns` connections, and how many messages.
async fn pingpong(
    connector: TlsConnector,
    addr: &str,
    dur: Budget,
    conns: usize,
    size: usize,
) -> (f64, f64) {
    let mut streams = Vec::new();
    for _ in 0..conns {
        streams.push(connect(&connector, addr).await);
    }
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut tls) in streams.into_iter().enumerate() {
        let d = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut msg = vec![b'a' + (i % 26) as u8; size];
            let mut back = vec![0u8; size];
            let mut n = 0u64;
            while dur.more(start, n) {
                msg[0] = b'0' + (n % 10) as u8;
                tls.write_all(&msg).await.expect("write");
                tls.flush().await.expect("flush");
                tls.read_exact(&mut back).await.expect("read");
                assert_eq!(back, msg, "echo differs");
                n += 1;
            }
            d.fetch_add(n, Ordering::Relaxed);
            let _ = tls.shutdown().await;
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let n = done.load(Ordering::Relaxed) as f64;
    (n / start.elapsed().as_secs_f64(), n)
}
