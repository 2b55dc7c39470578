//! The one error type of asock.

use std::io;

use crate::address::SocketAddress;

/// The error behind a TLS failure, kept as [`Error::Tls`]'s and [`Error::TlsConfig`]'s
/// [`source`](std::error::Error::source): a `rustls::Error`, the `io::Error` of a file that
/// could not be read, a PEM parse error, ... (downcast it to look inside).
pub type TlsSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A specialised [`Result`](std::result::Result) for asock operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in asock.
///
/// Each variant has a message fit to show a user; where the operating system reported the
/// failure, its [`io::Error`] is kept as the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed; `op` names what was being done.
    #[error("{op} failed: {source}")]
    Io {
        /// What asock was doing, e.g. `"read"`.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A host name could not be resolved to any address.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The name that was looked up.
        host: String,
        /// Why the lookup failed.
        #[source]
        source: io::Error,
    },
    /// A text could not be parsed as a socket address.
    #[error("invalid address {0:?}: expected host:port, [v6]:port or unix:PATH")]
    InvalidAddress(String),
    /// The peer refused the connection (nothing listens on that port).
    #[error("connection refused by {addr}")]
    ConnectionRefused {
        /// The address that refused.
        addr: SocketAddress,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The address is already used by another socket.
    #[error("address {addr} is already in use")]
    AddressInUse {
        /// The address that was asked for.
        addr: SocketAddress,
        /// The operating system's error, if there was one.
        #[source]
        source: Option<io::Error>,
    },
    /// The peer reset the connection, or the pipe broke while writing.
    #[error("connection reset by peer")]
    ConnectionReset(#[source] io::Error),
    /// A connection attempt did not complete within the connect timeout.
    #[error("connect to {addr} timed out")]
    ConnectTimeout {
        /// The address that did not answer.
        addr: SocketAddress,
    },
    /// A read or write made no progress within the socket timeout, or a `timeout` expired.
    #[error("operation timed out")]
    Timeout,
    /// A line grew past the reader's limit without a line terminator.
    ///
    /// Nothing was consumed: the bytes of the line are still in the channel.
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// A line was not valid UTF-8. The line was consumed; its bytes are kept here.
    #[error("invalid UTF-8 in line (valid up to byte {valid_up_to})")]
    InvalidUtf8 {
        /// The raw bytes of the line, without its terminator.
        line: Vec<u8>,
        /// How many leading bytes of `line` are valid UTF-8.
        valid_up_to: usize,
    },
    /// The stream ended before the requested number of bytes arrived.
    #[error("unexpected end of stream: needed {needed} bytes, got {got}")]
    UnexpectedEof {
        /// Bytes requested.
        needed: usize,
        /// Bytes available when the stream ended.
        got: usize,
    },
    /// More bytes arrived than the caller allowed.
    #[error("more than {limit} bytes remain in the stream")]
    TooMuchData {
        /// The caller's limit.
        limit: usize,
    },
    /// The connection was shed: its read buffer counted against its
    /// [`SelectorManager`](crate::SelectorManager)'s memory budget
    /// ([`SelectorBuilder::max_memory`](crate::SelectorBuilder::max_memory)) when the budget was
    /// reached, and it held the most buffered-but-unconsumed bytes. Its socket is closed.
    #[error("connection shed: the memory budget of {limit} bytes was reached")]
    MemoryBudget {
        /// The budget, in bytes.
        limit: usize,
    },
    /// The socket, channel or selector was closed (locally) before or during the operation.
    #[error("{0} is closed")]
    Closed(&'static str),
    /// The task was cancelled before it finished.
    #[error("task was cancelled")]
    Cancelled,
    /// The task panicked; the panic message is kept.
    #[error("task panicked: {0}")]
    Panicked(String),
    /// A datagram is larger than the protocol allows; nothing was sent.
    #[error("datagram of {size} bytes is larger than the limit of {limit} bytes")]
    DatagramTooLarge {
        /// The payload size asked for.
        size: usize,
        /// The largest payload for the destination.
        limit: usize,
    },
    /// A datagram arrived that was larger than asock's receive buffer; it was discarded (the
    /// socket stays usable).
    #[error("a datagram from {from} was larger than {limit} bytes and was discarded")]
    DatagramTruncated {
        /// Who sent it.
        from: SocketAddress,
        /// The receive buffer size.
        limit: usize,
    },
    /// A connected datagram socket was asked to send to another address than its peer's.
    #[error("datagram addressed to {to}, but the socket is connected to {connected}")]
    WrongDestination {
        /// The datagram's address.
        to: SocketAddress,
        /// The peer the socket is connected to.
        connected: SocketAddress,
    },
    /// Sending to a broadcast address needs the `broadcast` option (`SO_BROADCAST`).
    #[error("sending to broadcast address {addr} needs the broadcast option")]
    BroadcastNotEnabled {
        /// The broadcast address.
        addr: SocketAddress,
    },
    /// A TLS handshake or TLS session failed; `reason` says why in a form to match on.
    #[error("TLS {reason}: {detail}")]
    #[non_exhaustive]
    Tls {
        /// Why it failed.
        reason: TlsReason,
        /// More detail, fit to show a user (rustls's own message, the alert received, ...).
        detail: String,
        /// The `rustls::Error` it came from, when rustls reported it (not for a timeout or
        /// an early end of stream).
        #[source]
        source: Option<TlsSource>,
    },
    /// A socket option was set that does not apply to the kind of socket being made (say
    /// `linger` on a UDP socket); nothing was created.
    #[error("option `{option}` does not apply to {socket} sockets")]
    UnsupportedOption {
        /// The option's name, as in [`SocketOptions`](crate::SocketOptions).
        option: &'static str,
        /// The kind of socket, e.g. `"UDP"`.
        socket: &'static str,
    },
    /// A TLS configuration could not be built: unreadable or malformed PEM, a key that does not
    /// match its certificate, an invalid server name.
    #[error("TLS configuration: {detail}")]
    #[non_exhaustive]
    TlsConfig {
        /// What was wrong, fit to show a user.
        detail: String,
        /// The error behind it, when there is one: the `io::Error` of a file that could not
        /// be read, the PEM parser's error, the `rustls::Error` of a key that does not match.
        #[source]
        source: Option<TlsSource>,
    },
}

/// Why a TLS handshake or session failed: the `reason` of [`Error::Tls`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsReason {
    /// The peer's certificate chain does not lead to a trusted root.
    UnknownIssuer,
    /// The peer's certificate is not valid for the name (or IP address) being verified.
    NameMismatch,
    /// The peer's certificate has expired.
    Expired,
    /// The peer's certificate is not valid yet.
    NotYetValid,
    /// The peer's certificate was rejected for another reason (bad signature, bad encoding,
    /// wrong key usage, revoked, ...).
    BadCertificate,
    /// The server requires a client certificate and the client sent none.
    ClientCertRequired,
    /// The peer ended the handshake with an alert (it rejected us; the alert is in `detail`).
    AlertReceived,
    /// The two sides share no protocol version, cipher suite or ALPN protocol.
    Incompatible,
    /// The peer sent something that is not valid TLS (e.g. a plain-text client).
    ProtocolError,
    /// The handshake did not finish within the handshake timeout.
    HandshakeTimeout,
    /// The connection closed during the handshake.
    HandshakeEof,
    /// The connection closed without a TLS close_notify: the data may have been cut short.
    Truncated,
    /// Anything else.
    Other,
}

impl TlsReason {
    /// Whether this is a failure to verify the peer's certificate.
    pub fn is_verification_failure(self) -> bool {
        matches!(
            self,
            TlsReason::UnknownIssuer
                | TlsReason::NameMismatch
                | TlsReason::Expired
                | TlsReason::NotYetValid
                | TlsReason::BadCertificate
                | TlsReason::ClientCertRequired
        )
    }
}

impl std::fmt::Display for TlsReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsReason::UnknownIssuer => "certificate verification failed: unknown issuer",
            TlsReason::NameMismatch => "certificate verification failed: name mismatch",
            TlsReason::Expired => "certificate verification failed: certificate expired",
            TlsReason::NotYetValid => "certificate verification failed: certificate not yet valid",
            TlsReason::BadCertificate => "certificate verification failed: bad certificate",
            TlsReason::ClientCertRequired => "client certificate required",
            TlsReason::AlertReceived => "handshake rejected by peer",
            TlsReason::Incompatible => "no common protocol",
            TlsReason::ProtocolError => "protocol error",
            TlsReason::HandshakeTimeout => "handshake timed out",
            TlsReason::HandshakeEof => "connection closed during handshake",
            TlsReason::Truncated => "connection closed without close_notify (truncated)",
            TlsReason::Other => "error",
        })
    }
}

impl Error {
    /// A TLS failure with no underlying error (a timeout, an early end of stream).
    #[cfg(feature = "tls")]
    pub(crate) fn tls(reason: TlsReason, detail: impl Into<String>) -> Error {
        Error::Tls {
            reason,
            detail: detail.into(),
            source: None,
        }
    }

    /// A TLS failure caused by `source` (a `rustls::Error`).
    #[cfg(feature = "tls")]
    pub(crate) fn tls_from(
        reason: TlsReason,
        detail: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Tls {
            reason,
            detail: detail.into(),
            source: Some(Box::new(source)),
        }
    }

    /// A TLS configuration error with no underlying error.
    #[cfg(feature = "tls")]
    pub(crate) fn tls_config(detail: impl Into<String>) -> Error {
        Error::TlsConfig {
            detail: detail.into(),
            source: None,
        }
    }

    /// A TLS configuration error caused by `source`.
    #[cfg(feature = "tls")]
    pub(crate) fn tls_config_from(
        detail: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::TlsConfig {
            detail: detail.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Wraps an OS error from operation `op`, picking a specific variant where one fits.
    pub(crate) fn io(op: &'static str, source: io::Error) -> Error {
        match source.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => Error::ConnectionReset(source),
            io::ErrorKind::TimedOut => Error::Timeout,
            _ => match source.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
                // An asock error that went through an `io::Error` (e.g. via `AsyncRead`).
                Some(_) => Error::from_io_wrapped(source),
                None => Error::Io { op, source },
            },
        }
    }

    fn from_io_wrapped(source: io::Error) -> Error {
        match source.into_inner().map(|e| e.downcast::<Error>()) {
            Some(Ok(e)) => *e,
            Some(Err(e)) => Error::Io {
                op: "I/O",
                source: io::Error::other(e),
            },
            None => Error::Io {
                op: "I/O",
                source: io::Error::other("unknown"),
            },
        }
    }

    /// The kind of I/O error this corresponds to, for use in `std::io` adapters.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            Error::Io { source, .. } | Error::ConnectionReset(source) => source.kind(),
            Error::Resolve { .. } | Error::InvalidAddress(_) => io::ErrorKind::InvalidInput,
            Error::ConnectionRefused { .. } => io::ErrorKind::ConnectionRefused,
            Error::AddressInUse { .. } => io::ErrorKind::AddrInUse,
            Error::ConnectTimeout { .. } | Error::Timeout => io::ErrorKind::TimedOut,
            Error::LineTooLong { .. } | Error::InvalidUtf8 { .. } | Error::TooMuchData { .. } => {
                io::ErrorKind::InvalidData
            }
            Error::UnexpectedEof { .. } => io::ErrorKind::UnexpectedEof,
            Error::MemoryBudget { .. } => io::ErrorKind::OutOfMemory,
            Error::Closed(_) => io::ErrorKind::NotConnected,
            Error::Cancelled | Error::Panicked(_) => io::ErrorKind::Other,
            Error::DatagramTooLarge { .. } | Error::WrongDestination { .. } => {
                io::ErrorKind::InvalidInput
            }
            Error::DatagramTruncated { .. } => io::ErrorKind::InvalidData,
            Error::BroadcastNotEnabled { .. } => io::ErrorKind::PermissionDenied,
            Error::Tls { reason, .. } => match reason {
                TlsReason::HandshakeTimeout => io::ErrorKind::TimedOut,
                TlsReason::HandshakeEof | TlsReason::Truncated => io::ErrorKind::UnexpectedEof,
                _ => io::ErrorKind::InvalidData,
            },
            Error::TlsConfig { .. } | Error::UnsupportedOption { .. } => {
                io::ErrorKind::InvalidInput
            }
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io { source, .. } | Error::ConnectionReset(source) => source,
            other => io::Error::new(other.io_kind(), other),
        }
    }
}
