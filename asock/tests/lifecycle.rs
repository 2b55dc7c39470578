//! The socket lifecycle contract (docs: `SelectorManager`, `Socket`, `ServerSocket` "Lifecycle"
//! sections, and docs/design.md §2): what timeouts, `close`, drop and a manager's close do to
//! pending operations and descriptors. Real sockets on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use asock::{a_socket, Error, SelectorManager};
use asock_test_support::{pair, selector, within};

fn is_closed(e: &Error) -> bool {
    matches!(e, Error::Closed(_))
}

// ---- 1. socket_timeout counts time spent waiting ----

#[test]
fn socket_timeout_counts_waiting_not_time_since_the_last_byte() {
    let sel = selector();
    sel.run_blocking(async {
        let server = a_socket(&sel)
            .tcp()
            .socket_timeout(Duration::from_millis(400))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = server.local_address().clone();
        let client = sel.launch({
            let sel = sel.clone();
            async move {
                let c = a_socket(&sel).tcp().connect(addr).await.unwrap();
                let (mut input, mut output) = (c.open_read_channel(), c.open_write_channel(true));
                output.write_str("one\n").await.unwrap();
                let reply = input.read_utf8_line().await.unwrap();
                // The server "worked" 600 ms, longer than its timeout; answer 100 ms later.
                asock::time::sleep(Duration::from_millis(100)).await;
                output.write_str("two\n").await.unwrap();
                (reply, c, input, output) // kept open: the server's last read must time out
            }
        });
        let s = server.accept().await.unwrap();
        let (mut input, mut output) = (s.open_read_channel(), s.open_write_channel(true));
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("one")
        );
        asock::time::sleep(Duration::from_millis(600)).await; // work, not waiting
        output.write_str("done\n").await.unwrap();
        let second = input.read_utf8_line().await;
        assert_eq!(
            second.unwrap().as_deref(),
            Some("two"),
            "the wait for the second request gets a full period"
        );
        let (reply, _c, _cin, _cout) = client.await.unwrap();
        assert_eq!(reply.as_deref(), Some("done"));

        // A read that waits longer than the timeout still fails with Timeout.
        let t0 = Instant::now();
        let r = input.read_utf8_line().await;
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(390), "{waited:?}");
    });
}

#[test]
fn a_dropped_read_does_not_shorten_the_next_wait() {
    let sel = selector();
    sel.run_blocking(async {
        let (c, s) = pair(&sel).await;
        s.set_socket_timeout(Some(Duration::from_millis(400)));
        let mut input = s.open_read_channel();
        // Start a read and drop it after 50 ms.
        let r = asock::time::timeout(Duration::from_millis(50), input.read_utf8_line()).await;
        assert!(matches!(r, Err(Error::Timeout)));
        asock::time::sleep(Duration::from_millis(500)).await;
        let writer = sel.launch(async move {
            asock::time::sleep(Duration::from_millis(150)).await;
            c.open_write_channel(true)
                .write_str("late\n")
                .await
                .unwrap();
            c
        });
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("late")
        );
        drop(writer.await);
    });
}

#[test]
fn write_timeout_counts_waiting() {
    let sel = selector();
    sel.run_blocking(async {
        let (c, s) = pair(&sel).await;
        s.set_socket_timeout(Some(Duration::from_millis(300)));
        s.set_send_buffer_size(4096).unwrap();
        let mut output = s.open_write_channel(false);
        // The peer never reads: writes fill both buffers, then a flush waits and times out.
        let chunk = vec![7u8; 64 * 1024];
        let t0 = Instant::now();
        let mut r = Ok(());
        for _ in 0..1000 {
            r = output.write_fully(&chunk).await;
            if r.is_err() {
                break;
            }
        }
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert!(t0.elapsed() >= Duration::from_millis(290));
        drop(c);
    });
}

// ---- 2. closing a SelectorManager ends everything it owns ----

#[test]
#[allow(clippy::async_yields_async)] // the handle is awaited after the manager is closed
fn closing_the_manager_ends_a_task_parked_on_accept_and_frees_the_port() {
    let sel = selector();
    let (handle, port) = sel.run_blocking(async {
        let server = a_socket(&sel)
            .tcp()
            .reuse_address(false)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let port = server.port().unwrap();
        let h = sel.launch(async move { server.accept().await.map(|_| ()) });
        asock::time::sleep(Duration::from_millis(50)).await;
        (h, port)
    });
    sel.close();
    let r = asock::block_on(within(5, handle));
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    // The listener's descriptor went with the task.
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
}

#[test]
fn after_close_every_new_operation_fails_at_once() {
    let sel = selector();
    let server =
        sel.run_blocking(async { a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap() });
    let addr = server.local_address().clone();
    let (c, s) = sel.run_blocking(pair(&sel));
    sel.close();
    assert!(sel.is_closed());
    asock::block_on(within(5, async {
        let e = a_socket(&sel)
            .tcp()
            .connect(addr.clone())
            .await
            .unwrap_err();
        assert!(is_closed(&e), "connect: {e}");
        let e = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap_err();
        assert!(is_closed(&e), "bind: {e}");
        let e = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap_err();
        assert!(is_closed(&e), "udp bind: {e}");
        let e = server.accept().await.unwrap_err();
        assert!(is_closed(&e), "accept: {e}");
        let e = s.open_read_channel().read_utf8_line().await.unwrap_err();
        assert!(is_closed(&e), "read: {e}");
        let e = c.open_write_channel(true).write_str("x").await.unwrap_err();
        assert!(is_closed(&e), "write: {e}");
        let task = sel.launch(async { 1 });
        assert!(matches!(task.await, Err(Error::Cancelled)));
    }));
}

#[test]
fn closing_the_manager_fails_a_read_pending_on_another_thread() {
    let sel = selector();
    let (c, s) = sel.run_blocking(pair(&sel));
    let reader = std::thread::spawn(move || {
        asock::block_on(async move { s.open_read_channel().read_utf8_line().await })
    });
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    sel.close();
    let r = reader.join().unwrap();
    assert!(matches!(&r, Err(e) if is_closed(e)), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    drop(c);
}

#[test]
fn a_sleep_polled_off_the_loops_outlives_its_manager_and_keeps_its_deadline() {
    let sel = selector();
    let t0 = Instant::now();
    let sleeper = std::thread::spawn(move || {
        asock::block_on(asock::time::sleep(Duration::from_millis(300)));
        t0.elapsed()
    });
    drop(sel);
    let slept = sleeper.join().unwrap();
    assert!(slept >= Duration::from_millis(290), "{slept:?}");
}

#[test]
#[allow(clippy::async_yields_async)] // the handle is awaited after the manager is gone
fn a_task_that_owns_a_socket_does_not_keep_the_loops_alive() {
    let sel = selector();
    let weak_check = sel.run_blocking(async {
        let (c, s) = pair(&sel).await;
        let h = sel.launch(async move {
            let _keep = c;
            s.open_read_channel().read_utf8_line().await
        });
        asock::time::sleep(Duration::from_millis(20)).await;
        h
    });
    drop(sel); // the last handle: the loops stop and the task is dropped
    let r = asock::block_on(within(5, weak_check));
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
}

// ---- 3. ServerSocket::close and Socket::close ----

#[test]
fn server_close_releases_the_port_at_once_and_fails_pending_accepts() {
    let sel = selector();
    sel.run_blocking(async {
        let server = Arc::new(
            a_socket(&sel)
                .tcp()
                .reuse_address(false)
                .bind("127.0.0.1:0")
                .await
                .unwrap(),
        );
        let port = server.port().unwrap();
        let acceptors: Vec<_> = (0..2)
            .map(|_| {
                let server = server.clone();
                sel.launch(async move { server.accept().await.map(|_| ()) })
            })
            .collect();
        let closed = sel.launch({
            let server = server.clone();
            async move { server.await_closed().await }
        });
        asock::time::sleep(Duration::from_millis(50)).await;
        assert!(!server.is_closed());
        server.close();
        assert!(server.is_closed());
        // Rebind at once, while the closed value is still alive, without SO_REUSEADDR.
        let again = a_socket(&sel)
            .tcp()
            .reuse_address(false)
            .bind(("127.0.0.1", port))
            .await
            .expect("the port is free right after close()");
        for a in acceptors {
            let r = within(5, a).await.unwrap();
            assert!(matches!(&r, Err(e) if is_closed(e)), "{r:?}");
        }
        within(5, closed).await.unwrap();
        within(5, server.await_closed()).await;
        drop(again);
    });
}

#[test]
fn socket_close_fails_pending_reads_and_the_peer_sees_end_of_stream() {
    let sel = selector();
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let port = server.port().unwrap();
        let mut peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let s = Arc::new(server.accept().await.unwrap());
        let reader = sel.launch({
            let s = s.clone();
            async move { s.open_read_channel().read_utf8_line().await }
        });
        asock::time::sleep(Duration::from_millis(50)).await;
        s.close();
        let r = within(5, reader).await.unwrap();
        assert!(matches!(&r, Err(e) if is_closed(e)), "{r:?}");
        within(5, s.await_closed()).await;
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(peer.read(&mut buf).unwrap(), 0, "a clean end of stream");
        // Option calls on the closed socket say so.
        assert!(is_closed(&s.set_no_delay(true).unwrap_err()));
    });
}

// ---- 4. channel state follows the socket ----

#[test]
fn channel_flags_follow_the_socket() {
    let sel = selector();
    sel.run_blocking(async {
        let (c, s) = pair(&sel).await;
        let input = s.open_read_channel();
        let output = s.open_write_channel(true);
        assert!(!input.is_closed_for_read());
        assert!(!output.is_closed_for_write());
        s.close();
        assert!(input.is_closed_for_read());
        assert!(output.is_closed_for_write());

        // End of stream from the peer, buffer drained: closed for read.
        let mut cin = c.open_read_channel();
        assert!(cin.read_utf8_line().await.unwrap().is_none());
        assert!(cin.is_closed_for_read());
    });
}

// ---- 5. linger(0) then close is abortive ----

#[test]
fn linger_zero_close_resets_the_connection() {
    let sel = selector();
    sel.run_blocking(async {
        let server = a_socket(&sel)
            .tcp()
            .linger(Duration::ZERO)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let port = server.port().unwrap();
        let mut peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let s = server.accept().await.unwrap();
        s.close();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 8];
        let r = peer.read(&mut buf);
        assert_eq!(
            r.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset),
            "an abortive close"
        );
    });
}

// ---- 7. many waiters, one socket ----

#[test]
fn two_acceptors_on_one_listener_are_both_served() {
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    sel.run_blocking(async {
        let server = Arc::new(a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap());
        let port = server.port().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Instant)>();
        for id in 0..2 {
            let server = server.clone();
            let tx = tx.clone();
            sel.launch(async move {
                while let Ok(s) = server.accept().await {
                    let _ = tx.send((id, Instant::now()));
                    // Busy with this connection for a long while before accepting again.
                    asock::time::sleep(Duration::from_secs(3)).await;
                    drop(s);
                }
            });
        }
        asock::time::sleep(Duration::from_millis(50)).await;
        let _c1 = TcpStream::connect(("127.0.0.1", port)).unwrap();
        asock::time::sleep(Duration::from_millis(100)).await;
        let t0 = Instant::now();
        let _c2 = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // The busy acceptor is back only after 3 s: anything well before that was the idle one.
        let deadline = Instant::now() + Duration::from_millis(2500);
        let mut served = Vec::new();
        while served.len() < 2 && Instant::now() < deadline {
            if let Ok(x) = rx.try_recv() {
                served.push(x);
            }
            asock::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(served.len(), 2, "both connections accepted: {served:?}");
        assert_ne!(served[0].0, served[1].0, "by the two acceptors");
        assert!(
            served[1].1.duration_since(t0) < Duration::from_millis(2000),
            "the idle acceptor took the second connection at once"
        );
        server.close();
    });
}

// ---- 8. errors stick ----

#[test]
fn a_reset_is_reported_by_every_later_read() {
    let sel = selector();
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let port = server.port().unwrap();
        let mut peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let s = server.accept().await.unwrap();
        let mut input = s.open_read_channel();
        peer.write_all(b"partial line without end").unwrap();
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer); // RST
        asock::time::sleep(Duration::from_millis(50)).await;
        let first = input.read_utf8_line().await;
        assert!(matches!(first, Err(Error::ConnectionReset(_))), "{first:?}");
        for _ in 0..3 {
            let again = input.read_utf8_line().await;
            assert!(
                matches!(again, Err(Error::ConnectionReset(_))),
                "a reset never turns into a clean end of stream: {again:?}"
            );
        }
        assert!(input.is_closed_for_read() || input.available_for_read() > 0);
    });
}

#[test]
fn write_channel_close_reports_a_failed_final_flush() {
    let sel = selector();
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let port = server.port().unwrap();
        let peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let s = server.accept().await.unwrap();
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer); // RST
        asock::time::sleep(Duration::from_millis(50)).await;
        let mut output = s.open_write_channel(false);
        output
            .write_str("queued, never deliverable\n")
            .await
            .unwrap();
        assert!(output.queued() > 0);
        let r = output.close().await;
        assert!(matches!(r, Err(Error::ConnectionReset(_))), "{r:?}");
    });
}

// ---- 9. counted channels ----

#[test]
fn channels_count_bytes_through_methods_and_traits() {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let sel = selector();
    sel.run_blocking(async {
        let (c, s) = pair(&sel).await;
        let mut out = c.open_write_channel(false);
        out.write_str("hello\n").await.unwrap();
        out.write_u32(7).await.unwrap();
        AsyncWriteExt::write_all(&mut out, b"trait bytes")
            .await
            .unwrap();
        assert_eq!(out.total_bytes_written(), 6 + 4 + 11);
        out.close().await.unwrap();

        let mut input = s.open_read_channel();
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("hello")
        );
        assert_eq!(input.total_bytes_read(), 6, "the line and its terminator");
        assert_eq!(input.read_u32().await.unwrap(), 7);
        let mut rest = Vec::new();
        AsyncReadExt::read_to_end(&mut input, &mut rest)
            .await
            .unwrap();
        assert_eq!(rest, b"trait bytes");
        assert_eq!(input.total_bytes_read(), 21);
    });
}

#[cfg(feature = "test-certs")]
#[test]
fn tls_reads_get_a_full_period_of_waiting_too() {
    let (server_cfg, client_cfg) = asock_test_support::tls_configs(&["localhost"], "localhost");
    let sel = selector();
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let port = server.port().unwrap();
        let client = sel.launch({
            let sel = sel.clone();
            async move {
                let plain = a_socket(&sel)
                    .tcp()
                    .connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let c = plain.tls(&client_cfg).await.unwrap();
                let (mut input, mut output) = (c.open_read_channel(), c.open_write_channel(true));
                output.write_str("one\n").await.unwrap();
                let reply = input.read_utf8_line().await.unwrap();
                asock::time::sleep(Duration::from_millis(100)).await;
                output.write_str("two\n").await.unwrap();
                (reply, c, input, output)
            }
        });
        let plain = server.accept().await.unwrap();
        plain.set_socket_timeout(Some(Duration::from_millis(400)));
        let s = plain.tls_server(&server_cfg).await.unwrap();
        let (mut input, mut output) = (s.open_read_channel(), s.open_write_channel(true));
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("one")
        );
        asock::time::sleep(Duration::from_millis(600)).await;
        output.write_str("done\n").await.unwrap();
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("two")
        );
        let (reply, _c, _i, _o) = client.await.unwrap();
        assert_eq!(reply.as_deref(), Some("done"));
        let r = input.read_utf8_line().await;
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        s.close();
        assert!(input.is_closed_for_read() && output.is_closed_for_write());
    });
}
