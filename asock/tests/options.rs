//! Every option on every builder takes effect (read back with getsockopt) or is refused with
//! `Error::UnsupportedOption`; none is silently ignored.

use std::time::Duration;

use asock::{a_socket, Error, SocketAddress};
use asock_test_support::selector;
use socket2::SockRef;

#[test]
fn tcp_connect_applies_every_option() {
    let sel = selector();
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let c = a_socket(&sel)
            .tcp()
            .no_delay(false)
            .keep_alive(true)
            .reuse_address(true)
            .reuse_port(true)
            .type_of_service(0x10)
            .send_buffer_size(64 * 1024)
            .receive_buffer_size(64 * 1024)
            .linger(Duration::from_secs(3))
            .ttl(33)
            .socket_timeout(Duration::from_secs(7))
            .connect(server.local_address().clone())
            .await
            .unwrap();
        let s = SockRef::from(&c);
        assert!(!s.nodelay().unwrap());
        assert!(s.keepalive().unwrap());
        assert!(s.reuse_address().unwrap(), "SO_REUSEADDR on a client");
        assert!(s.reuse_port().unwrap(), "SO_REUSEPORT on a client");
        assert_eq!(s.tos().unwrap(), 0x10);
        // Linux doubles the buffer sizes it is given.
        assert!(s.send_buffer_size().unwrap() >= 64 * 1024);
        assert!(s.recv_buffer_size().unwrap() >= 64 * 1024);
        assert_eq!(s.linger().unwrap(), Some(Duration::from_secs(3)));
        assert_eq!(s.ttl().unwrap(), 33);
        assert_eq!(c.socket_timeout(), Some(Duration::from_secs(7)));
    });
}

#[test]
fn tcp_listener_and_accepted_sockets_apply_their_options() {
    let sel = selector();
    sel.run_blocking(async {
        let server = a_socket(&sel)
            .tcp()
            .reuse_address(false)
            .reuse_port(true)
            .receive_buffer_size(128 * 1024)
            .type_of_service(0x08)
            .ttl(44)
            .keep_alive(true)
            .no_delay(true)
            .linger(Duration::ZERO)
            .socket_timeout(Duration::from_secs(9))
            .backlog(17)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let l = SockRef::from(&server);
        assert!(!l.reuse_address().unwrap());
        assert!(l.reuse_port().unwrap());
        assert!(l.recv_buffer_size().unwrap() >= 128 * 1024);
        assert_eq!(l.ttl().unwrap(), 44);
        let _client = std::net::TcpStream::connect(server.local_address().to_string()).unwrap();
        let s = server.accept().await.unwrap();
        let a = SockRef::from(&s);
        assert!(a.nodelay().unwrap());
        assert!(a.keepalive().unwrap());
        assert_eq!(a.linger().unwrap(), Some(Duration::ZERO));
        assert_eq!(a.tos().unwrap(), 0x08);
        assert_eq!(s.socket_timeout(), Some(Duration::from_secs(9)));
    });
}

#[test]
fn ipv6_type_of_service_is_the_traffic_class() {
    let sel = selector();
    sel.run_blocking(async {
        let Ok(server) = a_socket(&sel).tcp().bind("[::1]:0").await else {
            panic!("::1 must be available for the tests");
        };
        let c = a_socket(&sel)
            .tcp()
            .type_of_service(0x20)
            .connect(server.local_address().clone())
            .await
            .unwrap();
        assert_eq!(SockRef::from(&c).tclass_v6().unwrap(), 0x20);
    });
}

#[test]
fn udp_applies_its_options_and_refuses_stream_only_ones() {
    let sel = selector();
    sel.run_blocking(async {
        let u = a_socket(&sel)
            .udp()
            .reuse_address(true)
            .reuse_port(true)
            .broadcast(true)
            .ttl(12)
            .type_of_service(0x04)
            .send_buffer_size(32 * 1024)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let s = SockRef::from(&u);
        assert!(s.reuse_address().unwrap());
        assert!(s.reuse_port().unwrap());
        assert!(s.broadcast().unwrap());
        assert_eq!(s.ttl().unwrap(), 12);
        assert_eq!(s.tos().unwrap(), 0x04);
        assert!(s.send_buffer_size().unwrap() >= 32 * 1024);

        for (name, r) in [
            (
                "keep_alive",
                a_socket(&sel)
                    .udp()
                    .keep_alive(true)
                    .bind("127.0.0.1:0")
                    .await,
            ),
            (
                "linger",
                a_socket(&sel)
                    .udp()
                    .linger(Duration::from_secs(1))
                    .bind("127.0.0.1:0")
                    .await,
            ),
        ] {
            match r {
                Err(Error::UnsupportedOption { option, socket }) => {
                    assert_eq!(option, name);
                    assert_eq!(socket, "UDP");
                }
                other => panic!("{name} on UDP must be refused: {other:?}"),
            }
        }
    });
}

#[test]
fn unix_sockets_refuse_ip_options() {
    let sel = selector();
    let dir = tempfile::tempdir().unwrap();
    sel.run_blocking(async {
        let path = SocketAddress::Unix(dir.path().join("o.sock"));
        let r = a_socket(&sel)
            .tcp()
            .type_of_service(0x10)
            .bind(path.clone())
            .await;
        assert!(
            matches!(
                r,
                Err(Error::UnsupportedOption {
                    option: "type_of_service",
                    ..
                })
            ),
            "{r:?}"
        );
        let r = a_socket(&sel).tcp().ttl(3).bind(path.clone()).await;
        assert!(matches!(
            r,
            Err(Error::UnsupportedOption { option: "ttl", .. })
        ));
        let e = Error::UnsupportedOption {
            option: "ttl",
            socket: "Unix-domain",
        };
        assert_eq!(
            e.to_string(),
            "option `ttl` does not apply to Unix-domain sockets"
        );
        // The buffer sizes do apply.
        let server = a_socket(&sel)
            .tcp()
            .receive_buffer_size(64 * 1024)
            .bind(path)
            .await
            .unwrap();
        assert!(SockRef::from(&server).recv_buffer_size().unwrap() >= 64 * 1024);
    });
}
