//! [`UdpSocketBuilder`]: datagram socket options, `bind` and `connect`.

use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket as RawSocket, Type};

use super::shared::Shared;
use super::socket::{BoundDatagramSocket, ConnectedDatagramSocket};
use crate::address::{resolve, SocketAddress, ToSocketAddress};
use crate::error::{Error, Result};
use crate::sockets::unix::PathGuard;
use crate::sockets::{from_sockaddr, option_setters, os, to_sockaddr, Kind, SocketOptions};
use crate::sys;
use crate::SelectorManager;

/// Default number of datagrams queued by [`DatagramSender`](super::DatagramSender)s before
/// `send` waits for room.
const DEFAULT_OUTGOING_CAPACITY: usize = 1024;
/// Default receive batch on platforms with `recvmmsg`.
const DEFAULT_BATCH: usize = 16;

/// Builds datagram sockets: `a_socket(&selector).udp()`.
///
/// Unlike listeners, UDP sockets start with `reuse_address` off (with it on, a second socket
/// could silently take over a port in use); set it here when you want it.
#[derive(Debug, Clone)]
pub struct UdpSocketBuilder {
    manager: SelectorManager,
    options: SocketOptions,
    batch: usize,
    outgoing_capacity: usize,
    gso: bool,
    gro: bool,
    multicast_if_v4: Option<Ipv4Addr>,
    multicast_if_v6: Option<u32>,
}

impl UdpSocketBuilder {
    pub(crate) fn new(manager: SelectorManager, mut options: SocketOptions) -> Self {
        options.reuse_address = false;
        UdpSocketBuilder {
            manager,
            options,
            batch: if sys::HAS_BATCH { DEFAULT_BATCH } else { 1 },
            outgoing_capacity: DEFAULT_OUTGOING_CAPACITY,
            gso: true,
            gro: true,
            multicast_if_v4: None,
            multicast_if_v6: None,
        }
    }

    option_setters!();

    /// `SO_BROADCAST`: allows sending to broadcast addresses. Without it such a send fails with
    /// [`Error::BroadcastNotEnabled`].
    pub fn broadcast(mut self, on: bool) -> Self {
        self.options.broadcast = on;
        self
    }

    /// `IP_MULTICAST_LOOP` / `IPV6_MULTICAST_LOOP`: whether multicast sent by this socket is
    /// also delivered to the sending host (the OS default is on).
    pub fn multicast_loop(mut self, on: bool) -> Self {
        self.options.multicast_loop = Some(on);
        self
    }

    /// `IP_MULTICAST_TTL` / `IPV6_MULTICAST_HOPS` (the OS default is 1: the local network only).
    pub fn multicast_ttl(mut self, ttl: u32) -> Self {
        self.options.multicast_ttl = Some(ttl);
        self
    }

    /// `IP_MULTICAST_IF`: the local IPv4 address whose interface sends multicast.
    pub fn multicast_interface_v4(mut self, interface: Ipv4Addr) -> Self {
        self.multicast_if_v4 = Some(interface);
        self
    }

    /// `IPV6_MULTICAST_IF`: the index of the interface that sends IPv6 multicast.
    pub fn multicast_interface_v6(mut self, index: u32) -> Self {
        self.multicast_if_v6 = Some(index);
        self
    }

    /// For a Unix-domain address: when a socket file exists at the path and nothing receives on
    /// it, remove it and bind (default off: the bind fails with [`Error::AddressInUse`]). A file
    /// that is not a socket is never removed.
    pub fn replace_stale(mut self, on: bool) -> Self {
        self.options.replace_stale = on;
        self
    }

    /// How many datagrams one receive system call may take from the kernel (Linux `recvmmsg`;
    /// 1 to 64, default 16; always 1 where the OS has no batched call). Each slot is a 64 KiB
    /// buffer, of which only the pages datagrams touch become resident.
    pub fn datagram_batch(mut self, n: usize) -> Self {
        self.batch = if sys::HAS_BATCH {
            n.clamp(1, sys::MAX_BATCH)
        } else {
            1
        };
        self
    }

    /// How many datagrams [`DatagramSender`](super::DatagramSender)s may queue before `send` waits (default 1,024).
    pub fn outgoing_capacity(mut self, n: usize) -> Self {
        self.outgoing_capacity = n.max(1);
        self
    }

    /// UDP generic segmentation offload for
    /// [`send_batch`](super::BoundDatagramSocket::send_batch): many equal-size datagrams to one
    /// destination leave as one large send that the kernel splits (Linux 4.18+; default on,
    /// used where the kernel supports it, turned off for a socket whose device cannot offload).
    pub fn gso(mut self, on: bool) -> Self {
        self.gso = on;
        self
    }

    /// UDP generic receive offload (Linux 5.0+; default on where supported): the kernel may hand
    /// over many datagrams of one flow in one buffer, which a receive splits back into whole
    /// [`Datagram`](super::Datagram)s, slices of that one buffer.
    pub fn gro(mut self, on: bool) -> Self {
        self.gro = on;
        self
    }

    /// Binds a socket to `address` (port 0 picks a free port; a Unix path makes a Unix datagram
    /// socket): Ktor's `udp().bind(address)`.
    ///
    /// ```no_run
    /// # async fn demo(selector: asock::SelectorManager) -> asock::Result<()> {
    /// let socket = asock::a_socket(&selector).udp().bind("127.0.0.1:0").await?;
    /// loop {
    ///     let datagram = socket.receive().await?; // echo it back to its sender
    ///     socket.send(datagram).await?;
    /// }
    /// # }
    /// ```
    pub async fn bind(self, address: impl ToSocketAddress) -> Result<BoundDatagramSocket> {
        self.check_open()?;
        let addr = first_address(address).await?;
        let raw = self.new_socket(&addr)?;
        let guard = self.bind_raw(&raw, &addr)?;
        let shared = self.finish(raw, None, guard)?;
        Ok(BoundDatagramSocket::new(shared))
    }

    /// Makes a socket that talks to `remote` only (Ktor's `udp().connect(remote, local)`),
    /// bound to `local` when given, else to a free port (Unix, on Linux: a fresh abstract name
    /// so the peer can reply).
    ///
    /// ```no_run
    /// # async fn demo(selector: asock::SelectorManager) -> asock::Result<()> {
    /// use asock::Datagram;
    /// let socket = asock::a_socket(&selector).udp().connect("127.0.0.1:2323", None).await?;
    /// let to = socket.remote_address().clone();
    /// socket.send(Datagram::new(&b"ping"[..], to)).await?;
    /// let reply = socket.receive().await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(
        self,
        remote: impl ToSocketAddress,
        local: Option<SocketAddress>,
    ) -> Result<ConnectedDatagramSocket> {
        self.check_open()?;
        let remote = first_address(remote).await?;
        let raw = self.new_socket(&remote)?;
        let guard = match &local {
            Some(l) => self.bind_raw(&raw, l)?,
            None => {
                if remote.as_unix().is_some() {
                    sys::autobind_unix(&raw).map_err(|e| Error::io("bind", e))?;
                }
                None
            }
        };
        let sa = to_sockaddr(&remote).map_err(|e| Error::io("connect", e))?;
        if let Err(e) = raw.connect(&sa) {
            return Err(os::connect_error(&remote, e));
        }
        let shared = self.finish(raw, Some(remote.clone()), guard)?;
        Ok(ConnectedDatagramSocket::new(shared, remote))
    }

    /// Fails with [`Error::Closed`] once the manager is closed: no socket is made for it.
    fn check_open(&self) -> Result<()> {
        if self.manager.is_closed() {
            return Err(Error::Closed("selector manager"));
        }
        Ok(())
    }

    fn new_socket(&self, addr: &SocketAddress) -> Result<RawSocket> {
        let raw = os::new_socket(addr, Type::DGRAM, Kind::Udp, &self.options)?;
        let e = |source| Error::io("set socket option", source);
        match (addr, self.multicast_if_v4, self.multicast_if_v6) {
            (SocketAddress::Inet(SocketAddr::V4(_)), Some(i), _) => {
                raw.set_multicast_if_v4(&i).map_err(e)?
            }
            (SocketAddress::Inet(SocketAddr::V6(_)), _, Some(i)) => {
                raw.set_multicast_if_v6(i).map_err(e)?
            }
            _ => {}
        }
        Ok(raw)
    }

    fn bind_raw(&self, raw: &RawSocket, addr: &SocketAddress) -> Result<Option<PathGuard>> {
        os::bind(raw, addr, Type::DGRAM, self.options.replace_stale)
    }

    fn finish(
        &self,
        raw: RawSocket,
        remote: Option<SocketAddress>,
        path: Option<PathGuard>,
    ) -> Result<Shared> {
        let udp = matches!(raw.domain(), Ok(d) if d != Domain::UNIX);
        if udp && self.gro {
            // Where the kernel lacks GRO, receives simply stay one datagram each.
            sys::set_gro(&raw, true).map_err(|e| Error::io("set socket option", e))?;
        }
        let gso = udp && self.gso && sys::gso_supported(&raw);
        let local = raw
            .local_addr()
            .map(|a| from_sockaddr(&a))
            .map_err(|e| Error::io("local address", e))?;
        Ok(Shared::new(
            raw,
            self.manager.handle(),
            local,
            remote,
            &self.options,
            self.batch,
            self.outgoing_capacity,
            gso,
            path,
        ))
    }
}

async fn first_address(address: impl ToSocketAddress) -> Result<SocketAddress> {
    resolve(address.to_target()?)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::InvalidAddress("no address".into()))
}
