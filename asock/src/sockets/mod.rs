//! Socket builders and socket types: [`a_socket`] → [`SocketBuilder`] → `.tcp()`.

mod datagram;
mod limit;
mod listener;
mod options;
mod os;
mod stream;
mod tcp;
mod unix;

use socket2::SockAddr;

pub use datagram::{
    BatchIter, BatchPackets, BoundDatagramSocket, ConnectedDatagramSocket, Datagram, DatagramBatch,
    DatagramSender, Incoming, UdpSocketBuilder,
};
pub use listener::{AcceptBackoff, ServerSocket};
pub use options::SocketOptions;
pub(crate) use options::{option_setters, Kind};
#[cfg(feature = "tls")]
pub(crate) use stream::StreamShared;
pub use stream::{Connection, Socket};
pub use tcp::TcpSocketBuilder;
pub use unix::PeerCredentials;

use crate::address::SocketAddress;
use crate::SelectorManager;

/// Starts building sockets driven by `selector`: Ktor's `aSocket(selector)`.
///
/// ```no_run
/// # async fn demo() -> asock::Result<()> {
/// let selector = asock::SelectorManager::new()?;
/// let server = asock::a_socket(&selector).tcp().bind("127.0.0.1:2323").await?;
/// let client = asock::a_socket(&selector).tcp().connect("127.0.0.1:2323").await?;
/// # Ok(()) }
/// ```
pub fn a_socket(selector: &SelectorManager) -> SocketBuilder {
    SocketBuilder {
        manager: selector.clone(),
        options: SocketOptions::default(),
    }
}

/// Chooses the protocol and shared options; made by [`a_socket`].
#[derive(Debug, Clone)]
pub struct SocketBuilder {
    pub(crate) manager: SelectorManager,
    pub(crate) options: SocketOptions,
}

impl SocketBuilder {
    /// Stream sockets: TCP, or Unix-domain streams for [`SocketAddress::Unix`] addresses.
    pub fn tcp(self) -> TcpSocketBuilder {
        TcpSocketBuilder::new(self.manager, self.options)
    }

    /// Datagram sockets: UDP, or Unix-domain datagrams for [`SocketAddress::Unix`] addresses.
    ///
    /// UDP sockets start with `reuse_address` off whatever was set here (set it on the UDP
    /// builder when wanted); the other options carry over.
    pub fn udp(self) -> UdpSocketBuilder {
        UdpSocketBuilder::new(self.manager, self.options)
    }

    option_setters!();
}

/// Converts an OS socket address into ours.
pub(crate) fn from_sockaddr(sa: &SockAddr) -> SocketAddress {
    if let Some(a) = sa.as_socket() {
        return SocketAddress::Inet(a);
    }
    if let Some(p) = sa.as_pathname() {
        return SocketAddress::Unix(p.to_path_buf());
    }
    if let Some(name) = sa.as_abstract_namespace() {
        let mut s = String::from("@");
        s.push_str(&String::from_utf8_lossy(name));
        return SocketAddress::Unix(s.into());
    }
    SocketAddress::Unix(std::path::PathBuf::new())
}

/// Converts our address into the OS's.
pub(crate) fn to_sockaddr(a: &SocketAddress) -> std::io::Result<SockAddr> {
    match a {
        SocketAddress::Inet(a) => Ok(SockAddr::from(*a)),
        SocketAddress::Unix(p) => match p.to_str().and_then(|s| s.strip_prefix('@')) {
            Some(name) => SockAddr::unix(format!("\0{name}")),
            None => SockAddr::unix(p),
        },
    }
}
