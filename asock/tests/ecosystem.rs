//! The ecosystem examples on 127.0.0.1, driven by real clients: hyper's HTTP/1.1 server with
//! `curl` (keep-alive, JSON echo, errors), HTTP/2 over TLS with `curl --http2`, hyper's client
//! against Python's `http.server` and against the hyper server, and the WebSocket echo server
//! with Python's `websockets` package (Debian's `python3-websockets`).
//!
//! Each test includes its example's source as a module, so what runs here is the example's own
//! code. `.ci/run` installs curl and python3-websockets; a test fails (never skips) without them.

#[allow(dead_code)]
#[path = "../examples/hyper_server.rs"]
mod hyper_server;

#[allow(dead_code)]
#[path = "../examples/hyper_client.rs"]
mod hyper_client;

#[allow(dead_code)]
#[path = "../examples/ws_echo_server.rs"]
mod ws_echo_server;

use asock_test_support as common;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use asock::SelectorManager;

/// Runs `curl` with `args` (always silent, failing on HTTP errors only when asked, and bounded
/// to 20 s) and returns its output.
fn curl(args: &[&str]) -> Output {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl is not installed: .ci/run installs it (apt-get install curl)");
    out
}

/// `curl` that must succeed; returns its stdout.
fn curl_ok(args: &[&str]) -> String {
    let out = curl(args);
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Starts the hyper example server on 127.0.0.1:0 (TLS when `tls_dir` is given) on
/// `selector`, returning it running.
fn start_hyper(selector: &SelectorManager, tls_dir: Option<&Path>) -> hyper_server::Running {
    let tls = tls_dir.map(|d| hyper_server::tls_config(d).expect("TLS config"));
    selector
        .run_blocking(hyper_server::start(selector, "127.0.0.1:0", tls))
        .expect("start hyper_server")
}

fn port_of(running: &hyper_server::Running) -> u16 {
    running
        .address
        .to_string()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn hyper_http1_with_curl_keep_alive_json_and_errors() {
    let sel = common::selector();
    let server = start_hyper(&sel, None);
    let base = format!("http://127.0.0.1:{}", port_of(&server));

    // Three requests in one curl run: one connection, kept alive.
    let root = format!("{base}/");
    let out = curl(&["--verbose", &root, &root, &root]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        hyper_server::HELLO.repeat(3)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("Re-using existing connection").count(),
        2,
        "{log}"
    );
    assert_eq!(log.matches("< HTTP/1.1 200 OK").count(), 3, "{log}");
    assert_eq!(server.stats.connections.load(Ordering::Relaxed), 1);

    // The JSON echo, with non-ASCII text and nesting.
    let echo = format!("{base}/echo");
    let json = r#"{"name":"asock ✓","list":[1,2.5,null,true],"nested":{"a":{"b":[]}}}"#;
    let body = curl_ok(&[
        "--fail",
        "-H",
        "content-type: application/json",
        "--data-binary",
        json,
        &echo,
    ]);
    let sent: serde_json::Value = serde_json::from_str(json).unwrap();
    let back: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sent, back);

    // Errors get their status codes; the server keeps serving.
    let status = |args: &[&str]| {
        let mut all = vec!["--output", "/dev/null", "--write-out", "%{http_code}"];
        all.extend_from_slice(args);
        curl_ok(&all)
    };
    assert_eq!(status(&["--data-binary", "{not json", &echo]), "400");
    let big = format!("[{}1]", "1,".repeat(40 * 1024)); // 80 KiB > 64 KiB
    let dir = tempfile::tempdir().unwrap();
    let big_file = dir.path().join("big.json");
    std::fs::write(&big_file, big).unwrap();
    let at_big = format!("@{}", big_file.display());
    assert_eq!(status(&["--data-binary", &at_big, &echo]), "413");
    assert_eq!(status(&[&format!("{base}/nowhere")]), "404");
    assert_eq!(status(&["-X", "DELETE", &root]), "405");
    assert_eq!(status(&[&root]), "200");
}

#[test]
fn hyper_http2_over_tls_with_curl() {
    let dir = tempfile::tempdir().unwrap();
    let sel = common::selector();
    let server = start_hyper(&sel, Some(dir.path()));
    assert!(server.tls);
    let port = port_of(&server);
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let url = format!("https://127.0.0.1:{port}/");

    // HTTP/2, negotiated by ALPN, verified against the example's test CA.
    let out = curl_ok(&[
        "--http2",
        "--cacert",
        ca,
        "--write-out",
        " %{http_version}",
        &url,
    ]);
    assert_eq!(out, format!("{} 2", hyper_server::HELLO));

    // Several requests multiplexed on one HTTP/2 connection, and a JSON echo over HTTP/2.
    let before = server.stats.connections.load(Ordering::Relaxed);
    let echo = format!("https://127.0.0.1:{port}/echo");
    // (`--next` starts the POST's own options: curl applies options to every URL before it.)
    let out = curl(&[
        "--verbose",
        "--http2",
        "--parallel",
        "--cacert",
        ca,
        &url,
        &url,
        &url,
        &url,
        "--next",
        "--http2",
        "--cacert",
        ca,
        "-H",
        "content-type: application/json",
        "--data-binary",
        "[1,2,3]",
        &echo,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches(hyper_server::HELLO).count(), 4, "{stdout}");
    assert!(stdout.contains("[1,2,3]"), "{stdout}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("ALPN: server accepted h2"), "{log}");
    assert_eq!(
        server.stats.connections.load(Ordering::Relaxed),
        before + 1,
        "{log}"
    );

    // A client that offers only HTTP/1.1 gets HTTP/1.1 on the same port.
    let out = curl_ok(&[
        "--http1.1",
        "--cacert",
        ca,
        "--write-out",
        " %{http_version}",
        &url,
    ]);
    assert_eq!(out, format!("{} 1.1", hyper_server::HELLO));

    // Name verification: the certificate names localhost too.
    let resolve = format!("localhost:{port}:127.0.0.1");
    let local = format!("https://localhost:{port}/");
    let out = curl_ok(&[
        "--http2",
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        "--write-out",
        " %{http_version}",
        &local,
    ]);
    assert_eq!(out, format!("{} 2", hyper_server::HELLO));
    assert!(server.stats.h2_connections.load(Ordering::Relaxed) >= 3);
}

/// A Python `http.server` speaking HTTP/1.1 (keep-alive) that answers each GET with the
/// client's port and a request number: an independent server for hyper's client.
const PY_HTTP_SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    n = 0
    def do_GET(self):
        H.n += 1
        body = f"port={self.client_address[1]} n={H.n}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hyper_client_keep_alive_against_python_http_server() {
    let mut child = Command::new("python3")
        .args(["-c", PY_HTTP_SERVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 is not installed: .ci/run installs it");
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().expect("python server's port");
    wait_for_port(port);

    let sel = common::selector();
    let url = format!("http://127.0.0.1:{port}/x");
    let responses = sel
        .run_blocking(common::within(60, hyper_client::fetch(&sel, &url, 5)))
        .expect("fetch");
    assert_eq!(responses.len(), 5);
    let bodies: Vec<String> = responses
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200);
            String::from_utf8(r.body.to_vec()).unwrap()
        })
        .collect();
    // One client port for all five: the same connection, kept alive.
    let port_of = |b: &str| b.split(' ').next().unwrap().to_string();
    assert!(
        bodies.iter().all(|b| port_of(b) == port_of(&bodies[0])),
        "{bodies:?}"
    );
    for (i, b) in bodies.iter().enumerate() {
        assert!(b.ends_with(&format!(" n={}", i + 1)), "{bodies:?}");
    }
    drop(child);
}

#[test]
fn hyper_client_against_hyper_server_one_connection() {
    let sel = common::selector();
    let server = start_hyper(&sel, None);
    let url = format!("http://127.0.0.1:{}/", port_of(&server));
    let responses = sel
        .run_blocking(common::within(60, hyper_client::fetch(&sel, &url, 20)))
        .expect("fetch");
    assert_eq!(responses.len(), 20);
    assert!(responses
        .iter()
        .all(|r| r.status == 200 && r.body == hyper_server::HELLO));
    assert_eq!(server.stats.connections.load(Ordering::Relaxed), 1);

    // The client's errors are errors, not panics.
    let err = sel
        .run_blocking(hyper_client::fetch(&sel, "https://127.0.0.1:1/", 1))
        .unwrap_err();
    assert!(err.to_string().contains("only http://"), "{err}");
}

/// Waits until something accepts on 127.0.0.1:`port`, for at most 10 s.
fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A python3 that can `import websockets`: Debian's `/usr/bin/python3` with
/// python3-websockets, or the first `python3` on PATH that has the package.
fn python_with_websockets() -> PathBuf {
    let mut candidates = vec![PathBuf::from("/usr/bin/python3")];
    let path = std::env::var("PATH").unwrap_or_default();
    candidates.extend(path.split(':').map(|d| Path::new(d).join("python3")));
    for c in candidates {
        let ok = Command::new(&c)
            .args(["-c", "import websockets"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return c;
        }
    }
    panic!(
        "no python3 with the websockets package: .ci/run installs it \
         (apt-get install python3-websockets)"
    );
}

/// The WebSocket client: text (ASCII and not), a 1 MiB binary message, a ping, 200 pipelined
/// messages, a clean close; then a message over the server's limit, which must be refused with
/// close code 1009. Prints one line per check.
const PY_WS_CLIENT: &str = r#"
import asyncio, sys, websockets
async def main(uri):
    async with websockets.connect(uri, max_size=8 << 20) as ws:
        await ws.send("hello"); assert await ws.recv() == "hello"
        await ws.send("héllo ✓ 🦀"); assert await ws.recv() == "héllo ✓ 🦀"
        print("text ok", flush=True)
        data = bytes(range(256)) * 4096
        await ws.send(data); back = await ws.recv()
        assert isinstance(back, bytes) and back == data
        print("binary ok", len(back), flush=True)
        pong = await ws.ping(b"are you there"); await asyncio.wait_for(pong, 10)
        print("ping ok", flush=True)
        for i in range(200): await ws.send(f"m{i}")
        for i in range(200): assert await ws.recv() == f"m{i}"
        print("pipelined ok", flush=True)
    print("closed", ws.close_code, flush=True)
    async with websockets.connect(uri, max_size=8 << 20) as ws:
        await ws.send(b"x" * (5 << 20))
        try:
            await ws.recv()
            print("too large: echoed")
        except websockets.ConnectionClosed as e:
            print("too large: closed", e.rcvd.code if e.rcvd else None, flush=True)
asyncio.run(asyncio.wait_for(main(sys.argv[1]), 60))
"#;

#[test]
fn ws_echo_with_python_websockets() {
    let python = python_with_websockets();
    let sel = common::selector();
    let (address, _task) = sel
        .run_blocking(ws_echo_server::start(&sel, "127.0.0.1:0"))
        .expect("start ws_echo_server");
    let uri = format!("ws://{address}/");
    let mut child = Command::new(&python)
        .args(["-c", PY_WS_CLIENT, &uri])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    // Bounded: the script gives up after 60 s itself; kill it at 90 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "text ok",
            "binary ok 1048576",
            "ping ok",
            "pipelined ok",
            "closed 1000",
            "too large: closed 1009"
        ]
    );

    // The server still serves after refusing a message: a raw handshake and one frame by hand.
    let mut tcp = TcpStream::connect(address.to_string()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(tcp.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    let mut accept = None;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        if h == "\r\n" {
            break;
        }
        if let Some(v) = h
            .strip_prefix("sec-websocket-accept: ")
            .or(h.strip_prefix("Sec-WebSocket-Accept: "))
        {
            accept = Some(v.trim().to_string());
        }
    }
    // RFC 6455's example key and its accept value.
    assert_eq!(accept.as_deref(), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    // A masked text frame "hi" (mask 0x01020304); the echo comes back unmasked.
    tcp.write_all(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2])
        .unwrap();
    let mut frame = [0u8; 4];
    std::io::Read::read_exact(&mut reader, &mut frame).unwrap();
    assert_eq!(frame, [0x81, 0x02, b'h', b'i']);
}
