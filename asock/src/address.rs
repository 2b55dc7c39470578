//! Socket addresses (IP or Unix path) and name resolution off the event loops.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};

/// Where a socket lives: an IP address and port, or a Unix-domain socket path.
///
/// Parses from and displays as `127.0.0.1:2323`, `[::1]:2323` or `unix:/path/to.sock`.
///
/// ```
/// use asock::SocketAddress;
/// let a: SocketAddress = "[::1]:2323".parse().unwrap();
/// assert_eq!(a.port(), Some(2323));
/// assert_eq!(a.to_string(), "[::1]:2323");
/// let u: SocketAddress = "unix:echo.sock".parse().unwrap();
/// assert_eq!(u.port(), None);
/// assert_eq!(u.to_string(), "unix:echo.sock");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SocketAddress {
    /// An IPv4 or IPv6 address with a port.
    Inet(SocketAddr),
    /// A Unix-domain socket path (a leading `@` names a Linux abstract socket).
    Unix(PathBuf),
}

impl SocketAddress {
    /// The port, for an IP address.
    pub fn port(&self) -> Option<u16> {
        match self {
            SocketAddress::Inet(a) => Some(a.port()),
            SocketAddress::Unix(_) => None,
        }
    }

    /// The IP socket address, if this is one.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            SocketAddress::Inet(a) => Some(*a),
            SocketAddress::Unix(_) => None,
        }
    }

    /// The Unix path, if this is one.
    pub fn as_unix(&self) -> Option<&Path> {
        match self {
            SocketAddress::Inet(_) => None,
            SocketAddress::Unix(p) => Some(p),
        }
    }
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Inet(a) => a.fmt(f),
            SocketAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl From<SocketAddr> for SocketAddress {
    fn from(a: SocketAddr) -> Self {
        SocketAddress::Inet(a)
    }
}

impl FromStr for SocketAddress {
    type Err = Error;

    /// Parses a literal address; host names are not resolved here (see [`ToSocketAddress`]).
    fn from_str(s: &str) -> Result<Self> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(Error::InvalidAddress(s.to_string()));
            }
            return Ok(SocketAddress::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>()
            .map(SocketAddress::Inet)
            .map_err(|_| Error::InvalidAddress(s.to_string()))
    }
}

/// An address that may still need a name lookup: what [`ToSocketAddress`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Already concrete.
    Resolved(SocketAddress),
    /// A host name and port, to be resolved on the blocking pool.
    Host(String, u16),
}

/// Anything that names a socket address: `&str` (`"host:port"`, `"[::1]:80"`, `"unix:path"`),
/// `String`, [`SocketAddr`], [`SocketAddress`], `(host, port)` and `(IpAddr, port)`.
pub trait ToSocketAddress {
    /// Turns `self` into a target; fails only for text that names no address at all.
    fn to_target(&self) -> Result<Target>;
}

impl ToSocketAddress for SocketAddress {
    fn to_target(&self) -> Result<Target> {
        Ok(Target::Resolved(self.clone()))
    }
}

impl ToSocketAddress for SocketAddr {
    fn to_target(&self) -> Result<Target> {
        Ok(Target::Resolved(SocketAddress::Inet(*self)))
    }
}

impl ToSocketAddress for (IpAddr, u16) {
    fn to_target(&self) -> Result<Target> {
        Ok(Target::Resolved(SocketAddress::Inet((*self).into())))
    }
}

impl ToSocketAddress for (&str, u16) {
    fn to_target(&self) -> Result<Target> {
        let host = self.0.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => (ip, self.1).to_target(),
            Err(_) if !host.is_empty() => Ok(Target::Host(host.to_string(), self.1)),
            Err(_) => Err(Error::InvalidAddress(format!("{}:{}", self.0, self.1))),
        }
    }
}

impl ToSocketAddress for (String, u16) {
    fn to_target(&self) -> Result<Target> {
        (self.0.as_str(), self.1).to_target()
    }
}

impl ToSocketAddress for str {
    fn to_target(&self) -> Result<Target> {
        if let Ok(a) = self.parse::<SocketAddress>() {
            return Ok(Target::Resolved(a));
        }
        let bad = || Error::InvalidAddress(self.to_string());
        let (host, port) = self.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.contains(':') && !host.starts_with('[') {
            return Err(bad());
        }
        (host, port).to_target()
    }
}

impl ToSocketAddress for String {
    fn to_target(&self) -> Result<Target> {
        self.as_str().to_target()
    }
}

impl<T: ToSocketAddress + ?Sized> ToSocketAddress for &T {
    fn to_target(&self) -> Result<Target> {
        (**self).to_target()
    }
}

/// Resolves a target to its addresses, running any name lookup on the blocking pool so that no
/// event loop ever waits for DNS.
pub async fn resolve(target: Target) -> Result<Vec<SocketAddress>> {
    match target {
        Target::Resolved(a) => Ok(vec![a]),
        Target::Host(host, port) => {
            let (host, res) = blocking::unblock(move || {
                let res = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(|it| it.collect::<Vec<_>>());
                (host, res)
            })
            .await;
            match res {
                Ok(list) if !list.is_empty() => {
                    Ok(list.into_iter().map(SocketAddress::Inet).collect())
                }
                Ok(_) => Err(Error::Resolve {
                    host,
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
                }),
                Err(source) => Err(Error::Resolve { host, source }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        for s in [
            "127.0.0.1:2323",
            "[::1]:2323",
            "unix:echo.sock",
            "unix:/tmp/a b.sock",
        ] {
            let a: SocketAddress = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        assert!("nonsense".parse::<SocketAddress>().is_err());
        assert!("unix:".parse::<SocketAddress>().is_err());
    }

    #[test]
    fn targets() {
        assert_eq!(
            "localhost:80".to_target().unwrap(),
            Target::Host("localhost".into(), 80)
        );
        assert_eq!(
            ("::1", 80).to_target().unwrap(),
            Target::Resolved("[::1]:80".parse().unwrap())
        );
        assert!("localhost".to_target().is_err());
        assert!("host:99999".to_target().is_err());
        assert!(":80".to_target().is_err());
    }
}
