//! TCP (and Unix stream) listeners and connections.

use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket as RawSocket, Type};

use super::{from_sockaddr, option_setters, to_sockaddr, Kind, Socket, SocketOptions};
use crate::address::{resolve, SocketAddress, ToSocketAddress};
use crate::error::{Error, Result};
use crate::selector::registration::{ready, Direction};
use crate::selector::source::IoSource;
use crate::selector::Handle;
use crate::SelectorManager;

/// Builds TCP servers and clients: `a_socket(&selector).tcp()`.
#[derive(Debug, Clone)]
pub struct TcpSocketBuilder {
    manager: SelectorManager,
    options: SocketOptions,
}

impl TcpSocketBuilder {
    pub(crate) fn new(manager: SelectorManager, options: SocketOptions) -> Self {
        TcpSocketBuilder { manager, options }
    }

    option_setters!();

    /// Listen backlog (default 511).
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.options.backlog = backlog;
        self
    }

    /// Limit for each connection attempt ([`Error::ConnectTimeout`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = Some(timeout);
        self
    }

    /// For a Unix-domain address: when a socket file exists at the path and nothing accepts on
    /// it (a server that died without cleaning up), remove it and bind. Default off: a bind on
    /// an existing path fails with [`Error::AddressInUse`]. A live server's socket, and a file
    /// that is not a socket, are never removed.
    ///
    /// ```no_run
    /// # async fn demo(selector: asock::SelectorManager) -> asock::Result<()> {
    /// use asock::SocketAddress;
    /// let server = asock::a_socket(&selector)
    ///     .tcp()
    ///     .replace_stale(true)
    ///     .bind(SocketAddress::Unix("/tmp/echo.sock".into()))
    ///     .await?;
    /// // The file is removed again when `server` is closed or dropped.
    /// # Ok(()) }
    /// ```
    pub fn replace_stale(mut self, on: bool) -> Self {
        self.options.replace_stale = on;
        self
    }

    /// Listens on `address` (port 0 picks a free port; see [`ServerSocket::local_address`]).
    ///
    /// A host name is resolved off the event loops and the first address is used. Fails with
    /// [`Error::AddressInUse`] when another socket holds the address.
    pub async fn bind(self, address: impl ToSocketAddress) -> Result<ServerSocket> {
        if self.manager.is_closed() {
            return Err(Error::Closed("selector manager"));
        }
        let target = address.to_target()?;
        let addr = resolve(target)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::InvalidAddress("no address".into()))?;
        let (domain, kind, protocol) = match &addr {
            SocketAddress::Inet(a) => (
                Domain::for_address(*a),
                Kind::TcpListener,
                Some(Protocol::TCP),
            ),
            SocketAddress::Unix(_) => (Domain::UNIX, Kind::Unix, None),
        };
        let raw = RawSocket::new(domain, Type::STREAM.nonblocking(), protocol)
            .map_err(|e| Error::io("create socket", e))?;
        self.options.apply(&raw, kind, domain == Domain::IPV6)?;
        if let Some(path) = super::unix::file_path(&addr) {
            super::unix::prepare_bind(&addr, path, Type::STREAM, self.options.replace_stale)?;
        }
        let sa = to_sockaddr(&addr).map_err(|e| Error::io("bind", e))?;
        raw.bind(&sa).map_err(|e| bind_error(&addr, e))?;
        let unix_file = super::unix::PathGuard::after_bind(&addr);
        let backlog = i32::try_from(self.options.backlog).unwrap_or(i32::MAX);
        raw.listen(backlog).map_err(|e| Error::io("listen", e))?;
        let local = raw
            .local_addr()
            .map(|a| from_sockaddr(&a))
            .map_err(|e| Error::io("local address", e))?;
        Ok(ServerSocket {
            io: IoSource::new(raw, self.manager.handle(), ready::READABLE),
            local,
            manager: self.manager.handle().clone(),
            options: self.options,
            unix_file,
            backoff: BackoffState::default(),
        })
    }

    /// Connects to `address`. Host names are resolved off the event loops and every resolved
    /// address is tried in turn; the last failure is returned if none answers.
    pub async fn connect(self, address: impl ToSocketAddress) -> Result<Socket> {
        if self.manager.is_closed() {
            return Err(Error::Closed("selector manager"));
        }
        let target = address.to_target()?;
        // Remembered for TLS: the name to verify the server's certificate against.
        let host: Option<std::sync::Arc<str>> = match &target {
            crate::address::Target::Host(h, _) => Some(h.as_str().into()),
            crate::address::Target::Resolved(SocketAddress::Inet(a)) => {
                Some(a.ip().to_string().into())
            }
            crate::address::Target::Resolved(SocketAddress::Unix(_)) => None,
        };
        let addrs = resolve(target).await?;
        let mut last = None;
        for addr in addrs {
            let attempt = self.connect_one(&addr);
            let r = match self.options.connect_timeout {
                Some(t) => match crate::time::timeout(t, attempt).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::ConnectTimeout { addr: addr.clone() }),
                },
                None => attempt.await,
            };
            match r {
                Ok(mut s) => {
                    s.set_host(host);
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidAddress("no address".into())))
    }

    async fn connect_one(&self, addr: &SocketAddress) -> Result<Socket> {
        let (domain, kind, protocol) = match addr {
            SocketAddress::Inet(a) => (
                Domain::for_address(*a),
                Kind::TcpConnect,
                Some(Protocol::TCP),
            ),
            SocketAddress::Unix(_) => (Domain::UNIX, Kind::Unix, None),
        };
        let raw = RawSocket::new(domain, Type::STREAM.nonblocking(), protocol)
            .map_err(|e| Error::io("create socket", e))?;
        self.options.apply(&raw, kind, domain == Domain::IPV6)?;
        let sa = to_sockaddr(addr).map_err(|e| Error::io("connect", e))?;
        let in_progress = match raw.connect(&sa) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) => return Err(connect_error(addr, e)),
        };
        let socket = Socket::from_raw(
            raw,
            self.manager.handle(),
            Some(addr.clone()),
            self.options.socket_timeout,
            if in_progress { 0 } else { ready::ALL },
        );
        let socket = socket?;
        if in_progress {
            socket
                .await_connected()
                .await
                .map_err(|e| connect_error(addr, e))?;
        }
        Ok(socket)
    }
}

impl Socket {
    /// Waits for a non-blocking connect to finish, and reports how it ended.
    async fn await_connected(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_writable(cx)).await?;
        let io = &self.shared.io;
        if let Some(e) = io.with(|s| s.take_error())? {
            return Err(e);
        }
        io.with(|s| s.peer_addr()).map(|_| ())
    }
}

fn bind_error(addr: &SocketAddress, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::AddrInUse {
        Error::AddressInUse {
            addr: addr.clone(),
            source: Some(e),
        }
    } else {
        Error::io("bind", e)
    }
}

fn connect_error(addr: &SocketAddress, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Error::ConnectionRefused {
            addr: addr.clone(),
            source: e,
        },
        // A Unix path with no socket file behind it is a refusal too, to a user.
        io::ErrorKind::NotFound if matches!(addr, SocketAddress::Unix(_)) => {
            Error::ConnectionRefused {
                addr: addr.clone(),
                source: e,
            }
        }
        _ => Error::io("connect", e),
    }
}

/// A listening socket: Ktor's `ServerSocket`.
///
/// # Lifecycle
/// [`close`](Self::close) takes effect at once: a pending [`accept`](Self::accept) fails with
/// [`Error::Closed`], the listening socket is released (its port can be bound again right
/// away, even with `reuse_address(false)` and while this value is alive), and a Unix socket
/// file the bind created is removed. Closing the [`SelectorManager`] does the same. Dropping
/// the value closes it too.
pub struct ServerSocket {
    io: IoSource<RawSocket>,
    local: SocketAddress,
    manager: Handle,
    options: SocketOptions,
    /// A Unix socket file this listener created: removed on close or drop.
    unix_file: Option<super::unix::PathGuard>,
    /// Descriptor-exhaustion bursts, and who to tell about them.
    backoff: BackoffState,
}

impl std::fmt::Debug for ServerSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSocket")
            .field("local", &self.local)
            .finish()
    }
}

/// Longest back-off when the process runs out of descriptors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

impl ServerSocket {
    /// The address it listens on, with the real port when bound to port 0.
    pub fn local_address(&self) -> &SocketAddress {
        &self.local
    }

    /// The port it listens on (`None` for Unix sockets).
    pub fn port(&self) -> Option<u16> {
        self.local.port()
    }

    /// Waits for the next connection. The accepted socket gets the builder's options
    /// (`no_delay` on by default) and its socket timeout.
    ///
    /// When the process is out of descriptors (EMFILE/ENFILE) it waits, backing off up to a
    /// second, instead of spinning or failing; a connection aborted before it was accepted is
    /// skipped. Fails with [`Error::Closed`] once [`close`](Self::close) is called.
    ///
    /// Cancel-safe: dropping the future loses no connection.
    pub async fn accept(&self) -> Result<Socket> {
        let mut backoff = Duration::from_millis(5);
        loop {
            let r = poll_fn(|cx| {
                self.io
                    .poll_io(cx, Direction::Read, |s| s.accept(), |_| false)
            })
            .await;
            match r {
                Ok((raw, peer)) => {
                    self.backoff.ended();
                    return self.wrap_accepted(raw, &peer);
                }
                Err(e) if is_fd_exhaustion(&e) => {
                    self.backoff.started(&e);
                    // On the listener's own loops: when `accept` is polled outside any loop,
                    // a plain sleep would start the background loop, which needs descriptors.
                    crate::time::Sleep::until_on(
                        std::time::Instant::now() + backoff,
                        &self.manager,
                    )
                    .await;
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(_) if self.is_closed() => return Err(Error::Closed("server socket")),
                Err(e) => return Err(Error::io("accept", e)),
            }
        }
    }

    fn wrap_accepted(&self, raw: RawSocket, peer: &SockAddr) -> Result<Socket> {
        raw.set_nonblocking(true)
            .map_err(|e| Error::io("accept", e))?;
        let kind = if self.local.as_unix().is_some() {
            Kind::Unix
        } else {
            Kind::TcpStream
        };
        // Options on the listener are for the listener; these are the ones a connection takes.
        let mut o = self.options.clone();
        o.send_buffer_size = None;
        o.receive_buffer_size = None;
        let ipv6 = matches!(self.local, SocketAddress::Inet(std::net::SocketAddr::V6(_)));
        o.apply(&raw, kind, ipv6)?;
        Socket::from_raw(
            raw,
            &self.manager,
            Some(from_sockaddr(peer)),
            self.options.socket_timeout,
            ready::ALL,
        )
    }

    /// Stops listening now; see [Lifecycle](Self#lifecycle). Idempotent.
    pub fn close(&self) {
        if let Some(f) = &self.unix_file {
            f.remove();
        }
        self.io.close();
    }

    /// Whether the listener is closed ([`close`](Self::close), or its manager closed).
    pub fn is_closed(&self) -> bool {
        self.io.is_closed()
    }

    /// Waits until the listener is closed (Ktor's `awaitClosed`).
    pub async fn await_closed(&self) {
        poll_fn(|cx| self.io.poll_closed(cx)).await
    }

    /// Calls `handler` once when [`accept`](Self::accept) starts backing off because the process
    /// (or system) is out of descriptors, and once when accepting works again: one report per
    /// burst, however many retries it took, so a server can log it without flooding its log.
    /// It runs on the thread that called `accept` (an event loop): keep it short.
    ///
    /// ```no_run
    /// # async fn demo(server: asock::ServerSocket) {
    /// use asock::AcceptBackoff;
    /// server.on_accept_backoff(|event| match event {
    ///     AcceptBackoff::Started { error } => eprintln!("accept: {error}; backing off"),
    ///     AcceptBackoff::Ended { retries, waited } => {
    ///         eprintln!("accepting again after {retries} retries in {waited:?}")
    ///     }
    ///     _ => {}
    /// });
    /// # }
    /// ```
    pub fn on_accept_backoff(&self, handler: impl Fn(&AcceptBackoff<'_>) + Send + Sync + 'static) {
        *self
            .backoff
            .handler
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Box::new(handler));
    }

    /// The manager whose loops run this listener (TLS accept tasks run there).
    #[cfg(feature = "tls")]
    pub(crate) fn manager(&self) -> &Handle {
        &self.manager
    }
}

/// What [`ServerSocket::on_accept_backoff`] reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum AcceptBackoff<'a> {
    /// `accept` failed for lack of descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM) and now waits
    /// and retries, backing off up to a second; pending connections stay in the backlog.
    Started {
        /// The first error of the burst.
        error: &'a io::Error,
    },
    /// A connection was accepted again after a burst.
    Ended {
        /// Failed attempts during the burst.
        retries: u64,
        /// Time from the first failure to the accepted connection.
        waited: Duration,
    },
}

type BackoffHandler = Box<dyn Fn(&AcceptBackoff<'_>) + Send + Sync>;

/// The current descriptor-exhaustion burst of a listener, if any.
#[derive(Default)]
struct BackoffState {
    /// Fast path: false outside a burst, so a normal accept takes no lock.
    active: std::sync::atomic::AtomicBool,
    burst: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
    handler: std::sync::Mutex<Option<BackoffHandler>>,
}

impl BackoffState {
    fn started(&self, error: &io::Error) {
        use std::sync::atomic::Ordering;
        let first = {
            let mut b = self.burst.lock().unwrap_or_else(|p| p.into_inner());
            match b.as_mut() {
                Some((_, retries)) => {
                    *retries += 1;
                    false
                }
                None => {
                    *b = Some((std::time::Instant::now(), 1));
                    self.active.store(true, Ordering::Release);
                    true
                }
            }
        };
        if first {
            self.report(&AcceptBackoff::Started { error });
        }
    }

    fn ended(&self) {
        use std::sync::atomic::Ordering;
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let burst = self.burst.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.active.store(false, Ordering::Release);
        if let Some((since, retries)) = burst {
            self.report(&AcceptBackoff::Ended {
                retries,
                waited: since.elapsed(),
            });
        }
    }

    fn report(&self, event: &AcceptBackoff<'_>) {
        if let Some(h) = self
            .handler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            h(event);
        }
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl AsRawFd for ServerSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.io.get_ref().as_raw_fd()
    }
}

impl AsFd for ServerSocket {
    /// The listener's descriptor. After [`close`](ServerSocket::close) it stays valid but names
    /// a dead socket, on which every operation fails.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.get_ref().as_fd()
    }
}
