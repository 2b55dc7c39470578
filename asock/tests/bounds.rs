//! Bounds under hostile load (issue 18): a read channel's buffer while it looks for a line, the
//! manager's memory budget shedding the connections that hold the most, a listener's
//! connection cap, and a TLS listener that silent connections cannot stall and that holds no
//! more than its ready queue when the application does not accept. Real sockets on 127.0.0.1;
//! fast versions of the targets `bench/hostile.sh` runs at full size.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asock::tls::{TlsConfig, TlsServerConfig, TlsServerSocket};
use asock::{a_socket, AcceptBackoff, Error, SelectorManager, ServerSocket};

const KIB: usize = 1024;

/// Waits (bounded) until `f` holds.
fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A peer that sends `bytes` without a newline and then stalls (it keeps the socket open).
fn stalling_peer(port: u16, bytes: usize) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&vec![b'x'; bytes]).unwrap();
    s
}

/// One loop with a budget far above need (only to read how much its channels hold), and a
/// listener on 127.0.0.1 with its port.
fn one_loop_with_budget() -> (SelectorManager, ServerSocket, u16) {
    let selector = SelectorManager::builder()
        .threads(1)
        .max_memory(1 << 30)
        .build()
        .unwrap();
    let server = selector
        .run_blocking(a_socket(&selector).tcp().bind("127.0.0.1:0"))
        .unwrap();
    let port = server.port().unwrap();
    (selector, server, port)
}

#[test]
fn a_line_search_buffers_at_most_the_limit_plus_one_read() {
    let (selector, server, port) = one_loop_with_budget();
    let limit = 1 << 20;
    let (tx, rx) = std::sync::mpsc::channel();
    selector.launch(async move {
        let socket = server.accept().await.unwrap();
        let mut input = socket.open_read_channel();
        input.set_max_line_length(limit);
        let r = input.read_line().await.map(|l| l.map(<[u8]>::len));
        tx.send(r).unwrap();
    });
    let mut peer = stalling_peer(port, limit - 1);
    eventually(
        "the partial line to be buffered",
        Duration::from_secs(20),
        || selector.memory_usage().unwrap().used >= limit - 1,
    );
    let used = selector.memory_usage().unwrap().used;
    // The limit, a terminator, one read of at most 64 KiB: never the doubling to 2 MiB.
    assert!(
        used <= limit + 2 + 64 * KIB,
        "buffered {used} bytes for a {limit}-byte limit"
    );
    // The line still completes at the limit, and one byte more is refused as before.
    peer.write_all(b"y\n").unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap().unwrap(),
        Some(limit)
    );
}

#[test]
fn a_line_over_the_limit_still_fails_with_line_too_long() {
    let selector = SelectorManager::builder()
        .threads(1)
        .max_memory(1 << 30)
        .build()
        .unwrap();
    let limit = 256 * KIB;
    let server = selector
        .run_blocking(a_socket(&selector).tcp().bind("127.0.0.1:0"))
        .unwrap();
    let port = server.port().unwrap();
    let task = selector.launch(async move {
        let socket = server.accept().await.unwrap();
        let mut input = socket.open_read_channel();
        input.set_max_line_length(limit);
        let r = input.read_line().await.map(|l| l.map(<[u8]>::len));
        (r, input.available_for_read())
    });
    let _peer = stalling_peer(port, limit + 100 * KIB);
    let (r, buffered) = selector.run_blocking(task).unwrap();
    assert!(
        matches!(r, Err(Error::LineTooLong { limit: l }) if l == limit),
        "{r:?}"
    );
    assert!(buffered <= limit + 2 + 64 * KIB, "buffered {buffered}");
}

#[test]
fn the_memory_budget_sheds_the_biggest_holders_with_a_typed_error() {
    let budget = 2 << 20;
    let selector = SelectorManager::builder()
        .threads(2)
        .max_memory(budget)
        .build()
        .unwrap();
    let reports = Arc::new(Mutex::new(0u32));
    let r = reports.clone();
    selector.on_memory_shed(move |_| *r.lock().unwrap() += 1);
    let server = selector
        .run_blocking(a_socket(&selector).tcp().bind("127.0.0.1:0"))
        .unwrap();
    let port = server.port().unwrap();
    let results = Arc::new(Mutex::new(Vec::new()));
    let (res, sel) = (results.clone(), selector.clone());
    selector.launch(async move {
        while let Ok(socket) = server.accept().await {
            let res = res.clone();
            sel.launch(async move {
                let mut input = socket.open_read_channel();
                input.set_max_line_length(4 << 20);
                let r = input.read_line().await.map(|l| l.map(<[u8]>::len));
                res.lock().unwrap().push(r);
            });
        }
    });
    // Ten peers of 512 KiB each: 5 MiB against a 2 MiB budget.
    let peers: Vec<_> = (0..10).map(|_| stalling_peer(port, 512 * KIB)).collect();
    let shed_reads = || {
        results
            .lock()
            .unwrap()
            .iter()
            .filter(|r| matches!(r, Err(Error::MemoryBudget { limit }) if *limit == budget))
            .count()
    };
    eventually(
        "reads to fail with MemoryBudget",
        Duration::from_secs(30),
        || shed_reads() >= 6,
    );
    eventually("shed buffers to be freed", Duration::from_secs(10), || {
        selector.memory_usage().unwrap().used <= budget
    });
    assert!(selector.memory_usage().unwrap().shed >= 6);
    // Nothing was mistaken for end of stream: every read that ended was shed.
    assert_eq!(shed_reads(), results.lock().unwrap().len());
    // A shed peer sees its connection closed.
    let mut closed = 0;
    for mut p in peers {
        p.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 1];
        if matches!(p.read(&mut b), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert!(closed >= 6, "closed peers: {closed}");
    assert!(*reports.lock().unwrap() >= 1, "the burst was reported");
}

#[test]
fn accept_waits_at_the_connection_cap_and_reports_it_once() {
    let selector = SelectorManager::builder().threads(1).build().unwrap();
    let server = selector
        .run_blocking(a_socket(&selector).tcp().bind("127.0.0.1:0"))
        .unwrap();
    server.set_max_connections(Some(2));
    assert_eq!(server.max_connections(), Some(2));
    let reports = Arc::new(Mutex::new(0u32));
    let r = reports.clone();
    server.on_accept_backoff(move |e| {
        if matches!(e, AcceptBackoff::ConnectionLimit { max: 2 }) {
            *r.lock().unwrap() += 1;
        }
    });
    let port = server.port().unwrap();
    let _peers: Vec<_> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    selector.run_blocking(async {
        let a = server.accept().await.unwrap();
        let _b = server.accept().await.unwrap();
        assert_eq!(server.connections(), 2);
        let third = asock::time::timeout(Duration::from_millis(300), server.accept()).await;
        assert!(third.is_err(), "accepted past the cap");
        drop(a);
        let c = asock::time::timeout(Duration::from_secs(5), server.accept()).await;
        assert!(c.is_ok(), "a place came free but accept did not see it");
        assert_eq!(server.connections(), 2);
    });
    assert_eq!(*reports.lock().unwrap(), 1, "one report for the burst");
}

struct Tls {
    server: TlsServerConfig,
    client: TlsConfig,
}

fn tls() -> Tls {
    let (server, client) =
        asock_test_support::tls_configs(&["localhost", "127.0.0.1"], "localhost");
    Tls { server, client }
}

/// A TLS listener on 127.0.0.1 and its port.
fn tls_listener(selector: &SelectorManager, config: &TlsServerConfig) -> (TlsServerSocket, u16) {
    let server = selector
        .run_blocking(a_socket(selector).tcp().bind("127.0.0.1:0"))
        .unwrap()
        .tls(config);
    let port = server.local_address().port().unwrap();
    (server, port)
}

#[test]
fn silent_connections_at_the_cap_never_stall_an_honest_tls_client() {
    let certs = tls();
    let selector = SelectorManager::builder().threads(2).build().unwrap();
    let (server, port) = tls_listener(&selector, &certs.server);
    server.set_max_connections(Some(32));
    let server = Arc::new(server);
    let (srv, sel) = (server.clone(), selector.clone());
    selector.launch(async move {
        while let Ok(tls) = srv.accept().await {
            sel.launch(async move {
                let mut input = tls.open_read_channel();
                let mut output = tls.open_write_channel(true);
                while let Ok(Some(line)) = input.read_line().await {
                    let line = line.to_vec();
                    if output.write_fully(&line).await.is_err()
                        || output.write_fully(b"\n").await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    // Fill the cap with silent TCP connections, twice over.
    let silent: Vec<_> = (0..64)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    eventually("the cap to fill", Duration::from_secs(10), || {
        server.connections() >= 32
    });
    for _ in 0..3 {
        let started = Instant::now();
        let line = selector
            .run_blocking(async {
                let s = a_socket(&selector)
                    .tcp()
                    .connect(("127.0.0.1", port))
                    .await?;
                let tls = s.tls(&certs.client).await?;
                let mut output = tls.open_write_channel(true);
                let mut input = tls.open_read_channel();
                output.write_str("ping\n").await?;
                input.read_utf8_line().await
            })
            .unwrap();
        assert_eq!(line.as_deref(), Some("ping"));
        // The handshake timeout is 10 s: a client stuck behind silent ones would wait that.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "honest client took {:?}",
            started.elapsed()
        );
        assert!(server.connections() <= 32, "{}", server.connections());
    }
    drop(silent);
}

#[test]
fn a_tls_server_never_accepted_from_holds_at_most_its_ready_queue() {
    let certs = tls();
    let selector = SelectorManager::builder().threads(2).build().unwrap();
    let (server, port) = tls_listener(&selector, &certs.server);
    let mut clients = Vec::new();
    let mut failed = 0;
    // Sequential handshakes: the 256-socket ready queue fills, then nothing more is accepted.
    for _ in 0..300 {
        let r = selector.run_blocking(async {
            let s = a_socket(&selector)
                .tcp()
                .connect(("127.0.0.1", port))
                .await?;
            asock::time::timeout(Duration::from_millis(500), s.tls(&certs.client))
                .await
                .map_err(|_| Error::Timeout)?
        });
        match r {
            Ok(t) => clients.push(t),
            Err(_) => failed += 1,
        }
    }
    // The queue (256), plus the few handshakes under way when it filled.
    assert!(
        server.connections() <= 260,
        "held {} connections",
        server.connections()
    );
    assert!(
        clients.len() <= 260,
        "{} handshakes completed",
        clients.len()
    );
    assert!(failed >= 40, "{failed} clients were left in the backlog");
}

/// Whether the server closed `s` (end of stream or a reset) within `limit`.
fn closed_by_server(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn at_the_cap_silent_handshakes_are_shed_before_one_whose_client_spoke() {
    let certs = tls();
    let selector = SelectorManager::builder().threads(1).build().unwrap();
    let (server, port) = tls_listener(&selector, &certs.server);
    server.set_max_connections(Some(3));
    // The oldest: the start of a TLS record header, then nothing (it spoke, then stalled).
    let mut talker = TcpStream::connect(("127.0.0.1", port)).unwrap();
    talker.write_all(&[0x16, 0x03, 0x01, 0x02]).unwrap();
    eventually("the talker's handshake", Duration::from_secs(5), || {
        server.pending_handshakes() == 1
    });
    std::thread::sleep(Duration::from_millis(100));
    // At the cap a pending handshake older than 50 ms is shed to keep a place for a new
    // client: the silent one goes, though the talker is older.
    let mut silent_old = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _silent_new = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(
        closed_by_server(&mut silent_old, Duration::from_secs(3)),
        "the oldest silent handshake was kept at the cap"
    );
    // A new client takes the place; at the cap again, the other silent one goes next.
    let started = Instant::now();
    let honest = selector.run_blocking(async {
        let s = a_socket(&selector)
            .tcp()
            .connect(("127.0.0.1", port))
            .await?;
        s.tls(&certs.client).await
    });
    assert!(honest.is_ok(), "{honest:?}");
    eprintln!("honest handshake at the cap in {:?}", started.elapsed());
    eventually(
        "the other silent handshake to go",
        Duration::from_secs(3),
        || server.pending_handshakes() == 1,
    );
    assert!(
        !closed_by_server(&mut talker, Duration::from_millis(200)),
        "the handshake whose client spoke was shed before a silent one"
    );
    assert_eq!(server.connections(), 2, "the talker and the honest client");
}

#[test]
fn idle_connections_hold_no_read_buffer_between_messages() {
    // The budget counts every read buffer a channel holds, so it shows what idle ones keep.
    let (selector, server, port) = one_loop_with_budget();
    let sel = selector.clone();
    selector.launch(async move {
        // Even connections echo raw bytes (fill_buf/consume), odd ones lines (read_line).
        let mut n = 0;
        while let Ok(socket) = server.accept().await {
            let lines = n % 2 == 1;
            n += 1;
            sel.launch(async move {
                let (mut input, mut output) =
                    (socket.open_read_channel(), socket.open_write_channel(true));
                if lines {
                    while let Ok(Some(line)) = input.read_line().await {
                        let reply = [line, b"\n"].concat();
                        if output.write_fully(&reply).await.is_err() {
                            break;
                        }
                    }
                } else {
                    while let Ok(chunk) = input.fill_buf().await {
                        if chunk.is_empty() || output.write_fully(chunk).await.is_err() {
                            break;
                        }
                        let k = chunk.len();
                        input.consume(k);
                    }
                }
            });
        }
    });
    let mut peers: Vec<_> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for p in &peers {
        p.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    let used = || selector.memory_usage().unwrap().used;
    for round in 0..20 {
        for p in &mut peers {
            let msg = format!("message {round}\n");
            p.write_all(msg.as_bytes()).unwrap();
            let mut back = vec![0; msg.len()];
            p.read_exact(&mut back).unwrap();
            assert_eq!(back, msg.as_bytes());
        }
        // Every reply is in, so every channel is waiting on an empty buffer: none is held.
        eventually(
            "idle channels to give their buffers back",
            Duration::from_secs(10),
            || used() == 0,
        );
    }
    // A line half received is kept, and given back once it is answered.
    peers[1].write_all(b"half a li").unwrap();
    eventually(
        "the partial line to be buffered",
        Duration::from_secs(10),
        || used() > 0,
    );
    peers[1].write_all(b"ne\n").unwrap();
    let mut back = [0; 12];
    peers[1].read_exact(&mut back).unwrap();
    assert_eq!(&back, b"half a line\n");
    eventually("the buffer to go back", Duration::from_secs(10), || {
        used() == 0
    });
}
