//! Datagram socket lifecycle on real sockets (127.0.0.1 only): many receivers on one socket,
//! `socket_timeout` counting only time spent waiting, and closing a socket or its manager
//! ending every receive, incoming stream and outgoing queue at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asock::{a_socket, Datagram, Error};
use asock_test_support::{selector, within};
use futures::StreamExt;

#[test]
fn several_receivers_on_one_socket_are_all_served() {
    // One receiver takes a datagram and then works for 5 s; the others must take the rest in
    // the meantime, whether they arrived in its batch or later.
    const N: usize = 30;
    let sel = selector();
    sel.run_blocking(within(20, async {
        let server = Arc::new(a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap());
        let to = server.local_address().clone();
        let got = Arc::new(AtomicUsize::new(0));
        let busy = {
            let (server, got) = (server.clone(), got.clone());
            sel.launch(async move {
                while server.receive().await.is_ok() {
                    got.fetch_add(1, Ordering::SeqCst);
                    asock::time::sleep(Duration::from_secs(5)).await;
                }
            })
        };
        let quick: Vec<_> = (0..3)
            .map(|_| {
                let (server, got) = (server.clone(), got.clone());
                sel.launch(async move {
                    while server.receive().await.is_ok() {
                        got.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        // Let every receiver wait first.
        asock::time::sleep(Duration::from_millis(200)).await;
        let client = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let out = client.outgoing();
        let start = Instant::now();
        for round in 0..3 {
            for i in 0..N / 3 {
                out.send(Datagram::new(vec![round as u8, i as u8], to.clone()))
                    .await
                    .unwrap();
            }
            out.flush().await.unwrap();
            asock::time::sleep(Duration::from_millis(50)).await;
        }
        while got.load(Ordering::SeqCst) < N && start.elapsed() < Duration::from_secs(3) {
            asock::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            got.load(Ordering::SeqCst),
            N,
            "every datagram was handed out within 3 s while one receiver was busy for 5 s"
        );
        server.close();
        for t in quick {
            within(2, t).await.unwrap();
        }
        busy.cancel();
    }));
}

#[test]
fn incoming_timeout_counts_only_time_spent_waiting() {
    // socket_timeout 2 s; the consumer works 3 s after the first datagram and the second comes
    // 0.5 s after it is back: a full period of waiting has not passed, so no timeout.
    let sel = selector();
    sel.run_blocking(within(20, async {
        let server = a_socket(&sel)
            .udp()
            .socket_timeout(Duration::from_secs(2))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let to = server.local_address().clone();
        let client = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let sender = sel.launch(async move {
            client
                .send(Datagram::new(&b"one"[..], to.clone()))
                .await
                .unwrap();
            asock::time::sleep(Duration::from_millis(3_500)).await;
            client.send(Datagram::new(&b"two"[..], to)).await.unwrap();
            client
        });
        let mut incoming = server.incoming();
        let first = incoming.next().await.unwrap().unwrap();
        assert_eq!(&first.packet[..], b"one");
        // Work for 3 s between items (longer than the timeout).
        std::thread::sleep(Duration::from_secs(3));
        let waited = Instant::now();
        let second = incoming.next().await.unwrap();
        let second = second.expect("the stream waited 0.5 s of its 2 s: no timeout");
        assert_eq!(&second.packet[..], b"two");
        assert!(waited.elapsed() < Duration::from_millis(1_800));
        // A real quiet period still times out, once, and the stream goes on.
        let quiet = Instant::now();
        assert!(matches!(incoming.next().await, Some(Err(Error::Timeout))));
        assert!(quiet.elapsed() >= Duration::from_millis(1_900));
        let client = sender.await.unwrap();
        client
            .send(Datagram::new(&b"three"[..], server.local_address().clone()))
            .await
            .unwrap();
        assert_eq!(
            &incoming.next().await.unwrap().unwrap().packet[..],
            b"three"
        );
    }));
}

#[test]
fn receive_timeout_counts_only_time_spent_waiting() {
    let sel = selector();
    sel.run_blocking(within(20, async {
        let server = a_socket(&sel)
            .udp()
            .socket_timeout(Duration::from_secs(2))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let to = server.local_address().clone();
        let client = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
        let sender = sel.launch(async move {
            client
                .send(Datagram::new(&b"one"[..], to.clone()))
                .await
                .unwrap();
            asock::time::sleep(Duration::from_millis(3_500)).await;
            client.send(Datagram::new(&b"two"[..], to)).await.unwrap();
        });
        assert_eq!(&server.receive().await.unwrap().packet[..], b"one");
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(&server.receive().await.unwrap().packet[..], b"two");
        sender.await.unwrap();
    }));
}

#[test]
fn closing_the_socket_ends_receive_incoming_and_outgoing_at_once() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let socket = Arc::new(a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap());
        let receivers: Vec<_> = (0..3)
            .map(|_| {
                let s = socket.clone();
                sel.launch(async move { s.receive().await })
            })
            .collect();
        let stream = {
            let s = socket.clone();
            sel.launch(async move {
                let mut incoming = s.incoming();
                incoming.next().await.map(|r| r.map(|_| ()))
            })
        };
        let closed = {
            let s = socket.clone();
            sel.launch(async move { s.await_closed().await })
        };
        let out = socket.outgoing();
        asock::time::sleep(Duration::from_millis(100)).await;
        let start = Instant::now();
        socket.close();
        for r in receivers {
            assert!(matches!(r.await.unwrap(), Err(Error::Closed(_))));
        }
        assert!(stream.await.unwrap().is_none(), "the incoming stream ends");
        closed.await.unwrap();
        assert!(start.elapsed() < Duration::from_secs(1), "promptly");
        assert!(socket.is_closed());
        let to = socket.local_address().clone();
        assert!(matches!(
            out.send(Datagram::new(&b"x"[..], to.clone())).await,
            Err(Error::Closed(_))
        ));
        assert!(matches!(
            socket.send(Datagram::new(&b"x"[..], to)).await,
            Err(Error::Closed(_))
        ));
        assert!(matches!(socket.receive().await, Err(Error::Closed(_))));
        // The port is free at once, while the closed socket value is still alive.
        let again = a_socket(&sel)
            .udp()
            .bind(socket.local_address().clone())
            .await;
        assert!(again.is_ok(), "port released by close: {:?}", again.err());
    }));
}

#[test]
fn closing_the_manager_ends_receive_incoming_and_flush_at_once() {
    // The socket belongs to `owner`; its waits run on tasks of `other`, so they survive the
    // close and must see it.
    let other = selector();
    other.run_blocking(within(10, async {
        let owner = selector();
        let socket = Arc::new(a_socket(&owner).udp().bind("127.0.0.1:0").await.unwrap());
        let peer = a_socket(&other).udp().bind("127.0.0.1:0").await.unwrap();
        let receive = {
            let s = socket.clone();
            other.launch(async move { s.receive().await })
        };
        let stream = {
            let s = socket.clone();
            other.launch(async move { s.incoming().next().await.map(|r| r.map(|_| ())) })
        };
        // A queue that cannot drain: the peer never reads and the sends are many.
        let out = socket.outgoing();
        asock::time::sleep(Duration::from_millis(100)).await;
        let start = Instant::now();
        owner.close();
        assert!(matches!(receive.await.unwrap(), Err(Error::Closed(_))));
        assert!(stream.await.unwrap().is_none(), "the incoming stream ends");
        let to = peer.local_address().clone();
        let sent = out.send(Datagram::new(&b"x"[..], to.clone())).await;
        assert!(matches!(sent, Err(Error::Closed(_))), "{sent:?}");
        assert!(matches!(out.flush().await, Ok(()) | Err(Error::Closed(_))));
        assert!(matches!(socket.receive().await, Err(Error::Closed(_))));
        assert!(start.elapsed() < Duration::from_secs(1), "promptly");
        assert!(socket.is_closed());
        // New sockets on a closed manager are refused at once.
        assert!(matches!(
            a_socket(&owner).udp().bind("127.0.0.1:0").await,
            Err(Error::Closed(_))
        ));
        assert!(matches!(
            a_socket(&owner).udp().connect(to, None).await,
            Err(Error::Closed(_))
        ));
    }));
}
