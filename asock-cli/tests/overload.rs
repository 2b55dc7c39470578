//! `asock echo-server` under faults and overload: descriptor exhaustion, idle and slow clients,
//! stalled TLS handshakes and clients that never read. Real sockets on
//! 127.0.0.1 and temporary Unix paths; every wait is bounded. Run with `--nocapture` to see the
//! figures each test measures.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{echo_line, ticks_per_second, wait_until, Server};

/// Out of descriptors: the server neither spins nor dies, logs once, and serves again as soon
/// as descriptors free up.
#[test]
fn fd_exhaustion_backs_off_quietly_and_recovers() {
    const LIMIT: u64 = 64;
    let server = Server::start(&["--threads", "1"], Some(LIMIT));
    let idle_fds = server.stats().fds;
    server.round_trip("warm-up").unwrap();
    // The warm-up connection must be gone on the server's side too, or its descriptor, freed
    // in the middle of the burst, would end that burst early and start a second one.
    assert!(
        wait_until(Duration::from_secs(5), || server.stats().fds <= idle_fds),
        "the warm-up connection was never closed"
    );
    // Far more clients than descriptors: the rest wait in the listen backlog.
    let mut clients = Vec::new();
    for _ in 0..150 {
        clients.push(server.connect());
    }
    // The server accepts until it runs out, then backs off.
    assert!(
        wait_until(Duration::from_secs(10), || server
            .stderr_text()
            .contains("out of descriptors")),
        "no exhaustion reported; stderr: {}",
        server.stderr_text()
    );
    let fds = server.stats().fds;
    assert!(
        fds as u64 >= LIMIT - 2,
        "only {fds} descriptors open; stderr: {}",
        server.stderr_text()
    );
    // CPU time while exhausted, over two seconds.
    let before = server.stats().cpu_ticks;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let ticks = server.stats().cpu_ticks - before;
    let cpu_ms = ticks * 1000 / ticks_per_second();
    let wall_ms = t0.elapsed().as_millis();
    eprintln!(
        "exhaustion: {fds} fds open (limit {LIMIT}), server CPU {cpu_ms} ms over {wall_ms} ms"
    );
    assert!(
        cpu_ms <= 100,
        "server used {cpu_ms} ms of CPU while exhausted"
    );
    // Once per burst, however many retries.
    let log = server.stderr_text();
    assert_eq!(log.matches("out of descriptors").count(), 1, "{log}");

    // Free the descriptors: the waiting clients are taken, then new ones are served.
    drop(clients);
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || server
            .round_trip("after")
            .is_ok()),
        "not serving after the clients left"
    );
    eprintln!(
        "exhaustion: serving again {} ms after the clients closed",
        t0.elapsed().as_millis()
    );
    assert!(wait_until(Duration::from_secs(5), || server
        .stderr_text()
        .contains("accepting again")));
    // Every connection of the first burst, and every probe that waited in the backlog
    // meanwhile, must be closed on the server's side before the second burst. While the
    // first burst's backlog drains, connections close as others are accepted, so the server
    // may run out (and report it) again then: that is a burst of its own, counted here.
    let bursts = || server.stderr_text().matches("out of descriptors").count();
    let recoveries = || server.stderr_text().matches("accepting again").count();
    assert!(
        wait_until(Duration::from_secs(15), || server.stats().fds <= idle_fds
            && recoveries() == bursts()),
        "the first burst's connections were never all closed: {} fds open; stderr: {}",
        server.stats().fds,
        server.stderr_text()
    );
    let before = bursts();
    // A second burst, with nothing closing during it, is reported once.
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(server.connect());
    }
    assert!(
        wait_until(Duration::from_secs(10), || bursts() > before),
        "{}",
        server.stderr_text()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(bursts(), before + 1, "{}", server.stderr_text());
    drop(clients);
    assert!(wait_until(Duration::from_secs(10), || server
        .round_trip("again")
        .is_ok()));
}

/// Waits for `s` to be closed by the peer (EOF or reset) until `limit` after `start`; when it
/// was, counted from `start`.
fn closed_within(s: &mut TcpStream, start: Instant, limit: Duration) -> Option<Duration> {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 256];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// `--idle-timeout`: an idle client and one that sends a byte less often than the timeout are
/// closed; a client that keeps talking is served throughout.
#[test]
fn idle_and_dribbling_clients_are_closed_without_affecting_others() {
    let server = Server::start(&["--idle-timeout", "0.5"], None);
    let active = {
        let port = server.port;
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let start = Instant::now();
            let mut n = 0;
            while start.elapsed() < Duration::from_secs(3) {
                echo_line(&mut s, &format!("line {n}")).unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            n
        })
    };
    // Idle: says nothing.
    let t0 = Instant::now();
    let mut idle = server.connect();
    // Dribbler: one byte (never a whole line) every 700 ms.
    let mut dribbler = server.connect();
    let dribble = {
        let mut d = dribbler.try_clone().unwrap();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut sent = 0;
            while start.elapsed() < Duration::from_secs(4) {
                if d.write_all(b"x").is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(700));
            }
            sent
        })
    };
    let idle_t = closed_within(&mut idle, t0, Duration::from_secs(5)).expect("idle client kept");
    let drib_t = closed_within(&mut dribbler, t0, Duration::from_secs(5)).expect("dribbler kept");
    eprintln!("idle closed after {idle_t:?}, dribbler after {drib_t:?}");
    assert!(idle_t >= Duration::from_millis(400) && idle_t < Duration::from_secs(3));
    // Its bytes come 700 ms apart: the 0.5 s timeout fires before the second one.
    assert!(drib_t >= Duration::from_millis(400) && drib_t < Duration::from_secs(3));
    let _ = dribble.join();
    let rounds = active.join().unwrap();
    assert!(
        rounds >= 20,
        "the active client made only {rounds} round trips"
    );
}

/// A client that opens TCP and stalls inside the TLS handshake is cut at the handshake timeout
/// (the idle timeout when shorter), while a real TLS client is served meanwhile.
#[test]
fn stalled_tls_handshake_is_cut_at_the_timeout() {
    let server = Server::start(&["--tls-self-signed", "--idle-timeout", "1"], None);
    let ca = server.lines[1]
        .rsplit(' ')
        .next()
        .expect("CA path")
        .to_string();
    let t0 = Instant::now();
    let mut stalled = server.connect();
    // The first bytes of a TLS record header, then nothing.
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02]).unwrap();
    let mut silent = server.connect();
    let client = std::thread::spawn({
        let port = server.port;
        move || {
            let mut child = std::process::Command::new(support::BIN)
                .args(["connect", "--tls", "--ca", &ca, "--timeout", "5"])
                .arg(format!("localhost:{port}"))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"through tls\n")
                .unwrap();
            child.wait_with_output().unwrap()
        }
    });
    let t1 = closed_within(&mut stalled, t0, Duration::from_secs(6)).expect("stalled kept");
    let t2 = closed_within(&mut silent, t0, Duration::from_secs(6)).expect("silent kept");
    eprintln!("stalled handshake cut after {t1:?}, silent one after {t2:?}");
    assert!(
        t1 >= Duration::from_millis(800) && t1 < Duration::from_secs(4),
        "{t1:?}"
    );
    assert!(
        t2 >= Duration::from_millis(800) && t2 < Duration::from_secs(4),
        "{t2:?}"
    );
    let out = client.join().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "through tls\r\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One line there and back: `\r\n` back in line mode, the same bytes in raw mode.
fn probe(s: &mut TcpStream, line: &str, raw: bool) {
    if !raw {
        return echo_line(s, line).unwrap();
    }
    let sent = format!("{line}\n");
    s.write_all(sent.as_bytes()).unwrap();
    let mut got = vec![0; sent.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, sent.as_bytes());
}

/// Round-trip latencies (ms) of `n` lines on one connection: (median, max).
fn latencies(port: u16, n: usize, raw: bool) -> (f64, f64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut v: Vec<f64> = (0..n)
        .map(|i| {
            let t = Instant::now();
            probe(&mut s, &format!("probe {i}"), raw);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    v.sort_by(f64::total_cmp);
    (v[n / 2], v[n - 1])
}

/// Clients that send without ever reading: the server stops reading from them once its write
/// side is blocked, so each holds a bounded amount of memory, and another client's latency
/// stays flat.
#[test]
fn senders_that_never_read_are_throttled() {
    const HOGS: usize = 16;
    for mode in [&[][..], &["--raw"][..]] {
        let mut args = vec!["--threads", "1"];
        args.extend_from_slice(mode);
        let raw = !mode.is_empty();
        let server = Server::start(&args, None);
        let (p50_before, max_before) = latencies(server.port, 200, raw);
        let rss_before = server.stats().rss_kib;
        let mut hogs: Vec<TcpStream> = (0..HOGS).map(|_| server.connect()).collect();
        for h in &hogs {
            h.set_nonblocking(true).unwrap();
        }
        let line = [b'x'; 1023]
            .iter()
            .copied()
            .chain([b'\n'])
            .collect::<Vec<u8>>();
        let mut sent = [0usize; HOGS];
        // Push until no hog has made progress for 500 ms (at most 20 s).
        let start = Instant::now();
        let mut last_progress = Instant::now();
        while last_progress.elapsed() < Duration::from_millis(500) {
            assert!(start.elapsed() < Duration::from_secs(20), "never throttled");
            let mut progress = false;
            for (h, n) in hogs.iter_mut().zip(sent.iter_mut()) {
                loop {
                    match h.write(&line) {
                        Ok(k) => {
                            *n += k;
                            progress = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("hog write: {e}"),
                    }
                }
            }
            if progress {
                last_progress = Instant::now();
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let rss_after = server.stats().rss_kib;
        let per_conn = rss_after.saturating_sub(rss_before) / HOGS as u64;
        let max_sent = sent.iter().max().copied().unwrap_or(0);
        let (p50_during, max_during) = latencies(server.port, 200, raw);
        eprintln!(
            "back-pressure {mode:?}: each hog stalled after <= {} KiB sent; server RSS {} -> {} \
             KiB ({} KiB per stalled connection); probe p50/max {:.3}/{:.3} ms before, \
             {:.3}/{:.3} ms during",
            max_sent / 1024,
            rss_before,
            rss_after,
            per_conn,
            p50_before,
            max_before,
            p50_during,
            max_during
        );
        // Generous bounds: the channel buffers are tens of KiB; the rest sits in the kernel.
        assert!(per_conn < 1024, "{per_conn} KiB per stalled connection");
        assert!(max_sent < 64 << 20, "a hog pushed {max_sent} bytes");
        assert!(
            p50_during < p50_before * 5.0 + 2.0 && max_during < 200.0,
            "latency went from {p50_before:.3}/{max_before:.3} to {p50_during:.3}/{max_during:.3}"
        );
        drop(hogs);
    }
}
