//! The socket types: [`BoundDatagramSocket`] (talks to anyone) and
//! [`ConnectedDatagramSocket`] (talks to one peer), thin wrappers over the shared state.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::incoming::Incoming;
use super::outgoing::{DatagramSender, Outbox};
use super::shared::Shared;
#[allow(unused_imports)] // doc links
use super::UdpSocketBuilder;
use super::{Datagram, DatagramBatch};
use crate::address::SocketAddress;
use crate::error::{Error, Result};
use crate::sockets::os;

/// The methods both datagram socket types share.
macro_rules! datagram_common {
    () => {
        /// The local address, with the real port when bound to port 0.
        pub fn local_address(&self) -> &SocketAddress {
            &self.shared.local
        }

        /// Waits for the next datagram, whole (Ktor's `receive()`).
        ///
        /// On Linux one system call takes up to a batch of datagrams and the rest are handed out
        /// by the next calls. Fails with [`Error::Timeout`] after the socket timeout, with
        /// [`Error::ConnectionRefused`] when an ICMP "port unreachable" came back for an earlier
        /// datagram of a connected socket (the socket stays usable), with
        /// [`Error::DatagramTruncated`] for a datagram too large for a 64 KiB buffer (only a
        /// Unix peer can send one; it is discarded and the socket stays usable), and with
        /// [`Error::Closed`] once closed. Any number of tasks may receive at once; each datagram
        /// goes to one of them. Cancel-safe: a datagram is never lost by dropping the future.
        pub async fn receive(&self) -> Result<Datagram> {
            self.shared.receive().await
        }

        /// Waits for the next datagrams from one sender and hands them out whole: what one
        /// kernel buffer held, as a [`DatagramBatch`] (buffer, segment size, sender). With GRO
        /// on (Linux, see [`UdpSocketBuilder::gro`]) that is up to 64 datagrams of one flow the
        /// kernel coalesced; otherwise, or for a datagram that came alone, one datagram. When
        /// [`receive`](Self::receive) already took some datagrams of a buffer, the batch is the
        /// rest of it. Fails like `receive`, is cancel-safe like it, and mixes with it freely:
        /// each datagram goes to one caller, in order.
        ///
        /// The batch's datagrams are slices of one buffer: passing it on whole, for instance
        /// back to its sender with one [`send_batch`](Self::send_batch), costs no copy per
        /// datagram.
        pub async fn receive_batch(&self) -> Result<DatagramBatch> {
            self.shared.receive_batch().await
        }

        /// Sends one datagram at once (one system call), waiting only while the socket buffer is
        /// full.
        ///
        /// Before any system call it fails with [`Error::DatagramTooLarge`] past
        /// [`Datagram::max_payload`], with [`Error::BroadcastNotEnabled`] for the IPv4 broadcast
        /// address without [`broadcast`](UdpSocketBuilder::broadcast) (the kernel's refusal of
        /// another broadcast address gives the same error), and on a connected socket with
        /// [`Error::WrongDestination`] for any other address than the peer's.
        pub async fn send(&self, datagram: Datagram) -> Result<()> {
            self.shared.send(datagram).await
        }

        /// Sends `buffer` to `to` as consecutive datagrams of `segment_size` bytes each (the last
        /// may be shorter), and returns how many. Where the kernel offers UDP generic
        /// segmentation offload (Linux, see [`UdpSocketBuilder::gso`]) up to 64 of them leave in
        /// one system call as one large packet the kernel splits; elsewhere they leave in
        /// batches of plain sends (`sendmmsg`). The datagrams are slices of `buffer`, never
        /// copies. Fails before any system call with [`Error::DatagramTooLarge`] when
        /// `segment_size` is 0 or past [`Datagram::max_payload`], and like
        /// [`send`](Self::send) for the destination; a failure part-way reports the error (the
        /// datagrams before it were sent).
        ///
        /// ```no_run
        /// # async fn demo(selector: asock::SelectorManager) -> asock::Result<()> {
        /// let socket = asock::a_socket(&selector).udp().bind("127.0.0.1:0").await?;
        /// let to: asock::SocketAddress = "127.0.0.1:4433".parse()?;
        /// let chunk = bytes::Bytes::from(vec![7u8; 1200 * 40]); // 40 datagrams of 1,200 bytes
        /// assert_eq!(socket.send_batch(to, 1200, chunk).await?, 40);
        /// # Ok(()) }
        /// ```
        pub async fn send_batch(
            &self,
            to: SocketAddress,
            segment_size: usize,
            buffer: Bytes,
        ) -> Result<usize> {
            self.shared.send_segments(to, segment_size, buffer).await
        }

        /// Whether [`send_batch`](Self::send_batch) uses UDP segmentation offload: supported
        /// by the kernel, not turned off with [`UdpSocketBuilder::gso`], and no device refused
        /// it (`EIO`) since.
        pub fn gso_enabled(&self) -> bool {
            self.shared.gso.load(std::sync::atomic::Ordering::Relaxed)
        }

        /// The datagrams this socket receives, as a stream (Ktor's `incoming`).
        pub fn incoming(&self) -> Incoming {
            Incoming::new(Arc::clone(&self.shared))
        }

        /// A cloneable sender that queues datagrams from any number of tasks and sends them in
        /// batches (Ktor's `outgoing`); see [`DatagramSender`].
        pub fn outgoing(&self) -> DatagramSender {
            self.outbox.sender(&self.shared)
        }

        /// Closes the socket at once: pending and later operations (receives, sends, the
        /// incoming stream, the outgoing queue) fail or end with [`Error::Closed`], queued
        /// outgoing datagrams are dropped, a Unix socket file is removed, and the socket is
        /// released (its port freed) as soon as no system call on it is in flight, even while
        /// this value, its senders or its incoming streams are still alive. Closing the
        /// socket's [`SelectorManager`](crate::SelectorManager) closes it the same way.
        pub fn close(&self) {
            self.shared.close();
            self.outbox.close();
        }

        /// Whether the socket was closed, by [`close`](Self::close) or by its manager.
        pub fn is_closed(&self) -> bool {
            self.shared.io.is_closed()
        }

        /// Waits until the socket is closed.
        pub async fn await_closed(&self) {
            std::future::poll_fn(|cx| self.shared.io.poll_closed(cx)).await
        }

        /// The idle timeout of `send` and `receive` ([`Error::Timeout`]).
        pub fn socket_timeout(&self) -> Option<Duration> {
            self.shared.timeout()
        }

        /// Sets the idle timeout of `send` and `receive`; `None` turns it off.
        pub fn set_socket_timeout(&self, timeout: Option<Duration>) {
            self.shared.set_timeout(timeout);
        }

        /// Sets `SO_BROADCAST`.
        pub fn set_broadcast(&self, on: bool) -> Result<()> {
            self.shared.set_broadcast(on)
        }

        /// Reads `SO_BROADCAST`.
        pub fn broadcast(&self) -> bool {
            self.shared.broadcast()
        }

        /// Sets `IP_TTL` (IPv4) or the unicast hop limit (IPv6).
        pub fn set_ttl(&self, ttl: u32) -> Result<()> {
            os::set_ttl(self.shared.raw(), self.shared.is_ipv6(), ttl)
                .map_err(|e| Error::io("set ttl", e))
        }

        /// Reads `IP_TTL` (IPv4) or the unicast hop limit (IPv6).
        pub fn ttl(&self) -> Result<u32> {
            os::ttl(self.shared.raw(), self.shared.is_ipv6()).map_err(|e| Error::io("get ttl", e))
        }

        /// Sets `IP_TOS` (IPv4) or `IPV6_TCLASS` (IPv6).
        pub fn set_type_of_service(&self, tos: u32) -> Result<()> {
            os::set_type_of_service(self.shared.raw(), self.shared.is_ipv6(), tos)
                .map_err(|e| Error::io("set type_of_service", e))
        }

        /// Sets `SO_SNDBUF`.
        pub fn set_send_buffer_size(&self, bytes: usize) -> Result<()> {
            self.shared
                .raw()
                .set_send_buffer_size(bytes)
                .map_err(|e| Error::io("set send_buffer_size", e))
        }

        /// Reads `SO_SNDBUF` (Linux reports double the value set, its bookkeeping included).
        pub fn send_buffer_size(&self) -> Result<usize> {
            self.shared
                .raw()
                .send_buffer_size()
                .map_err(|e| Error::io("get send_buffer_size", e))
        }

        /// Sets `SO_RCVBUF`.
        pub fn set_receive_buffer_size(&self, bytes: usize) -> Result<()> {
            self.shared
                .raw()
                .set_recv_buffer_size(bytes)
                .map_err(|e| Error::io("set receive_buffer_size", e))
        }

        /// Reads `SO_RCVBUF` (Linux reports double the value set, its bookkeeping included).
        pub fn receive_buffer_size(&self) -> Result<usize> {
            self.shared
                .raw()
                .recv_buffer_size()
                .map_err(|e| Error::io("get receive_buffer_size", e))
        }
    };
}

/// A datagram socket bound to a local address that talks to anyone: Ktor's
/// `BoundDatagramSocket`. Made by [`UdpSocketBuilder::bind`].
///
/// ```
/// # fn main() -> asock::Result<()> {
/// use asock::{a_socket, Datagram, SelectorManager};
/// let selector = SelectorManager::builder().threads(1).build()?;
/// selector.run_blocking(async {
///     let a = a_socket(&selector).udp().bind("127.0.0.1:0").await?;
///     let b = a_socket(&selector).udp().bind("127.0.0.1:0").await?;
///     a.send(Datagram::new(&b"ping"[..], b.local_address().clone())).await?;
///     let got = b.receive().await?;
///     assert_eq!(&got.packet[..], b"ping");
///     assert_eq!(&got.address, a.local_address());
///     Ok(())
/// })
/// # }
/// ```
pub struct BoundDatagramSocket {
    shared: Arc<Shared>,
    outbox: Outbox,
}

impl std::fmt::Debug for BoundDatagramSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundDatagramSocket")
            .field("local", &self.shared.local)
            .finish()
    }
}

impl BoundDatagramSocket {
    pub(super) fn new(shared: Shared) -> Self {
        BoundDatagramSocket {
            shared: Arc::new(shared),
            outbox: Outbox::default(),
        }
    }

    datagram_common!();

    /// Joins IPv4 multicast `group` on the interface with local address `interface`
    /// (`Ipv4Addr::UNSPECIFIED` lets the OS choose).
    pub fn join_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> Result<()> {
        self.shared
            .raw()
            .join_multicast_v4(&group, &interface)
            .map_err(|e| Error::io("join multicast group", e))
    }

    /// Leaves an IPv4 multicast group joined with [`join_multicast_v4`](Self::join_multicast_v4).
    pub fn leave_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> Result<()> {
        self.shared
            .raw()
            .leave_multicast_v4(&group, &interface)
            .map_err(|e| Error::io("leave multicast group", e))
    }

    /// Joins IPv6 multicast `group` on the interface with index `interface` (0: the OS chooses).
    pub fn join_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> Result<()> {
        self.shared
            .raw()
            .join_multicast_v6(&group, interface)
            .map_err(|e| Error::io("join multicast group", e))
    }

    /// Leaves an IPv6 multicast group joined with [`join_multicast_v6`](Self::join_multicast_v6).
    pub fn leave_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> Result<()> {
        self.shared
            .raw()
            .leave_multicast_v6(&group, interface)
            .map_err(|e| Error::io("leave multicast group", e))
    }

    /// Sets `IP_MULTICAST_LOOP` (IPv4 socket) or `IPV6_MULTICAST_LOOP` (IPv6 socket).
    pub fn set_multicast_loop(&self, on: bool) -> Result<()> {
        os::set_multicast_loop(self.shared.raw(), self.shared.is_ipv6(), on)
            .map_err(|e| Error::io("set multicast_loop", e))
    }

    /// Sets `IP_MULTICAST_TTL` (IPv4 socket) or `IPV6_MULTICAST_HOPS` (IPv6 socket).
    pub fn set_multicast_ttl(&self, ttl: u32) -> Result<()> {
        os::set_multicast_ttl(self.shared.raw(), self.shared.is_ipv6(), ttl)
            .map_err(|e| Error::io("set multicast_ttl", e))
    }

    /// Sets `IP_MULTICAST_IF`: the local IPv4 address whose interface sends multicast.
    pub fn set_multicast_interface_v4(&self, interface: Ipv4Addr) -> Result<()> {
        self.shared
            .raw()
            .set_multicast_if_v4(&interface)
            .map_err(|e| Error::io("set multicast interface", e))
    }

    /// Sets `IPV6_MULTICAST_IF`: the index of the interface that sends IPv6 multicast.
    pub fn set_multicast_interface_v6(&self, index: u32) -> Result<()> {
        self.shared
            .raw()
            .set_multicast_if_v6(index)
            .map_err(|e| Error::io("set multicast interface", e))
    }
}

/// A datagram socket that talks to one peer: Ktor's `ConnectedDatagramSocket`. Made by
/// [`UdpSocketBuilder::connect`]; it receives only that peer's datagrams, and sending to any
/// other address fails with [`Error::WrongDestination`].
pub struct ConnectedDatagramSocket {
    shared: Arc<Shared>,
    outbox: Outbox,
    remote: SocketAddress,
}

impl std::fmt::Debug for ConnectedDatagramSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectedDatagramSocket")
            .field("local", &self.shared.local)
            .field("remote", &self.shared.remote)
            .finish()
    }
}

impl ConnectedDatagramSocket {
    pub(super) fn new(shared: Shared, remote: SocketAddress) -> Self {
        ConnectedDatagramSocket {
            shared: Arc::new(shared),
            outbox: Outbox::default(),
            remote,
        }
    }

    datagram_common!();

    /// The peer's address.
    pub fn remote_address(&self) -> &SocketAddress {
        &self.remote
    }

    /// Sends `packet` to the peer: `send(Datagram::new(packet, remote_address))`.
    pub async fn send_packet(&self, packet: impl Into<Bytes>) -> Result<()> {
        let to = self.remote_address().clone();
        self.shared.send(Datagram::new(packet, to)).await
    }
}

macro_rules! fd_impls {
    ($t:ty) => {
        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.shared.raw().as_raw_fd()
            }
        }
        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.shared.raw().as_fd()
            }
        }
    };
}
fd_impls!(BoundDatagramSocket);
fd_impls!(ConnectedDatagramSocket);
