//! `asock echo-server/connect/listen` with `--udp` and `--unix`, driven with socat, python3 and
//! plain std sockets as peers (127.0.0.1 and temp-dir paths only).

use asock_test_support::run_text as run;
use asock_test_support::{have, is_socket};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_asock");

/// A running `asock` process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `asock echo-server ARGS` and returns it with its first stdout line.
fn echo_server(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .arg("echo-server")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start asock");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    (Proc(child), first.trim().to_string())
}

fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[test]
fn echo_server_udp_echoes_each_datagram_to_its_sender() {
    let (_server, first) = echo_server(&["--udp", "127.0.0.1:0"]);
    assert!(
        first.starts_with("Started echo UDP server at 127.0.0.1:"),
        "{first}"
    );
    let addr = first.rsplit(' ').next().unwrap().to_string();
    // Several senders at once, each gets its own datagrams back.
    let clients: Vec<UdpSocket> = (0..5).map(|_| udp_client()).collect();
    for (i, c) in clients.iter().enumerate() {
        for j in 0..20 {
            c.send_to(format!("client {i} msg {j}").as_bytes(), &addr)
                .unwrap();
        }
    }
    let mut buf = [0u8; 70_000];
    for (i, c) in clients.iter().enumerate() {
        for j in 0..20 {
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(from.to_string(), addr);
            assert_eq!(
                std::str::from_utf8(&buf[..n]).unwrap(),
                format!("client {i} msg {j}")
            );
        }
    }
    // Empty and largest datagrams.
    let c = udp_client();
    c.send_to(b"", &addr).unwrap();
    assert_eq!(c.recv_from(&mut buf).unwrap().0, 0);
    let big = vec![0x61u8; 65_507];
    c.send_to(&big, &addr).unwrap();
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &big[..]);
}

#[test]
fn echo_server_udp_on_ipv6_and_port_in_use() {
    let (_server, first) = echo_server(&["--udp", "[::1]:0"]);
    assert!(
        first.starts_with("Started echo UDP server at [::1]:"),
        "{first}"
    );
    let addr = first.rsplit(' ').next().unwrap().to_string();
    let c = UdpSocket::bind("[::1]:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.send_to(b"six", &addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"six");

    // The same port again: a clear error, exit 1.
    let (code, _, err) = run(
        Command::new(BIN).args(["echo-server", "--udp", &addr]),
        b"",
        10,
    );
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("error: ") && err.contains("already in use"),
        "{err}"
    );
}

#[test]
fn connect_udp_sends_lines_and_prints_replies() {
    let (_server, first) = echo_server(&["--udp", "127.0.0.1:0"]);
    let addr = first.rsplit(' ').next().unwrap().to_string();
    let (code, out, err) = run(
        Command::new(BIN).args(["connect", "--udp", &addr]),
        b"first line\nsecond line\nlast without newline",
        10,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "first line\nsecond line\nlast without newline\n");
}

#[test]
fn connect_udp_to_a_closed_port_is_refused() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, err) = run(
        Command::new(BIN).args(["connect", "--udp", &format!("127.0.0.1:{port}")]),
        b"anyone?\n",
        10,
    );
    assert_eq!(code, Some(1));
    assert!(err.starts_with("error: connection refused"), "{err}");
}

#[test]
fn connect_udp_against_python_and_socat_peers() {
    if have("python3") {
        let code = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(10)
print(s.getsockname()[1], flush=True)
for _ in range(2):
    data, addr = s.recvfrom(70000)
    s.sendto(data.upper(), addr)
"#;
        let mut py = Command::new("python3")
            .args(["-c", code])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        BufReader::new(py.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        let _py = Proc(py);
        let (code, out, err) = run(
            Command::new(BIN).args(["connect", "--udp", &format!("127.0.0.1:{}", port.trim())]),
            b"hello\npython\n",
            10,
        );
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, "HELLO\nPYTHON\n");
    }
    if have("socat") {
        let (_server, first) = echo_server(&["--udp", "127.0.0.1:0"]);
        let addr = first.rsplit(' ').next().unwrap().to_string();
        let (code, out, _) = run(
            Command::new("socat").args(["-t1", "-", &format!("UDP4:{addr}")]),
            b"via socat\n",
            10,
        );
        assert_eq!(code, Some(0));
        assert_eq!(out, "via socat\n");
    }
}

#[test]
fn listen_udp_answers_the_first_sender() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args(["listen", "--udp", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let _p = Proc(child);
    let first = udp_client();
    let other = udp_client();
    // The listener may still be starting: resend until it relays.
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    first
        .send_to(b"hello listener\n", ("127.0.0.1", port))
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut l = String::new();
        while stdout.read_line(&mut l).unwrap_or(0) > 0 {
            let _ = tx.send(std::mem::take(&mut l));
        }
    });
    while line.is_empty() {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => line = l,
            Err(_) => {
                assert!(Instant::now() < deadline, "listen relayed nothing");
                first
                    .send_to(b"hello listener\n", ("127.0.0.1", port))
                    .unwrap();
            }
        }
    }
    assert_eq!(line, "hello listener\n");
    // A second sender is ignored.
    other.send_to(b"intruder\n", ("127.0.0.1", port)).unwrap();
    first.send_to(b"again\n", ("127.0.0.1", port)).unwrap();
    let mut next = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    while next == "hello listener\n" {
        next = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    }
    assert_eq!(next, "again\n");
    // stdin goes to the first sender.
    stdin.write_all(b"reply from stdin\n").unwrap();
    stdin.flush().unwrap();
    let mut buf = [0u8; 128];
    let (n, from) = first.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"reply from stdin\n");
    assert_eq!(from.port(), port);
}

#[test]
fn echo_server_unix_replaces_stale_refuses_live_and_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    // A stale file from a server that died.
    drop(UnixListener::bind(&path).unwrap());
    assert!(is_socket(&path));
    let p = path.to_str().unwrap();
    let (server, first) = echo_server(&["--unix", p]);
    assert_eq!(first, format!("Started echo telnet server at unix:{p}"));

    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"over unix\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut back = String::new();
    r.read_line(&mut back).unwrap();
    assert_eq!(back, "over unix\r\n");

    // A live server's path is refused.
    let (code, _, err) = run(
        Command::new(BIN).args(["echo-server", "--unix", p]),
        b"",
        10,
    );
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("error: ") && err.contains("already in use"),
        "{err}"
    );
    // The first server is unharmed.
    s.write_all(b"still\n").unwrap();
    back.clear();
    r.read_line(&mut back).unwrap();
    assert_eq!(back, "still\r\n");
    drop(server);

    // A regular file is an error and is left untouched.
    let file = dir.path().join("data.txt");
    std::fs::write(&file, b"precious").unwrap();
    let (code, _, err) = run(
        Command::new(BIN).args(["echo-server", "--unix", file.to_str().unwrap()]),
        b"",
        10,
    );
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("error: ") && err.contains("not a socket"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
}

#[test]
fn connect_unix_relays_and_exits_at_peer_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.sock");
    let p = path.to_str().unwrap();
    let (_server, _) = echo_server(&["--unix", p]);
    let (code, out, err) = run(
        Command::new(BIN).args(["connect", "--unix", p]),
        b"alpha\nbeta\n",
        10,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "alpha\r\nbeta\r\n");
    // Raw echo too, and socat / python clients.
    let rpath = dir.path().join("raw.sock");
    let (_raw, _) = echo_server(&["--unix", rpath.to_str().unwrap(), "--raw"]);
    if have("socat") {
        let (code, out, _) = run(
            Command::new("socat").args(["-t2", "-", &format!("UNIX-CONNECT:{}", rpath.display())]),
            b"raw bytes, no newline",
            10,
        );
        assert_eq!(code, Some(0));
        assert_eq!(out, "raw bytes, no newline");
    }
    if have("python3") {
        let code = format!(
            r#"
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect({p:?})
s.sendall(b"py\n")
s.shutdown(socket.SHUT_WR)
print(s.recv(100).decode().strip())
"#
        );
        let (status, out, err) = run(Command::new("python3").args(["-c", &code]), b"", 10);
        assert_eq!(status, Some(0), "{err}");
        assert_eq!(out.trim(), "py");
    }
    // A missing path: a clear error.
    let (code, _, err) = run(
        Command::new(BIN).args([
            "connect",
            "--unix",
            dir.path().join("missing.sock").to_str().unwrap(),
        ]),
        b"",
        10,
    );
    assert_eq!(code, Some(1));
    assert!(err.starts_with("error: connection refused"), "{err}");
}

#[test]
fn listen_unix_relays_one_connection_with_socat() {
    assert!(have("socat"), "{} is needed; .ci/run installs it", "socat");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sock");
    // A stale file is replaced by `listen` too.
    drop(UnixListener::bind(&path).unwrap());
    let mut child = Command::new(BIN)
        .args(["listen", "--unix", path.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc_ = Proc(child);
    // Wait for the listener to be live (the stale file was replaced by a live socket).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("listen never came up: {e}"),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"to the listener\n").unwrap();
    let mut r = BufReader::new(stdout);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "to the listener\n");
    stdin.write_all(b"back to the client\n").unwrap();
    drop(stdin);
    let mut got = String::new();
    BufReader::new(&mut s).read_line(&mut got).unwrap();
    assert_eq!(got, "back to the client\n");
    drop(s);
    drop(proc_);
}

/// `echo-server --udp --unix PATH`: socat's `UNIX-SENDTO` (bound, so it can hear back) gets
/// each datagram echoed; the socket file goes when the server stops.
#[test]
fn unix_datagram_echo_server_with_socat() {
    assert!(have("socat"), "socat is needed; .ci/run installs it");
    let dir = tempfile::tempdir().unwrap();
    let srv = dir.path().join("echo.dgram");
    let (server, first) = echo_server(&["--udp", "--unix", srv.to_str().unwrap()]);
    assert!(first.contains("Unix datagram"), "{first}");
    assert!(first.ends_with(srv.to_str().unwrap()), "{first}");
    let cli = dir.path().join("client.dgram");
    let (code, out, err) = run(
        Command::new("socat").arg("-t1").arg("-").arg(format!(
            "UNIX-SENDTO:{},bind={}",
            srv.display(),
            cli.display()
        )),
        b"hello over a unix datagram\n",
        10,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "hello over a unix datagram\n");
    let mut server = server;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.0.id() as libc::pid_t, libc::SIGTERM) };
    let _ = server.0.wait();
    assert!(!srv.exists(), "socket file left after SIGTERM");
}

/// `connect --udp --unix PATH` against socat `UNIX-RECVFROM` (which answers the sender, here
/// in upper case), and `listen --udp --unix PATH` with socat `UNIX-SENDTO` as the first sender.
#[test]
fn unix_datagram_connect_and_listen_with_socat() {
    assert!(have("socat"), "socat is needed; .ci/run installs it");
    let dir = tempfile::tempdir().unwrap();
    let srv = dir.path().join("peer.dgram");
    let mut peer = Proc(
        Command::new("socat")
            .arg(format!("UNIX-RECVFROM:{},fork", srv.display()))
            .arg("SYSTEM:tr a-z A-Z")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for(|| srv.exists()),
        "socat did not bind {}",
        srv.display()
    );
    let (code, out, err) = run(
        Command::new(BIN).args(["connect", "--udp", "--unix", srv.to_str().unwrap()]),
        b"shout\n",
        10,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "SHOUT\n");
    let _ = peer.0.kill();

    // listen: the first sender's datagram is printed, stdin goes back to it.
    let lsn = dir.path().join("listen.dgram");
    let mut listen = Command::new(BIN)
        .args(["listen", "--udp", "--unix", lsn.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(|| lsn.exists()), "listen did not bind");
    let cli = dir.path().join("sender.dgram");
    let mut socat = Command::new("socat")
        .arg("-t2")
        .arg("-")
        .arg(format!(
            "UNIX-SENDTO:{},bind={}",
            lsn.display(),
            cli.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    socat.stdin.as_mut().unwrap().write_all(b"first\n").unwrap();
    let mut got = [0u8; 6];
    listen
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut got)
        .unwrap();
    assert_eq!(&got, b"first\n");
    listen
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"reply\n")
        .unwrap();
    let mut back = [0u8; 6];
    socat
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut back)
        .unwrap();
    assert_eq!(&back, b"reply\n");
    drop(socat.stdin.take());
    let _ = socat.wait();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(listen.id() as libc::pid_t, libc::SIGINT) };
    let status = listen.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!lsn.exists(), "socket file left");
}

/// Polls `cond` for up to 5 s.
fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A `--unix` path that is not UTF-8 (`s\xff`) is bound exactly, not as `s\u{fffd}`: for
/// echo-server and listen; listen also removes it at the end.
#[test]
fn unix_paths_that_are_not_utf8_are_kept_exactly() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(OsStr::from_bytes(b"s\xff"));
    let lossy = dir.path().join("s\u{fffd}");

    let mut server = Proc(
        Command::new(BIN)
            .arg("echo-server")
            .arg("--unix")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(path.exists(), "not bound at the exact path; {first}");
    assert!(!lossy.exists(), "bound at the lossy path");
    let mut s = UnixStream::connect(&path).unwrap();
    s.write_all(b"bytes\n").unwrap();
    let mut got = [0u8; 7];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"bytes\r\n");
    drop(s);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.0.id() as libc::pid_t, libc::SIGTERM) };
    let _ = server.0.wait();
    assert!(!path.exists());

    let mut listen = Command::new(BIN)
        .arg("listen")
        .arg("--unix")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(|| path.exists()),
        "listen did not bind the exact path"
    );
    assert!(!lossy.exists());
    let mut c = UnixStream::connect(&path).unwrap();
    c.write_all(b"over\n").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    drop(listen.stdin.take());
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    let status = listen.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut out = String::new();
    listen
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "over\n");
    assert!(!path.exists(), "listen left its socket file");
}
