//! The tool's TLS: `asock cert`, `echo-server --tls-*`, `listen --tls-*` and `connect --tls`,
//! against `openssl s_client`, `openssl s_server` and python's `ssl`, on 127.0.0.1 only.

use asock_test_support::{have, openssl_s_server};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_asock");

fn certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["cert", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["ca.pem", "server.pem", "server.key"] {
        assert!(dir.path().join(f).exists(), "{f} written");
    }
    dir
}

/// A running `asock echo-server` with TLS, killed on drop.
struct Server {
    child: Child,
    port: u16,
    lines: Vec<String>,
}

impl Server {
    fn start(args: &[&str], dir: &Path, extra_lines: usize) -> Server {
        let mut child = Command::new(BIN)
            .args(["echo-server", "127.0.0.1:0"])
            .args(args)
            .current_dir(dir)
            // `--tls-self-signed` writes its CA under the temp dir: this test's, removed after.
            .env("TMPDIR", dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut r = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        for _ in 0..=extra_lines {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            lines.push(l.trim().to_string());
        }
        let port = lines[0]
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {:?}", lines[0]));
        Server { child, port, lines }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_with_input(mut cmd: Command, input: &[u8], limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn openssl_s_client_and_python_against_echo_server() {
    let dir = certs();
    let server = Server::start(
        &["--tls-cert", "server.pem", "--tls-key", "server.key"],
        dir.path(),
        0,
    );
    assert!(server.lines[0].starts_with("Started TLS echo telnet server at 127.0.0.1:"));
    if have("openssl") {
        for flag in ["-tls1_2", "-tls1_3"] {
            let mut cmd = Command::new("openssl");
            cmd.args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", server.port),
                flag,
            ])
            .args(["-CAfile", "ca.pem", "-verify_return_error", "-quiet"])
            .current_dir(dir.path());
            // -quiet keeps reading after stdin's end; the echo arrives, then we stop it.
            let out = run_with_input(cmd, b"hello tls\n", Duration::from_secs(3));
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "hello tls\r\n",
                "{flag}"
            );
        }
    }
    if have("python3") {
        for v in ["TLSv1_2", "TLSv1_3"] {
            let script = format!(
                r#"
import socket, ssl
ctx = ssl.create_default_context(cafile="ca.pem")
ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.{v}
with socket.create_connection(("127.0.0.1", {port})) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"py\n")
        data = b""
        while not data.endswith(b"\r\n"):
            data += s.recv(100)
        print(repr(data), s.version())
"#,
                port = server.port
            );
            let out = Command::new("python3")
                .args(["-c", &script])
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let want = format!("b'py\\r\\n' {}", v.replace('_', "."));
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
        }
    }
}

#[test]
fn connect_tls_against_echo_server_and_verification_errors() {
    let dir = certs();
    let server = Server::start(
        &["--tls-cert", "server.pem", "--tls-key", "server.key"],
        dir.path(),
        0,
    );
    let addr = format!("127.0.0.1:{}", server.port);
    let connect = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["connect", "--tls"])
            .args(args)
            .current_dir(dir.path());
        run_with_input(cmd, b"one\ntwo\n", Duration::from_secs(10))
    };
    // Verified against the CA; the name is the IP in ADDR (the cert has an IP SAN).
    let out = connect(&["--ca", "ca.pem", &addr]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\r\ntwo\r\n");
    // --server-name localhost works too; a wrong one is a name mismatch.
    let out = connect(&["--ca", "ca.pem", "--server-name", "localhost", &addr]);
    assert!(out.status.success());
    let out = connect(&["--ca", "ca.pem", "--server-name", "other.test", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("name mismatch"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Without the CA: unknown issuer.
    let out = connect(&[&addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("unknown issuer"),
        "{err}"
    );
    // --insecure skips verification.
    let out = connect(&["--insecure", &addr]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\r\ntwo\r\n");
}

#[test]
fn self_signed_prints_where_the_ca_is() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--tls-self-signed"], dir.path(), 1);
    let ca = server.lines[1].rsplit(' ').next().unwrap().to_string();
    assert!(Path::new(&ca).exists(), "{:?}", server.lines);
    let mut cmd = Command::new(BIN);
    cmd.args([
        "connect",
        "--tls",
        "--ca",
        &ca,
        &format!("localhost:{}", server.port),
    ]);
    let out = run_with_input(cmd, b"hi\n", Duration::from_secs(10));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\r\n");
}

#[test]
fn connect_tls_against_openssl_s_server() {
    assert!(
        have("openssl"),
        "{} is needed; .ci/run installs it",
        "openssl"
    );
    let dir = certs();
    for flag in ["-tls1_2", "-tls1_3"] {
        let (mut s_server, port) = openssl_s_server(dir.path(), &[flag]);
        let got = connect_line(dir.path(), port, &[]);
        let _ = s_server.kill();
        let _ = s_server.wait();
        assert_eq!(got, "fedcba", "{flag}");
    }
}

/// Runs `asock connect --tls` (trusting the test CA, name localhost, plus `extra`) to `port`,
/// sends `abcdef`, and returns the first line that comes back (empty if none within 10 s).
fn connect_line(dir: &Path, port: u16, extra: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .args([
            "connect",
            "--tls",
            "--ca",
            "ca.pem",
            "--server-name",
            "localhost",
        ])
        .args(extra)
        .args(["--timeout", "5"])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"abcdef\n");
    let mut out = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let start = Instant::now();
    while !got.ends_with(b"\n") && start.elapsed() < Duration::from_secs(10) {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    String::from_utf8_lossy(&got).trim_end().to_string()
}

#[test]
fn listen_tls_relays_one_connection() {
    assert!(
        have("python3"),
        "{} is needed; .ci/run installs it",
        "python3"
    );
    let dir = certs();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut listen = Command::new(BIN)
        .args([
            "listen",
            "--tls-cert",
            "server.pem",
            "--tls-key",
            "server.key",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    // Wait until it listens (a probe connection would be the one it accepts, so poll the port
    // with python's TLS client directly).
    let script = format!(
        r#"
import socket, ssl, time
ctx = ssl.create_default_context(cafile="ca.pem")
for _ in range(200):
    try:
        raw = socket.create_connection(("127.0.0.1", {port}))
        break
    except OSError:
        time.sleep(0.05)
with ctx.wrap_socket(raw, server_hostname="localhost") as s:
    s.sendall(b"to listener\n")
    print(s.recv(100).decode().strip())
"#
    );
    let py = Command::new("python3")
        .args(["-c", &script])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lstdout = BufReader::new(listen.stdout.take().unwrap());
    let mut line = String::new();
    lstdout.read_line(&mut line).unwrap();
    assert_eq!(line, "to listener\n");
    listen
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"from listener\n")
        .unwrap();
    let out = py.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from listener");
    assert!(start.elapsed() < Duration::from_secs(20));
    let _ = listen.kill();
    let _ = listen.wait();
}

/// Makes a client CA and a client certificate with openssl: (ca.pem, client.pem, client.key).
fn client_certs(dir: &Path) {
    let sh = |args: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("openssl {args}"))
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout cca.key \
        -out cca.pem -days 1 -subj /CN=asock-test-client-ca",
    );
    sh(
        "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key \
        -out client.csr -subj /CN=asock-test-client",
    );
    // An X.509 v3 certificate (extensions make it v3): rustls refuses v1 ones.
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    sh(
        "x509 -req -in client.csr -CA cca.pem -CAkey cca.key -CAcreateserial -out client.pem \
        -days 1 -extfile client.ext",
    );
}

#[test]
fn connect_tls_presents_a_client_certificate_to_openssl_s_server() {
    assert!(have("openssl"), "openssl is needed; .ci/run installs it");
    let dir = certs();
    client_certs(dir.path());
    // -Verify: a client certificate is required, checked against the client CA.
    let (mut s_server, port) =
        openssl_s_server(dir.path(), &["-Verify", "1", "-CAfile", "cca.pem"]);
    let with = connect_line(
        dir.path(),
        port,
        &["--cert", "client.pem", "--key", "client.key"],
    );
    let without = connect_line(dir.path(), port, &[]);
    let _ = s_server.kill();
    let _ = s_server.wait();
    assert_eq!(with, "fedcba", "with a client certificate");
    assert_ne!(
        without, "fedcba",
        "s_server must refuse a client without a certificate"
    );
}
