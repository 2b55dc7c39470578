//! `asock echo-server`, `connect` and `listen` driven like a user would: with nc, telnet,
//! python and plain sockets, on 127.0.0.1 only.

use asock_test_support::run;
use asock_test_support::{have, raise_fd_limit_to};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_asock");

/// A running `asock echo-server`, killed on drop.
struct Server {
    child: Child,
    port: u16,
    first_line: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .arg("echo-server")
            .arg("127.0.0.1:0")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start asock");
        let mut first_line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first_line)
            .unwrap();
        let port = first_line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {first_line:?}"));
        Server {
            child,
            port,
            first_line,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends one line and checks it comes back with `\r\n`.
    fn assert_echoes(&self, line: &str) {
        let mut s = self.connect();
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut back = String::new();
        r.read_line(&mut back).unwrap();
        assert_eq!(back, format!("{line}\r\n"));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn first_line_names_the_bound_address() {
    let s = Server::start(&[]);
    assert_eq!(
        s.first_line,
        format!("Started echo telnet server at 127.0.0.1:{}\n", s.port)
    );
}

#[test]
fn nc_gets_its_lines_back_and_exits_on_half_close() {
    assert!(
        have("nc"),
        "nc (netcat-openbsd) is needed; .ci/run installs it"
    );
    let s = Server::start(&[]);
    let (code, out, _) = run(
        Command::new("nc").args(["-N", "127.0.0.1", &s.port.to_string()]),
        b"Hello\r\nWorld\nno newline at the end",
        10,
    );
    assert_eq!(code, Some(0));
    assert_eq!(out, b"Hello\r\nWorld\r\nno newline at the end\r\n");
}

#[test]
fn telnet_session_as_in_the_docs() {
    assert!(have("telnet"), "telnet is needed; .ci/run installs it");
    let s = Server::start(&[]);
    // telnet quits when its input ends, so keep it open briefly after the lines.
    let port = s.port;
    let (_, out, _) = run(
        Command::new("sh").arg("-c").arg(format!(
            "(printf 'Hello\\r\\nWorld\\r\\n'; sleep 1) | telnet 127.0.0.1 {port}"
        )),
        b"",
        10,
    );
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("Connected to 127.0.0.1"), "{out}");
    assert!(out.contains("Hello\r\nWorld\r\n"), "{out}");
}

#[test]
fn python_client_round_trips() {
    let s = Server::start(&[]);
    let script = format!(
        r#"
import socket
s = socket.create_connection(("127.0.0.1", {}), timeout=10)
f = s.makefile("rwb")
for i in range(50):
    f.write(("line %d\n" % i).encode()); f.flush()
    assert f.readline() == ("line %d\r\n" % i).encode()
s.shutdown(socket.SHUT_WR)
assert f.read() == b""
print("ok")
"#,
        s.port
    );
    let (code, out, err) = run(Command::new("python3").arg("-c").arg(script), b"", 20);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"ok\n");
}

#[test]
fn lines_around_the_short_reply_size_come_back_exactly() {
    // Replies to lines up to 254 bytes are assembled on the stack, longer ones written in
    // pieces: both sides of the boundary, `\n` and `\r\n`, one at a time and pipelined.
    let s = Server::start(&[]);
    let lines: Vec<String> = [0, 1, 63, 253, 254, 255, 256, 1000]
        .iter()
        .map(|&n| (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect())
        .collect();
    let mut c = BufReader::new(s.connect());
    let expect_back = |c: &mut BufReader<TcpStream>, line: &str| {
        let mut back = String::new();
        c.read_line(&mut back).unwrap();
        assert_eq!(
            back,
            format!("{line}\r\n"),
            "a line of {} bytes",
            line.len()
        );
    };
    for (i, line) in lines.iter().enumerate() {
        let end = if i % 2 == 0 { "\n" } else { "\r\n" };
        c.get_mut()
            .write_all(format!("{line}{end}").as_bytes())
            .unwrap();
        expect_back(&mut c, line);
    }
    let batch: String = lines.iter().map(|l| format!("{l}\n")).collect();
    c.get_mut().write_all(batch.as_bytes()).unwrap();
    for line in &lines {
        expect_back(&mut c, line);
    }
}

#[test]
fn one_mib_line_comes_back_intact() {
    let s = Server::start(&[]);
    let line: String = (0..1 << 20)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let mut c = s.connect();
    let mut w = c.try_clone().unwrap();
    let l2 = line.clone();
    let t = std::thread::spawn(move || {
        w.write_all(l2.as_bytes()).unwrap();
        w.write_all(b"\r\n").unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    t.join().unwrap();
    assert_eq!(back.len(), line.len() + 2);
    assert!(back.starts_with(line.as_bytes()) && back.ends_with(b"\r\n"));
}

#[test]
fn hostile_clients_end_only_their_own_connection() {
    let s = Server::start(&["--max-line", "1048576"]);
    let mut good = BufReader::new(s.connect());
    let mut echo = |line: &str| {
        good.get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        let mut back = String::new();
        good.read_line(&mut back).unwrap();
        assert_eq!(back, format!("{line}\r\n"));
    };
    echo("before");

    // 10 MiB with no newline: the server closes that connection; memory stays bounded.
    let mut flood = s.connect();
    let chunk = vec![b'z'; 64 * 1024];
    let mut sent = 0;
    while sent < 10 << 20 {
        if flood.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let mut sink = Vec::new();
    let _ = flood.read_to_end(&mut sink);
    assert!(sent < 10 << 20 || sink.is_empty());
    echo("after flood");

    // Invalid UTF-8 and random bytes: echoed back as bytes, nothing crashes.
    let mut bin = s.connect();
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    bin.write_all(b"\xff\xfe\xc3\x28\n").unwrap();
    bin.write_all(&junk).unwrap();
    bin.write_all(b"\n").unwrap();
    bin.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    bin.read_to_end(&mut back).unwrap();
    assert!(back.starts_with(b"\xff\xfe\xc3\x28\r\n"));
    echo("after junk");

    // Vanishing mid-line: a reset, and a plain close.
    for linger_zero in [true, false] {
        let mut v = s.connect();
        v.write_all(b"half a li").unwrap();
        if linger_zero {
            socket2::SockRef::from(&v)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(v);
    }
    echo("after vanishing clients");
    s.assert_echoes("a fresh client");
}

#[test]
fn raw_mode_echoes_bytes() {
    let s = Server::start(&["--raw"]);
    let mut c = s.connect();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    let mut w = c.try_clone().unwrap();
    let d2 = data.clone();
    let t = std::thread::spawn(move || {
        w.write_all(&d2).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    t.join().unwrap();
    assert!(back == data);
}

#[test]
fn thousand_clients_hundred_round_trips_each() {
    // Both this process and the server need over 1,000 descriptors.
    raise_fd_limit_to(65536);
    let s = Server::start(&["--threads", "2"]);
    let port = s.port;
    let sel = asock::SelectorManager::builder()
        .threads(2)
        .build()
        .unwrap();
    let total = sel.run_blocking(async {
        let mut tasks: Vec<asock::JoinHandle<asock::Result<u32>>> = Vec::new();
        for c in 0..1000 {
            let sel2 = sel.clone();
            tasks.push(sel.launch(async move {
                let sock: asock::Socket = asock::a_socket(&sel2)
                    .tcp()
                    .socket_timeout(Duration::from_secs(30))
                    .connect(("127.0.0.1", port))
                    .await?;
                let mut i = sock.open_read_channel();
                let mut o = sock.open_write_channel(true);
                for n in 0..100 {
                    let line = format!("client {c} message {n}");
                    o.write_str(&line).await?;
                    o.write_str("\r\n").await?;
                    let back = i.read_utf8_line().await?;
                    assert_eq!(back.as_deref(), Some(line.as_str()));
                }
                Ok(100)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap().unwrap();
        }
        total
    });
    assert_eq!(total, 100_000);
}

#[test]
fn asock_connect_relays_and_exits_when_peer_closes() {
    let s = Server::start(&[]);
    let (code, out, err) = run(
        Command::new(BIN).args(["connect", &format!("127.0.0.1:{}", s.port)]),
        b"one\ntwo\n",
        10,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"one\r\ntwo\r\n");
}

#[test]
fn asock_listen_relays_one_connection() {
    // Port 0: the bound address comes on stderr with -v (stdout is only the relayed bytes), so
    // no other test can take the port between choosing it and binding it.
    let mut child = Command::new(BIN)
        .args(["-v", "listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut port = None;
    for _ in 0..20 {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.trim().split("Listening on 127.0.0.1:").nth(1) {
            port = rest.parse::<u16>().ok();
            break;
        }
    }
    let port = port.expect("listen never said where it listens");
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Listener's stdin reaches the client...
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"from listener\n").unwrap();
    drop(stdin);
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"from listener\n");
    // ...and the client's bytes reach its stdout; the client closing ends it.
    c.write_all(b"from client\n").unwrap();
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    drop(stderr);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"from client\n");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn errors_are_one_line_with_exit_codes() {
    let s = Server::start(&[]);
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["echo-server".into(), format!("127.0.0.1:{}", s.port)],
            1,
            "already in use",
        ),
        (vec!["connect".into(), "127.0.0.1:1".into()], 1, "refused"),
        (
            vec!["connect".into(), "nonsense".into()],
            1,
            "invalid address",
        ),
        (
            vec!["connect".into(), "no-such-host.invalid:80".into()],
            1,
            "cannot resolve",
        ),
        (vec!["frobnicate".into()], 2, "unrecognized subcommand"),
        (
            vec!["echo-server".into(), "--threads".into(), "x".into()],
            2,
            "invalid value",
        ),
    ];
    for (args, code, needle) in cases {
        let (got, out, err) = run(Command::new(BIN).args(&args), b"", 10);
        assert_eq!(got, Some(code), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?} printed to stdout");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
        if code == 1 {
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        }
    }
}

#[test]
fn help_lists_every_command_with_examples() {
    let (code, out, _) = run(Command::new(BIN).arg("--help"), b"", 10);
    assert_eq!(code, Some(0));
    let out = String::from_utf8_lossy(&out);
    for cmd in ["echo-server", "connect", "listen", "Examples"] {
        assert!(out.contains(cmd), "{out}");
    }
    for cmd in ["echo-server", "connect", "listen"] {
        let (code, out, _) = run(Command::new(BIN).args([cmd, "--help"]), b"", 10);
        assert_eq!(code, Some(0));
        assert!(String::from_utf8_lossy(&out).contains("Examples:"), "{cmd}");
    }
}
