//! Socket options, with Ktor's defaults, and how they are applied.

use std::time::Duration;

use socket2::Socket as RawSocket;

use super::os;
use crate::error::{Error, Result};

/// Options for sockets made by a builder; see [`crate::SocketBuilder::configure`].
///
/// `None` means "the operating system's default". Ktor's defaults apply otherwise: TCP
/// `no_delay` on, listener backlog 511, `reuse_address` on for listeners (as every server sets).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketOptions {
    /// `TCP_NODELAY`: send small writes at once (default on).
    pub no_delay: bool,
    /// `SO_KEEPALIVE`.
    pub keep_alive: Option<bool>,
    /// `SO_REUSEADDR` (default on for listeners).
    pub reuse_address: bool,
    /// `SO_REUSEPORT`: several sockets may bind the same address and port.
    pub reuse_port: bool,
    /// `IP_TOS` / `IPV6_TCLASS`.
    pub type_of_service: Option<u32>,
    /// `SO_SNDBUF`, in bytes.
    pub send_buffer_size: Option<usize>,
    /// `SO_RCVBUF`, in bytes.
    pub receive_buffer_size: Option<usize>,
    /// `SO_LINGER`: how long `close` may wait to send what is queued.
    pub linger: Option<Duration>,
    /// Idle timeout for channel reads and writes: no progress for this long fails the
    /// operation with [`Error::Timeout`].
    pub socket_timeout: Option<Duration>,
    /// Listen backlog (default 511).
    pub backlog: u32,
    /// Limit for each connection attempt.
    pub connect_timeout: Option<Duration>,
    /// `SO_BROADCAST` (UDP).
    pub broadcast: bool,
    /// `IP_TTL` / unicast hop limit.
    pub ttl: Option<u32>,
    /// `IP_MULTICAST_LOOP` / `IPV6_MULTICAST_LOOP` (UDP).
    pub multicast_loop: Option<bool>,
    /// `IP_MULTICAST_TTL` / `IPV6_MULTICAST_HOPS` (UDP).
    pub multicast_ttl: Option<u32>,
    /// Unix-domain bind: replace a stale socket file (one nothing accepts on) instead of failing
    /// with [`Error::AddressInUse`]. A file that is not a socket is never removed.
    pub replace_stale: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            no_delay: true,
            keep_alive: None,
            reuse_address: true,
            reuse_port: false,
            type_of_service: None,
            send_buffer_size: None,
            receive_buffer_size: None,
            linger: None,
            socket_timeout: None,
            backlog: 511,
            connect_timeout: None,
            broadcast: false,
            ttl: None,
            multicast_loop: None,
            multicast_ttl: None,
            replace_stale: false,
        }
    }
}

/// What kind of socket options are applied to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A TCP connection being made by `connect` (it takes the reuse options too, as in Ktor).
    TcpConnect,
    /// An accepted TCP connection (it inherits the listener's reuse options).
    TcpStream,
    /// A TCP listener.
    TcpListener,
    /// A Unix stream or listener.
    Unix,
    /// A UDP socket.
    Udp,
}

impl SocketOptions {
    /// Refuses options that cannot apply to `kind`, rather than ignore them silently. Options
    /// with a default (`no_delay`, `reuse_address`) are simply not applied where they mean
    /// nothing.
    pub(crate) fn check(&self, kind: Kind) -> Result<()> {
        let socket = match kind {
            Kind::Udp => "UDP",
            Kind::Unix => "Unix-domain",
            _ => return Ok(()),
        };
        let refuse = |option| Err(Error::UnsupportedOption { option, socket });
        if self.keep_alive.is_some() {
            return refuse("keep_alive");
        }
        if kind == Kind::Udp && self.linger.is_some() {
            return refuse("linger");
        }
        if kind == Kind::Unix {
            if self.type_of_service.is_some() {
                return refuse("type_of_service");
            }
            if self.ttl.is_some() {
                return refuse("ttl");
            }
            if self.reuse_port {
                return refuse("reuse_port");
            }
        }
        Ok(())
    }

    /// Applies the options that concern `kind` to `s` (after [`check`](Self::check)), once
    /// the platform has prepared it ([`sys::prepare_socket`](crate::sys::prepare_socket):
    /// `SO_NOSIGPIPE` on Apple systems). Every socket asock makes or accepts passes here.
    pub(crate) fn apply(&self, s: &RawSocket, kind: Kind, ipv6: bool) -> Result<()> {
        self.check(kind)?;
        let e = |source| Error::io("set socket option", source);
        crate::sys::prepare_socket(s).map_err(e)?;
        if matches!(kind, Kind::TcpStream | Kind::TcpConnect) {
            s.set_nodelay(self.no_delay).map_err(e)?;
            if let Some(k) = self.keep_alive {
                s.set_keepalive(k).map_err(e)?;
            }
        }
        if matches!(kind, Kind::TcpListener | Kind::TcpConnect | Kind::Udp) {
            if self.reuse_address {
                s.set_reuse_address(true).map_err(e)?;
            }
            if self.reuse_port {
                s.set_reuse_port(true).map_err(e)?;
            }
        }
        if let Some(n) = self.send_buffer_size {
            s.set_send_buffer_size(n).map_err(e)?;
        }
        if let Some(n) = self.receive_buffer_size {
            s.set_recv_buffer_size(n).map_err(e)?;
        }
        if kind != Kind::Unix {
            if let Some(tos) = self.type_of_service {
                os::set_type_of_service(s, ipv6, tos).map_err(e)?;
            }
            if let Some(ttl) = self.ttl {
                os::set_ttl(s, ipv6, ttl).map_err(e)?;
            }
        }
        if kind == Kind::Udp && self.broadcast {
            s.set_broadcast(true).map_err(e)?;
        }
        if self.linger.is_some() && kind != Kind::Udp {
            s.set_linger(self.linger).map_err(e)?;
        }
        if kind == Kind::Udp {
            if let Some(on) = self.multicast_loop {
                os::set_multicast_loop(s, ipv6, on).map_err(e)?;
            }
            if let Some(ttl) = self.multicast_ttl {
                os::set_multicast_ttl(s, ipv6, ttl).map_err(e)?;
            }
        }
        Ok(())
    }
}

/// Typed setters shared by the builders, each a thin layer over [`SocketOptions`].
macro_rules! option_setters {
    () => {
        /// Edits all options at once, like Ktor's `configure { }`.
        pub fn configure(mut self, f: impl FnOnce(&mut $crate::SocketOptions)) -> Self {
            f(&mut self.options);
            self
        }
        /// `TCP_NODELAY` (default on).
        pub fn no_delay(mut self, on: bool) -> Self {
            self.options.no_delay = on;
            self
        }
        /// `SO_KEEPALIVE`.
        pub fn keep_alive(mut self, on: bool) -> Self {
            self.options.keep_alive = Some(on);
            self
        }
        /// `SO_REUSEADDR` (default on for listeners).
        pub fn reuse_address(mut self, on: bool) -> Self {
            self.options.reuse_address = on;
            self
        }
        /// `SO_REUSEPORT`.
        pub fn reuse_port(mut self, on: bool) -> Self {
            self.options.reuse_port = on;
            self
        }
        /// `IP_TOS` / `IPV6_TCLASS`.
        pub fn type_of_service(mut self, tos: u32) -> Self {
            self.options.type_of_service = Some(tos);
            self
        }
        /// `SO_SNDBUF`.
        pub fn send_buffer_size(mut self, bytes: usize) -> Self {
            self.options.send_buffer_size = Some(bytes);
            self
        }
        /// `SO_RCVBUF`.
        pub fn receive_buffer_size(mut self, bytes: usize) -> Self {
            self.options.receive_buffer_size = Some(bytes);
            self
        }
        /// `SO_LINGER`.
        pub fn linger(mut self, linger: std::time::Duration) -> Self {
            self.options.linger = Some(linger);
            self
        }
        /// Idle timeout for reads and writes through the channels ([`Error::Timeout`](crate::Error::Timeout)).
        pub fn socket_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.options.socket_timeout = Some(timeout);
            self
        }
        /// `IP_TTL` / unicast hop limit.
        pub fn ttl(mut self, ttl: u32) -> Self {
            self.options.ttl = Some(ttl);
            self
        }
        /// The options as set so far.
        pub fn options(&self) -> &$crate::SocketOptions {
            &self.options
        }
    };
}
pub(crate) use option_setters;
