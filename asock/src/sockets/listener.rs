//! Listening sockets: [`ServerSocket`] (one listener, or one `SO_REUSEPORT` listener per
//! loop), accepting, `serve`, the connection cap and the descriptor-exhaustion back-off.

use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use socket2::{SockAddr, Socket as RawSocket};

use super::limit::ConnectionLimit;
use super::{from_sockaddr, os, Kind, Socket, SocketOptions};
use crate::address::SocketAddress;
use crate::error::{Error, Result};
use crate::selector::registration::{ready, Direction};
use crate::selector::source::IoSource;
use crate::selector::Handle;

/// A listening socket: Ktor's `ServerSocket`.
///
/// On a manager with more than one loop it is one `SO_REUSEPORT` socket per loop, each
/// registered with its loop (see
/// [`TcpSocketBuilder::listener_per_loop`](crate::TcpSocketBuilder::listener_per_loop)); it
/// behaves as one listener. [`accept`](Self::accept) takes the next connection from any of them;
/// [`serve`](Self::serve) accepts on every loop at once and serves each connection on the loop
/// that accepted it.
///
/// # Lifecycle
/// [`close`](Self::close) takes effect at once: a pending [`accept`](Self::accept) fails with
/// [`Error::Closed`], [`serve`](Self::serve) returns, every listening socket is released (its
/// port can be bound again right away, even with `reuse_address(false)` and while this value is
/// alive), and a Unix socket file the bind created is removed. Closing the [`SelectorManager`](crate::SelectorManager)
/// does the same. Dropping the value closes it too.
///
/// # Example
/// ```
/// use asock::{a_socket, SelectorManager};
///
/// let selector = SelectorManager::builder().threads(1).build()?;
/// selector.run_blocking(async {
///     let server = a_socket(&selector).tcp().bind("127.0.0.1:0").await?;
///     let addr = server.local_address().clone();
///     let sel = selector.clone();
///     let client = selector.launch(async move { a_socket(&sel).tcp().connect(addr).await });
///     let socket = server.accept().await?;
///     assert_eq!(socket.local_address(), server.local_address());
///     drop(client.await?);
///     server.close(); // the port is free again at once
///     server.await_closed().await;
///     Ok::<(), asock::Error>(())
/// })?;
/// # Ok::<(), asock::Error>(())
/// ```
pub struct ServerSocket {
    inner: Arc<Listeners>,
}

/// What a listener's accepting tasks share.
struct Listeners {
    /// One per loop (per-loop listeners, `ios[i]` registered with loop `i`), or one.
    ios: Vec<IoSource<RawSocket>>,
    /// Where `accept` called off the loops starts looking, so no listener waits behind another.
    next: AtomicUsize,
    local: SocketAddress,
    manager: Handle,
    options: SocketOptions,
    /// A Unix socket file this listener created: removed on close or drop.
    unix_file: Option<super::unix::PathGuard>,
    /// Descriptor-exhaustion bursts, and who to tell about them.
    backoff: BackoffState,
    /// The connection cap and the accepted connections alive under it.
    limit: Arc<ConnectionLimit>,
}

impl std::fmt::Debug for ServerSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSocket")
            .field("local", &self.inner.local)
            .field("listeners", &self.inner.ios.len())
            .finish()
    }
}

/// Longest back-off when the process runs out of descriptors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Why an accept gave no connection.
enum AcceptError {
    /// The connection failed before or while it was set up; the listener is fine.
    Connection(Error),
    /// The listener itself failed (or was closed).
    Listener(Error),
}

impl AcceptError {
    fn into_error(self) -> Error {
        match self {
            AcceptError::Connection(e) | AcceptError::Listener(e) => e,
        }
    }
}

impl ServerSocket {
    pub(super) fn new(
        ios: Vec<IoSource<RawSocket>>,
        local: SocketAddress,
        manager: &Handle,
        options: SocketOptions,
        unix_file: Option<super::unix::PathGuard>,
    ) -> ServerSocket {
        ServerSocket {
            inner: Arc::new(Listeners {
                ios,
                next: AtomicUsize::new(0),
                local,
                manager: manager.clone(),
                options,
                unix_file,
                backoff: BackoffState::default(),
                limit: Arc::new(ConnectionLimit::new()),
            }),
        }
    }

    /// The address it listens on, with the real port when bound to port 0.
    pub fn local_address(&self) -> &SocketAddress {
        &self.inner.local
    }

    /// The port it listens on (`None` for Unix sockets).
    pub fn port(&self) -> Option<u16> {
        self.inner.local.port()
    }

    /// How many sockets listen: one per loop with per-loop listeners, else one.
    pub fn listeners(&self) -> usize {
        self.inner.ios.len()
    }

    /// The listening descriptors, in loop order (to read or set socket options on each, such
    /// as a reuseport BPF program). They stay owned by this value.
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.inner
            .ios
            .iter()
            .map(|io| io.get_ref().as_raw_fd())
            .collect()
    }

    /// Waits for the next connection, from whichever listener has one (the current loop's
    /// first, when called on one of the manager's loops). The accepted socket gets the
    /// builder's options (`no_delay` on by default) and its socket timeout; it is driven by the
    /// loop of the task that first uses it.
    ///
    /// When the process is out of descriptors (EMFILE/ENFILE) it waits, backing off up to a
    /// second, instead of spinning or failing; a connection aborted before it was accepted is
    /// skipped. Fails with [`Error::Closed`] once [`close`](Self::close) is called.
    ///
    /// Cancel-safe: dropping the future loses no connection.
    pub async fn accept(&self) -> Result<Socket> {
        let n = self.inner.ios.len();
        let start = match self.inner.manager.current_loop() {
            Some(lp) if n > 1 => self
                .inner
                .manager
                .loops()
                .iter()
                .position(|l| std::sync::Arc::ptr_eq(l, &lp))
                .unwrap_or(0),
            _ if n > 1 => self.inner.next.fetch_add(1, Ordering::Relaxed) % n,
            _ => 0,
        };
        self.inner
            .accept(start..start + n)
            .await
            .map_err(AcceptError::into_error)
    }

    /// Serves connections until the listener is closed: accepts on every listener at once,
    /// each from a task on its own loop, and runs `handler(socket)` as a task on the loop that
    /// accepted the connection, so a connection is accepted, registered and served on one
    /// thread. With a single listener (one loop, a Unix socket, or
    /// [`listener_per_loop(false)`](crate::TcpSocketBuilder::listener_per_loop)) the handlers are
    /// spread over the loops round-robin instead.
    ///
    /// A connection that fails while it is accepted or set up is skipped; running out of
    /// descriptors backs off as in [`accept`](Self::accept). Returns `Ok(())` once the listener
    /// (or its manager) is closed, and the error when a listener itself fails. Handlers still
    /// running go on. Dropping the future stops accepting (the listener stays open).
    ///
    /// ```no_run
    /// # async fn demo(selector: asock::SelectorManager) -> asock::Result<()> {
    /// let server = asock::a_socket(&selector).tcp().bind("127.0.0.1:2323").await?;
    /// server
    ///     .serve(|socket| async move {
    ///         let (mut input, mut output) =
    ///             (socket.open_read_channel(), socket.open_write_channel(true));
    ///         while let Ok(Some(line)) = input.read_utf8_line().await {
    ///             if output.write_str(&format!("{line}\r\n")).await.is_err() {
    ///                 break;
    ///             }
    ///         }
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn serve<H, F>(&self, handler: H) -> Result<()>
    where
        H: Fn(Socket) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let manager = &self.inner.manager;
        let per_loop = self.inner.ios.len() > 1;
        let mut tasks = CancelOnDrop(Vec::with_capacity(self.inner.ios.len()));
        for i in 0..self.inner.ios.len() {
            let (inner, handler) = (self.inner.clone(), handler.clone());
            let lp = per_loop.then(|| manager.loops()[i].clone());
            let home = lp.clone();
            let accepting = async move {
                loop {
                    match inner.accept(i..i + 1).await {
                        Ok(socket) => {
                            let task = handler(socket);
                            drop(match &home {
                                Some(lp) => inner.manager.launch_on(lp.clone(), task),
                                None => inner.manager.launch(task),
                            });
                        }
                        Err(AcceptError::Connection(_)) => {}
                        Err(AcceptError::Listener(Error::Closed(_))) => return Ok(()),
                        Err(AcceptError::Listener(e)) => return Err(e),
                    }
                }
            };
            tasks.0.push(match lp {
                Some(lp) => manager.launch_on(lp, accepting),
                None => manager.launch(accepting),
            });
        }
        for task in &mut tasks.0 {
            match task.await {
                Ok(Ok(())) | Err(Error::Cancelled) => {}
                Ok(Err(e)) | Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Caps the connections accepted from this listener that are alive at once (`None`: no
    /// cap, the default). A connection counts from `accept` until its socket, its channels and
    /// any TLS session on it are all dropped. At the cap, [`accept`](Self::accept) waits (the
    /// kernel's backlog holds the connections meanwhile) and
    /// [`on_accept_backoff`](Self::on_accept_backoff) hears
    /// [`AcceptBackoff::ConnectionLimit`] once per burst of waits. With one listener per loop,
    /// two loops can accept at the same moment: the one that finds no room keeps its connection
    /// accepted but unserved until a place frees, so never more than the cap are handed out and
    /// at most one descriptor per loop waits beyond it.
    pub fn set_max_connections(&self, max: Option<usize>) {
        self.inner.limit.set_max(max);
    }

    /// The cap set by [`set_max_connections`](Self::set_max_connections).
    pub fn max_connections(&self) -> Option<usize> {
        self.inner.limit.max()
    }

    /// Whether the connection cap is reached now.
    #[cfg(feature = "tls")]
    pub(crate) fn is_full(&self) -> bool {
        self.inner.limit.full()
    }

    /// Connections accepted from this listener that are alive now.
    pub fn connections(&self) -> usize {
        self.inner.limit.live()
    }

    /// Stops listening now; see [Lifecycle](Self#lifecycle). Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Whether the listener is closed ([`close`](Self::close), or its manager closed).
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Waits until the listener is closed (Ktor's `awaitClosed`).
    pub async fn await_closed(&self) {
        // Every listener closes at once (by `close` or the manager), the first among them.
        poll_fn(|cx| self.inner.ios[0].poll_closed(cx)).await
    }

    /// Calls `handler` once when [`accept`](Self::accept) starts backing off because the process
    /// (or system) is out of descriptors, and once when accepting works again: one report per
    /// burst, however many retries it took (and however many loops accept), so a server can
    /// log it without flooding its log. It runs on the thread that called `accept` (an event
    /// loop): keep it short.
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
            .inner
            .backoff
            .handler
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Box::new(handler));
    }

    /// Waits for the next connection on listener `i` alone (with per-loop listeners, the one
    /// registered with loop `i`), for a TLS listener's per-loop accepting tasks. `Ok(None)`: a
    /// connection failed while it was accepted or set up (the listener is fine); errors are
    /// the listener's own, as in [`serve`](Self::serve).
    #[cfg(feature = "tls")]
    pub(crate) async fn accept_on(&self, i: usize) -> Result<Option<Socket>> {
        match self.inner.accept(i..i + 1).await {
            Ok(socket) => Ok(Some(socket)),
            Err(AcceptError::Connection(_)) => Ok(None),
            Err(AcceptError::Listener(e)) => Err(e),
        }
    }

    /// The manager whose loops run this listener (TLS accept tasks run there).
    #[cfg(feature = "tls")]
    pub(crate) fn manager(&self) -> &Handle {
        &self.inner.manager
    }
}

impl Drop for ServerSocket {
    fn drop(&mut self) {
        // Accepting tasks of `serve` may still hold the listeners for a moment.
        self.inner.close();
    }
}

/// Cancels the tasks it holds when dropped.
struct CancelOnDrop<T>(Vec<crate::JoinHandle<T>>);

impl<T> Drop for CancelOnDrop<T> {
    fn drop(&mut self) {
        for t in self.0.drain(..) {
            t.cancel();
        }
    }
}

impl Listeners {
    /// Accepts from the listeners `range` names (indices taken modulo their count, the first
    /// tried first), waiting on all of them.
    async fn accept(
        &self,
        range: std::ops::Range<usize>,
    ) -> std::result::Result<Socket, AcceptError> {
        let n = self.ios.len();
        let mut backoff = Duration::from_millis(5);
        loop {
            if self.limit.full() {
                self.wait_for_room().await.map_err(AcceptError::Listener)?;
            }
            let r = poll_fn(|cx| {
                for i in range.clone() {
                    let io = &self.ios[i % n];
                    match io.poll_io(cx, Direction::Read, crate::sys::accept, |_| false) {
                        Poll::Ready(r) => return Poll::Ready(r),
                        Poll::Pending => {}
                    }
                }
                Poll::Pending
            })
            .await;
            match r {
                Ok((raw, peer)) => {
                    self.backoff.ended();
                    let mut socket = self
                        .wrap_accepted(raw, &peer)
                        .map_err(AcceptError::Connection)?;
                    // Another loop may have taken the last place while this one waited in
                    // accept: the connection waits here, accepted but not served, until there
                    // is room (so at most one connection per loop waits beyond the cap).
                    let permit = loop {
                        if let Some(p) = self.limit.try_permit() {
                            break p;
                        }
                        self.wait_for_room().await.map_err(AcceptError::Listener)?;
                    };
                    socket.hold_permit(permit);
                    return Ok(socket);
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
                Err(_) if self.is_closed() => {
                    return Err(AcceptError::Listener(Error::Closed("server socket")))
                }
                Err(e) if is_connection_error(&e) => {
                    return Err(AcceptError::Connection(Error::io("accept", e)))
                }
                Err(e) => return Err(AcceptError::Listener(Error::io("accept", e))),
            }
        }
    }

    /// Waits until the connection cap leaves room, or the listener closes.
    async fn wait_for_room(&self) -> Result<()> {
        if let Some(max) = self.limit.max() {
            if self.limit.wait_starts_burst() {
                self.backoff.report(&AcceptBackoff::ConnectionLimit { max });
            }
        }
        poll_fn(|cx| {
            if self.ios[0].poll_closed(cx).is_ready() {
                return Poll::Ready(Err(Error::Closed("server socket")));
            }
            self.limit.poll_room(cx).map(Ok)
        })
        .await
    }

    /// Wraps a socket [`sys::accept`](crate::sys::accept) gave (non-blocking already).
    fn wrap_accepted(&self, raw: RawSocket, peer: &SockAddr) -> Result<Socket> {
        let kind = if self.local.as_unix().is_some() {
            Kind::Unix
        } else {
            Kind::TcpStream
        };
        // Options on the listener are for the listener; these are the ones a connection takes.
        let mut o = self.options.clone();
        o.send_buffer_size = None;
        o.receive_buffer_size = None;
        o.apply(&raw, kind, os::is_ipv6(&self.local))?;
        // A connection to a listener on one IP address has exactly the listener's address: no
        // `getsockname` for it. On a wildcard address (or a Unix path) the kernel says.
        let local = match &self.local {
            SocketAddress::Inet(a) if !a.ip().is_unspecified() => Some(self.local.clone()),
            _ => None,
        };
        Socket::from_raw(
            raw,
            &self.manager,
            local,
            Some(from_sockaddr(peer)),
            self.options.socket_timeout,
            ready::ALL,
        )
    }

    fn close(&self) {
        if let Some(f) = &self.unix_file {
            f.remove();
        }
        for io in &self.ios {
            io.close();
        }
    }

    fn is_closed(&self) -> bool {
        self.ios[0].is_closed()
    }
}

/// Errors `accept(2)` reports for a connection that failed before it was accepted, which
/// Linux documents should be treated like `EAGAIN`: retry, the listener is fine.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ENETDOWN
                | libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::EPERM
                | libc::ETIMEDOUT
                | libc::ECONNRESET
        )
    )
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
    /// `accept` reached the listener's connection cap
    /// ([`ServerSocket::set_max_connections`]) and waits until a connection goes; pending
    /// connections stay in the backlog. Reported once per burst (waits less than a second
    /// apart are one burst).
    ConnectionLimit {
        /// The cap.
        max: usize,
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
    /// The first listening descriptor; see [`raw_fds`](ServerSocket::raw_fds) for all of them.
    fn as_raw_fd(&self) -> RawFd {
        self.inner.ios[0].get_ref().as_raw_fd()
    }
}

impl AsFd for ServerSocket {
    /// The (first) listener's descriptor; see [`raw_fds`](ServerSocket::raw_fds) for all of
    /// them. After [`close`](ServerSocket::close) it stays valid but names a dead socket, on
    /// which every operation fails.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.ios[0].get_ref().as_fd()
    }
}
