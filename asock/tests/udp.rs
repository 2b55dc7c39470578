//! UDP datagram sockets on real sockets (127.0.0.1 and ::1 only), including the faults the
//! issue lists, and socat / python3 as independent peers.

use asock_test_support::{have, selector, within};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use asock::{a_socket, Datagram, Error, SelectorManager, SocketAddress};
use bytes::Bytes;
use futures::StreamExt;

/// Nothing arrives on `s` within `ms`.
async fn nothing_arrives(s: &asock::BoundDatagramSocket, ms: u64) -> bool {
    matches!(
        asock::time::timeout(Duration::from_millis(ms), s.receive()).await,
        Err(Error::Timeout)
    )
}

fn pattern(n: usize, seed: u8) -> Bytes {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// Starts an echo task on `sel` for `socket` (receive, then queue the reply on `outgoing`).
fn spawn_echo(sel: &SelectorManager, socket: asock::BoundDatagramSocket) -> SocketAddress {
    let addr = socket.local_address().clone();
    sel.launch(async move {
        let out = socket.outgoing();
        while let Ok(d) = socket.receive().await {
            if out.send(d).await.is_err() {
                break;
            }
        }
    });
    addr
}

#[test]
fn round_trip_ipv4_and_ipv6() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let a = a_socket(&sel).udp().bind(host).await.unwrap();
            let b = a_socket(&sel).udp().bind(host).await.unwrap();
            assert_ne!(a.local_address().port(), Some(0));
            a.send(Datagram::new(&b"ping"[..], b.local_address().clone()))
                .await
                .unwrap();
            let got = b.receive().await.unwrap();
            assert_eq!(&got.packet[..], b"ping");
            assert_eq!(&got.address, a.local_address());
            b.send(Datagram::new(&b"pong"[..], got.address))
                .await
                .unwrap();
            let back = a.receive().await.unwrap();
            assert_eq!(&back.packet[..], b"pong");
            assert_eq!(&back.address, b.local_address());
        }
    }));
}

#[test]
fn zero_length_datagram_round_trips() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let echo = spawn_echo(
            &sel,
            a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap(),
        );
        let c = a_socket(&sel)
            .udp()
            .connect(echo.clone(), None)
            .await
            .unwrap();
        c.send(Datagram::new(Bytes::new(), echo.clone()))
            .await
            .unwrap();
        let got = c.receive().await.unwrap();
        assert!(got.packet.is_empty());
        assert_eq!(got.address, echo);
        // and again through the queued path
        c.outgoing()
            .send(Datagram::new(Bytes::new(), echo))
            .await
            .unwrap();
        assert!(c.receive().await.unwrap().packet.is_empty());
    }));
}

#[test]
fn largest_datagrams_round_trip_intact() {
    let sel = selector();
    sel.run_blocking(within(20, async {
        for (host, size) in [
            ("127.0.0.1:0", Datagram::MAX_IPV4_PAYLOAD),
            ("[::1]:0", Datagram::MAX_IPV6_PAYLOAD),
        ] {
            assert_eq!(
                size,
                if host.starts_with('[') {
                    65_527
                } else {
                    65_507
                }
            );
            let echo = spawn_echo(&sel, a_socket(&sel).udp().bind(host).await.unwrap());
            let c = a_socket(&sel).udp().bind(host).await.unwrap();
            let payload = pattern(size, 7);
            c.send(Datagram::new(payload.clone(), echo.clone()))
                .await
                .unwrap();
            let got = c.receive().await.unwrap();
            assert_eq!(got.packet.len(), size);
            assert!(got.packet == payload, "payload changed on the way");
            // Several at once through one recvmmsg, each whole (sizes kept within the default
            // receive buffer so the kernel drops none).
            for seed in 1..=3u8 {
                let n = 20_000 * seed as usize;
                c.send(Datagram::new(pattern(n, seed), echo.clone()))
                    .await
                    .unwrap();
            }
            for _ in 0..3 {
                let d = c.receive().await.unwrap();
                let seed = (d.packet.len() / 20_000) as u8;
                assert!(d.packet == pattern(20_000 * seed as usize, seed));
            }
        }
    }));
}

#[test]
fn oversize_datagram_refused_before_any_syscall() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let rx = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let tx = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let to = rx.local_address().clone();
        let e = tx
            .send(Datagram::new(vec![0u8; 65_508], to.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::DatagramTooLarge {
                    size: 65_508,
                    limit: 65_507
                }
            ),
            "{e:?}"
        );
        let e = tx
            .outgoing()
            .send(Datagram::new(vec![0u8; 70_000], to.clone()))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::DatagramTooLarge { .. }), "{e:?}");
        // The check comes before anything touches the socket: even a closed socket reports it.
        tx.close();
        let e = tx
            .send(Datagram::new(vec![0u8; 65_508], to.clone()))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::DatagramTooLarge { .. }), "{e:?}");
        assert!(nothing_arrives(&rx, 200).await);

        let rx6 = a_socket(&sel).udp().bind("[::1]:0").await.unwrap();
        let tx6 = a_socket(&sel).udp().bind("[::1]:0").await.unwrap();
        let e = tx6
            .send(Datagram::new(
                vec![0u8; 65_528],
                rx6.local_address().clone(),
            ))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::DatagramTooLarge {
                    size: 65_528,
                    limit: 65_527
                }
            ),
            "{e:?}"
        );
        assert!(nothing_arrives(&rx6, 200).await);
        assert_eq!(e.io_kind(), std::io::ErrorKind::InvalidInput);
    }));
}

#[test]
fn icmp_port_unreachable_is_typed_and_socket_stays_usable() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        // A port with nothing bound: bind, note it, close.
        let port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let remote: SocketAddress = format!("127.0.0.1:{port}").parse().unwrap();
        let c = a_socket(&sel)
            .udp()
            .connect(remote.clone(), None)
            .await
            .unwrap();
        assert_eq!(c.remote_address(), &remote);
        c.send(Datagram::new(&b"anyone?"[..], remote.clone()))
            .await
            .unwrap();
        let e = asock::time::timeout(Duration::from_secs(3), c.receive())
            .await
            .expect("the refusal should arrive")
            .unwrap_err();
        assert!(
            matches!(&e, Error::ConnectionRefused { addr, .. } if addr == &remote),
            "{e:?}"
        );
        assert_eq!(e.io_kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(!c.is_closed());

        // Now something listens there: the same socket works.
        let server = a_socket(&sel).udp().bind(remote.clone()).await.unwrap();
        spawn_echo(&sel, server);
        c.send(Datagram::new(&b"now?"[..], remote.clone()))
            .await
            .unwrap();
        let d = c.receive().await.unwrap();
        assert_eq!(&d.packet[..], b"now?");
        assert_eq!(d.address, remote);
    }));
}

#[test]
fn connected_socket_refuses_other_destinations() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let a = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let other = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let local: SocketAddress = "127.0.0.1:0".parse().unwrap();
        let c = a_socket(&sel)
            .udp()
            .connect(a.local_address().clone(), Some(local))
            .await
            .unwrap();
        let e = c
            .send(Datagram::new(&b"x"[..], other.local_address().clone()))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::WrongDestination { .. }), "{e:?}");
        let e = c
            .outgoing()
            .send(Datagram::new(&b"x"[..], other.local_address().clone()))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::WrongDestination { .. }), "{e:?}");
        assert!(nothing_arrives(&other, 100).await);
        c.send_packet(&b"to a"[..]).await.unwrap();
        let d = a.receive().await.unwrap();
        assert_eq!(&d.address, c.local_address());

        // A connected socket ignores datagrams from anyone but its peer.
        other
            .send(Datagram::new(&b"stranger"[..], c.local_address().clone()))
            .await
            .unwrap();
        a.send(Datagram::new(&b"peer"[..], c.local_address().clone()))
            .await
            .unwrap();
        assert_eq!(&c.receive().await.unwrap().packet[..], b"peer");
    }));
}

#[test]
fn broadcast_needs_the_option() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let s = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        assert!(!s.broadcast());
        // The limited broadcast address is refused before any syscall.
        let e = s
            .send(Datagram::new(
                &b"x"[..],
                SocketAddr::from((Ipv4Addr::BROADCAST, 9)),
            ))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::BroadcastNotEnabled { .. }), "{e:?}");
        // Loopback's directed broadcast address: the kernel refuses (EACCES), same typed error.
        let rx = a_socket(&sel)
            .udp()
            .bind("127.255.255.255:0")
            .await
            .unwrap();
        let port = rx.local_address().port().unwrap();
        let bcast = SocketAddress::from(SocketAddr::from(([127, 255, 255, 255], port)));
        let e = s
            .send(Datagram::new(&b"x"[..], bcast.clone()))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::BroadcastNotEnabled { .. }), "{e:?}");
        assert_eq!(e.io_kind(), std::io::ErrorKind::PermissionDenied);

        // With the option the same send goes through, on loopback only.
        let b = a_socket(&sel)
            .udp()
            .broadcast(true)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        assert!(b.broadcast());
        b.send(Datagram::new(&b"all"[..], bcast.clone()))
            .await
            .unwrap();
        assert_eq!(&rx.receive().await.unwrap().packet[..], b"all");
        s.set_broadcast(true).unwrap();
        s.send(Datagram::new(&b"now"[..], bcast)).await.unwrap();
        assert_eq!(&rx.receive().await.unwrap().packet[..], b"now");
    }));
}

/// UDP counters from /proc/net/snmp: drops the kernel counted (receive-buffer overflows, other
/// input errors, send-buffer failures).
fn kernel_udp_drops() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    if lines.len() < 2 {
        return 0;
    }
    let names: Vec<&str> = lines[0].split_whitespace().collect();
    let values: Vec<&str> = lines[1].split_whitespace().collect();
    let get = |name: &str| -> u64 {
        names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| values.get(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    get("RcvbufErrors") + get("SndbufErrors") + get("MemErrors")
}

#[test]
fn fifty_senders_thousand_datagrams_each() {
    const SENDERS: u32 = 50;
    const EACH: u32 = 1_000;
    const WINDOW: u32 = 8;
    let sel = selector();
    let drops_before = kernel_udp_drops();
    let (received, strays) = sel.run_blocking(within(120, async {
        let echo = spawn_echo(
            &sel,
            a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap(),
        );
        let mut tasks = Vec::new();
        for id in 0..SENDERS {
            let sel2 = sel.clone();
            let echo = echo.clone();
            tasks.push(sel.launch(async move {
                let c = a_socket(&sel2)
                    .udp()
                    .connect(echo.clone(), None)
                    .await
                    .unwrap();
                let mut seen = HashSet::new();
                let mut strays = 0u32;
                let mut seq = 0;
                while seq < EACH {
                    let end = (seq + WINDOW).min(EACH);
                    for s in seq..end {
                        let mut p = id.to_be_bytes().to_vec();
                        p.extend_from_slice(&s.to_be_bytes());
                        p.extend_from_slice(&[0xAB; 24]);
                        c.send(Datagram::new(p, echo.clone())).await.unwrap();
                    }
                    // Collect this window's replies; a lost datagram costs at most 300 ms.
                    let want = end - seq;
                    let mut got = 0;
                    while got < want {
                        match asock::time::timeout(Duration::from_millis(300), c.receive()).await {
                            Ok(Ok(d)) => {
                                let rid = u32::from_be_bytes(d.packet[0..4].try_into().unwrap());
                                let rseq = u32::from_be_bytes(d.packet[4..8].try_into().unwrap());
                                if rid != id || !seen.insert(rseq) {
                                    strays += 1;
                                }
                                if rseq >= seq && rseq < end {
                                    got += 1;
                                }
                            }
                            Ok(Err(e)) => panic!("sender {id}: {e}"),
                            Err(_) => break,
                        }
                    }
                    seq = end;
                }
                (seen.len() as u32, strays)
            }));
        }
        let mut received = 0;
        let mut strays = 0;
        for t in tasks {
            let (r, s) = t.await.unwrap();
            received += r;
            strays += s;
        }
        (received, strays)
    }));
    let drops = kernel_udp_drops() - drops_before;
    let total = SENDERS * EACH;
    let missing = u64::from(total - received);
    eprintln!("replies {received}/{total}, missing {missing}, kernel-counted drops {drops}");
    assert_eq!(strays, 0, "a reply reached the wrong sender, or came twice");
    assert!(
        missing <= drops,
        "{missing} datagrams missing but the kernel counted only {drops} drops"
    );
}

#[test]
fn incoming_stream_and_outgoing_from_many_tasks() {
    let sel = selector();
    sel.run_blocking(within(20, async {
        let rx = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let tx = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let to = rx.local_address().clone();
        let out = tx.outgoing();
        let mut tasks = Vec::new();
        for t in 0..8u8 {
            let out = out.clone();
            let to = to.clone();
            tasks.push(sel.launch(async move {
                for i in 0..25u8 {
                    out.send(Datagram::new(vec![t, i], to.clone())).await?;
                }
                out.flush().await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(out.queued(), 0);
        let mut incoming = rx.incoming();
        let mut seen = HashSet::new();
        while seen.len() < 200 {
            let d = incoming.next().await.unwrap().unwrap();
            assert_eq!(&d.address, tx.local_address());
            assert!(seen.insert((d.packet[0], d.packet[1])));
        }
        // Closing ends the stream.
        rx.close();
        assert!(rx.is_closed());
        rx.await_closed().await;
        assert!(incoming.next().await.is_none());
        assert!(matches!(rx.receive().await, Err(Error::Closed(_))));
        // A sender of a closed socket fails.
        tx.close();
        assert!(matches!(
            out.send(Datagram::new(&b"x"[..], to)).await,
            Err(Error::Closed(_))
        ));
    }));
}

#[test]
fn many_tasks_receive_from_one_socket() {
    let sel = selector();
    sel.run_blocking(within(20, async {
        let rx = std::sync::Arc::new(a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap());
        let to = rx.local_address().clone();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let rx = rx.clone();
            tasks.push(sel.launch(async move {
                let mut n = 0;
                while let Ok(d) = rx.receive().await {
                    if d.packet.is_empty() {
                        break;
                    }
                    n += 1;
                }
                n
            }));
        }
        asock::time::sleep(Duration::from_millis(50)).await;
        let tx = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        for i in 0..100u32 {
            tx.send(Datagram::new(i.to_be_bytes().to_vec(), to.clone()))
                .await
                .unwrap();
            if i % 10 == 0 {
                asock::time::sleep(Duration::from_millis(2)).await;
            }
        }
        for _ in 0..4 {
            tx.send(Datagram::new(Bytes::new(), to.clone()))
                .await
                .unwrap();
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, 100);
    }));
}

#[test]
fn socket_timeout_on_receive() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let s = a_socket(&sel)
            .udp()
            .socket_timeout(Duration::from_millis(100))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        assert_eq!(s.socket_timeout(), Some(Duration::from_millis(100)));
        let t = Instant::now();
        assert!(matches!(s.receive().await, Err(Error::Timeout)));
        assert!(t.elapsed() >= Duration::from_millis(90));
        let mut inc = s.incoming();
        assert!(matches!(inc.next().await, Some(Err(Error::Timeout))));
        // Still usable afterwards.
        let c = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        c.send(Datagram::new(&b"late"[..], s.local_address().clone()))
            .await
            .unwrap();
        assert_eq!(&s.receive().await.unwrap().packet[..], b"late");
        s.set_socket_timeout(None);
        assert_eq!(s.socket_timeout(), None);
    }));
}

#[test]
fn options_are_applied() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let s = a_socket(&sel)
            .udp()
            .ttl(17)
            .type_of_service(0x10)
            .send_buffer_size(64 * 1024)
            .receive_buffer_size(64 * 1024)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        assert_eq!(s.ttl().unwrap(), 17);
        // Linux doubles what is set for its own bookkeeping.
        assert!(s.send_buffer_size().unwrap() >= 64 * 1024);
        assert!(s.receive_buffer_size().unwrap() >= 64 * 1024);
        s.set_ttl(3).unwrap();
        assert_eq!(s.ttl().unwrap(), 3);
        s.set_type_of_service(0x08).unwrap();
        let s6 = a_socket(&sel).udp().ttl(9).bind("[::1]:0").await.unwrap();
        assert_eq!(s6.ttl().unwrap(), 9);
        s6.set_type_of_service(0x20).unwrap();

        // reuse_address is off for UDP by default: a second bind on the port fails.
        let port = s.local_address().port().unwrap();
        let e = a_socket(&sel)
            .udp()
            .bind(("127.0.0.1", port))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::AddressInUse { .. }), "{e:?}");
        // reuse_port lets two sockets share a port.
        let a = a_socket(&sel)
            .udp()
            .reuse_port(true)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let port = a.local_address().port().unwrap();
        let b = a_socket(&sel)
            .udp()
            .reuse_port(true)
            .bind(("127.0.0.1", port))
            .await
            .unwrap();
        assert_eq!(b.local_address().port(), Some(port));
        let r = a_socket(&sel)
            .udp()
            .reuse_address(true)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        drop(r);
    }));
}

#[test]
fn multicast_on_loopback() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let group = Ipv4Addr::new(239, 255, 42, 99);
        let lo = Ipv4Addr::LOCALHOST;
        // Bound to the group address itself, so nothing listens beyond loopback.
        let rx = a_socket(&sel)
            .udp()
            .reuse_address(true)
            .bind(SocketAddr::from((group, 0)))
            .await
            .unwrap();
        let port = rx.local_address().port().unwrap();
        rx.join_multicast_v4(group, lo).unwrap();
        let tx = a_socket(&sel)
            .udp()
            .multicast_interface_v4(lo)
            .multicast_loop(true)
            .multicast_ttl(0)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        tx.set_multicast_ttl(0).unwrap();
        tx.set_multicast_loop(true).unwrap();
        let to = SocketAddress::from(SocketAddr::from((group, port)));
        tx.send(Datagram::new(&b"to the group"[..], to.clone()))
            .await
            .unwrap();
        let d = rx.receive().await.unwrap();
        assert_eq!(&d.packet[..], b"to the group");
        assert_eq!(&d.address, tx.local_address());
        rx.leave_multicast_v4(group, lo).unwrap();
        tx.send(Datagram::new(&b"after leave"[..], to))
            .await
            .unwrap();
        assert!(nothing_arrives(&rx, 200).await);

        // IPv6: join and leave a link-local group on loopback (index 1).
        let rx6 = a_socket(&sel).udp().bind("[::1]:0").await.unwrap();
        let g6: std::net::Ipv6Addr = "ff02::4242".parse().unwrap();
        match rx6.join_multicast_v6(g6, 1) {
            Ok(()) => rx6.leave_multicast_v6(g6, 1).unwrap(),
            // Loopback without the MULTICAST flag: the typed OS error, not a panic.
            Err(e) => assert!(matches!(e, Error::Io { .. }), "{e:?}"),
        }
        rx6.set_multicast_loop(true).unwrap();
        rx6.set_multicast_ttl(1).unwrap();
    }));
}

#[test]
fn datagram_constructor_and_limits() {
    let v4: SocketAddress = "127.0.0.1:1".parse().unwrap();
    let v6: SocketAddress = "[::1]:1".parse().unwrap();
    let mapped: SocketAddress = "[::ffff:127.0.0.1]:1".parse().unwrap();
    let unix: SocketAddress = "unix:/tmp/x.sock".parse().unwrap();
    assert_eq!(Datagram::max_payload(&v4), 65_507);
    assert_eq!(Datagram::max_payload(&v6), 65_527);
    assert_eq!(Datagram::max_payload(&mapped), 65_507);
    assert_eq!(Datagram::max_payload(&unix), 65_536);
    let d = Datagram::new("text", v4.clone());
    assert_eq!(&d.packet[..], b"text");
    assert_eq!(d.address, v4);
}

#[test]
fn addresses_parse_and_display() {
    for s in [
        "127.0.0.1:2323",
        "[::1]:2323",
        "unix:echo.sock",
        "unix:/tmp/dir/echo.sock",
        "unix:@abstract-name",
    ] {
        let a: SocketAddress = s.parse().unwrap();
        assert_eq!(a.to_string(), s);
    }
    let a: SocketAddress = "127.0.0.1:2323".parse().unwrap();
    assert_eq!(a.port(), Some(2323));
    assert_eq!(a.as_inet(), Some("127.0.0.1:2323".parse().unwrap()));
    let a: SocketAddress = "[::1]:2323".parse().unwrap();
    assert_eq!(a.port(), Some(2323));
    let u: SocketAddress = "unix:echo.sock".parse().unwrap();
    assert_eq!(u.port(), None);
    assert_eq!(u.as_unix(), Some(std::path::Path::new("echo.sock")));
    for bad in [
        "",
        "unix:",
        "127.0.0.1",
        "::1:80",
        "[::1]",
        "1.2.3.4:99999",
        "host",
    ] {
        assert!(
            matches!(bad.parse::<SocketAddress>(), Err(Error::InvalidAddress(_))),
            "{bad:?} parsed"
        );
    }
}

// ----- independent peers -----

/// A python3 UDP echo peer on 127.0.0.1; its port is its first stdout line.
struct PyEcho(std::process::Child, u16);

impl PyEcho {
    fn start() -> PyEcho {
        let code = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(20)
print(s.getsockname()[1], flush=True)
while True:
    try:
        data, addr = s.recvfrom(70000)
    except socket.timeout:
        break
    if data == b"quit":
        break
    s.sendto(data, addr)
"#;
        let mut child = Command::new("python3")
            .args(["-c", code])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap();
        PyEcho(child, port)
    }
}

impl Drop for PyEcho {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn python_peer_echoes_asock_datagrams() {
    assert!(
        have("python3"),
        "{} is needed; .ci/run installs it",
        "python3"
    );
    let py = PyEcho::start();
    let sel = selector();
    sel.run_blocking(within(20, async {
        let remote: SocketAddress = format!("127.0.0.1:{}", py.1).parse().unwrap();
        let c = a_socket(&sel)
            .udp()
            .connect(remote.clone(), None)
            .await
            .unwrap();
        for payload in [
            Bytes::from_static(b"hello python"),
            Bytes::new(),
            pattern(Datagram::MAX_IPV4_PAYLOAD, 3),
        ] {
            c.send(Datagram::new(payload.clone(), remote.clone()))
                .await
                .unwrap();
            let d = c.receive().await.unwrap();
            assert!(d.packet == payload);
            assert_eq!(d.address, remote);
        }
        let out = c.outgoing();
        for i in 0..100u32 {
            out.send(Datagram::new(i.to_be_bytes().to_vec(), remote.clone()))
                .await
                .unwrap();
        }
        out.flush().await.unwrap();
        let mut got = HashSet::new();
        while got.len() < 100 {
            match asock::time::timeout(Duration::from_secs(2), c.receive()).await {
                Ok(Ok(d)) => {
                    got.insert(u32::from_be_bytes(d.packet[..4].try_into().unwrap()));
                }
                _ => break,
            }
        }
        assert_eq!(got.len(), 100);
        c.send_packet(&b"quit"[..]).await.unwrap();
    }));
}

#[test]
fn python_client_against_asock_echo() {
    assert!(
        have("python3"),
        "{} is needed; .ci/run installs it",
        "python3"
    );
    let sel = selector();
    let echo = sel.run_blocking(async {
        spawn_echo(
            &sel,
            a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap(),
        )
    });
    let code = format!(
        r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for p in [b"one", b"", b"x" * 65507, bytes(range(256))]:
    s.sendto(p, ("127.0.0.1", {port}))
    data, addr = s.recvfrom(70000)
    assert data == p, (len(data), len(p))
    assert addr == ("127.0.0.1", {port}), addr
print("ok")
"#,
        port = echo.port().unwrap()
    );
    let out = Command::new("python3")
        .args(["-c", &code])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn socat_client_against_asock_echo() {
    assert!(have("socat"), "{} is needed; .ci/run installs it", "socat");
    let sel = selector();
    let echo = sel.run_blocking(async {
        spawn_echo(
            &sel,
            a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap(),
        )
    });
    let mut child = Command::new("socat")
        .args([
            "-T2",
            "-t1",
            "-",
            &format!("UDP4:127.0.0.1:{}", echo.port().unwrap()),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("socat");
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello from socat\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from socat\n");
}

#[test]
fn socat_peer_sends_to_asock_and_receives_reply() {
    assert!(have("socat"), "{} is needed; .ci/run installs it", "socat");
    let sel = selector();
    sel.run_blocking(within(20, async {
        let s = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let port = s.local_address().port().unwrap();
        let child = std::thread::spawn(move || {
            let mut child = Command::new("socat")
                .args(["-T3", "-", &format!("UDP4:127.0.0.1:{port}")])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("socat");
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"ping from socat").unwrap();
            stdin.flush().unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let mut buf = [0u8; 64];
            let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let d = s.receive().await.unwrap();
        assert_eq!(&d.packet[..], b"ping from socat");
        s.send(Datagram::new(&b"pong from asock"[..], d.address))
            .await
            .unwrap();
        let reply = blocking_join(child).await;
        assert_eq!(reply, "pong from asock");
    }));
}

async fn blocking_join<T: Send + 'static>(h: std::thread::JoinHandle<T>) -> T {
    loop {
        if h.is_finished() {
            return h.join().unwrap();
        }
        asock::time::sleep(Duration::from_millis(10)).await;
    }
}
