//! Per-loop listeners: one `SO_REUSEPORT` socket per event loop, accepted and served there.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asock::{a_socket, Error, SelectorManager, ServerSocket};
use asock_test_support::within;

fn two_loops() -> SelectorManager {
    SelectorManager::builder()
        .threads(2)
        .name("lt")
        .build()
        .expect("selector")
}

fn inet(server: &ServerSocket) -> SocketAddr {
    server.local_address().as_inet().expect("an IP listener")
}

/// The port each listening descriptor of `server` is bound to.
fn ports(server: &ServerSocket) -> Vec<u16> {
    server
        .raw_fds()
        .into_iter()
        .map(|fd| {
            // SAFETY: the descriptor stays open: `server` owns it and outlives this borrow.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let addr = socket2::SockRef::from(&fd)
                .local_addr()
                .expect("local address");
            addr.as_socket().expect("an IP address").port()
        })
        .collect()
}

/// Per served connection: the thread its handler started on, and the one it ended on.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Serves a one-byte echo with `server.serve`, recording per connection the thread that ran
/// the handler before and after its I/O.
fn serve_recording(
    sel: &SelectorManager,
    server: Arc<ServerSocket>,
) -> (asock::JoinHandle<asock::Result<()>>, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let task = sel.launch(async move {
        server
            .serve(move |socket| {
                let record = record.clone();
                async move {
                    let before = thread_name();
                    let (mut input, mut output) =
                        (socket.open_read_channel(), socket.open_write_channel(true));
                    if let Ok(b) = input.read_u8().await {
                        let _ = output.write_u8(b).await;
                    }
                    record.lock().unwrap().push((before, thread_name()));
                }
            })
            .await
    });
    (task, seen)
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("?").to_string()
}

/// One blocking round trip of one byte on a new connection.
fn echo_once(addr: SocketAddr) {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"x");
}

#[test]
fn a_manager_with_two_loops_opens_a_listener_per_loop_on_one_port() {
    let sel = two_loops();
    sel.run_blocking(within(10, async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        assert_eq!(server.listeners(), 2);
        let port = server.port().unwrap();
        assert_ne!(port, 0);
        assert_eq!(
            ports(&server),
            vec![port, port],
            "port 0: all share the first's port"
        );

        let one = a_socket(&sel)
            .tcp()
            .listener_per_loop(false)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        assert_eq!(one.listeners(), 1, "the option turns it off");

        let single = SelectorManager::builder().threads(1).build().unwrap();
        let s1 = a_socket(&single).tcp().bind("127.0.0.1:0").await.unwrap();
        assert_eq!(s1.listeners(), 1, "one loop, one listener");

        let dir = std::env::temp_dir().join(format!("asock-listeners-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let unix = a_socket(&sel)
            .tcp()
            .listener_per_loop(true)
            .bind(asock::SocketAddress::Unix(path.clone()))
            .await
            .unwrap();
        assert_eq!(unix.listeners(), 1, "Unix listeners keep one socket");
        drop(unix);
        let _ = std::fs::remove_dir_all(&dir);
    }));
}

#[test]
fn every_loop_accepts_under_load_and_serves_what_it_accepted() {
    let sel = two_loops();
    let server = Arc::new(
        sel.run_blocking(a_socket(&sel).tcp().bind("127.0.0.1:0"))
            .unwrap(),
    );
    let addr = inet(&server);
    let (task, seen) = serve_recording(&sel, server.clone());
    // Eight clients at once, 40 connections each: the kernel spreads them by 4-tuple hash.
    let clients: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || (0..40).for_each(|_| echo_once(addr))))
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 320 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 320);
    let mut per_loop: HashMap<String, usize> = HashMap::new();
    for (before, after) in &seen {
        assert_eq!(
            before, after,
            "a connection stays on the loop that accepted it"
        );
        *per_loop.entry(before.clone()).or_default() += 1;
    }
    assert_eq!(
        per_loop
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        ["lt-0".to_string(), "lt-1".to_string()].into(),
        "both loops accepted and served: {per_loop:?}"
    );
    server.close();
    let r = sel.run_blocking(within(10, task)).unwrap();
    assert!(r.is_ok(), "serve ends with Ok at close: {r:?}");
}

#[test]
fn accept_takes_connections_from_every_listener() {
    let sel = two_loops();
    sel.run_blocking(within(20, async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let addr = inet(&server);
        let clients = std::thread::spawn(move || {
            (0..100)
                .map(|_| TcpStream::connect(addr).expect("connect"))
                .collect::<Vec<_>>()
        });
        for _ in 0..100 {
            server.accept().await.expect("accepted");
        }
        drop(clients.join().unwrap());
    }));
}

#[test]
fn close_stops_every_listener_and_releases_the_port() {
    let sel = two_loops();
    sel.run_blocking(within(10, async {
        let server = Arc::new(a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap());
        let addr = inet(&server);
        let (task, seen) = serve_recording(&sel, server.clone());
        echo_once(addr);
        // Launched after the echo: this accept would race `serve` for that connection.
        let (s, closer) = (server.clone(), server.clone());
        let pending = sel.launch(async move { s.accept().await.map(|_| ()) });
        let awaiting = sel.launch(async move { closer.await_closed().await });
        asock::time::sleep(Duration::from_millis(20)).await;
        server.close();
        assert!(server.is_closed());
        assert!(task.await.unwrap().is_ok(), "serve returns at close");
        assert!(matches!(pending.await.unwrap(), Err(Error::Closed(_))));
        awaiting.await.unwrap();
        assert!(!seen.lock().unwrap().is_empty());
        // Every socket is gone: a listener without SO_REUSEPORT gets the port at once, and
        // nothing answers in between.
        assert!(TcpStream::connect(addr).is_err(), "no listener left");
        let again = TcpListener::bind(addr).expect("the port is free again");
        drop(again);
    }));
}

#[test]
fn closing_the_manager_ends_serve_and_accept() {
    let sel = two_loops();
    let server = Arc::new(
        sel.run_blocking(a_socket(&sel).tcp().bind("127.0.0.1:0"))
            .unwrap(),
    );
    let addr = inet(&server);
    let s = server.clone();
    let waiter = std::thread::spawn(move || asock::block_on(s.accept()).map(|_| ()));
    std::thread::sleep(Duration::from_millis(50));
    sel.close();
    let r = waiter.join().unwrap();
    assert!(matches!(r, Err(Error::Closed(_))), "{r:?}");
    assert!(server.is_closed());
    asock::block_on(server.await_closed());
    assert!(matches!(
        asock::block_on(server.serve(|_| async {})),
        Ok(())
    ));
    TcpListener::bind(addr).expect("the port is free again");
}

#[test]
fn a_port_in_use_is_refused_not_shared() {
    let sel = two_loops();
    sel.run_blocking(within(10, async {
        let first = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let addr = first.local_address().clone();
        let err = a_socket(&sel).tcp().bind(addr.clone()).await.unwrap_err();
        assert!(matches!(err, Error::AddressInUse { .. }), "{err:?}");
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        let err = a_socket(&sel)
            .tcp()
            .bind(plain.local_addr().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AddressInUse { .. }), "{err:?}");
        // Asked for: reuse_port(true) joins the group of the same user on purpose.
        let joined = a_socket(&sel).tcp().reuse_port(true).bind(addr).await;
        assert_eq!(joined.expect("joined").listeners(), 2);
    }));
}

#[test]
fn ipv6_per_loop_listeners() {
    let sel = two_loops();
    let server = Arc::new(
        sel.run_blocking(a_socket(&sel).tcp().bind("[::1]:0"))
            .unwrap(),
    );
    assert_eq!(server.listeners(), 2);
    let addr = inet(&server);
    assert!(addr.is_ipv6());
    let port = addr.port();
    assert_eq!(ports(&server), vec![port, port]);
    let (task, seen) = serve_recording(&sel, server.clone());
    for _ in 0..50 {
        echo_once(addr);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(seen.lock().unwrap().len(), 50);
    server.close();
    assert!(sel.run_blocking(within(10, task)).unwrap().is_ok());
}

/// The CPUs named in `Cpus_allowed_list` of /proc/thread-self/status ("0-1,3").
fn allowed_cpus_of_this_thread() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    list.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![part.parse().unwrap()],
        })
        .collect()
}

#[test]
fn pinned_loops_steer_their_listeners_with_so_incoming_cpu() {
    let cpus = allowed_cpus_of_this_thread();
    let sel = SelectorManager::builder()
        .threads(2)
        .name("pin")
        .pin_threads(true)
        .build()
        .unwrap();
    sel.run_blocking(within(10, async {
        // Each loop runs on one CPU: the i-th this process may use (wrapping around).
        let mut pinned = Vec::new();
        for _ in 0..2 {
            pinned.push(
                sel.launch(async { (thread_name(), allowed_cpus_of_this_thread()) })
                    .await
                    .unwrap(),
            );
        }
        pinned.sort();
        for (i, (name, allowed)) in pinned.iter().enumerate() {
            assert_eq!(name, &format!("pin-{i}"));
            assert_eq!(allowed, &vec![cpus[i % cpus.len()]], "{name} pinned");
        }
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let steering: Vec<usize> = server
            .raw_fds()
            .into_iter()
            .map(|fd| {
                // SAFETY: `server` owns the descriptor and outlives this borrow.
                let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                socket2::SockRef::from(&fd).cpu_affinity().unwrap()
            })
            .collect();
        assert_eq!(
            steering,
            vec![cpus[0], cpus[1 % cpus.len()]],
            "listener i asks for connections of loop i's CPU"
        );
    }));
}

/// Whether `flag` is set in what `fcntl(fd, cmd)` reports.
fn fcntl_has(fd: std::os::fd::RawFd, cmd: i32, flag: i32) -> bool {
    // SAFETY: F_GETFL and F_GETFD only read the flags of a descriptor the caller holds open.
    let v = unsafe { libc::fcntl(fd, cmd) };
    assert!(v >= 0, "fcntl failed");
    v & flag != 0
}

#[test]
fn accepted_sockets_are_nonblocking_cloexec_and_know_their_addresses() {
    use std::os::fd::AsRawFd;
    for (threads, bind) in [(1, "127.0.0.1:0"), (2, "127.0.0.1:0"), (1, "0.0.0.0:0")] {
        let sel = SelectorManager::builder().threads(threads).build().unwrap();
        sel.run_blocking(async {
            let server = a_socket(&sel).tcp().bind(bind).await.unwrap();
            let port = server.port().unwrap();
            let peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let s = within(10, server.accept()).await.unwrap();
            let fd = s.as_raw_fd();
            assert!(fcntl_has(fd, libc::F_GETFL, libc::O_NONBLOCK), "{bind}");
            assert!(fcntl_has(fd, libc::F_GETFD, libc::FD_CLOEXEC), "{bind}");
            let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            assert_eq!(s.local_address().as_inet(), Some(local), "{bind}");
            assert_eq!(
                s.remote_address().as_inet(),
                Some(peer.local_addr().unwrap()),
                "{bind}"
            );
        });
    }
}

#[test]
fn a_connection_finished_both_ways_is_closed_and_its_descriptor_goes_with_it() {
    use std::os::fd::AsRawFd;
    // What the descriptor number names (`socket:[inode]`): compared, not just checked for
    // existence, because the tests running beside this one may reuse the number at once.
    let names = |fd: i32| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(("127.0.0.1", server.port().unwrap())).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let s = within(10, server.accept()).await.unwrap();
        let fd = s.as_raw_fd();
        let socket = names(fd);
        assert!(socket.is_some());
        let (mut input, mut output) = (s.open_read_channel(), s.open_write_channel(false));
        peer.write_all(b"ping").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let (mut got, mut buf) = (Vec::new(), [0u8; 64]);
        loop {
            let n = within(10, input.read_available(&mut buf)).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"ping");
        output.write_fully(b"pong").await.unwrap();
        output.close().await.unwrap();
        assert!(
            s.is_closed(),
            "both channels finished: the socket is closed"
        );
        let mut back = Vec::new();
        peer.read_to_end(&mut back).unwrap();
        assert_eq!(
            back, b"pong",
            "the peer got the reply and then end of stream"
        );
        within(10, s.await_closed()).await;
        assert_eq!(
            names(fd),
            socket,
            "the number stays valid while the socket value lives"
        );
        drop((input, output, s));
        assert_ne!(
            names(fd),
            socket,
            "and goes with the last of the socket and its channels"
        );
    });
}
