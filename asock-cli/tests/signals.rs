//! SIGINT and SIGTERM in every mode: the first stops gracefully (exit 0), a second exits at
//! once (128 + the signal). Real sockets on 127.0.0.1 and temporary Unix paths; every wait is
//! bounded.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{echo_line, wait_until, Server};

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
