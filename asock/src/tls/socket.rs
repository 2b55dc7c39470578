//! [`TlsSocket`]: a socket after a TLS handshake.

#[cfg(any(feature = "futures-io", feature = "tokio"))]
use std::io;
use std::sync::Arc;
#[cfg(any(feature = "futures-io", feature = "tokio"))]
use std::task::{Context, Poll};
use std::time::Duration;

use super::session::{HandshakeInfo, TlsSession};
use super::{CertificateDer, CipherSuite, TlsVersion};
use crate::address::SocketAddress;
#[cfg(any(feature = "futures-io", feature = "tokio"))]
use crate::channel::Source;
use crate::{ByteReadChannel, ByteWriteChannel, Socket};

/// A connected socket speaking TLS: what [`Socket::tls`] and [`Socket::tls_server`] return.
///
/// It has the API of a plain [`Socket`]: [`open_read_channel`](Self::open_read_channel) and
/// [`open_write_channel`](Self::open_write_channel) give the same [`ByteReadChannel`] and
/// [`ByteWriteChannel`], reading and writing plaintext. It also implements `futures_io`'s
/// `AsyncRead` and `AsyncWrite` directly (feature `futures-io`, on by default), and tokio's
/// (feature `tokio`); use either the channels or those traits on one socket, not both.
///
/// End of stream: the peer's `close_notify` is a clean end of stream; a TCP close without one
/// fails the read with [`Error::Tls`](crate::Error::Tls) and
/// [`TlsReason::Truncated`](crate::TlsReason::Truncated). Closing the write channel sends
/// `close_notify` and then half-closes the TCP connection.
pub struct TlsSocket {
    socket: Socket,
    session: Arc<TlsSession>,
    info: HandshakeInfo,
}

impl std::fmt::Debug for TlsSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSocket")
            .field("local", self.local_address())
            .field("remote", self.remote_address())
            .field("version", &self.info.version)
            .field("cipher_suite", &self.info.suite)
            .field("server_name", &self.info.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsSocket {
    pub(crate) fn new(socket: Socket, session: Arc<TlsSession>, info: HandshakeInfo) -> Self {
        TlsSocket {
            socket,
            session,
            info,
        }
    }

    /// The local end's address.
    pub fn local_address(&self) -> &SocketAddress {
        self.socket.local_address()
    }

    /// The peer's address.
    pub fn remote_address(&self) -> &SocketAddress {
        self.socket.remote_address()
    }

    /// The underlying plain socket, for its options (`set_no_delay`, `set_socket_timeout`,
    /// ...). Do not read or write through it.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Opens the read side: decrypted bytes.
    pub fn open_read_channel(&self) -> ByteReadChannel {
        ByteReadChannel::new(self.session.clone())
    }

    /// Opens the write side; with `auto_flush` every write call is encrypted and sent before it
    /// returns. Closing it sends `close_notify`.
    pub fn open_write_channel(&self, auto_flush: bool) -> ByteWriteChannel {
        ByteWriteChannel::new(self.session.clone(), auto_flush)
    }

    /// Opens both channels at once.
    pub fn connection(self, auto_flush: bool) -> TlsConnection {
        TlsConnection {
            input: self.open_read_channel(),
            output: self.open_write_channel(auto_flush),
            socket: self,
        }
    }

    /// The protocol the peers agreed on through ALPN.
    pub fn negotiated_alpn(&self) -> Option<&[u8]> {
        self.info.alpn.as_deref()
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> Option<TlsVersion> {
        self.info.version
    }

    /// The negotiated cipher suite (`as_str()` gives its IANA name).
    pub fn cipher_suite(&self) -> Option<CipherSuite> {
        self.info.suite
    }

    /// The certificate chain the peer presented, leaf first (empty when it presented none).
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.info.peer_certs
    }

    /// On a client: the name the server was verified against (and sent as SNI). On a server:
    /// the SNI name the client asked for, if any.
    pub fn server_name(&self) -> Option<&str> {
        self.info.server_name.as_deref()
    }

    /// Whether the handshake resumed an earlier session.
    pub fn is_resumed(&self) -> bool {
        self.info.resumed
    }

    /// Sets how long one channel read or write may wait; see [`Socket::set_socket_timeout`].
    pub fn set_socket_timeout(&self, timeout: Option<Duration>) {
        self.socket.set_socket_timeout(timeout);
    }

    /// Sends `close_notify` (if the socket takes it without waiting) and closes the socket at
    /// once, as [`Socket::close`] does: pending channel operations fail with
    /// [`Error::Closed`](crate::Error::Closed). Bytes still queued in a write channel are not
    /// sent: `close` the write channel first for an orderly end.
    pub fn close(&self) {
        self.session.close_now();
        self.socket.close();
    }

    /// Whether the socket is closed; see [`Socket::is_closed`].
    pub fn is_closed(&self) -> bool {
        self.socket.is_closed()
    }

    /// Waits until the socket is closed.
    pub async fn await_closed(&self) {
        self.socket.await_closed().await
    }
}

/// The poll functions behind the I/O traits (`compat/futures_io.rs`, `compat/tokio.rs`):
/// plaintext straight from and to the TLS session; the close sends close_notify, then
/// half-closes TCP.
#[cfg(any(feature = "futures-io", feature = "tokio"))]
impl TlsSocket {
    pub(crate) fn poll_read_io(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.session.poll_read(cx, buf)
    }

    pub(crate) fn poll_write_io(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.session.poll_write(cx, buf)
    }

    pub(crate) fn poll_flush_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Source::poll_flush(&*self.session, cx)
    }

    pub(crate) fn poll_close_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.session.poll_shutdown_write(cx)
    }
}

/// A TLS socket with both channels open: [`TlsSocket::connection`].
#[derive(Debug)]
pub struct TlsConnection {
    /// The socket.
    pub socket: TlsSocket,
    /// Its read channel (plaintext).
    pub input: ByteReadChannel,
    /// Its write channel (plaintext).
    pub output: ByteWriteChannel,
}
