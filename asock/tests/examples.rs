//! The examples against real servers on 127.0.0.1: the Redis client against `redis-server`,
//! the HTTPS client against `nginx` with a test certificate, the chat server with several `nc`
//! clients, the multicast presence announcer against itself on loopback, and the UDP offload
//! bulk echo with GSO/GRO on and off.
//!
//! Each test includes its example's source as a module, so what runs here is the example's own
//! code. The server binaries are installed by `.ci/run`; a test fails (never skips) without
//! them.

#[allow(dead_code)]
#[path = "../examples/redis_client.rs"]
mod redis_client;

#[allow(dead_code)]
#[path = "../examples/https_get.rs"]
mod https_get;

#[allow(dead_code)]
#[path = "../examples/chat_server.rs"]
mod chat_server;

#[allow(dead_code)]
#[path = "../examples/multicast_presence.rs"]
mod multicast_presence;

#[allow(dead_code)]
#[path = "../examples/udp_gso.rs"]
mod udp_gso;

use asock_test_support as common;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use asock::{a_socket, SelectorManager};

/// Finds `name` on PATH or in the sbin directories (nginx lives in /usr/sbin).
fn find_binary(name: &str) -> std::path::PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not installed: .ci/run installs it (apt-get install redis-server nginx netcat-openbsd)");
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts TCP connections on `port`, for at most 10 s.
fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on port {port} within 10 s");
}

/// A server process, stopped with SIGTERM (then SIGKILL) when dropped.
// ---- Redis ----

#[test]
fn redis_client_against_redis_server() {
    let redis = find_binary("redis-server");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(redis)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    wait_for_port(port, &mut child, "redis-server");
    let _server = common::Terminate(child);

    use redis_client::{Redis, Reply};
    let sel = common::selector();
    sel.run_blocking(common::within(30, async {
        // The example's own demo: PING, SET, GET, a pipeline of 100 INCRs, QUIT.
        let lines = redis_client::demo(&sel, ("127.0.0.1", port)).await.unwrap();
        assert_eq!(lines[0], "PING -> Simple(\"PONG\")");
        assert_eq!(lines[2], "GET greeting -> \"hello from asock\"");
        assert!(lines[3].ends_with("Some(Integer(100))"), "{lines:?}");

        let mut r = Redis::connect(&sel, ("127.0.0.1", port)).await.unwrap();
        // Binary-safe values, a missing key, an error reply that leaves the connection usable.
        let value: Vec<u8> = (0..=255u8).chain(b"\r\n\r\n".iter().copied()).collect();
        assert_eq!(
            r.command(&[b"SET", b"bin", &value]).await.unwrap(),
            Reply::Simple("OK".into())
        );
        assert_eq!(
            r.command(&[b"GET", b"bin"]).await.unwrap(),
            Reply::Bulk(Some(value.clone()))
        );
        assert_eq!(
            r.command(&[b"GET", b"no-such-key"]).await.unwrap(),
            Reply::Bulk(None)
        );
        assert!(matches!(
            r.command(&[b"NOSUCHCOMMAND"]).await.unwrap(),
            Reply::Error(e) if e.starts_with("ERR")
        ));
        // Nested arrays: RPUSH then LRANGE, and a pipeline of 1,000 commands in one write.
        r.command(&[b"DEL", b"list"]).await.unwrap();
        let pushes: Vec<Vec<Vec<u8>>> = (0..1000)
            .map(|i| {
                vec![
                    b"RPUSH".to_vec(),
                    b"list".to_vec(),
                    format!("v{i}").into_bytes(),
                ]
            })
            .collect();
        let replies = r.pipeline(&pushes).await.unwrap();
        assert_eq!(replies.len(), 1000);
        assert_eq!(replies[999], Reply::Integer(1000));
        match r.command(&[b"LRANGE", b"list", b"0", b"2"]).await.unwrap() {
            Reply::Array(Some(items)) => assert_eq!(
                items,
                vec![
                    Reply::Bulk(Some(b"v0".to_vec())),
                    Reply::Bulk(Some(b"v1".to_vec())),
                    Reply::Bulk(Some(b"v2".to_vec()))
                ]
            ),
            other => panic!("LRANGE gave {other:?}"),
        }
        // A reply with nested arrays (COMMAND INFO answers arrays of arrays).
        match r.command(&[b"COMMAND", b"INFO", b"get"]).await.unwrap() {
            Reply::Array(Some(items)) => assert!(matches!(&items[0], Reply::Array(Some(_)))),
            other => panic!("COMMAND INFO gave {other:?}"),
        }
        r.quit().await.unwrap();
    }));
}

// ---- HTTPS against nginx ----

#[test]
fn https_client_against_nginx_with_alpn() {
    use asock::tls::test_certs::TestCa;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new("asock example CA").unwrap();
    let cert = ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
    std::fs::write(d.join("server.pem"), &cert.chain_pem).unwrap();
    std::fs::write(d.join("server.key"), &cert.key_pem).unwrap();
    let page = "<h1>hello from nginx</h1>\n".repeat(1000); // 26 KB: several TLS records
    let nginx = common::nginx_tls(d, &d.join("server.pem"), &d.join("server.key"), &page);
    let port = nginx.port;

    let sel = common::selector();
    let ca_pem = ca.cert_pem();
    sel.run_blocking(common::within(30, async {
        let url = https_get::Url::parse(&format!("https://localhost:{port}/")).unwrap();
        let r = https_get::get(&sel, &url, Some(ca_pem.as_bytes()))
            .await
            .unwrap_or_else(|e| {
                let log = std::fs::read_to_string(d.join("error.log")).unwrap_or_default();
                panic!("GET failed: {e}\nnginx error.log:\n{log}")
            });
        assert_eq!(r.status, 200, "{}", r.status_line);
        assert_eq!(r.alpn.as_deref(), Some("http/1.1"));
        assert!(r.tls_version.is_some());
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| n == "server" && v.starts_with("nginx")));
        assert_eq!(String::from_utf8(r.body).unwrap(), page);

        // A missing page is a 404 with a body, over a new connection.
        let url = https_get::Url::parse(&format!("https://localhost:{port}/missing")).unwrap();
        let r = https_get::get(&sel, &url, Some(ca_pem.as_bytes()))
            .await
            .unwrap();
        assert_eq!(r.status, 404);

        // Without the test CA the certificate is refused: verification is on by default.
        let url = https_get::Url::parse(&format!("https://localhost:{port}/")).unwrap();
        match https_get::get(&sel, &url, None).await {
            Err(asock::Error::Tls { reason, .. }) => assert!(reason.is_verification_failure()),
            other => panic!("expected a verification failure, got {other:?}"),
        }
    }));
}

// ---- chat server with nc clients ----

/// An `nc` client: its stdin, and its stdout lines through a channel.
struct Nc {
    child: Child,
    lines: mpsc::Receiver<String>,
    name: &'static str,
}

impl Nc {
    fn connect(port: u16, name: &'static str) -> Nc {
        let nc = find_binary("nc");
        // -N: shut the socket down at stdin EOF (netcat-openbsd).
        let mut child = Command::new(nc)
            .args(["-N", "127.0.0.1", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nc");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Nc { child, lines, name }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits (at most 10 s) for a line equal to `want`, skipping others; returns the skipped.
    fn expect(&self, want: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == want => return skipped,
                Ok(line) => skipped.push(line),
                Err(_) => panic!("{}: no line {want:?}; got {skipped:?}", self.name),
            }
        }
    }

    /// Closes stdin; nc half-closes and exits when the server closes.
    fn hang_up(&mut self) {
        drop(self.child.stdin.take());
    }

    fn wait_exit(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{}: nc did not exit after the server closed", self.name);
    }
}

impl Drop for Nc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn chat_server_with_nc_clients() {
    let sel = SelectorManager::builder().threads(2).build().unwrap();
    let server = sel
        .run_blocking(a_socket(&sel).tcp().bind("127.0.0.1:0"))
        .unwrap();
    let port = server.port().unwrap();
    let serving = sel.launch(chat_server::serve(sel.clone(), server));

    let welcome = "Welcome to asock chat! Your nick?";
    let mut alice = Nc::connect(port, "alice");
    alice.expect(welcome);
    alice.send("alice");
    alice.expect("* you are alice; here: alice");

    let mut bob = Nc::connect(port, "bob");
    bob.expect(welcome);
    bob.send("alice"); // taken
    bob.expect("* alice is taken; your nick?");
    bob.send("bad nick!"); // invalid
    bob.expect("* a nick has only letters, digits, '_' and '-'; your nick?");
    bob.send("bob");
    bob.expect("* you are bob; here: alice, bob");
    alice.expect("* bob joined");

    let mut carol = Nc::connect(port, "carol");
    carol.expect(welcome);
    carol.send("carol");
    carol.expect("* you are carol; here: alice, bob, carol");
    alice.expect("* carol joined");
    bob.expect("* carol joined");

    // A message goes to everyone else, with the sender's nick.
    bob.send("hello all");
    alice.expect("<bob> hello all");
    carol.expect("<bob> hello all");
    carol.send("hi bob");
    alice.expect("<carol> hi bob");
    bob.expect("<carol> hi bob");

    // Renaming and /who.
    carol.send("/nick carla");
    alice.expect("* carol is now carla");
    bob.expect("* carol is now carla");
    carol.expect("* carol is now carla");
    alice.send("/who");
    alice.expect("* here: alice, bob, carla");

    // Many messages in a burst arrive complete and in order.
    for i in 0..200 {
        alice.send(&format!("burst {i}"));
    }
    for i in 0..200 {
        bob.expect(&format!("<alice> burst {i}"));
    }

    // Leaving with /quit, and by hanging up (stdin EOF: nc half-closes).
    alice.send("/quit");
    bob.expect("* alice left");
    carol.expect("* alice left");
    alice.hang_up(); // netcat-openbsd waits for its stdin too before it exits
    alice.wait_exit();
    bob.hang_up();
    carol.expect("* bob left");
    bob.wait_exit();
    carol.send("/who");
    carol.expect("* here: carla");

    serving.cancel();
}

// ---- multicast presence ----

#[test]
fn multicast_presence_announcers_see_each_other() {
    use multicast_presence::{Event, Presence};

    // A port no other test uses at this moment.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 78), port);
    let presence = |name: &str, ms: u64| Presence {
        name: name.to_string(),
        group,
        interval: Duration::from_millis(100),
        run_for: Duration::from_millis(ms),
    };
    let sel = common::selector();
    let (alice, bob, carol) = (
        presence("alice", 1500),
        presence("bob", 600),
        presence("carol", 1500),
    );
    let (a, b, c) = sel.run_blocking(common::within(10, async {
        let a = sel.launch({
            let (sel, p) = (sel.clone(), alice.clone());
            async move { multicast_presence::run(&sel, &p, |_| {}).await }
        });
        let b = sel.launch({
            let (sel, p) = (sel.clone(), bob.clone());
            async move { multicast_presence::run(&sel, &p, |_| {}).await }
        });
        let c = sel.launch({
            let (sel, p) = (sel.clone(), carol.clone());
            async move { multicast_presence::run(&sel, &p, |_| {}).await }
        });
        (
            a.await.unwrap().unwrap(),
            b.await.unwrap().unwrap(),
            c.await.unwrap().unwrap(),
        )
    }));
    let joined = |events: &[Event], n: &str| events.contains(&Event::Joined(n.to_string()));
    assert!(joined(&a, "bob") && joined(&a, "carol"), "alice saw {a:?}");
    assert!(joined(&b, "alice") && joined(&b, "carol"), "bob saw {b:?}");
    assert!(joined(&c, "alice") && joined(&c, "bob"), "carol saw {c:?}");
    // Bob stopped first and said goodbye; the others noticed.
    assert!(a.contains(&Event::Left("bob".into())), "alice saw {a:?}");
    assert!(c.contains(&Event::Left("bob".into())), "carol saw {c:?}");
    // Nobody saw itself.
    assert!(!joined(&a, "alice") && !joined(&b, "bob") && !joined(&c, "carol"));
}

#[test]
fn udp_gso_bulk_echo_with_offload_on_and_off() {
    let sel = common::selector();
    let (on, off) = sel.run_blocking(common::within(20, async {
        (
            udp_gso::run(&sel, 50, 1200, true).await.unwrap(),
            udp_gso::run(&sel, 20, 1200, false).await.unwrap(),
        )
    }));
    let per = udp_gso::per_round(1200);
    assert_eq!(per, 54);
    assert_eq!((on.datagrams, on.bytes), (50 * per, 50 * per * 1200));
    assert!(on.gso, "the CI and development machines run Linux 5+");
    // On loopback a GSO send reaches a GRO socket as one buffer, and goes back as one.
    assert_eq!(on.buffers, 50, "{on:?}");
    assert_eq!(
        (off.datagrams, off.buffers, off.gso),
        (20 * per, 20 * per, false)
    );
}
