//! The one place OS sockets are made, bound and connected for the builders (TCP, Unix streams,
//! UDP, Unix datagrams), with the errors a user sees, and the option helpers that pick the IPv4
//! or IPv6 form of an option (type of service, TTL, multicast) for the builders and the
//! sockets' setters alike.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket as RawSocket, Type};

use super::unix::{self, PathGuard};
use super::{to_sockaddr, Kind, SocketOptions};
use crate::address::SocketAddress;
use crate::error::{Error, Result};

/// Makes a non-blocking socket for `addr`: TCP (`ty` stream) or UDP (`ty` datagram) for an IP
/// address, used as `inet` says (connect, listener, UDP); a Unix-domain socket of `ty` for a
/// Unix address. The platform prepares it and `options` are applied
/// ([`SocketOptions::apply`]).
pub(crate) fn new_socket(
    addr: &SocketAddress,
    ty: Type,
    inet: Kind,
    options: &SocketOptions,
) -> Result<RawSocket> {
    let (domain, kind, protocol) = match addr {
        SocketAddress::Inet(a) => {
            let protocol = if ty == Type::DGRAM {
                Protocol::UDP
            } else {
                Protocol::TCP
            };
            (Domain::for_address(*a), inet, Some(protocol))
        }
        SocketAddress::Unix(_) => (Domain::UNIX, Kind::Unix, None),
    };
    let raw = RawSocket::new(domain, ty.nonblocking(), protocol)
        .map_err(|e| Error::io("create socket", e))?;
    options.apply(&raw, kind, domain == Domain::IPV6)?;
    Ok(raw)
}

/// Binds `raw` (of type `ty`) to `addr`. For a Unix path the file is got ready first (a stale
/// socket file is replaced when `replace_stale`, see [`unix::prepare_bind`]) and the returned
/// guard removes the file the bind created when the socket goes.
pub(crate) fn bind(
    raw: &RawSocket,
    addr: &SocketAddress,
    ty: Type,
    replace_stale: bool,
) -> Result<Option<PathGuard>> {
    if let Some(path) = unix::file_path(addr) {
        unix::prepare_bind(addr, path, ty, replace_stale)?;
    }
    let sa = to_sockaddr(addr).map_err(|e| Error::io("bind", e))?;
    raw.bind(&sa).map_err(|e| bind_error(addr, e))?;
    Ok(PathGuard::after_bind(addr))
}

/// A failed bind to `addr`: [`Error::AddressInUse`] when another socket holds it.
pub(crate) fn bind_error(addr: &SocketAddress, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::AddrInUse {
        Error::AddressInUse {
            addr: addr.clone(),
            source: Some(e),
        }
    } else {
        Error::io("bind", e)
    }
}

/// A failed connect to `addr`: [`Error::ConnectionRefused`] when nothing accepts there (for a
/// Unix path also when no socket file exists: a refusal too, to a user).
pub(crate) fn connect_error(addr: &SocketAddress, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Error::ConnectionRefused {
            addr: addr.clone(),
            source: e,
        },
        io::ErrorKind::NotFound if matches!(addr, SocketAddress::Unix(_)) => {
            Error::ConnectionRefused {
                addr: addr.clone(),
                source: e,
            }
        }
        _ => Error::io("connect", e),
    }
}

/// Whether `addr` is an IPv6 address (the options then take their IPv6 forms).
pub(crate) fn is_ipv6(addr: &SocketAddress) -> bool {
    matches!(addr, SocketAddress::Inet(SocketAddr::V6(_)))
}

/// `IP_TOS` (IPv4) or `IPV6_TCLASS` (IPv6).
pub(crate) fn set_type_of_service(s: &RawSocket, ipv6: bool, tos: u32) -> io::Result<()> {
    if ipv6 {
        s.set_tclass_v6(tos)
    } else {
        s.set_tos(tos)
    }
}

/// `IP_TTL` (IPv4) or the unicast hop limit (IPv6).
pub(crate) fn set_ttl(s: &RawSocket, ipv6: bool, ttl: u32) -> io::Result<()> {
    if ipv6 {
        s.set_unicast_hops_v6(ttl)
    } else {
        s.set_ttl(ttl)
    }
}

/// Reads `IP_TTL` (IPv4) or the unicast hop limit (IPv6).
pub(crate) fn ttl(s: &RawSocket, ipv6: bool) -> io::Result<u32> {
    if ipv6 {
        s.unicast_hops_v6()
    } else {
        s.ttl()
    }
}

/// `IP_MULTICAST_LOOP` (IPv4) or `IPV6_MULTICAST_LOOP` (IPv6).
pub(crate) fn set_multicast_loop(s: &RawSocket, ipv6: bool, on: bool) -> io::Result<()> {
    if ipv6 {
        s.set_multicast_loop_v6(on)
    } else {
        s.set_multicast_loop_v4(on)
    }
}

/// `IP_MULTICAST_TTL` (IPv4) or `IPV6_MULTICAST_HOPS` (IPv6).
pub(crate) fn set_multicast_ttl(s: &RawSocket, ipv6: bool, ttl: u32) -> io::Result<()> {
    if ipv6 {
        s.set_multicast_hops_v6(ttl)
    } else {
        s.set_multicast_ttl_v4(ttl)
    }
}
