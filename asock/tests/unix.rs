//! Unix-domain sockets on real sockets (paths in a temp dir, Linux abstract names): streams
//! through `.tcp()`, datagrams through `.udp()`, stale files, peer credentials, and socat /
//! python3 as independent peers.

use asock_test_support::{have, is_socket, selector, within};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use asock::{a_socket, Datagram, Error, SelectorManager, ServerSocket, SocketAddress};
use bytes::Bytes;

fn unix(p: &Path) -> SocketAddress {
    SocketAddress::Unix(p.to_path_buf())
}

/// Line echo on every connection of `server`, each on its own task; returns a handle that
/// reports, per finished connection, how it ended.
fn spawn_line_echo(
    sel: &SelectorManager,
    server: ServerSocket,
) -> std::sync::mpsc::Receiver<Result<(), String>> {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let sel2 = sel.clone();
    sel.launch(async move {
        while let Ok(socket) = server.accept().await {
            let done_tx = done_tx.clone();
            sel2.launch(async move {
                let mut input = socket.open_read_channel();
                let mut output = socket.open_write_channel(true);
                let r: asock::Result<()> = async {
                    while let Some(line) = input.read_utf8_line().await? {
                        output.write_str(&format!("{line}\r\n")).await?;
                    }
                    output.close().await?;
                    Ok(())
                }
                .await;
                let _ = done_tx.send(r.map_err(|e| e.to_string()));
            });
        }
    });
    done_rx
}

#[test]
fn stream_echo_over_a_path_and_file_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let sel = selector();
    sel.run_blocking(within(10, async {
        let server = a_socket(&sel).tcp().bind(unix(&path)).await.unwrap();
        assert_eq!(server.local_address(), &unix(&path));
        assert_eq!(server.port(), None);
        assert!(is_socket(&path));
        spawn_line_echo(&sel, server);

        let c = a_socket(&sel).tcp().connect(unix(&path)).await.unwrap();
        assert_eq!(c.remote_address(), &unix(&path));
        let mut input = c.open_read_channel();
        let mut output = c.open_write_channel(true);
        output.write_str("hello unix\n").await.unwrap();
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("hello unix")
        );
        // A long line, and the half-close: the server finishes and closes.
        let long = "y".repeat(200_000);
        output.write_str(&format!("{long}\n")).await.unwrap();
        output.close().await.unwrap();
        assert_eq!(input.read_utf8_line().await.unwrap(), Some(long));
        assert_eq!(input.read_utf8_line().await.unwrap(), None);
    }));

    // Close removes the file; so does drop.
    sel.run_blocking(within(10, async {
        let p2 = dir.path().join("closed.sock");
        let server = a_socket(&sel).tcp().bind(unix(&p2)).await.unwrap();
        assert!(is_socket(&p2));
        server.close();
        assert!(!p2.exists(), "close should remove the socket file");
        let p3 = dir.path().join("dropped.sock");
        let server = a_socket(&sel).tcp().bind(unix(&p3)).await.unwrap();
        assert!(is_socket(&p3));
        drop(server);
        assert!(!p3.exists(), "drop should remove the socket file");
    }));
}

#[test]
fn bind_on_existing_path_and_replace_stale() {
    let dir = tempfile::tempdir().unwrap();
    let sel = selector();
    sel.run_blocking(within(10, async {
        // A stale socket file: a listener that went away without removing it.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(is_socket(&stale));
        let e = a_socket(&sel).tcp().bind(unix(&stale)).await.unwrap_err();
        assert!(matches!(e, Error::AddressInUse { .. }), "{e:?}");
        assert_eq!(e.io_kind(), std::io::ErrorKind::AddrInUse);
        let server = a_socket(&sel)
            .tcp()
            .replace_stale(true)
            .bind(unix(&stale))
            .await
            .unwrap();
        spawn_line_echo(&sel, server);

        // A live server's file is never replaced.
        let e = a_socket(&sel)
            .tcp()
            .replace_stale(true)
            .bind(unix(&stale))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::AddressInUse { .. }), "{e:?}");
        // ... and it still works.
        let c = a_socket(&sel).tcp().connect(unix(&stale)).await.unwrap();
        let mut out = c.open_write_channel(true);
        let mut inp = c.open_read_channel();
        out.write_str("still here\n").await.unwrap();
        assert_eq!(
            inp.read_utf8_line().await.unwrap().as_deref(),
            Some("still here")
        );

        // A regular file is an error and is left untouched.
        let regular = dir.path().join("notes.txt");
        std::fs::write(&regular, b"keep me").unwrap();
        for replace in [false, true] {
            let e = a_socket(&sel)
                .tcp()
                .replace_stale(replace)
                .bind(unix(&regular))
                .await
                .unwrap_err();
            assert!(matches!(e, Error::AddressInUse { .. }), "{e:?}");
            let e = a_socket(&sel)
                .udp()
                .replace_stale(replace)
                .bind(unix(&regular))
                .await
                .unwrap_err();
            assert!(matches!(e, Error::AddressInUse { .. }), "{e:?}");
        }
        assert_eq!(std::fs::read(&regular).unwrap(), b"keep me");

        // Datagram sockets: a stale datagram file is replaced, a live one is not.
        let dstale = dir.path().join("dgram.sock");
        drop(std::os::unix::net::UnixDatagram::bind(&dstale).unwrap());
        let e = a_socket(&sel).udp().bind(unix(&dstale)).await.unwrap_err();
        assert!(matches!(e, Error::AddressInUse { .. }), "{e:?}");
        let live = a_socket(&sel)
            .udp()
            .replace_stale(true)
            .bind(unix(&dstale))
            .await
            .unwrap();
        let e = a_socket(&sel)
            .udp()
            .replace_stale(true)
            .bind(unix(&dstale))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::AddressInUse { .. }), "{e:?}");
        live.close();
        assert!(!dstale.exists());
    }));
}

#[test]
fn connect_to_missing_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sel = selector();
    sel.run_blocking(within(10, async {
        let missing = unix(&dir.path().join("nobody.sock"));
        let e = a_socket(&sel)
            .tcp()
            .connect(missing.clone())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::ConnectionRefused { .. }), "{e:?}");
        let e = a_socket(&sel)
            .udp()
            .connect(missing, None)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::ConnectionRefused { .. }), "{e:?}");
        // A stale file refuses too.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let e = a_socket(&sel)
            .tcp()
            .connect(unix(&stale))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::ConnectionRefused { .. }), "{e:?}");
    }));
}

#[cfg(target_os = "linux")]
#[test]
fn abstract_names() {
    let sel = selector();
    let name = format!("@asock-test-{}", std::process::id());
    sel.run_blocking(within(10, async {
        let addr = SocketAddress::Unix(PathBuf::from(&name));
        let server = a_socket(&sel).tcp().bind(addr.clone()).await.unwrap();
        assert_eq!(server.local_address(), &addr);
        assert_eq!(server.local_address().to_string(), format!("unix:{name}"));
        spawn_line_echo(&sel, server);
        let c = a_socket(&sel).tcp().connect(addr.clone()).await.unwrap();
        let mut out = c.open_write_channel(true);
        let mut inp = c.open_read_channel();
        out.write_str("abstract\n").await.unwrap();
        assert_eq!(
            inp.read_utf8_line().await.unwrap().as_deref(),
            Some("abstract")
        );
        // Nothing appeared in the file system.
        assert!(!Path::new(&name).exists());

        // Datagrams on abstract names.
        let daddr = SocketAddress::Unix(PathBuf::from(format!("{name}-dgram")));
        let d = a_socket(&sel).udp().bind(daddr.clone()).await.unwrap();
        let c = a_socket(&sel)
            .udp()
            .connect(daddr.clone(), None)
            .await
            .unwrap();
        c.send_packet(&b"hi"[..]).await.unwrap();
        let got = d.receive().await.unwrap();
        assert_eq!(&got.packet[..], b"hi");
        // The client was autobound to an abstract name, so a reply can reach it.
        assert!(
            got.address.to_string().starts_with("unix:@"),
            "{}",
            got.address
        );
        d.send(Datagram::new(&b"back"[..], got.address))
            .await
            .unwrap();
        assert_eq!(&c.receive().await.unwrap().packet[..], b"back");
    }));
}

#[test]
fn peer_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("creds.sock");
    let sel = selector();
    sel.run_blocking(within(10, async {
        let server = a_socket(&sel).tcp().bind(unix(&path)).await.unwrap();
        let client = a_socket(&sel).tcp().connect(unix(&path)).await.unwrap();
        let accepted = server.accept().await.unwrap();
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        for s in [&accepted, &client] {
            let who = s.peer_credentials().unwrap();
            assert_eq!(who.uid, uid);
            assert_eq!(who.gid, gid);
            #[cfg(target_os = "linux")]
            assert_eq!(who.pid, Some(std::process::id() as i32));
        }
        // A TCP socket has none.
        let tcp = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let c = a_socket(&sel)
            .tcp()
            .connect(tcp.local_address().clone())
            .await
            .unwrap();
        assert!(c.peer_credentials().is_err());
    }));
}

#[test]
fn client_vanishing_mid_line_ends_only_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vanish.sock");
    let sel = selector();
    sel.run_blocking(within(15, async {
        let server = a_socket(&sel).tcp().bind(unix(&path)).await.unwrap();
        let done = spawn_line_echo(&sel, server);

        // A steady client, mid-conversation.
        let steady = a_socket(&sel).tcp().connect(unix(&path)).await.unwrap();
        let mut s_out = steady.open_write_channel(true);
        let mut s_in = steady.open_read_channel();
        s_out.write_str("before\n").await.unwrap();
        assert_eq!(
            s_in.read_utf8_line().await.unwrap().as_deref(),
            Some("before")
        );

        // Clients that vanish mid-line: from a plain std socket (abrupt close) and from asock.
        for _ in 0..3 {
            let mut raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
            raw.write_all(b"half a li").unwrap();
            drop(raw);
        }
        {
            let c = a_socket(&sel).tcp().connect(unix(&path)).await.unwrap();
            let mut o = c.open_write_channel(true);
            o.write_str("cut off without newl").await.unwrap();
            c.close();
        }
        // Each vanished connection's handler finishes on its own.
        for _ in 0..4 {
            let r = loop {
                if let Ok(r) = done.try_recv() {
                    break r;
                }
                asock::time::sleep(Duration::from_millis(10)).await;
            };
            // Finishing cleanly (last partial line echoed into a closed pipe) or with a reset is
            // fine; what matters is that it ended alone.
            let _ = r;
        }
        // The steady client never noticed.
        s_out.write_str("after\n").await.unwrap();
        assert_eq!(
            s_in.read_utf8_line().await.unwrap().as_deref(),
            Some("after")
        );
        // And the server still accepts.
        let late = a_socket(&sel).tcp().connect(unix(&path)).await.unwrap();
        let mut l_out = late.open_write_channel(true);
        let mut l_in = late.open_read_channel();
        l_out.write_str("late\n").await.unwrap();
        assert_eq!(
            l_in.read_utf8_line().await.unwrap().as_deref(),
            Some("late")
        );
    }));
}

#[test]
fn unix_datagrams_through_udp_builder() {
    let dir = tempfile::tempdir().unwrap();
    let spath = dir.path().join("server.dgram");
    let cpath = dir.path().join("client.dgram");
    let sel = selector();
    sel.run_blocking(within(10, async {
        let server = a_socket(&sel).udp().bind(unix(&spath)).await.unwrap();
        assert_eq!(server.local_address(), &unix(&spath));
        let client = a_socket(&sel)
            .udp()
            .connect(unix(&spath), Some(unix(&cpath)))
            .await
            .unwrap();
        assert_eq!(client.local_address(), &unix(&cpath));
        assert_eq!(client.remote_address(), &unix(&spath));
        for payload in [
            Bytes::from_static(b"over unix"),
            Bytes::new(),
            vec![0x5a; Datagram::MAX_UNIX_PAYLOAD].into(),
        ] {
            client.send_packet(payload.clone()).await.unwrap();
            let d = server.receive().await.unwrap();
            assert!(d.packet == payload);
            assert_eq!(d.address, unix(&cpath));
            server.send(d).await.unwrap();
            assert!(client.receive().await.unwrap().packet == payload);
        }
        let e = client
            .send_packet(vec![0u8; Datagram::MAX_UNIX_PAYLOAD + 1])
            .await
            .unwrap_err();
        assert!(matches!(e, Error::DatagramTooLarge { .. }), "{e:?}");

        // Batched receive of many datagrams, queued sends. Unix datagrams have back-pressure
        // (a short receive queue: the sender waits), so the receiver runs alongside; order holds.
        let server = std::sync::Arc::new(server);
        let reader = {
            let server = server.clone();
            sel.launch(async move {
                for i in 0..200u32 {
                    let d = server.receive().await.unwrap();
                    assert_eq!(u32::from_be_bytes(d.packet[..].try_into().unwrap()), i);
                }
            })
        };
        let out = client.outgoing();
        for i in 0..200u32 {
            out.send(Datagram::new(i.to_be_bytes().to_vec(), unix(&spath)))
                .await
                .unwrap();
        }
        out.flush().await.unwrap();
        reader.await.unwrap();
        drop(out);
        client.close();
        assert!(!cpath.exists());
        server.close();
        assert!(!spath.exists());
    }));
}

#[test]
fn unix_datagram_too_large_from_a_foreign_peer_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    let spath = dir.path().join("big.dgram");
    let sel = selector();
    sel.run_blocking(within(10, async {
        let server = a_socket(&sel).udp().bind(unix(&spath)).await.unwrap();
        let peer = std::os::unix::net::UnixDatagram::unbound().unwrap();
        peer.send_to(&vec![1u8; 100_000], &spath).unwrap();
        peer.send_to(b"small", &spath).unwrap();
        let e = server.receive().await.unwrap_err();
        assert!(
            matches!(e, Error::DatagramTruncated { limit: 65_536, .. }),
            "{e:?}"
        );
        assert_eq!(&server.receive().await.unwrap().packet[..], b"small");
    }));
}

// ----- independent peers -----

#[test]
fn socat_and_python_against_asock_unix_echo() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.sock");
    let sel = selector();
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind(unix(&path)).await.unwrap();
        spawn_line_echo(&sel, server);
    });
    assert!(have("socat"), "socat is needed; .ci/run installs it");
    {
        let mut child = Command::new("socat")
            .args(["-t2", "-", &format!("UNIX-CONNECT:{}", path.display())])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("socat");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"socat one\nsocat two\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "socat one\r\nsocat two\r\n"
        );
    }
    assert!(have("python3"), "python3 is needed; .ci/run installs it");
    {
        let code = format!(
            r#"
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect({path:?})
s.sendall(b"from python\n")
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
assert data == b"from python\r\n", data
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
print("ok")
"#,
            path = path.display().to_string()
        );
        let out = Command::new("python3")
            .args(["-c", &code])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    }
}

#[test]
fn python_unix_datagram_peer() {
    assert!(have("python3"), "python3 is needed; .ci/run installs it");
    let dir = tempfile::tempdir().unwrap();
    let spath = dir.path().join("asock.dgram");
    let ppath = dir.path().join("python.dgram");
    let sel = selector();
    sel.run_blocking(within(20, async {
        let server = a_socket(&sel).udp().bind(unix(&spath)).await.unwrap();
        let code = format!(
            r#"
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind({ppath:?})
s.settimeout(5)
for p in [b"py one", b"", b"z" * 65536]:
    s.sendto(p, {spath:?})
    data, addr = s.recvfrom(70000)
    assert data == p, (len(data), len(p))
    assert addr == {spath:?}, addr
print("ok")
"#,
            ppath = ppath.display().to_string(),
            spath = spath.display().to_string()
        );
        let child = std::thread::spawn(move || {
            Command::new("python3")
                .args(["-c", &code])
                .output()
                .unwrap()
        });
        for _ in 0..3 {
            let d = server.receive().await.unwrap();
            assert_eq!(d.address, unix(&ppath));
            server.send(d).await.unwrap();
        }
        let out = loop {
            if child.is_finished() {
                break child.join().unwrap();
            }
            asock::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
        // socat as a datagram peer too.
        assert!(have("socat"), "socat is needed; .ci/run installs it");
        {
            let mut child = Command::new("socat")
                .args(["-T2", "-", &format!("UNIX-SENDTO:{}", spath.display())])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"socat dgram")
                .unwrap();
            let d = server.receive().await.unwrap();
            assert_eq!(&d.packet[..], b"socat dgram");
            let _ = child.kill();
            let _ = child.wait();
        }
    }));
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read(&mut [0u8; 0]);
}
