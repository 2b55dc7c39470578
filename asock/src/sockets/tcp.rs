//! [`TcpSocketBuilder`]: stream socket options, `bind` (listeners, see `listener.rs`) and
//! `connect`, for TCP and Unix-domain streams.

use std::future::poll_fn;
use std::io;
use std::time::Duration;

use socket2::{Socket as RawSocket, Type};

use super::listener::ServerSocket;
use super::{from_sockaddr, option_setters, os, to_sockaddr, Kind, Socket, SocketOptions};
use crate::address::{resolve, SocketAddress, ToSocketAddress};
use crate::error::{Error, Result};
use crate::selector::registration::ready;
use crate::selector::source::IoSource;
use crate::SelectorManager;

/// Builds TCP servers and clients: `a_socket(&selector).tcp()`.
#[derive(Debug, Clone)]
pub struct TcpSocketBuilder {
    manager: SelectorManager,
    options: SocketOptions,
    /// `None`: one listener per loop when the manager has more than one loop.
    per_loop: Option<bool>,
}

impl TcpSocketBuilder {
    pub(crate) fn new(manager: SelectorManager, options: SocketOptions) -> Self {
        TcpSocketBuilder {
            manager,
            options,
            per_loop: None,
        }
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

    /// One listening socket per event loop (`SO_REUSEPORT`), each registered with its own loop,
    /// instead of one listener for all loops. Default: on when the manager has more than one
    /// loop; Unix-domain listeners always have one socket.
    ///
    /// With it the kernel spreads new connections over the loops' listeners, so a server that
    /// accepts on every loop ([`ServerSocket::serve`]) accepts, registers and serves each
    /// connection on one thread, with no hand-off between loops. On Linux with pinned loops
    /// ([`Builder::pin_threads`](crate::selector::Builder::pin_threads)) each listener also
    /// sets `SO_INCOMING_CPU` to its loop's CPU, so a kernel that honours it in the reuseport
    /// group (one with the 2022 fix "soreuseport: Fix socket selection for SO_INCOMING_CPU";
    /// from Linux 4.6 until then it is accepted and ignored there) hands a connection to the
    /// listener of the CPU that received it.
    ///
    /// `close`, `await_closed`, the accept back-off, [`local_address`](ServerSocket::local_address)
    /// and port 0 (every listener takes the port the first one got) work as for one listener.
    /// A bind to a port that another socket holds fails with [`Error::AddressInUse`] as usual
    /// (it is checked with a socket without `SO_REUSEPORT` first) unless `reuse_port(true)` was
    /// asked for, which joins another `SO_REUSEPORT` group of the same user on purpose.
    pub fn listener_per_loop(mut self, on: bool) -> Self {
        self.per_loop = Some(on);
        self
    }

    /// Listens on `address` (port 0 picks a free port; see [`ServerSocket::local_address`]).
    ///
    /// A host name is resolved off the event loops and the first address is used. Fails with
    /// [`Error::AddressInUse`] when another socket holds the address. On a manager with more
    /// than one loop this opens one listener per loop; see
    /// [`listener_per_loop`](Self::listener_per_loop).
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
        let handle = self.manager.handle();
        let loops = handle.loops();
        let per_loop = matches!(addr, SocketAddress::Inet(_))
            && self.per_loop.unwrap_or(loops.len() > 1)
            && loops.len() > 1;
        if !per_loop {
            let (raw, local, unix_file) = self.open_listener(&addr, self.options.reuse_port)?;
            let io = IoSource::new(raw, handle, ready::READABLE);
            return Ok(ServerSocket::new(
                vec![io],
                local,
                handle,
                self.options,
                unix_file,
            ));
        }
        if !self.options.reuse_port && addr.port() != Some(0) {
            // SO_REUSEPORT would silently join a group another server of this user holds:
            // find a holder first with a socket that does not share.
            self.probe(&addr)?;
        }
        let (first, local, _) = self.open_listener(&addr, true)?;
        let mut raws = vec![first];
        for _ in 1..loops.len() {
            raws.push(self.open_listener(&local, true)?.0);
        }
        let mut ios = Vec::with_capacity(raws.len());
        for (raw, lp) in raws.into_iter().zip(loops) {
            if let Some(cpu) = lp.cpu() {
                // Steering is an optimization: a kernel without it serves unsteered.
                let _ = raw.set_cpu_affinity(cpu);
            }
            let io = IoSource::new(raw, handle, ready::READABLE);
            // Each on its own loop now: accepts there take no cross-thread wake-up.
            io.register_on(lp).map_err(|e| match handle.is_closed() {
                true => Error::Closed("selector manager"),
                false => Error::io("register listener", e),
            })?;
            ios.push(io);
        }
        Ok(ServerSocket::new(ios, local, handle, self.options, None))
    }

    /// Fails with [`Error::AddressInUse`] when a socket listens on `addr`: binds (without
    /// listening, so no connection can land on it) a socket that does not share the port.
    fn probe(&self, addr: &SocketAddress) -> Result<()> {
        if !matches!(addr, SocketAddress::Inet(_)) {
            return Ok(());
        }
        let mut options = self.options.clone();
        options.reuse_port = false;
        let raw = os::new_socket(addr, Type::STREAM, Kind::TcpListener, &options)?;
        os::bind(&raw, addr, Type::STREAM, false).map(drop)
    }

    /// Opens one listening socket on `addr`, with `SO_REUSEPORT` when `reuse_port`.
    fn open_listener(
        &self,
        addr: &SocketAddress,
        reuse_port: bool,
    ) -> Result<(RawSocket, SocketAddress, Option<super::unix::PathGuard>)> {
        let mut options = self.options.clone();
        options.reuse_port = reuse_port;
        let raw = os::new_socket(addr, Type::STREAM, Kind::TcpListener, &options)?;
        let unix_file = os::bind(&raw, addr, Type::STREAM, self.options.replace_stale)?;
        let backlog = i32::try_from(self.options.backlog).unwrap_or(i32::MAX);
        raw.listen(backlog).map_err(|e| Error::io("listen", e))?;
        let local = raw
            .local_addr()
            .map(|a| from_sockaddr(&a))
            .map_err(|e| Error::io("local address", e))?;
        Ok((raw, local, unix_file))
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
        let raw = os::new_socket(addr, Type::STREAM, Kind::TcpConnect, &self.options)?;
        let sa = to_sockaddr(addr).map_err(|e| Error::io("connect", e))?;
        let in_progress = match raw.connect(&sa) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) => return Err(os::connect_error(addr, e)),
        };
        let socket = Socket::from_raw(
            raw,
            self.manager.handle(),
            None,
            Some(addr.clone()),
            self.options.socket_timeout,
            if in_progress { 0 } else { ready::ALL },
        );
        let socket = socket?;
        if in_progress {
            socket
                .await_connected()
                .await
                .map_err(|e| os::connect_error(addr, e))?;
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
