//! Connected stream sockets (TCP and Unix): [`Socket`] and [`Connection`].

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::Socket as RawSocket;

use crate::address::SocketAddress;
use crate::channel::{ByteReadChannel, ByteWriteChannel, Source, Splice};
use crate::error::{Error, Result};
use crate::selector::registration::Direction;
use crate::selector::source::IoSource;
use crate::selector::Handle;
use crate::util::duration_ns;

/// State shared by a [`Socket`] and its channels; the descriptor closes when all are gone.
pub(crate) struct StreamShared {
    pub(super) io: IoSource<RawSocket>,
    local: SocketAddress,
    remote: SocketAddress,
    /// Idle timeout in nanoseconds; 0 means none.
    timeout_ns: AtomicU64,
    read_done: AtomicBool,
    write_done: AtomicBool,
    /// The read channel (plain, or TLS above it) finished at the end of stream: the peer sends
    /// nothing more.
    read_eof: AtomicBool,
    /// Our write half was shut down (the FIN is queued).
    write_shut: AtomicBool,
    /// Its place under its listener's connection cap, given back when the last user goes.
    permit: Option<super::limit::Permit>,
}

#[cfg(feature = "tls")]
impl StreamShared {
    /// Writes several buffers with one `sendmsg`, waiting for writability (TLS records).
    pub(crate) fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        self.io.poll_io(
            cx,
            Direction::Write,
            |s| s.send_vectored_with_flags(bufs, SEND_FLAGS),
            |n| *n < len,
        )
    }

    /// One non-blocking `sendmsg` that does not wait and registers no waker (`WouldBlock` when
    /// the socket buffer is full): for the few bytes a reader must send (TLS alerts).
    pub(crate) fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.io.get_ref().send_vectored_with_flags(bufs, SEND_FLAGS)
    }
}

#[cfg(feature = "tls")]
use crate::sys::SEND_FLAGS;

impl StreamShared {
    /// Both channels are finished: the socket closes. When the peer's end of stream was read
    /// and our write half was shut down, the connection is over in both directions, so the
    /// descriptor is left for the last drop to close, which saves the `dup3` of a release in
    /// place on every connection. Otherwise (a read side given up early, a write side dropped
    /// unflushed) the socket is released at once as by [`Socket::close`]'s core: the peer
    /// gets its FIN, or a reset for bytes no one will read.
    fn both_finished(&self) {
        if self.read_eof.load(Ordering::Relaxed) && self.write_shut.load(Ordering::Relaxed) {
            self.io.close_finished();
        } else {
            self.io.close();
        }
    }
}

impl Source for StreamShared {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let len = buf.len();
        self.io.poll_io(
            cx,
            Direction::Read,
            |s| crate::sys::recv(s.as_raw_fd(), buf),
            |n| *n < len,
        )
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let len = buf.len();
        self.io.poll_io(
            cx,
            Direction::Write,
            |s| crate::sys::send(s.as_raw_fd(), buf),
            |n| *n < len,
        )
    }

    fn buffers_writes(&self) -> bool {
        false
    }

    fn poll_shutdown_write(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io.get_ref().shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => {
                self.write_shut.store(true, Ordering::Relaxed);
                Poll::Ready(Ok(()))
            }
        }
    }

    fn timeout(&self) -> Option<Duration> {
        match self.timeout_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    fn manager(&self) -> Option<&Handle> {
        Some(self.io.handle())
    }

    fn is_closed(&self) -> bool {
        self.io.is_closed()
    }

    fn close(&self) {
        self.io.close();
    }

    // Both channels done (end of stream read, write half shut down): nothing more can move,
    // so the socket closes, as in Ktor.
    fn read_finished(&self, at_end: bool) {
        if at_end {
            self.read_eof.store(true, Ordering::Relaxed);
        }
        self.read_done.store(true, Ordering::Release);
        if self.write_done.load(Ordering::Acquire) {
            self.both_finished();
        }
    }

    fn write_finished(&self) {
        self.write_done.store(true, Ordering::Release);
        if self.read_done.load(Ordering::Acquire) {
            self.both_finished();
        }
    }

    fn splice(&self) -> Option<&dyn Splice> {
        crate::sys::HAS_SPLICE.then_some(self as &dyn Splice)
    }
}

/// A connected stream socket (TCP, or Unix-domain): Ktor's `Socket`.
///
/// Read and write through channels from [`open_read_channel`](Self::open_read_channel) and
/// [`open_write_channel`](Self::open_write_channel); open each once.
///
/// # Lifecycle
/// The socket closes, once, at the first of:
/// - [`close`](Self::close): at once. Pending reads and writes on its channels fail with
///   [`Error::Closed`], the socket is released (the peer sees end of stream, or a reset with
///   `linger(Some(0))`), and both channels report closed;
/// - both channels finishing: end of stream read (or the read channel dropped) and the write
///   channel closed (or dropped, after its background flush);
/// - its [`SelectorManager`](crate::SelectorManager) closing.
///
/// The descriptor number stays valid (pointing at a dead socket, every operation failing)
/// until the `Socket` and both channels are dropped, so `AsFd` borrows are never dangling.
///
/// # Example
/// ```
/// use asock::{a_socket, SelectorManager};
///
/// let selector = SelectorManager::builder().threads(1).build()?;
/// selector.run_blocking(async {
///     let server = a_socket(&selector).tcp().bind("127.0.0.1:0").await?;
///     let socket = a_socket(&selector).tcp().connect(server.local_address().clone()).await?;
///     let peer = server.accept().await?;
///     socket.open_write_channel(true).write_str("ping\n").await?;
///     assert_eq!(peer.open_read_channel().read_utf8_line().await?.as_deref(), Some("ping"));
///     socket.close(); // at once: the peer reads end of stream
///     assert!(socket.is_closed());
///     Ok::<(), asock::Error>(())
/// })?;
/// # Ok::<(), asock::Error>(())
/// ```
pub struct Socket {
    pub(super) shared: Arc<StreamShared>,
    /// The host name (or IP literal) this socket was connected by, for TLS verification.
    host: Option<Arc<str>>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("local", &self.shared.local)
            .field("remote", &self.shared.remote)
            .finish()
    }
}

impl Socket {
    /// Wraps a connected, non-blocking socket. Its addresses are asked of the kernel unless
    /// the caller knows them (`local`, `remote`).
    pub(crate) fn from_raw(
        raw: RawSocket,
        manager: &Handle,
        local: Option<SocketAddress>,
        remote: Option<SocketAddress>,
        timeout: Option<Duration>,
        initial: usize,
    ) -> Result<Socket> {
        // An address the caller knows, or the kernel's answer.
        let known =
            |addr: Option<SocketAddress>, what, ask: fn(&RawSocket) -> io::Result<_>| match addr {
                Some(a) => Ok(a),
                None => ask(&raw)
                    .map(|a| super::from_sockaddr(&a))
                    .map_err(|e| Error::io(what, e)),
            };
        let local = known(local, "local address", RawSocket::local_addr)?;
        let remote = known(remote, "peer address", RawSocket::peer_addr)?;
        Ok(Socket {
            shared: Arc::new(StreamShared {
                io: IoSource::new(raw, manager, initial),
                local,
                remote,
                timeout_ns: AtomicU64::new(timeout.map_or(0, duration_ns)),
                read_done: AtomicBool::new(false),
                write_done: AtomicBool::new(false),
                read_eof: AtomicBool::new(false),
                write_shut: AtomicBool::new(false),
                permit: None,
            }),
            host: None,
        })
    }

    /// Holds `permit` (a place under a listener's connection cap) for as long as the socket,
    /// its channels or a TLS session on it live. Only on a socket just made.
    pub(super) fn hold_permit(&mut self, permit: super::limit::Permit) {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.permit = Some(permit);
        }
    }

    /// Remembers the host name (or IP literal) the socket was connected by.
    pub(crate) fn set_host(&mut self, host: Option<Arc<str>>) {
        self.host = host;
    }

    /// The host name (or IP literal) the socket was connected by, if it was made by `connect`.
    #[cfg(feature = "tls")]
    pub(crate) fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The state shared with the channels (TLS sessions wrap it).
    #[cfg(feature = "tls")]
    pub(crate) fn shared(&self) -> &Arc<StreamShared> {
        &self.shared
    }

    /// The local end's address.
    pub fn local_address(&self) -> &SocketAddress {
        &self.shared.local
    }

    /// The peer's address.
    pub fn remote_address(&self) -> &SocketAddress {
        &self.shared.remote
    }

    /// Opens the read side (Ktor's `openReadChannel`).
    pub fn open_read_channel(&self) -> ByteReadChannel {
        ByteReadChannel::new(self.shared.clone())
    }

    /// Opens the write side (Ktor's `openWriteChannel(autoFlush)`). With `auto_flush` every write
    /// call is flushed before it returns.
    pub fn open_write_channel(&self, auto_flush: bool) -> ByteWriteChannel {
        ByteWriteChannel::new(self.shared.clone(), auto_flush)
    }

    /// Opens both channels at once (Ktor's `socket.connection()`).
    pub fn connection(self, auto_flush: bool) -> Connection {
        Connection {
            input: self.open_read_channel(),
            output: self.open_write_channel(auto_flush),
            socket: self,
        }
    }

    /// Closes the socket now; see [Lifecycle](Self#lifecycle). Pending channel operations
    /// fail with [`Error::Closed`] and every later one too. The peer sees end of stream, or a
    /// connection reset when `linger(Some(0))` was set (an abortive close). Bytes still queued
    /// in a write channel are not sent: `close` the write channel first for that. Idempotent.
    pub fn close(&self) {
        self.shared.io.close_with(|raw| {
            let abortive = matches!(raw.linger(), Ok(Some(d)) if d.is_zero());
            if !abortive {
                // The FIN goes out even while a syscall elsewhere still holds the socket.
                let _ = raw.shutdown(Shutdown::Both);
            }
        });
    }

    /// Whether the socket is closed; see [Lifecycle](Self#lifecycle).
    pub fn is_closed(&self) -> bool {
        self.shared.io.is_closed()
    }

    /// Waits until the socket is closed; see [Lifecycle](Self#lifecycle).
    pub async fn await_closed(&self) {
        std::future::poll_fn(|cx| self.shared.io.poll_closed(cx)).await
    }

    /// Waits until the socket is writable (used to finish a non-blocking connect).
    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared
            .io
            .poll_ready(cx, Direction::Write)
            .map(|r| r.map(|_| ()))
    }

    /// Runs an option call on the socket, naming it in the error; [`Error::Closed`] once closed.
    fn opt<R>(&self, what: &'static str, f: impl FnOnce(&RawSocket) -> io::Result<R>) -> Result<R> {
        self.shared.io.with(f).map_err(|e| Error::io(what, e))
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_no_delay(&self, on: bool) -> Result<()> {
        self.opt("set no_delay", |s| s.set_nodelay(on))
    }

    /// Reads `TCP_NODELAY`.
    pub fn no_delay(&self) -> Result<bool> {
        self.opt("get no_delay", |s| s.nodelay())
    }

    /// Sets `SO_KEEPALIVE`.
    pub fn set_keep_alive(&self, on: bool) -> Result<()> {
        self.opt("set keep_alive", |s| s.set_keepalive(on))
    }

    /// Sets `SO_LINGER`. `Some(Duration::ZERO)` makes [`close`](Self::close) abortive.
    pub fn set_linger(&self, linger: Option<Duration>) -> Result<()> {
        self.opt("set linger", |s| s.set_linger(linger))
    }

    /// Sets `SO_SNDBUF`.
    pub fn set_send_buffer_size(&self, bytes: usize) -> Result<()> {
        self.opt("set send_buffer_size", |s| s.set_send_buffer_size(bytes))
    }

    /// Sets `SO_RCVBUF`.
    pub fn set_receive_buffer_size(&self, bytes: usize) -> Result<()> {
        self.opt("set receive_buffer_size", |s| s.set_recv_buffer_size(bytes))
    }

    /// Sets `IP_TOS` (IPv4) or `IPV6_TCLASS` (IPv6).
    pub fn set_type_of_service(&self, tos: u32) -> Result<()> {
        let v6 = super::os::is_ipv6(&self.shared.local);
        self.opt("set type_of_service", |s| {
            super::os::set_type_of_service(s, v6, tos)
        })
    }

    /// Sets how long one channel read or write may wait before it fails with
    /// [`Error::Timeout`] (Ktor's `socketTimeout`); `None` turns it off. The clock runs only
    /// while an operation waits: time spent between operations never counts.
    pub fn set_socket_timeout(&self, timeout: Option<Duration>) {
        self.shared
            .timeout_ns
            .store(timeout.map_or(0, duration_ns), Ordering::Relaxed);
    }

    /// How long one channel read or write may wait; see
    /// [`set_socket_timeout`](Self::set_socket_timeout).
    pub fn socket_timeout(&self) -> Option<Duration> {
        self.shared.timeout()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.shared.io.get_ref().as_raw_fd()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.shared.io.get_ref().as_fd()
    }
}

/// A socket with both channels open: Ktor's `Connection`.
#[derive(Debug)]
pub struct Connection {
    /// The socket.
    pub socket: Socket,
    /// Its read channel.
    pub input: ByteReadChannel,
    /// Its write channel.
    pub output: ByteWriteChannel,
}

/// Zero-copy I/O for `copy_to` and `send_file`: `splice` and `sendfile` through the socket's
/// readiness. A short transfer never clears readiness (a `splice` may stop short of what the
/// socket holds); only `WouldBlock` does.
impl Splice for StreamShared {
    fn poll_splice_in(
        &self,
        cx: &mut Context<'_>,
        pipe: RawFd,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        self.io.poll_io(
            cx,
            Direction::Read,
            |s| crate::sys::splice(s.as_raw_fd(), pipe, len),
            |_| false,
        )
    }

    fn poll_splice_out(
        &self,
        cx: &mut Context<'_>,
        pipe: RawFd,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        self.io.poll_io(
            cx,
            Direction::Write,
            |s| crate::sys::splice(pipe, s.as_raw_fd(), len),
            |_| false,
        )
    }

    fn poll_send_file(
        &self,
        cx: &mut Context<'_>,
        file: RawFd,
        offset: &mut u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        self.io.poll_io(
            cx,
            Direction::Write,
            |s| crate::sys::sendfile(s.as_raw_fd(), file, offset, len),
            |_| false,
        )
    }
}

impl Connection {
    /// Relays between this connection and `other` until both directions are done, each way
    /// with [`copy_and_close`](ByteReadChannel::copy_and_close) (zero-copy `splice` between
    /// plain sockets on Linux), so half-closes propagate; returns the bytes copied
    /// `(self to other, other to self)`. See [`relay`](crate::channel::relay).
    pub async fn relay(&mut self, other: &mut Connection) -> Result<(u64, u64)> {
        crate::channel::relay(
            &mut self.input,
            &mut self.output,
            &mut other.input,
            &mut other.output,
        )
        .await
    }
}
