//! `asock proxy`: many connections relayed byte-exactly to a TCP or Unix target, half-closes
//! passed on, TLS terminated in front of a plain target (checked with python's ssl), a refused
//! target, errors, and SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_asock");

/// A running `asock proxy`, killed on drop.
struct Proxy {
    child: Child,
    /// The bound address from the `Started ...` line.
    addr: String,
    first_line: String,
}

impl Proxy {
    fn start(args: &[&str], dir: &Path) -> Proxy {
        let mut child = Command::new(BIN)
            .arg("proxy")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let line = line.trim().to_string();
        assert!(line.starts_with("Started"), "first line: {line:?}");
        let addr = line.rsplit(' ').next().unwrap().to_string();
        Proxy {
            child,
            addr,
            first_line: line,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr.as_str()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A byte-echo target on 127.0.0.1: each connection echoed on a thread until end of stream,
/// then half-closed.
fn echo_target() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming().take(1000) {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

fn pattern(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Sends `data` on a new connection through the proxy, half-closes, and reads the echo to end.
fn through(proxy_addr: &str, data: Vec<u8>) -> std::thread::JoinHandle<Vec<u8>> {
    let addr = proxy_addr.to_string();
    std::thread::spawn(move || {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        (&s).read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        got
    })
}

#[test]
fn relays_many_connections_byte_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let target = echo_target();
    let proxy = Proxy::start(&["127.0.0.1:0", &target, "--threads", "2"], dir.path());
    assert_eq!(
        proxy.first_line,
        format!("Started proxy to {target} at {}", proxy.addr)
    );
    // 32 at once, from 0 bytes to 4 MiB each.
    let sizes = [0usize, 1, 100, 65_536, 1 << 20, 4 << 20];
    let jobs: Vec<_> = (0..32)
        .map(|i| {
            let data = pattern(i, sizes[i as usize % sizes.len()]);
            (data.clone(), through(&proxy.addr, data))
        })
        .collect();
    for (i, (data, job)) in jobs.into_iter().enumerate() {
        let got = job.join().unwrap();
        assert_eq!(got.len(), data.len(), "connection {i}");
        assert!(got == data, "connection {i}: bytes differ");
    }
}

#[test]
fn the_targets_half_close_reaches_the_client_first() {
    let dir = tempfile::tempdir().unwrap();
    // A target that greets, half-closes, then reads everything and reports its length.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = l.local_addr().unwrap().to_string();
    let srv = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"hello\n").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).unwrap();
        v.len()
    });
    let proxy = Proxy::start(&["127.0.0.1:0", &target], dir.path());
    let mut c = proxy.connect();
    let mut greeting = String::new();
    c.read_to_string(&mut greeting).unwrap();
    assert_eq!(greeting, "hello\n");
    // The client can still send after the target's half-close.
    c.write_all(&pattern(1, 300_000)).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(srv.join().unwrap(), 300_000);
}

#[test]
fn unix_listener_in_front_of_a_tcp_target_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let target = echo_target();
    let front = dir.path().join("front.sock");
    let listen = format!("unix:{}", front.display());
    let p1 = Proxy::start(&[&listen, &target], dir.path());
    assert_eq!(p1.addr, listen);
    // And a TCP proxy in front of that Unix proxy: TCP -> Unix -> TCP.
    let p2 = Proxy::start(&["127.0.0.1:0", &listen], dir.path());
    let data = pattern(7, 2 << 20);
    let got = through(&p2.addr, data.clone()).join().unwrap();
    assert!(got == data);
    drop(p1);
}

#[test]
fn a_refused_target_closes_the_client_and_the_proxy_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    // A port with nothing behind it.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = dead.local_addr().unwrap().to_string();
    drop(dead);
    let mut proxy = Proxy::start(&["-v", "127.0.0.1:0", &target], dir.path());
    for _ in 0..3 {
        let mut c = proxy.connect();
        let mut v = Vec::new();
        assert_eq!(c.read_to_end(&mut v).unwrap_or(0), 0);
    }
    assert!(proxy.child.try_wait().unwrap().is_none(), "still running");
    proxy.child.kill().unwrap();
    let out = proxy.child.wait_with_output_stderr();
    assert!(out.contains("refused"), "the log says why: {out}");
}

trait StderrText {
    fn wait_with_output_stderr(&mut self) -> String;
}

impl StderrText for Child {
    fn wait_with_output_stderr(&mut self) -> String {
        let _ = self.wait();
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

#[test]
fn errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    for (args, want) in [
        (vec![port.as_str(), "127.0.0.1:9"], "already in use"),
        (vec!["nonsense", "127.0.0.1:9"], "listen address"),
        (vec!["127.0.0.1:0", "nonsense"], "invalid target"),
    ] {
        let out = Command::new(BIN)
            .arg("proxy")
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(want), "{err}");
    }
}

#[test]
fn sigterm_stops_accepting_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let target = echo_target();
    let mut proxy = Proxy::start(&["127.0.0.1:0", &target, "--grace", "5"], dir.path());
    // An open connection finishes within the grace period.
    let mut c = proxy.connect();
    c.write_all(b"before").unwrap();
    let mut buf = [0u8; 6];
    c.read_exact(&mut buf).unwrap();
    // SAFETY: kill(2) on our own, unreaped child.
    let rc = unsafe { libc::kill(proxy.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        TcpStream::connect(proxy.addr.as_str()).is_err(),
        "no longer accepting"
    );
    c.write_all(b" after").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b" after");
    let st = proxy.wait_exit(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0));
}

#[test]
fn terminates_tls_in_front_of_a_plain_target() {
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new(BIN)
        .args(["cert", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(st.status.success());
    let target = echo_target();
    let proxy = Proxy::start(
        &[
            "127.0.0.1:0",
            &target,
            "--tls-cert",
            "server.pem",
            "--tls-key",
            "server.key",
        ],
        dir.path(),
    );
    assert!(proxy.first_line.starts_with("Started TLS proxy to "));
    let port = proxy.addr.rsplit(':').next().unwrap();
    // python's ssl as the client: 1 MiB there and back, then a TLS close.
    let script = format!(
        r#"
import socket, ssl, hashlib
ctx = ssl.create_default_context(cafile="ca.pem")
data = bytes((i * 7 + 3) % 251 for i in range(1 << 20))
with socket.create_connection(("127.0.0.1", {port})) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        print(len(got), got == data)
"#
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .current_dir(dir.path())
        .output()
        .expect("python3 is needed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1048576 True");
}
