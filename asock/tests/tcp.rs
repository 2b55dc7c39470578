//! TCP sockets: connect, accept, options, faults.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use asock::{a_socket, Error, SocketAddress};
use asock_test_support::{pair, selector, within};

#[test]
fn echo_round_trip_and_addresses() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let port = server.port().unwrap();
        assert_ne!(port, 0);
        let sel2 = sel.clone();
        let srv = sel.launch(async move {
            let s = server.accept().await.unwrap();
            let c = s.connection(true);
            let (mut i, mut o) = (c.input, c.output);
            while let Some(l) = i.read_utf8_line().await.unwrap() {
                o.write_str(&format!("{l}\r\n")).await.unwrap();
            }
            drop(sel2);
        });
        let c = a_socket(&sel)
            .tcp()
            .connect(("localhost", port))
            .await
            .unwrap();
        assert_eq!(c.remote_address().port(), Some(port));
        assert!(matches!(c.local_address(), SocketAddress::Inet(a) if a.ip().is_loopback()));
        let mut o = c.open_write_channel(true);
        let mut i = c.open_read_channel();
        o.write_str("hello\r\n").await.unwrap();
        assert_eq!(i.read_utf8_line().await.unwrap().as_deref(), Some("hello"));
        o.close().await.unwrap();
        assert_eq!(i.read_utf8_line().await.unwrap(), None);
        srv.await.unwrap();
        // Both channels done: the socket counts as closed.
        within(5, c.await_closed()).await;
        assert!(c.is_closed());
    }));
}

#[test]
fn ipv6_loopback() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let Ok(server) = a_socket(&sel).tcp().bind("[::1]:0").await else {
            eprintln!("no IPv6 loopback here; skipped");
            return;
        };
        let addr = server.local_address().clone();
        assert!(addr.to_string().starts_with("[::1]:"));
        let c = a_socket(&sel).tcp().connect(addr).await.unwrap();
        let s = server.accept().await.unwrap();
        c.open_write_channel(true).write_str("v6\n").await.unwrap();
        assert_eq!(
            s.open_read_channel()
                .read_utf8_line()
                .await
                .unwrap()
                .as_deref(),
            Some("v6")
        );
    }));
}

#[test]
fn connect_to_closed_port_fails_fast_with_typed_error() {
    let sel = selector();
    // Find a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Instant::now();
    let r = sel.run_blocking(a_socket(&sel).tcp().connect(("127.0.0.1", port)));
    assert!(matches!(r, Err(Error::ConnectionRefused { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("refused"), "{msg}");
}

#[test]
fn every_resolved_address_is_tried() {
    // "localhost" may resolve to ::1 first; a server only on 127.0.0.1 must still be reached.
    let sel = selector();
    sel.run_blocking(within(10, async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let port = server.port().unwrap();
        let c = a_socket(&sel)
            .tcp()
            .connect(format!("localhost:{port}"))
            .await;
        assert!(c.is_ok(), "{c:?}");
    }));
}

#[test]
fn bad_addresses_and_names() {
    let sel = selector();
    let r = sel.run_blocking(a_socket(&sel).tcp().connect("not an address"));
    assert!(matches!(r, Err(Error::InvalidAddress(_))), "{r:?}");
    let r = sel.run_blocking(a_socket(&sel).tcp().connect("no-such-host.invalid:80"));
    assert!(matches!(r, Err(Error::Resolve { .. })), "{r:?}");
}

#[test]
fn bind_in_use_is_typed() {
    let sel = selector();
    sel.run_blocking(async {
        let a = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let r = a_socket(&sel).tcp().bind(a.local_address()).await;
        assert!(matches!(r, Err(Error::AddressInUse { .. })), "{r:?}");
    });
}

#[test]
fn close_fails_pending_accept_and_later_ones() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let server = std::sync::Arc::new(a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap());
        let s2 = server.clone();
        let pending = sel.launch(async move { s2.accept().await.map(|_| ()) });
        asock::time::sleep(Duration::from_millis(50)).await;
        server.close();
        assert!(server.is_closed());
        assert!(matches!(pending.await.unwrap(), Err(Error::Closed(_))));
        assert!(matches!(server.accept().await, Err(Error::Closed(_))));
        let r = a_socket(&sel).tcp().connect(server.local_address()).await;
        assert!(r.is_err(), "a closed server must not take connections");
    }));
}

#[test]
fn accept_is_cancel_safe() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        for _ in 0..3 {
            let r = asock::time::timeout(Duration::from_millis(10), server.accept()).await;
            assert!(r.is_err());
        }
        let _c = a_socket(&sel)
            .tcp()
            .connect(server.local_address())
            .await
            .unwrap();
        within(5, server.accept()).await.unwrap();
    }));
}

#[test]
fn socket_timeout_fires_on_idle_peer() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let server = a_socket(&sel)
            .tcp()
            .socket_timeout(Duration::from_millis(200))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let c = a_socket(&sel)
            .tcp()
            .connect(server.local_address())
            .await
            .unwrap();
        let s = server.accept().await.unwrap();
        assert_eq!(s.socket_timeout(), Some(Duration::from_millis(200)));
        let mut input = s.open_read_channel();
        // Activity keeps it alive...
        let mut out = c.open_write_channel(true);
        let mut last_read = Instant::now();
        for _ in 0..4 {
            out.write_str("x\n").await.unwrap();
            input.read_line().await.unwrap();
            last_read = Instant::now();
            asock::time::sleep(Duration::from_millis(100)).await;
        }
        // ...silence ends it, counted from the last progress.
        let r = input.read_line().await;
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        let idle = last_read.elapsed();
        assert!(idle >= Duration::from_millis(190), "{idle:?}");
        assert!(idle < Duration::from_secs(2), "{idle:?}");
        drop(c);
    }));
}

#[test]
fn connect_timeout_is_typed() {
    // 127.0.0.1 never blackholes, so fill a tiny backlog instead: the kernel then drops SYNs.
    let sel = selector();
    sel.run_blocking(within(20, async {
        let server = a_socket(&sel)
            .tcp()
            .backlog(0)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = server.local_address().clone();
        let mut held = Vec::new();
        let mut timed_out = false;
        for _ in 0..64 {
            match a_socket(&sel)
                .tcp()
                .connect_timeout(Duration::from_millis(300))
                .connect(addr.clone())
                .await
            {
                Ok(s) => held.push(s),
                Err(Error::ConnectTimeout { .. }) => {
                    timed_out = true;
                    break;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(timed_out, "the backlog never filled");
    }));
}

#[test]
fn reading_after_peer_close_is_end_of_stream() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, s) = pair(&sel).await;
        drop(c);
        let mut input = s.open_read_channel();
        assert_eq!(input.read_line().await.unwrap(), None);
        assert_eq!(input.read_line().await.unwrap(), None);
        assert!(input.is_closed_for_read());
    }));
}

#[test]
fn writing_after_peer_reset_is_a_typed_error() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, s) = pair(&sel).await;
        // Zero linger: closing sends a reset.
        c.set_linger(Some(Duration::ZERO)).unwrap();
        drop(c);
        asock::time::sleep(Duration::from_millis(50)).await;
        let mut out = s.open_write_channel(true);
        let mut err = None;
        for _ in 0..10 {
            if let Err(e) = out.write_fully(&[0; 1024]).await {
                err = Some(e);
                break;
            }
        }
        let err = err.expect("writes to a reset peer kept succeeding");
        assert!(matches!(err, Error::ConnectionReset(_)), "{err:?}");
    }));
}

#[test]
fn socket_close_ends_pending_read() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (_c, s) = pair(&sel).await;
        let s = std::sync::Arc::new(s);
        let s2 = s.clone();
        let reader = sel.launch(async move {
            s2.open_read_channel()
                .read_line()
                .await
                .map(|l| l.map(<[u8]>::to_vec))
        });
        asock::time::sleep(Duration::from_millis(50)).await;
        s.close();
        assert!(s.is_closed());
        let r = reader.await.unwrap();
        assert!(matches!(r, Err(Error::Closed(_)) | Ok(None)), "{r:?}");
        within(2, s.await_closed()).await;
    }));
}

#[test]
fn options_defaults_and_setters() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let server = a_socket(&sel)
            .tcp()
            .configure(|o| o.backlog = 16)
            .keep_alive(true)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let c = a_socket(&sel)
            .tcp()
            .send_buffer_size(64 * 1024)
            .receive_buffer_size(64 * 1024)
            .type_of_service(0x10)
            .linger(Duration::from_secs(1))
            .connect(server.local_address())
            .await
            .unwrap();
        let s = server.accept().await.unwrap();
        // Ktor's default: no_delay on, for clients and accepted sockets.
        assert!(c.no_delay().unwrap());
        assert!(s.no_delay().unwrap());
        s.set_no_delay(false).unwrap();
        assert!(!s.no_delay().unwrap());
        s.set_keep_alive(true).unwrap();
        s.set_send_buffer_size(32 * 1024).unwrap();
        s.set_receive_buffer_size(32 * 1024).unwrap();
        s.set_type_of_service(0x08).unwrap();
        s.set_linger(None).unwrap();
        s.set_socket_timeout(Some(Duration::from_secs(3)));
        assert_eq!(s.socket_timeout(), Some(Duration::from_secs(3)));
        let sk = socket2::SockRef::from(&c);
        assert!(sk.send_buffer_size().unwrap() >= 64 * 1024);
        assert_eq!(sk.tos().unwrap(), 0x10);
    }));
}

#[test]
fn std_peer_interop() {
    // A plain blocking std client against an asock server.
    let sel = selector();
    let server = sel
        .run_blocking(a_socket(&sel).tcp().bind("127.0.0.1:0"))
        .unwrap();
    let addr = server.local_address().as_inet().unwrap();
    let h = sel.launch(async move {
        let s = server.accept().await.unwrap();
        let mut i = s.open_read_channel();
        let mut o = s.open_write_channel(true);
        let n = i.read_u32().await.unwrap();
        o.write_u32(n + 1).await.unwrap();
    });
    let mut std_client = std::net::TcpStream::connect(addr).unwrap();
    std_client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    std_client.write_all(&41u32.to_be_bytes()).unwrap();
    let mut b = [0; 4];
    std_client.read_exact(&mut b).unwrap();
    assert_eq!(u32::from_be_bytes(b), 42);
    sel.run_blocking(h).unwrap();
}
