//! `asock bench` against `asock echo-server` and against servers that misbehave, on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_asock");

/// A running `asock echo-server`, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["echo-server", "127.0.0.1:0", "--threads", "1"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start asock echo-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.split_whitespace().last().unwrap().to_string();
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("bench")
        .args(args)
        .output()
        .expect("run asock bench")
}

/// Runs `asock bench ARGS`, asserts that it succeeded, and returns its standard output.
fn bench_ok(args: &[&str]) -> String {
    let out = bench(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The value of `key=` in the machine-readable line.
fn field(out: &str, key: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("msgs_per_s="))
        .unwrap_or_else(|| panic!("no machine-readable line in {out:?}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .parse()
        .unwrap()
}

#[test]
fn pingpong_raw_and_lines_and_stream_verify_cleanly() {
    let raw = Server::start(&["--raw"]);
    let lines = Server::start(&[]);
    let pid = raw.child.id().to_string();
    let runs: [(&Server, Vec<&str>); 4] = [
        (&raw, vec!["-c", "4", "-s", "100", "--server-pid", &pid]),
        (&raw, vec!["-c", "2", "-s", "65536", "--mode", "stream"]),
        (&lines, vec!["-c", "8", "--lines"]),
        (&raw, vec!["-c", "3", "--mode", "idle"]),
    ];
    for (server, args) in runs {
        let mut all = vec![server.addr.as_str(), "-d", "0.3", "-w", "0.1"];
        all.extend(args.iter());
        let stdout = bench_ok(&all);
        assert_eq!(field(&stdout, "errors"), 0.0, "{all:?}: {stdout}");
        if args.contains(&"idle") {
            // The round trips happen before the measured (idle) part.
            assert!(stdout.starts_with("ready connections=3\n"), "{stdout}");
        } else {
            assert!(field(&stdout, "msgs") > 0.0, "{all:?}: {stdout}");
        }
        if args.contains(&"--server-pid") {
            assert!(stdout.contains("server_cpu_us_per_msg="), "{stdout}");
        }
    }
}

#[test]
fn fixed_message_count_and_json() {
    let raw = Server::start(&["--raw"]);
    let stdout = bench_ok(&[&raw.addr, "-c", "3", "--messages", "1000", "--json"]);
    assert!(stdout.trim().starts_with('{') && stdout.trim().ends_with('}'));
    assert!(stdout.contains("\"msgs\":1000,"), "{stdout}");
    assert!(stdout.contains("\"errors\":0,"), "{stdout}");
}

#[test]
fn a_corrupted_echo_is_an_error() {
    // A server that echoes every byte plus one: the first echo does not match.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    buf[0] ^= 1;
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let out = bench(&[&addr, "-c", "2", "-d", "0.3", "-w", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("mismatch"), "{stderr}");
    assert!(field(&String::from_utf8_lossy(&out.stdout), "errors") >= 1.0);
}

#[test]
fn a_refused_connection_is_one_error_line() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = bench(&[&format!("127.0.0.1:{port}"), "-d", "0.2"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: connect"), "{stderr}");
}

#[test]
fn bench_json_is_one_json_object() {
    let server = Server::start(&[]);
    let addr = server.addr.clone();
    let json = bench_ok(&[&addr, "--lines", "-c", "2", "--messages", "200", "--json"]);
    drop(server);
    assert_eq!(json.trim().lines().count(), 1, "{json}");
    // python3 is one of the peers .ci/run installs: let a real JSON parser judge it.
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import json,sys; d=json.load(sys.stdin); assert d['msgs']==200 and d['errors']==0, d; print('ok')",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed; .ci/run installs it");
    py.stdin.take().unwrap().write_all(json.as_bytes()).unwrap();
    let verdict = py.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&verdict.stdout).trim(),
        "ok",
        "{json}"
    );
}

/// With `--tls` (against `echo-server --tls-self-signed`), the report carries the load
/// generator's own CPU next to the server's.
#[test]
fn tls_bench_reports_the_load_generators_cpu_next_to_the_servers() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "echo-server",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--tls-self-signed",
        ])
        .env("TMPDIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut first, mut second) = (String::new(), String::new());
    out.read_line(&mut first).unwrap();
    out.read_line(&mut second).unwrap();
    let server = Server {
        addr: first.split_whitespace().last().unwrap().to_string(),
        child,
    };
    let ca = second.split_whitespace().last().unwrap().to_string();
    let pid = server.child.id().to_string();
    let addr = server.addr.replace("127.0.0.1", "localhost");
    let res = bench(&[
        &addr,
        "--lines",
        "--tls",
        "--ca",
        &ca,
        "-d",
        "0.5",
        "-w",
        "0.1",
        "--server-pid",
        &pid,
    ]);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(field(&stdout, "msgs") > 0.0, "{stdout}");
    assert!(stdout.contains("client_cpu_us_per_msg="), "{stdout}");
    assert!(stdout.contains("server_cpu_us_per_msg="), "{stdout}");
    assert!(stdout.contains("load CPU"), "{stdout}");
}

/// A UDP echo server on a thread: for the `i`-th datagram received (from 0), `reply` says which
/// datagrams to send back now (none: dropped; several: the ones it held, in its order).
fn udp_peer(mut reply: impl FnMut(u64, Vec<u8>) -> Vec<Vec<u8>> + Send + 'static) -> String {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap().to_string();
    // Ends with the test process; bounded by the 10 s read timeout once the bench is gone.
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut i = 0;
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            for d in reply(i, buf[..n].to_vec()) {
                let _ = s.send_to(&d, from);
            }
            i += 1;
        }
    });
    addr
}

/// The value of `"key":` in a JSON line.
fn json_u64(out: &str, key: &str) -> u64 {
    let at = out
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {out}"));
    out[at + key.len() + 3..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn udp_stream_against_the_echo_server_accounts_for_every_datagram() {
    let server = Server::start(&["--udp"]);
    let stdout = bench_ok(&[
        &server.addr,
        "--udp",
        "--mode",
        "stream",
        "-c",
        "2",
        "--messages",
        "20000",
        "--json",
    ]);
    assert!(
        stdout.contains("\"size\":1200,"),
        "1,200 B by default: {stdout}"
    );
    assert_eq!(json_u64(&stdout, "udp_sent"), 20_000, "{stdout}");
    assert_eq!(json_u64(&stdout, "errors"), 0, "{stdout}");
    // Every datagram sent was either echoed (and verified) or counted lost.
    assert_eq!(
        json_u64(&stdout, "msgs") + json_u64(&stdout, "udp_lost"),
        20_000,
        "{stdout}"
    );
}

#[test]
fn udp_stream_reports_loss_and_reordering_without_failing() {
    // Drops every 50th datagram and holds every 7th back behind the next one.
    let mut held: Option<Vec<u8>> = None;
    let addr = udp_peer(move |i, d| {
        if i % 50 == 49 {
            return vec![];
        }
        if let Some(h) = held.take() {
            return vec![d, h];
        }
        if i % 7 == 3 {
            held = Some(d);
            return vec![];
        }
        vec![d]
    });
    let stdout = bench_ok(&[
        &addr,
        "--udp",
        "--mode",
        "stream",
        "--window",
        "64",
        "--messages",
        "1000",
        "--json",
    ]);
    assert_eq!(json_u64(&stdout, "udp_lost"), 20, "{stdout}");
    assert_eq!(json_u64(&stdout, "msgs"), 980, "{stdout}");
    assert!(json_u64(&stdout, "udp_reordered") > 0, "{stdout}");
    assert_eq!(json_u64(&stdout, "errors"), 0, "{stdout}");
}

#[test]
fn udp_stream_catches_a_corrupted_echo_and_refuses_tiny_datagrams() {
    let addr = udp_peer(|i, mut d| {
        if i == 10 {
            let last = d.len() - 1;
            d[last] ^= 1;
        }
        vec![d]
    });
    let out = bench(&[&addr, "--udp", "--mode", "stream", "-d", "0.5", "-w", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains("mismatch in the payload of datagram 10"),
        "{stderr}"
    );

    let out = bench(&[&addr, "--udp", "--mode", "stream", "-s", "4", "-d", "0.2"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 8"), "{stderr}");
}
