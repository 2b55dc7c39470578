//! SIGINT and SIGTERM in every mode: the first stops gracefully (exit 0), a second exits at
//! once (128 + the signal). Real sockets on 127.0.0.1 and temporary Unix paths; every wait is
//! bounded.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use asock::{a_socket, SelectorManager};
use asock_test_support::{kill, wait_output};
use support::{echo_line, stderr_line, wait_until, Server, BIN};

/// SIGTERM: no new connections, an open one finishes its work, and the server exits 0 as soon
/// as it is gone.
#[test]
fn sigterm_stops_accepting_and_lets_open_connections_finish() {
    let mut server = Server::start(&["--grace", "20"], None);
    let mut open = server.connect();
    echo_line(&mut open, "before").unwrap();
    server.signal(libc::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(5), || TcpStream::connect((
            "127.0.0.1",
            server.port
        ))
        .is_err()),
        "still accepting after SIGTERM"
    );
    // The open connection is still served during the grace period.
    echo_line(&mut open, "during").unwrap();
    assert!(server.child.try_wait().unwrap().is_none());
    drop(open);
    let (status, took) = server.wait_exit(Duration::from_secs(5));
    eprintln!("exited {status:?} {took:?} after the last client left");
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(server.stderr_text().contains("no longer accepting"));
}

/// SIGINT with a connection that stays open: closed when the grace period ends, the Unix
/// socket file is removed, exit 0.
#[test]
fn sigint_closes_lingering_connections_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let mut server = Server::start_at(&["--unix", path.to_str().unwrap()], &["--grace", "1"], None);
    assert!(path.exists());
    let mut open = std::os::unix::net::UnixStream::connect(&path).unwrap();
    open.write_all(b"hi\n").unwrap();
    let mut got = [0u8; 4];
    open.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi\r\n");
    let t0 = Instant::now();
    server.signal(libc::SIGINT);
    assert!(
        wait_until(Duration::from_secs(2), || !path.exists()),
        "socket file left"
    );
    let (status, _) = server.wait_exit(Duration::from_secs(10));
    let took = t0.elapsed();
    eprintln!("grace 1 s: exited {status:?} {took:?} after SIGINT");
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    open.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(open.read(&mut buf), Ok(0) | Err(_)), "still open");
    assert!(server.stderr_text().contains("grace period over"));
}

/// A second signal ends the wait at once.
#[test]
fn second_signal_exits_at_once() {
    for (tls, sig) in [(false, libc::SIGTERM), (true, libc::SIGINT)] {
        let args: &[&str] = if tls {
            &["--grace", "60", "--tls-self-signed"]
        } else {
            &["--grace", "60"]
        };
        let mut server = Server::start(args, None);
        let _open = server.connect();
        std::thread::sleep(Duration::from_millis(100));
        server.signal(sig);
        assert!(wait_until(Duration::from_secs(5), || server
            .stderr_text()
            .contains("no longer accepting")));
        server.signal(sig);
        let (status, took) = server.wait_exit(Duration::from_secs(5));
        eprintln!("second signal (tls {tls}): exited {status:?} {took:?} after it");
        assert_eq!(status.and_then(|s| s.code()), Some(128 + sig));
        assert!(took < Duration::from_secs(2));
    }
}

/// `--grace` covers pending TLS handshakes: one still pending at the signal that completes
/// within the grace period is served; silent ones are dropped when it ends, and the server
/// exits then (exit 0), not at the 10 s handshake timeout.
#[test]
fn grace_covers_pending_tls_handshakes() {
    let mut server = Server::start(&["--tls-self-signed", "--grace", "2"], None);
    let config = server.tls_client();
    let selector = SelectorManager::builder().threads(1).build().unwrap();
    let port = server.port;
    // Pending when the signal comes: TCP open, no ClientHello yet.
    let late = selector
        .run_blocking(a_socket(&selector).tcp().connect(("127.0.0.1", port)))
        .unwrap();
    let mut silent: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    server.signal(libc::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(5), || server
            .stderr_text()
            .contains("no longer accepting")),
        "no shutdown message: {}",
        server.stderr_text()
    );
    // The pending one handshakes within the grace period and is served.
    let (line, tls) = selector
        .run_blocking(async {
            let tls = late.tls(&config).await?;
            let mut output = tls.open_write_channel(true);
            let mut input = tls.open_read_channel();
            output.write_str("within grace\n").await?;
            let line = input.read_utf8_line().await?;
            Ok::<_, asock::Error>((line, tls))
        })
        .unwrap();
    assert_eq!(line.as_deref(), Some("within grace"));
    let (status, _) = server.wait_exit(Duration::from_secs(10));
    let took = t0.elapsed();
    eprintln!("grace 2 s with pending TLS handshakes: exited {status:?} {took:?} after SIGTERM");
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
        "{took:?}"
    );
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 16];
        assert!(
            matches!(s.read(&mut buf), Ok(0) | Err(_)),
            "a silent handshake outlived the server"
        );
    }
    drop(tls);
}

/// Starts `asock ARGS` as a script's `cmd &` would: with SIGINT ignored. Stdin is a pipe kept
/// open (so `connect` and `listen` wait), stdout and stderr are piped.
fn spawn_ignoring_sigint(args: &[&str]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: runs in the forked child before exec and only calls signal(2), which is
    // async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    cmd.spawn().expect("start asock")
}

/// The first stdout line of `child`.
fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().to_string()
}

/// Signals `child` and expects it to exit 0 within 5 s; its stderr.
fn stops_cleanly(mut child: Child, sig: i32, what: &str) -> String {
    kill(&child, sig);
    let _stdin = child.stdin.take();
    let (code, _, err) = wait_output(child, Duration::from_secs(5));
    assert_eq!(
        code,
        Some(0),
        "{what}: exit after signal {sig}; stderr: {err}"
    );
    err
}

/// Every echo-server mode stops on SIGINT (even when started with SIGINT ignored, as from a
/// script's `&`) and on SIGTERM, exiting 0.
#[test]
fn echo_server_every_mode_stops_on_sigint_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // UDP: a datagram is echoed first, so the loop is really running.
        let mut udp = spawn_ignoring_sigint(&["echo-server", "--udp", "127.0.0.1:0"]);
        let addr = first_line(&mut udp).rsplit(' ').next().unwrap().to_string();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(b"ping", &addr).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(c.recv(&mut buf).unwrap(), 4);
        stops_cleanly(udp, sig, "echo-server --udp");

        // Unix datagrams: the socket file goes too.
        let path = dir.path().join(format!("dgram{sig}.sock"));
        let mut ud =
            spawn_ignoring_sigint(&["echo-server", "--udp", "--unix", path.to_str().unwrap()]);
        first_line(&mut ud);
        assert!(path.exists());
        let err = stops_cleanly(ud, sig, "echo-server --udp --unix");
        assert!(
            !path.exists(),
            "Unix datagram socket file left (signal {sig}): {err}"
        );

        // TCP, TLS and a Unix stream.
        let path = dir.path().join(format!("stream{sig}.sock"));
        for args in [
            vec!["echo-server", "127.0.0.1:0"],
            vec!["echo-server", "127.0.0.1:0", "--tls-self-signed"],
            vec!["echo-server", "--unix", path.to_str().unwrap()],
        ] {
            let mut child = spawn_ignoring_sigint(&args);
            first_line(&mut child);
            let err = stops_cleanly(child, sig, &args.join(" "));
            assert!(err.contains("no longer accepting"), "{args:?}: {err}");
        }
        assert!(!path.exists(), "Unix stream socket file left");
    }
}

/// `listen` stops on a signal while waiting (a Unix socket file is removed) and while
/// relaying (the peer sees the end of the stream); exit 0 either way.
#[test]
fn listen_stops_on_signals_and_removes_its_socket_file() {
    let dir = tempfile::tempdir().unwrap();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // Waiting for a connection, TCP and Unix, stream and datagram.
        let path = dir.path().join(format!("listen{sig}.sock"));
        let dpath = dir.path().join(format!("listen{sig}.dgram"));
        for (args, file) in [
            (vec!["-v", "listen", "127.0.0.1:0"], None),
            (
                vec!["-v", "listen", "--unix", path.to_str().unwrap()],
                Some(&path),
            ),
            (vec!["-v", "listen", "--udp", "127.0.0.1:0"], None),
            (
                vec!["-v", "listen", "--udp", "--unix", dpath.to_str().unwrap()],
                Some(&dpath),
            ),
        ] {
            let mut child = spawn_ignoring_sigint(&args);
            let (_, rest) = stderr_line(&mut child, "istening on", Duration::from_secs(5));
            if let Some(f) = file {
                assert!(f.exists(), "{args:?}: no socket file");
            }
            kill(&child, sig);
            let _stdin = child.stdin.take();
            let (code, _) = support_finish(child);
            let err = rest
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_default();
            assert_eq!(code, Some(0), "{args:?}: {err}");
            if let Some(f) = file {
                assert!(!f.exists(), "{args:?}: socket file left after the signal");
            }
        }

        // Relaying: the peer sees the end of the stream, the tool exits 0.
        let mut child = spawn_ignoring_sigint(&["-v", "listen", "127.0.0.1:0"]);
        let (line, _rest) = stderr_line(&mut child, "Listening on", Duration::from_secs(5));
        let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
        let mut peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"before\n")
            .unwrap();
        let mut got = [0u8; 7];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"before\n");
        kill(&child, sig);
        let mut rest = Vec::new();
        let _ = peer.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{rest:?}");
        let _stdin = child.stdin.take();
        let (code, _) = support_finish(child);
        assert_eq!(code, Some(0), "listen while relaying, signal {sig}");
    }
}

/// `connect` (TCP and UDP) stops on a signal: the peer sees the end of the stream, exit 0.
#[test]
fn connect_stops_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let child = spawn_ignoring_sigint(&["connect", &addr]);
        let (mut peer, _) = l.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        kill(&child, sig);
        let mut rest = Vec::new();
        let _ = peer.read_to_end(&mut rest);
        let mut child = child;
        let _stdin = child.stdin.take();
        let (code, _) = support_finish(child);
        assert_eq!(code, Some(0), "connect, signal {sig}");
        // The peer never closed: the tool waits at most --linger (0.5 s) for it.
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());

        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = u.local_addr().unwrap().to_string();
        let child = spawn_ignoring_sigint(&["connect", "--udp", &addr]);
        std::thread::sleep(Duration::from_millis(200));
        kill(&child, sig);
        let mut child = child;
        let _stdin = child.stdin.take();
        let (code, _) = support_finish(child);
        assert_eq!(code, Some(0), "connect --udp, signal {sig}");
    }
}

/// Exit code and stdout of a child whose stderr may already be taken, within 5 s.
fn support_finish(mut child: Child) -> (Option<i32>, Vec<u8>) {
    let start = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if start.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_end(&mut out);
    }
    (code, out)
}
