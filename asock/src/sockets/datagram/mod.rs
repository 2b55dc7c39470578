//! Datagram sockets: UDP, and Unix-domain datagrams for [`SocketAddress::Unix`] addresses.
//!
//! `a_socket(&selector).udp()` gives a [`UdpSocketBuilder`]; `bind` makes a
//! [`BoundDatagramSocket`] (talks to anyone), `connect` a [`ConnectedDatagramSocket`] (talks to
//! one peer). Both send and receive whole [`Datagram`]s, never truncated.
//!
//! On Linux the hot path is batched: a receive takes up to [`UdpSocketBuilder::datagram_batch`]
//! datagrams from the kernel with one `recvmmsg` and hands them out one by one, and datagrams
//! queued through [`BoundDatagramSocket::outgoing`] leave in batches with one `sendmmsg`.
//!
//! One concept per file:
//! - `builder.rs`: [`UdpSocketBuilder`], options, bind and connect;
//! - `shared.rs`: the state every handle of one socket shares (its [`IoSource`], addresses,
//!   timeout), the checks before a send and the error mapping;
//! - `batch.rs`: [`DatagramBatch`], one kernel buffer of datagrams from one sender, whole;
//! - `receive.rs`: the receive batch: datagrams taken from the kernel and not yet handed out;
//! - `outgoing.rs`: [`DatagramSender`] and the task that sends what it queues;
//! - `queue.rs`: the bounded queue between them (many senders, one receiver);
//! - `incoming.rs`: the [`Incoming`] stream;
//! - `socket.rs`: the socket types.
//!
//! Waiting is the registration layer's (`selector::registration`): any number of tasks may
//! receive, send and flush on one socket at once, closing the socket or its manager ends every
//! wait with [`Error::Closed`](crate::Error::Closed), and the cooperative budget (`coop`)
//! bounds how many datagrams one task takes per turn.
//!
//! [`IoSource`]: crate::selector::source::IoSource

mod batch;
mod builder;
mod incoming;
mod outgoing;
mod queue;
mod receive;
mod shared;
mod socket;

use std::net::SocketAddr;

use bytes::Bytes;

use crate::address::SocketAddress;
use crate::sys::SLOT;

pub use batch::{BatchIter, BatchPackets, DatagramBatch};
pub use builder::UdpSocketBuilder;
pub use incoming::Incoming;
pub use outgoing::DatagramSender;
pub use socket::{BoundDatagramSocket, ConnectedDatagramSocket};

/// One datagram: a packet and the address it came from or goes to (Ktor's `Datagram`).
///
/// ```
/// use asock::{Datagram, SocketAddress};
/// let d = Datagram::new(&b"hello"[..], "127.0.0.1:9".parse::<SocketAddress>()?);
/// assert_eq!(&d.packet[..], b"hello");
/// assert_eq!(d.address.port(), Some(9));
/// # Ok::<(), asock::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The payload; may be empty.
    pub packet: Bytes,
    /// Where it came from (received) or where it goes (sent).
    pub address: SocketAddress,
}

impl Datagram {
    /// The largest UDP payload over IPv4: 65,535 − 20 (IP header) − 8 (UDP header).
    pub const MAX_IPV4_PAYLOAD: usize = 65_507;
    /// The largest UDP payload over IPv6 without jumbograms: 65,535 − 8 (UDP header).
    pub const MAX_IPV6_PAYLOAD: usize = 65_527;
    /// The largest Unix-domain datagram asock sends or receives (64 KiB).
    pub const MAX_UNIX_PAYLOAD: usize = SLOT;

    /// A datagram of `packet` for (or from) `address`.
    pub fn new(packet: impl Into<Bytes>, address: impl Into<SocketAddress>) -> Datagram {
        Datagram {
            packet: packet.into(),
            address: address.into(),
        }
    }

    /// The largest payload that can be sent to `address`: 65,507 bytes for IPv4 (and
    /// IPv4-mapped IPv6), 65,527 for IPv6, 65,536 for Unix-domain sockets.
    pub fn max_payload(address: &SocketAddress) -> usize {
        match address {
            SocketAddress::Inet(SocketAddr::V4(_)) => Self::MAX_IPV4_PAYLOAD,
            SocketAddress::Inet(SocketAddr::V6(a)) if a.ip().to_ipv4_mapped().is_some() => {
                Self::MAX_IPV4_PAYLOAD
            }
            SocketAddress::Inet(SocketAddr::V6(_)) => Self::MAX_IPV6_PAYLOAD,
            SocketAddress::Unix(_) => Self::MAX_UNIX_PAYLOAD,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{a_socket, SelectorManager};

    use super::BoundDatagramSocket;

    /// The `EIO` hook is process-wide: the tests that arm it take turns.
    static HOOK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Runs `send` with a server and a client on 127.0.0.1 while the next GSO send fails with
    /// `EIO`; afterwards GSO must be off for the client, which `send` hands back.
    ///
    /// `send` runs as a task on the manager's one loop, so the client's sender task runs only
    /// when `send` waits: datagrams queued one by one before a flush go out as one run, whatever
    /// the timing (from another thread the loop could drain each as it came, and never try GSO).
    fn with_one_eio<F>(send: impl FnOnce(BoundDatagramSocket, BoundDatagramSocket) -> F)
    where
        F: std::future::Future<Output = BoundDatagramSocket> + Send + 'static,
    {
        let _turn = HOOK.lock().unwrap_or_else(|e| e.into_inner());
        let sel = SelectorManager::builder().threads(1).build().unwrap();
        sel.run_blocking(async {
            let server = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
            let client = a_socket(&sel).udp().bind("127.0.0.1:0").await.unwrap();
            assert!(
                client.gso_enabled(),
                "this test needs a kernel with UDP GSO"
            );
            crate::sys::test_hooks::fail_gso_sends(1);
            let client = sel.launch(send(server, client)).await.unwrap();
            assert!(!client.gso_enabled(), "GSO is off for this socket");
        });
    }

    #[test]
    fn a_gso_send_failing_with_eio_turns_gso_off_and_falls_back() {
        with_one_eio(|server, client| async move {
            let buf = bytes::Bytes::from(vec![3u8; 1000 * 10]);
            let n = client
                .send_batch(server.local_address().clone(), 1000, buf)
                .await
                .unwrap();
            assert_eq!(n, 10, "the batch still went out, the plain way");
            for _ in 0..10 {
                assert_eq!(server.receive().await.unwrap().packet.len(), 1000);
            }
            client
        });
    }

    #[test]
    fn an_outgoing_gso_send_failing_with_eio_turns_gso_off_and_resends() {
        with_one_eio(|server, client| async move {
            let out = client.outgoing();
            for i in 0..20u8 {
                let d = crate::Datagram::new(vec![i; 500], server.local_address().clone());
                out.send(d).await.unwrap();
            }
            out.flush().await.unwrap();
            for i in 0..20u8 {
                assert_eq!(&server.receive().await.unwrap().packet[..], &[i; 500][..]);
            }
            client
        });
    }

    #[test]
    fn a_queued_gso_run_failing_with_eio_goes_out_as_datagrams() {
        with_one_eio(|server, client| async move {
            let out = client.outgoing();
            let buf: Vec<u8> = (0..30u8).flat_map(|i| [i; 400]).collect();
            out.send_batch(server.local_address().clone(), 400, buf.into())
                .await
                .unwrap();
            out.flush().await.unwrap();
            for i in 0..30u8 {
                assert_eq!(&server.receive().await.unwrap().packet[..], &[i; 400][..]);
            }
            client
        });
    }
}
