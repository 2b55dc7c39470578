//! Churn soak: waves of TCP and TLS connections to `asock echo-server`, many closed normally,
//! many reset mid-stream or abandoned with unread echoes; afterwards the server's descriptors,
//! threads and RSS must be back at their starting level.
//!
//! Bounded for CI: about `ASOCK_SOAK_SECS` seconds (default 20: two thirds TCP, one third TLS),
//! stopping earlier at `ASOCK_SOAK_TCP` TCP (default 100,000) and `ASOCK_SOAK_TLS` TLS
//! (default 10,000) connections. The issue's full run, by hand:
//!
//! ```sh
//! ASOCK_SOAK_SECS=1800 cargo test --release -p asock-cli --test soak -- --nocapture
//! ```

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use asock::{a_socket, SelectorManager};
use support::{reset, wait_until, ProcStats, Rng, Server};

/// Connections open at once in a wave.
const WAVE: usize = 100;
/// RSS may end this much above its starting level (allocator caches, buffer pools).
const RSS_SLACK_KIB: u64 = 8 * 1024;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn budget() -> Duration {
    Duration::from_secs(env_u64("ASOCK_SOAK_SECS", 20))
}

/// One TCP wave: open `WAVE` connections, then end each one in a random way.
fn tcp_wave(server: &Server, rng: &mut Rng) -> usize {
    let conns: Vec<TcpStream> = (0..WAVE)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", server.port)).ok())
        .collect();
    let n = conns.len();
    for mut s in conns {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        match rng.below(4) {
            // A full exchange, then a half-close and the server's close.
            0 => {
                support::echo_line(&mut s, "hello soak").unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
            }
            // Reset in the middle of a line.
            1 => {
                let _ = s.write_all(b"half a li");
                reset(s);
            }
            // A line whose echo is never read, then a reset.
            2 => {
                let _ = s.write_all(b"never read back\n");
                reset(s);
            }
            // 64 KiB the server echoes into a closed socket.
            _ => {
                let mut big = vec![b'y'; 64 * 1024];
                big.push(b'\n');
                let _ = s.write_all(&big);
                drop(s);
            }
        }
    }
    n
}

/// Waits for the server to settle back to the descriptors and threads of `base`; returns the
/// figures then.
fn settled(server: &Server, base: ProcStats) -> ProcStats {
    wait_until(Duration::from_secs(10), || {
        let now = server.stats();
        now.fds <= base.fds && now.threads <= base.threads
    });
    server.stats()
}

fn check(what: &str, n: usize, took: Duration, start: ProcStats, end: ProcStats) {
    eprintln!(
        "soak {what}: {n} connections in {:.1} s; fds {} -> {}, threads {} -> {}, RSS {} -> {} \
         KiB",
        took.as_secs_f64(),
        start.fds,
        end.fds,
        start.threads,
        end.threads,
        start.rss_kib,
        end.rss_kib
    );
    assert_eq!(end.fds, start.fds, "{what}: descriptors leaked");
    assert_eq!(end.threads, start.threads, "{what}: threads leaked");
    assert!(
        end.rss_kib <= start.rss_kib + RSS_SLACK_KIB,
        "{what}: RSS grew from {} to {} KiB",
        start.rss_kib,
        end.rss_kib
    );
}

#[test]
fn tcp_churn_leaves_no_leaks() {
    let mut rng = Rng::from_env();
    let server = Server::start(&["--threads", "2"], None);
    let limit = env_u64("ASOCK_SOAK_TCP", 100_000) as usize;
    let time = budget() * 2 / 3;
    // Descriptors and threads of the idle server; RSS after a warm-up wave (buffer pools,
    // allocator arenas) once those are back.
    let idle = server.stats();
    tcp_wave(&server, &mut rng);
    let start = settled(&server, idle);
    let t0 = Instant::now();
    let mut n = 0;
    while n < limit && t0.elapsed() < time {
        n += tcp_wave(&server, &mut rng);
    }
    let took = t0.elapsed();
    server.round_trip("still serving").unwrap();
    let end = settled(&server, start);
    check("TCP", n, took, start, end);
}

#[test]
fn tls_churn_leaves_no_leaks() {
    let mut rng = Rng::from_env();
    let server = Server::start(&["--threads", "2", "--tls-self-signed"], None);
    let config = server.tls_client();
    let selector = SelectorManager::builder().threads(1).build().unwrap();
    let limit = env_u64("ASOCK_SOAK_TLS", 10_000) as usize;
    let time = budget() / 3;
    let port = server.port;
    let tls_wave = |rng: &mut Rng| -> usize {
        let kinds: Vec<u64> = (0..WAVE / 2).map(|_| rng.below(4)).collect();
        selector.run_blocking(async {
            let tasks: Vec<_> = kinds
                .into_iter()
                .map(|kind| {
                    let sel = selector.clone();
                    let config = config.clone();
                    selector.launch(async move {
                        if kind == 3 {
                            // Garbage instead of a ClientHello, then a reset.
                            let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
                            let _ = (&s).write_all(b"\x16\x03\x01\x00\x05hello");
                            reset(s);
                            return Some(());
                        }
                        let addr = format!("localhost:{port}");
                        let socket = a_socket(&sel).tcp().connect(addr).await.ok()?;
                        let socket = socket.tls(&config).await.ok()?;
                        let mut input = socket.open_read_channel();
                        let mut output = socket.open_write_channel(true);
                        output.write_str("hello tls soak\n").await.ok()?;
                        match kind {
                            // Full exchange and close_notify.
                            0 => {
                                let line = input.read_utf8_line().await.ok()??;
                                assert_eq!(line, "hello tls soak");
                                output.close().await.ok()?;
                                while input.read_line().await.ok()?.is_some() {}
                            }
                            // Gone without close_notify, echo unread.
                            1 => socket.close(),
                            // Dropped (close_notify in the background), echo unread.
                            _ => {}
                        }
                        Some(())
                    })
                })
                .collect();
            let mut ok = 0;
            for t in tasks {
                if matches!(t.await, Ok(Some(()))) {
                    ok += 1;
                }
            }
            ok
        })
    };
    let idle = server.stats();
    tls_wave(&mut rng);
    let start = settled(&server, idle);
    let t0 = Instant::now();
    let mut n = 0;
    while n < limit && t0.elapsed() < time {
        let done = tls_wave(&mut rng);
        assert!(
            done >= WAVE / 4,
            "only {done} of {} TLS clients finished",
            WAVE / 2
        );
        n += done;
    }
    let took = t0.elapsed();
    let end = settled(&server, start);
    check("TLS", n, took, start, end);
}
