//! UDP segmentation and receive offload (GSO/GRO) on loopback, IPv4 and IPv6: `send_batch`
//! with GSO on and off, GRO splitting (with a short last segment), connected and Unix sockets.

use asock_test_support::{selector_with, within};

use asock::{a_socket, Error, SelectorManager, SocketAddress};
use bytes::Bytes;

/// 40 segments of 1,200 bytes, the last 500: each segment's bytes name its index.
fn batch() -> (Bytes, Vec<usize>) {
    let mut sizes = vec![1200; 39];
    sizes.push(500);
    let mut buf = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        buf.extend(std::iter::repeat_n(i as u8, *n));
    }
    (buf.into(), sizes)
}

/// A server (1 MiB receive buffer) and a client (GSO as asked) on 127.0.0.1.
async fn pair(
    sel: &SelectorManager,
    gso: bool,
) -> (asock::BoundDatagramSocket, asock::BoundDatagramSocket) {
    let server = a_socket(sel)
        .udp()
        .receive_buffer_size(1 << 20)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = a_socket(sel)
        .udp()
        .gso(gso)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    (server, client)
}

fn check(got: &[asock::Datagram], sizes: &[usize], from: &SocketAddress) {
    assert_eq!(got.len(), sizes.len());
    for (i, (d, n)) in got.iter().zip(sizes).enumerate() {
        assert_eq!(d.packet.len(), *n, "datagram {i}");
        assert!(
            d.packet.iter().all(|&b| b == i as u8),
            "datagram {i} intact"
        );
        assert_eq!(&d.address, from);
    }
}

fn round_trip(host: &str, gso: bool, gro: bool) {
    let sel = selector_with(1);
    sel.run_blocking(within(10, async {
        let server = a_socket(&sel).udp().gro(gro).bind(host).await.unwrap();
        let client = a_socket(&sel).udp().gso(gso).bind(host).await.unwrap();
        if !gso {
            assert!(!client.gso_enabled());
        }
        let (buf, sizes) = batch();
        let n = client
            .send_batch(server.local_address().clone(), 1200, buf)
            .await
            .unwrap();
        assert_eq!(n, 40);
        let mut got = Vec::new();
        while got.len() < sizes.len() {
            got.push(server.receive().await.unwrap());
        }
        check(&got, &sizes, client.local_address());
    }));
}

#[test]
fn gso_is_detected_on_linux() {
    let sel = selector_with(1);
    sel.run_blocking(async {
        let s = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        // The CI and development machines run Linux 5+.
        assert_eq!(s.gso_enabled(), cfg!(target_os = "linux"));
    });
}

#[test]
fn send_batch_with_gso_and_gro_ipv4_and_ipv6() {
    round_trip("127.0.0.1:0", true, true);
    round_trip("[::1]:0", true, true);
}

#[test]
fn send_batch_with_gso_without_gro() {
    round_trip("127.0.0.1:0", true, false);
    round_trip("[::1]:0", true, false);
}

#[test]
fn send_batch_without_gso() {
    round_trip("127.0.0.1:0", false, true);
    round_trip("[::1]:0", false, false);
}

#[test]
fn send_batch_past_the_segment_limit_sends_several_gso_messages() {
    // 150 segments of 100 bytes: three GSO sends (64 + 64 + 22).
    let sel = selector_with(1);
    sel.run_blocking(within(10, async {
        let (server, client) = pair(&sel, true).await;
        let buf: Vec<u8> = (0..150u32).flat_map(|i| [i as u8; 100]).collect();
        let n = client
            .send_batch(server.local_address().clone(), 100, buf.into())
            .await
            .unwrap();
        assert_eq!(n, 150);
        for i in 0..150u32 {
            let d = server.receive().await.unwrap();
            assert_eq!(&d.packet[..], &[i as u8; 100][..]);
        }
    }));
}

#[test]
fn send_batch_on_connected_and_unix_sockets() {
    let sel = selector_with(1);
    sel.run_blocking(within(10, async {
        let server = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let client = a_socket(&sel)
            .udp()
            .connect(server.local_address().clone(), None)
            .await
            .unwrap();
        let (buf, sizes) = batch();
        let to = client.remote_address().clone();
        assert_eq!(client.send_batch(to, 1200, buf.clone()).await.unwrap(), 40);
        let mut got = Vec::new();
        while got.len() < sizes.len() {
            got.push(server.receive().await.unwrap());
        }
        check(&got, &sizes, client.local_address());
        // Another destination is refused on a connected socket.
        let other = "127.0.0.1:9".parse::<SocketAddress>().unwrap();
        assert!(matches!(
            client.send_batch(other, 1200, buf.clone()).await,
            Err(Error::WrongDestination { .. })
        ));

        let dir = tempfile::tempdir().unwrap();
        let path = SocketAddress::Unix(dir.path().join("s.sock"));
        let userver = a_socket(&sel).udp().bind(path.clone()).await.unwrap();
        let uclient = a_socket(&sel)
            .udp()
            .bind(SocketAddress::Unix(dir.path().join("c.sock")))
            .await
            .unwrap();
        assert!(!uclient.gso_enabled(), "no GSO for Unix datagrams");
        let from = uclient.local_address().clone();
        // A Unix datagram queue holds few datagrams (net.unix.max_dgram_qlen): send while the
        // server receives.
        let sender = sel.launch(async move { uclient.send_batch(path, 1200, buf).await });
        let mut got = Vec::new();
        while got.len() < sizes.len() {
            got.push(userver.receive().await.unwrap());
        }
        check(&got, &sizes, &from);
        assert_eq!(sender.await.unwrap().unwrap(), 40);
    }));
}

#[test]
fn send_batch_refuses_bad_segment_sizes_before_any_syscall() {
    let sel = selector_with(1);
    sel.run_blocking(async {
        let s = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let to = s.local_address().clone();
        for seg in [0, 65_508] {
            assert!(matches!(
                s.send_batch(to.clone(), seg, Bytes::from(vec![0; 70_000]))
                    .await,
                Err(Error::DatagramTooLarge { .. })
            ));
        }
    });
}

#[test]
fn outgoing_sends_runs_of_equal_datagrams_whole_and_in_order() {
    // Queued in one go, 40 datagrams to one peer (the last shorter) can leave as one GSO send,
    // then two other sizes and a second peer break the runs; every datagram arrives intact.
    let sel = selector_with(1);
    sel.run_blocking(within(10, async {
        let a = a_socket(&sel)
            .udp()
            .receive_buffer_size(1 << 20)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let b = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let client = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let out = client.outgoing();
        let (buf, sizes) = batch();
        let mut at = 0;
        for n in &sizes {
            let d = asock::Datagram::new(buf.slice(at..at + n), a.local_address().clone());
            out.send(d).await.unwrap();
            at += n;
        }
        out.send(asock::Datagram::new(
            vec![200u8; 10],
            b.local_address().clone(),
        ))
        .await
        .unwrap();
        out.send(asock::Datagram::new(
            vec![201u8; 3000],
            a.local_address().clone(),
        ))
        .await
        .unwrap();
        out.flush().await.unwrap();
        let mut got = Vec::new();
        while got.len() < sizes.len() {
            got.push(a.receive().await.unwrap());
        }
        check(&got, &sizes, client.local_address());
        assert_eq!(&a.receive().await.unwrap().packet[..], &[201u8; 3000][..]);
        assert_eq!(&b.receive().await.unwrap().packet[..], &[200u8; 10][..]);
    }));
}

/// Sends the 40-segment batch to a fresh receiver (GRO as asked) and collects what
/// `receive_batch` hands out until all 40 datagrams are in: the batches and the datagrams.
fn receive_batches(host: &str, gro: bool) -> (Vec<asock::DatagramBatch>, SocketAddress) {
    let sel = selector_with(1);
    sel.run_blocking(within(10, async {
        let server = a_socket(&sel).udp().gro(gro).bind(host).await.unwrap();
        let client = a_socket(&sel).udp().bind(host).await.unwrap();
        let (buf, sizes) = batch();
        client
            .send_batch(server.local_address().clone(), 1200, buf)
            .await
            .unwrap();
        let mut batches = Vec::new();
        let mut got = Vec::new();
        while got.len() < sizes.len() {
            let b = server.receive_batch().await.unwrap();
            assert_eq!(b.packets().len(), b.len());
            got.extend(b.clone());
            batches.push(b);
        }
        check(&got, &sizes, client.local_address());
        (batches, client.local_address().clone())
    }))
}

#[test]
fn receive_batch_hands_out_a_coalesced_buffer_whole_ipv4_and_ipv6() {
    for host in ["127.0.0.1:0", "[::1]:0"] {
        let (batches, from) = receive_batches(host, true);
        // On loopback a GSO send reaches a GRO socket as the one buffer it left as.
        assert_eq!(batches.len(), 1, "{host}: one buffer of 40 datagrams");
        let b = &batches[0];
        assert_eq!(
            (b.len(), b.segment_size(), b.buffer().len()),
            (40, 1200, 39 * 1200 + 500)
        );
        assert_eq!(b.address(), &from);
    }
}

#[test]
fn receive_batch_without_gro_is_one_datagram_per_batch() {
    for host in ["127.0.0.1:0", "[::1]:0"] {
        let (batches, _) = receive_batches(host, false);
        assert_eq!(batches.len(), 40, "{host}");
        for b in &batches {
            assert_eq!((b.len(), b.segment_size()), (1, b.buffer().len()));
        }
    }
}

#[test]
fn receive_and_receive_batch_share_one_buffer_in_order() {
    // `receive` takes the first two datagrams of a coalesced buffer, `receive_batch` the rest
    // whole; then an empty datagram is a batch of one empty packet.
    let sel = selector_with(1);
    sel.run_blocking(within(10, async {
        let (server, client) = pair(&sel, true).await;
        let (buf, sizes) = batch();
        let to = server.local_address().clone();
        client.send_batch(to.clone(), 1200, buf).await.unwrap();
        let mut got = vec![
            server.receive().await.unwrap(),
            server.receive().await.unwrap(),
        ];
        let rest = server.receive_batch().await.unwrap();
        assert_eq!(rest.len(), 38, "the rest of the one buffer");
        got.extend(rest);
        check(&got, &sizes, client.local_address());

        client
            .send(asock::Datagram::new(Bytes::new(), to))
            .await
            .unwrap();
        let empty = server.receive_batch().await.unwrap();
        assert_eq!((empty.len(), empty.segment_size()), (1, 0));
        assert_eq!(empty.packets().collect::<Vec<_>>(), [Bytes::new()]);
    }));
}

#[test]
fn large_receives_reuse_buffers_only_once_every_slice_is_dropped() {
    // Coalesced buffers are handed out in the receive buffers the kernel wrote, which the socket
    // takes back once dropped: a batch still held must never be overwritten by a later
    // receive, and one dropped is reused with the new bytes.
    let sel = selector_with(1);
    sel.run_blocking(within(10, async {
        let (server, client) = pair(&sel, true).await;
        let to = server.local_address().clone();
        let mut held = Vec::new();
        for round in 0..6u8 {
            let buf = Bytes::from(vec![round; 1200 * 40]);
            client.send_batch(to.clone(), 1200, buf).await.unwrap();
            let mut got = 0;
            while got < 40 {
                let b = server.receive_batch().await.unwrap();
                assert!(b.buffer().iter().all(|&x| x == round), "round {round}");
                got += b.len();
                // Keep every other round's batches alive, drop the rest.
                if round % 2 == 0 {
                    held.push((round, b));
                }
            }
        }
        for (round, b) in &held {
            assert!(
                b.buffer().iter().all(|x| x == round),
                "held round {round} intact"
            );
        }
    }));
}

#[test]
fn outgoing_sends_runs_to_many_peers_together_and_intact() {
    // Runs of equal datagrams to four peers, interleaved with single ones, queued in one go:
    // they leave as GSO runs and plain datagrams in shared `sendmmsg` calls; each peer gets its
    // own, intact and in order.
    let sel = selector_with(1);
    sel.run_blocking(within(10, async {
        let mut peers = Vec::new();
        for _ in 0..4 {
            peers.push(
                a_socket(&sel)
                    .udp()
                    .receive_buffer_size(1 << 20)
                    .bind("127.0.0.1:0")
                    .await
                    .unwrap(),
            );
        }
        let client = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let out = client.outgoing();
        for round in 0..3u8 {
            for (p, peer) in peers.iter().enumerate() {
                let to = peer.local_address().clone();
                for i in 0..10u8 {
                    let d = asock::Datagram::new(vec![round * 40 + i; 300 + p], to.clone());
                    out.send(d).await.unwrap();
                }
                out.send(asock::Datagram::new(vec![255u8; 7], to))
                    .await
                    .unwrap();
            }
        }
        out.flush().await.unwrap();
        for (p, peer) in peers.iter().enumerate() {
            for round in 0..3u8 {
                for i in 0..10u8 {
                    let d = peer.receive().await.unwrap();
                    assert_eq!(
                        &d.packet[..],
                        &vec![round * 40 + i; 300 + p][..],
                        "peer {p}"
                    );
                }
                assert_eq!(&peer.receive().await.unwrap().packet[..], &[255u8; 7][..]);
            }
        }
    }));
}

#[test]
fn outgoing_send_batch_queues_runs_whole_with_and_without_gso() {
    // A queued batch (40 segments, the last shorter) between single datagrams: everything
    // arrives intact and in order, with GSO (the run leaves whole) and without (as datagrams).
    for gso in [true, false] {
        let sel = selector_with(1);
        sel.run_blocking(within(10, async {
            let (server, client) = pair(&sel, gso).await;
            let to = server.local_address().clone();
            let out = client.outgoing();
            let (buf, sizes) = batch();
            out.send(asock::Datagram::new(vec![250u8; 9], to.clone()))
                .await
                .unwrap();
            out.send_batch(to.clone(), 1200, buf).await.unwrap();
            out.send(asock::Datagram::new(vec![251u8; 9], to.clone()))
                .await
                .unwrap();
            out.flush().await.unwrap();
            assert_eq!(out.queued(), 0);
            assert_eq!(&server.receive().await.unwrap().packet[..], &[250u8; 9][..]);
            let mut got = Vec::new();
            while got.len() < sizes.len() {
                got.push(server.receive().await.unwrap());
            }
            check(&got, &sizes, client.local_address());
            assert_eq!(&server.receive().await.unwrap().packet[..], &[251u8; 9][..]);
            assert!(matches!(
                out.send_batch(to, 0, Bytes::from_static(b"x")).await,
                Err(Error::DatagramTooLarge { .. })
            ));
        }));
    }
}
