//! UDP segmentation and receive offload (GSO/GRO) on loopback, IPv4 and IPv6: `send_batch`
//! with GSO on and off, GRO splitting (with a short last segment), connected and Unix sockets.

use asock_test_support::{selector_with, within};

use asock::{a_socket, Error, SocketAddress};
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
        let server = a_socket(&sel)
            .udp()
            .receive_buffer_size(1 << 20)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let client = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
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
