//! Datagram sockets: UDP, and Unix-domain datagrams for [`SocketAddress::Unix`] addresses.
//!
//! `a_socket(&selector).udp()` gives a [`UdpSocketBuilder`]; `bind` makes a
//! [`BoundDatagramSocket`] (talks to anyone), `connect` a [`ConnectedDatagramSocket`] (talks to
//! one peer). Both send and receive whole [`Datagram`]s, never truncated.
//!
//! On Linux the hot path is batched: a receive takes up to [`UdpSocketBuilder::datagram_batch`]
//! datagrams from the kernel with one `recvmmsg` and hands them out one by one, and datagrams
//! queued through [`BoundDatagramSocket::outgoing`] leave in batches with one `sendmmsg`.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket as RawSocket, Type};

use super::unix::{self as unix_path, PathGuard};
use super::{from_sockaddr, option_setters, to_sockaddr, Kind, SocketOptions};
use crate::address::{resolve, SocketAddress, ToSocketAddress};
use crate::error::{Error, Result};
use crate::selector::registration::{ready, Direction};
use crate::selector::source::IoSource;
use crate::sys::{self, Outgoing, Received, SLOT};
use crate::time::WaitTimer;
use crate::SelectorManager;

/// Datagrams handed out in a row by one socket before its task yields to others on the loop.
const RECEIVE_BUDGET: u32 = 64;
/// Default number of datagrams queued by [`DatagramSender`]s before `send` waits for room.
const DEFAULT_OUTGOING_CAPACITY: usize = 1024;
/// Default receive batch on platforms with `recvmmsg`.
const DEFAULT_BATCH: usize = 16;

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

    /// How many datagrams [`DatagramSender`]s may queue before `send` waits (default 1,024).
    pub fn outgoing_capacity(mut self, n: usize) -> Self {
        self.outgoing_capacity = n.max(1);
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
        let addr = first_address(address).await?;
        let raw = self.new_socket(&addr)?;
        let guard = self.bind_raw(&raw, &addr)?;
        let shared = self.finish(raw, None, guard)?;
        Ok(BoundDatagramSocket {
            shared: Handle::new(shared),
        })
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
            return Err(match e.kind() {
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => {
                    Error::ConnectionRefused {
                        addr: remote,
                        source: e,
                    }
                }
                _ => Error::io("connect", e),
            });
        }
        let shared = self.finish(raw, Some(remote.clone()), guard)?;
        Ok(ConnectedDatagramSocket {
            shared: Handle::new(shared),
            remote,
        })
    }

    fn new_socket(&self, addr: &SocketAddress) -> Result<RawSocket> {
        if self.manager.is_closed() {
            return Err(Error::Closed("selector manager"));
        }
        let (domain, kind, protocol) = match addr {
            SocketAddress::Inet(a) => (Domain::for_address(*a), Kind::Udp, Some(Protocol::UDP)),
            SocketAddress::Unix(_) => (Domain::UNIX, Kind::Unix, None),
        };
        let raw = RawSocket::new(domain, Type::DGRAM.nonblocking(), protocol)
            .map_err(|e| Error::io("create socket", e))?;
        let ipv6 = domain == Domain::IPV6;
        self.options.apply(&raw, kind, ipv6)?;
        if kind == Kind::Udp {
            let e = |source| Error::io("set socket option", source);
            if let Some(on) = self.options.multicast_loop {
                if ipv6 {
                    raw.set_multicast_loop_v6(on).map_err(e)?;
                } else {
                    raw.set_multicast_loop_v4(on).map_err(e)?;
                }
            }
            if let Some(ttl) = self.options.multicast_ttl {
                if ipv6 {
                    raw.set_multicast_hops_v6(ttl).map_err(e)?;
                } else {
                    raw.set_multicast_ttl_v4(ttl).map_err(e)?;
                }
            }
            if let (Some(i), false) = (self.multicast_if_v4, ipv6) {
                raw.set_multicast_if_v4(&i).map_err(e)?;
            }
            if let (Some(i), true) = (self.multicast_if_v6, ipv6) {
                raw.set_multicast_if_v6(i).map_err(e)?;
            }
        }
        Ok(raw)
    }

    fn bind_raw(&self, raw: &RawSocket, addr: &SocketAddress) -> Result<Option<PathGuard>> {
        if let Some(path) = unix_path::file_path(addr) {
            unix_path::prepare_bind(addr, path, Type::DGRAM, self.options.replace_stale)?;
        }
        let sa = to_sockaddr(addr).map_err(|e| Error::io("bind", e))?;
        raw.bind(&sa).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                Error::AddressInUse {
                    addr: addr.clone(),
                    source: Some(e),
                }
            } else {
                Error::io("bind", e)
            }
        })?;
        Ok(PathGuard::after_bind(addr))
    }

    fn finish(
        &self,
        raw: RawSocket,
        remote: Option<SocketAddress>,
        path: Option<PathGuard>,
    ) -> Result<Shared> {
        let local = raw
            .local_addr()
            .map(|a| from_sockaddr(&a))
            .map_err(|e| Error::io("local address", e))?;
        Ok(Shared {
            io: IoSource::new(raw, self.manager.handle(), ready::ALL),
            local,
            remote,
            broadcast: AtomicBool::new(self.options.broadcast),
            timeout_ns: AtomicU64::new(self.options.socket_timeout.map_or(0, duration_ns)),
            closed: AtomicBool::new(false),
            close_waiters: Mutex::new(Vec::new()),
            read_fan: Fan::new(),
            write_fan: Fan::new(),
            batch: self.batch,
            outgoing_capacity: self.outgoing_capacity,
            rx: Mutex::new(Rx::default()),
            tx: Mutex::new(Tx::default()),
            handles: AtomicUsize::new(0),
            path,
        })
    }
}

async fn first_address(address: impl ToSocketAddress) -> Result<SocketAddress> {
    resolve(address.to_target()?)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::InvalidAddress("no address".into()))
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // These hold queues; a panic elsewhere cannot leave them in a state that matters.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wakes every task waiting on one direction of a socket. The event loop keeps one waker per
/// direction; this one stands in for all the tasks (receivers, senders, the outgoing flusher)
/// that may wait at once.
struct Fan {
    list: Arc<FanList>,
    waker: Waker,
}

#[derive(Default)]
struct FanList(Mutex<Vec<Waker>>);

impl Wake for FanList {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let all = std::mem::take(&mut *lock(&self.0));
        for w in all {
            w.wake();
        }
    }
}

impl Fan {
    fn new() -> Fan {
        let list = Arc::new(FanList::default());
        Fan {
            waker: Waker::from(list.clone()),
            list,
        }
    }

    fn add(&self, waker: &Waker) {
        let mut l = lock(&self.list.0);
        if !l.iter().any(|w| w.will_wake(waker)) {
            l.push(waker.clone());
        }
    }
}

#[derive(Default)]
struct Rx {
    queue: VecDeque<Result<Datagram>>,
    buf: Vec<u8>,
    meta: Vec<Received>,
    streak: u32,
}

#[derive(Default)]
struct Tx {
    queue: VecDeque<Outgoing>,
    in_flight: usize,
    flusher: Option<Waker>,
    flusher_started: bool,
    flusher_exited: bool,
    room_waiters: Vec<Waker>,
    flush_waiters: Vec<Waker>,
    /// No handle that could queue more is left.
    finished: bool,
    /// A failure of a queued send, reported by the next `send` or `flush`.
    error: Option<Error>,
}

/// State shared by a datagram socket, its senders and its incoming stream.
struct Shared {
    io: IoSource<RawSocket>,
    local: SocketAddress,
    remote: Option<SocketAddress>,
    broadcast: AtomicBool,
    timeout_ns: AtomicU64,
    closed: AtomicBool,
    close_waiters: Mutex<Vec<Waker>>,
    read_fan: Fan,
    write_fan: Fan,
    batch: usize,
    outgoing_capacity: usize,
    rx: Mutex<Rx>,
    tx: Mutex<Tx>,
    /// Socket handles and senders alive; at zero the flusher drains and exits.
    handles: AtomicUsize,
    path: Option<PathGuard>,
}

impl Shared {
    fn timeout(&self) -> Option<Duration> {
        match self.timeout_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    fn raw(&self) -> &RawSocket {
        self.io.get_ref()
    }

    fn is_ipv6(&self) -> bool {
        matches!(self.local, SocketAddress::Inet(SocketAddr::V6(_)))
    }

    /// Runs `op` when `dir` is ready, letting any number of tasks wait on the direction.
    fn poll_dir<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut op: impl FnMut(&RawSocket) -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        let fan = match dir {
            Direction::Read => &self.read_fan,
            Direction::Write => &self.write_fan,
        };
        let mut fcx = Context::from_waker(&fan.waker);
        match self.io.poll_io(&mut fcx, dir, &mut op, &drained) {
            Poll::Pending => {
                fan.add(cx.waker());
                // An event may have come between the first poll and `add`: look again.
                self.io.poll_io(&mut fcx, dir, &mut op, &drained)
            }
            ready => ready,
        }
    }

    /// Checks a datagram before any system call: size, destination, broadcast.
    fn prepare(&self, d: Datagram) -> Result<(Outgoing, SocketAddress)> {
        let limit = Datagram::max_payload(&d.address);
        if d.packet.len() > limit {
            return Err(Error::DatagramTooLarge {
                size: d.packet.len(),
                limit,
            });
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed("socket"));
        }
        if let Some(remote) = &self.remote {
            if &d.address != remote {
                return Err(Error::WrongDestination {
                    to: d.address,
                    connected: remote.clone(),
                });
            }
            let out = Outgoing {
                data: d.packet,
                addr: None,
            };
            return Ok((out, d.address));
        }
        if let SocketAddress::Inet(SocketAddr::V4(a)) = &d.address {
            if a.ip().is_broadcast() && !self.broadcast.load(Ordering::Relaxed) {
                return Err(Error::BroadcastNotEnabled { addr: d.address });
            }
        }
        let sa = to_sockaddr(&d.address).map_err(|e| Error::io("send", e))?;
        let out = Outgoing {
            data: d.packet,
            addr: Some(sa),
        };
        Ok((out, d.address))
    }

    fn send_error(&self, e: io::Error, to: &SocketAddress, size: usize) -> Error {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Error::ConnectionRefused {
                addr: to.clone(),
                source: e,
            },
            Some(libc::EACCES) if to.as_inet().is_some() => {
                Error::BroadcastNotEnabled { addr: to.clone() }
            }
            Some(libc::EMSGSIZE) => Error::DatagramTooLarge {
                size,
                limit: Datagram::max_payload(to),
            },
            Some(libc::ENOENT) if to.as_unix().is_some() => Error::ConnectionRefused {
                addr: to.clone(),
                source: e,
            },
            _ => Error::io("send", e),
        }
    }

    fn receive_error(&self, e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Error::ConnectionRefused {
                addr: self.remote.clone().unwrap_or_else(|| self.local.clone()),
                source: e,
            },
            _ => Error::io("receive", e),
        }
    }

    fn poll_send_one(
        &self,
        cx: &mut Context<'_>,
        out: &Outgoing,
        to: &SocketAddress,
    ) -> Poll<Result<()>> {
        self.poll_dir(cx, Direction::Write, |s| sys::send_one(s, out), |_| false)
            .map(|r| {
                r.map(|_| ())
                    .map_err(|e| self.send_error(e, to, out.data.len()))
            })
    }

    fn poll_receive(&self, cx: &mut Context<'_>) -> Poll<Result<Datagram>> {
        if self.closed.load(Ordering::Acquire) {
            return Poll::Ready(Err(Error::Closed("socket")));
        }
        let mut guard = lock(&self.rx);
        let rx = &mut *guard;
        if !rx.queue.is_empty() {
            if rx.streak >= RECEIVE_BUDGET {
                // Let the other tasks of this loop (a flusher, other sockets) run.
                rx.streak = 0;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            rx.streak += 1;
            if let Some(d) = rx.queue.pop_front() {
                return Poll::Ready(d);
            }
        }
        if rx.buf.is_empty() {
            rx.buf = vec![0; self.batch * SLOT];
        }
        let slots = self.batch;
        let (buf, meta) = (&mut rx.buf, &mut rx.meta);
        let r = self.poll_dir(
            cx,
            Direction::Read,
            |s| {
                meta.clear();
                sys::recv_batch(s, buf, SLOT, meta)
            },
            |n| *n < slots,
        );
        match r {
            Poll::Pending => {
                rx.streak = 0;
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.receive_error(e))),
            Poll::Ready(Ok(_)) => {
                for (i, m) in rx.meta.drain(..).enumerate() {
                    let from = match &m.addr {
                        Some(a) => from_sockaddr(a),
                        None => self
                            .remote
                            .clone()
                            .unwrap_or_else(|| SocketAddress::Unix(Default::default())),
                    };
                    if m.truncated {
                        rx.queue
                            .push_back(Err(Error::DatagramTruncated { from, limit: SLOT }));
                    } else {
                        let start = i * SLOT;
                        let packet = Bytes::copy_from_slice(&rx.buf[start..start + m.len]);
                        rx.queue.push_back(Ok(Datagram {
                            packet,
                            address: from,
                        }));
                    }
                }
                rx.streak += 1;
                match rx.queue.pop_front() {
                    Some(d) => Poll::Ready(d),
                    None => {
                        // Nothing came after all (cannot happen: a batch holds at least one).
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }
        }
    }

    async fn receive(&self) -> Result<Datagram> {
        let fut = poll_fn(|cx| self.poll_receive(cx));
        match self.timeout() {
            Some(t) => crate::time::timeout(t, fut).await?,
            None => fut.await,
        }
    }

    async fn send(&self, d: Datagram) -> Result<()> {
        let (out, to) = self.prepare(d)?;
        let fut = poll_fn(|cx| self.poll_send_one(cx, &out, &to));
        match self.timeout() {
            Some(t) => crate::time::timeout(t, fut).await?,
            None => fut.await,
        }
    }

    fn close(&self) {
        self.io.close();
        if !self.closed.swap(true, Ordering::AcqRel) {
            for w in std::mem::take(&mut *lock(&self.close_waiters)) {
                w.wake();
            }
        }
        if let Some(p) = &self.path {
            p.remove();
        }
        let mut guard = lock(&self.tx);
        let tx = &mut *guard;
        tx.queue.clear();
        let wakers: Vec<Waker> = tx
            .flusher
            .take()
            .into_iter()
            .chain(tx.room_waiters.drain(..))
            .chain(tx.flush_waiters.drain(..))
            .collect();
        drop(guard);
        for w in wakers {
            w.wake();
        }
    }

    fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let mut w = lock(&self.close_waiters);
        if self.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        w.retain(|x| !x.will_wake(cx.waker()));
        w.push(cx.waker().clone());
        Poll::Pending
    }

    // ----- the outgoing queue -----

    fn start_flusher(self: &Arc<Self>) {
        let mut tx = lock(&self.tx);
        if tx.flusher_started {
            return;
        }
        tx.flusher_started = true;
        drop(tx);
        let shared = self.clone();
        // Detached: it ends when the socket closes or every handle is gone and the queue is empty.
        drop(self.io.handle().launch(flush_loop(shared)));
    }

    fn poll_enqueue(&self, cx: &mut Context<'_>, item: &mut Option<Outgoing>) -> Poll<Result<()>> {
        let mut tx = lock(&self.tx);
        if self.closed.load(Ordering::Acquire) || tx.flusher_exited {
            return Poll::Ready(Err(Error::Closed("socket")));
        }
        if let Some(e) = tx.error.take() {
            return Poll::Ready(Err(e));
        }
        if tx.queue.len() >= self.outgoing_capacity {
            if !tx.room_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                tx.room_waiters.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        if let Some(out) = item.take() {
            tx.queue.push_back(out);
        }
        let flusher = tx.flusher.take();
        drop(tx);
        if let Some(w) = flusher {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_flushed(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut tx = lock(&self.tx);
        if tx.queue.is_empty() && tx.in_flight == 0 {
            return Poll::Ready(tx.error.take().map_or(Ok(()), Err));
        }
        if self.closed.load(Ordering::Acquire) || tx.flusher_exited {
            return Poll::Ready(Err(Error::Closed("socket")));
        }
        if !tx.flush_waiters.iter().any(|w| w.will_wake(cx.waker())) {
            tx.flush_waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Moves the next batch from the queue to `batch`; `false` when the flusher should stop.
    fn poll_take_batch(&self, cx: &mut Context<'_>, batch: &mut Vec<Outgoing>) -> Poll<bool> {
        let mut tx = lock(&self.tx);
        if self.closed.load(Ordering::Acquire) {
            return Poll::Ready(false);
        }
        if tx.queue.is_empty() {
            tx.in_flight = 0;
            let waiters = std::mem::take(&mut tx.flush_waiters);
            let stop = tx.finished;
            if !stop {
                tx.flusher = Some(cx.waker().clone());
            }
            drop(tx);
            for w in waiters {
                w.wake();
            }
            return if stop {
                Poll::Ready(false)
            } else {
                Poll::Pending
            };
        }
        let n = tx.queue.len().min(sys::MAX_BATCH);
        batch.extend(tx.queue.drain(..n));
        tx.in_flight = n;
        let waiters = std::mem::take(&mut tx.room_waiters);
        drop(tx);
        for w in waiters {
            w.wake();
        }
        Poll::Ready(true)
    }

    fn record_error(&self, e: Error) {
        let mut tx = lock(&self.tx);
        if tx.error.is_none() {
            tx.error = Some(e);
        }
    }

    fn handle_acquired(&self) {
        self.handles.fetch_add(1, Ordering::AcqRel);
    }

    fn handle_released(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut tx = lock(&self.tx);
            tx.finished = true;
            let w = tx.flusher.take();
            drop(tx);
            if let Some(w) = w {
                w.wake();
            }
        }
    }
}

/// Sends what [`DatagramSender`]s queue, in batches of up to 64 datagrams per system call.
async fn flush_loop(shared: Arc<Shared>) {
    let mut batch: Vec<Outgoing> = Vec::with_capacity(sys::MAX_BATCH);
    while poll_fn(|cx| shared.poll_take_batch(cx, &mut batch)).await {
        let mut sent = 0;
        let mut refused = 0;
        while sent < batch.len() {
            let rest = &batch[sent..];
            let r = poll_fn(|cx| {
                shared.poll_dir(
                    cx,
                    Direction::Write,
                    |s| sys::send_batch(s, rest),
                    |_| false,
                )
            })
            .await;
            match r {
                Ok(n) => {
                    sent += n.max(1);
                    refused = 0;
                }
                Err(_) if shared.closed.load(Ordering::Acquire) => break,
                // ICMP "port unreachable" for an earlier datagram: this one was not sent and
                // the error is now consumed, so try it once more.
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) && refused == 0 => {
                    refused += 1;
                }
                Err(e) => {
                    let d = &batch[sent];
                    let to = shared.remote.clone().unwrap_or_else(|| {
                        d.addr
                            .as_ref()
                            .map(from_sockaddr)
                            .unwrap_or_else(|| shared.local.clone())
                    });
                    shared.record_error(shared.send_error(e, &to, d.data.len()));
                    sent += 1;
                    refused = 0;
                }
            }
        }
        batch.clear();
    }
    let mut guard = lock(&shared.tx);
    let tx = &mut *guard;
    tx.flusher_exited = true;
    tx.in_flight = 0;
    let waiters: Vec<Waker> = tx
        .room_waiters
        .drain(..)
        .chain(tx.flush_waiters.drain(..))
        .collect();
    drop(guard);
    for w in waiters {
        w.wake();
    }
}

/// An owning reference to the shared state that counts as a live handle.
struct Handle(Arc<Shared>);

impl Handle {
    fn new(shared: Shared) -> Handle {
        let shared = Arc::new(shared);
        shared.handle_acquired();
        Handle(shared)
    }
}

impl Clone for Handle {
    fn clone(&self) -> Handle {
        self.0.handle_acquired();
        Handle(self.0.clone())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.handle_released();
    }
}

impl std::ops::Deref for Handle {
    type Target = Arc<Shared>;
    fn deref(&self) -> &Arc<Shared> {
        &self.0
    }
}

/// A cloneable sender that queues datagrams for a socket from any number of tasks: Ktor's
/// `outgoing` channel. Made by [`BoundDatagramSocket::outgoing`] or
/// [`ConnectedDatagramSocket::outgoing`].
///
/// A background task on the socket's selector sends what is queued, many datagrams per system
/// call (`sendmmsg` on Linux) when many are waiting. Size, destination and broadcast are checked
/// by [`send`](Self::send) itself; a failure the kernel reports later for a queued datagram is
/// returned by the next `send` or [`flush`](Self::flush) (and that call's datagram is not
/// queued).
///
/// ```no_run
/// # async fn demo(selector: asock::SelectorManager) -> asock::Result<()> {
/// let socket = asock::a_socket(&selector).udp().bind("127.0.0.1:0").await?;
/// let out = socket.outgoing();
/// for i in 0..4 {
///     let out = out.clone();
///     selector.launch(async move {
///         let d = asock::Datagram::new(format!("task {i}"), "127.0.0.1:9999".parse::<asock::SocketAddress>()?);
///         out.send(d).await
///     });
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DatagramSender {
    shared: Handle,
}

impl std::fmt::Debug for DatagramSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramSender")
            .field("local", &self.shared.local)
            .finish()
    }
}

impl DatagramSender {
    /// Queues `datagram`, waiting only while the queue is full. Fails at once with
    /// [`Error::DatagramTooLarge`], [`Error::WrongDestination`] or
    /// [`Error::BroadcastNotEnabled`] before anything is queued, and with [`Error::Closed`]
    /// once the socket is closed.
    pub async fn send(&self, datagram: Datagram) -> Result<()> {
        let (out, _) = self.shared.prepare(datagram)?;
        let mut item = Some(out);
        poll_fn(|cx| self.shared.poll_enqueue(cx, &mut item)).await
    }

    /// Waits until every datagram queued so far has been handed to the kernel, and reports a
    /// failure of any of them.
    pub async fn flush(&self) -> Result<()> {
        poll_fn(|cx| self.shared.poll_flushed(cx)).await
    }

    /// Datagrams queued and not yet handed to the kernel.
    pub fn queued(&self) -> usize {
        let tx = lock(&self.shared.tx);
        tx.queue.len() + tx.in_flight
    }
}

/// The datagrams a socket receives, as a [`futures_core::Stream`]: Ktor's `incoming` channel.
///
/// Each item is what [`BoundDatagramSocket::receive`] would return; the stream ends when the
/// socket is closed. With a socket timeout, a quiet period that long yields one
/// [`Error::Timeout`] item and the stream goes on.
pub struct Incoming {
    shared: Arc<Shared>,
    idle: WaitTimer,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("local", &self.shared.local)
            .finish()
    }
}

impl futures_core::Stream for Incoming {
    type Item = Result<Datagram>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let timeout = this.shared.timeout();
        match this.shared.poll_receive(cx) {
            Poll::Ready(Err(Error::Closed(_))) => Poll::Ready(None),
            Poll::Ready(r) => {
                this.idle.restart();
                Poll::Ready(Some(r))
            }
            Poll::Pending => {
                match this
                    .idle
                    .poll_expired(cx, timeout, Some(this.shared.io.handle()))
                {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Error::Timeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

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

        /// The datagrams this socket receives, as a stream (Ktor's `incoming`).
        pub fn incoming(&self) -> Incoming {
            Incoming {
                shared: Arc::clone(&self.shared),
                idle: WaitTimer::default(),
            }
        }

        /// A cloneable sender that queues datagrams from any number of tasks and sends them in
        /// batches (Ktor's `outgoing`); see [`DatagramSender`].
        pub fn outgoing(&self) -> DatagramSender {
            self.shared.start_flusher();
            DatagramSender {
                shared: self.shared.clone(),
            }
        }

        /// Closes the socket: pending and later operations fail with [`Error::Closed`] (the
        /// incoming stream ends), queued outgoing datagrams are dropped, and a Unix socket file
        /// is removed. The descriptor is released when the last handle goes.
        pub fn close(&self) {
            self.shared.close();
        }

        /// Whether [`close`](Self::close) was called.
        pub fn is_closed(&self) -> bool {
            self.shared.closed.load(Ordering::Acquire)
        }

        /// Waits until the socket is closed.
        pub async fn await_closed(&self) {
            poll_fn(|cx| self.shared.poll_closed(cx)).await
        }

        /// The idle timeout of `send` and `receive` ([`Error::Timeout`]).
        pub fn socket_timeout(&self) -> Option<Duration> {
            self.shared.timeout()
        }

        /// Sets the idle timeout of `send` and `receive`; `None` turns it off.
        pub fn set_socket_timeout(&self, timeout: Option<Duration>) {
            self.shared
                .timeout_ns
                .store(timeout.map_or(0, duration_ns), Ordering::Relaxed);
        }

        /// Sets `SO_BROADCAST`.
        pub fn set_broadcast(&self, on: bool) -> Result<()> {
            self.shared
                .raw()
                .set_broadcast(on)
                .map_err(|e| Error::io("set broadcast", e))?;
            self.shared.broadcast.store(on, Ordering::Relaxed);
            Ok(())
        }

        /// Reads `SO_BROADCAST`.
        pub fn broadcast(&self) -> bool {
            self.shared.broadcast.load(Ordering::Relaxed)
        }

        /// Sets `IP_TTL` (IPv4) or the unicast hop limit (IPv6).
        pub fn set_ttl(&self, ttl: u32) -> Result<()> {
            let r = if self.shared.is_ipv6() {
                self.shared.raw().set_unicast_hops_v6(ttl)
            } else {
                self.shared.raw().set_ttl(ttl)
            };
            r.map_err(|e| Error::io("set ttl", e))
        }

        /// Reads `IP_TTL` (IPv4) or the unicast hop limit (IPv6).
        pub fn ttl(&self) -> Result<u32> {
            let r = if self.shared.is_ipv6() {
                self.shared.raw().unicast_hops_v6()
            } else {
                self.shared.raw().ttl()
            };
            r.map_err(|e| Error::io("get ttl", e))
        }

        /// Sets `IP_TOS` (IPv4) or `IPV6_TCLASS` (IPv6).
        pub fn set_type_of_service(&self, tos: u32) -> Result<()> {
            let r = if self.shared.is_ipv6() {
                self.shared.raw().set_tclass_v6(tos)
            } else {
                self.shared.raw().set_tos(tos)
            };
            r.map_err(|e| Error::io("set type_of_service", e))
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
    shared: Handle,
}

impl std::fmt::Debug for BoundDatagramSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundDatagramSocket")
            .field("local", &self.shared.local)
            .finish()
    }
}

impl BoundDatagramSocket {
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
        let r = if self.shared.is_ipv6() {
            self.shared.raw().set_multicast_loop_v6(on)
        } else {
            self.shared.raw().set_multicast_loop_v4(on)
        };
        r.map_err(|e| Error::io("set multicast_loop", e))
    }

    /// Sets `IP_MULTICAST_TTL` (IPv4 socket) or `IPV6_MULTICAST_HOPS` (IPv6 socket).
    pub fn set_multicast_ttl(&self, ttl: u32) -> Result<()> {
        let r = if self.shared.is_ipv6() {
            self.shared.raw().set_multicast_hops_v6(ttl)
        } else {
            self.shared.raw().set_multicast_ttl_v4(ttl)
        };
        r.map_err(|e| Error::io("set multicast_ttl", e))
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
    shared: Handle,
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
