//! TLS for client and server sockets (feature `tls`, on by default): rustls with the `ring`
//! provider.
//!
//! Ktor's `socket.tls()` becomes [`Socket::tls`](crate::Socket::tls), and the server side
//! Ktor lacks is [`Socket::tls_server`](crate::Socket::tls_server) or, for a listener,
//! [`ServerSocket::tls`](crate::ServerSocket::tls). Both give a [`TlsSocket`], which offers the
//! same [`open_read_channel`](TlsSocket::open_read_channel) /
//! [`open_write_channel`](TlsSocket::open_write_channel) as a plain socket.
//!
//! Secure by default: the client verifies the server's certificate against the operating
//! system's roots (plus any you add) and the host name it connected to; an IP literal is checked
//! against the certificate's IP SANs. The one way around verification is loudly named:
//! [`TlsConfigBuilder::danger_accept_invalid_certs`].
//!
//! ```
//! # #[cfg(feature = "test-certs")]
//! # fn main() -> asock::Result<()> {
//! use asock::tls::{test_certs::TestCa, TlsConfig, TlsServerConfig};
//! use asock::{a_socket, SelectorManager};
//!
//! let ca = TestCa::new("example CA")?;
//! let cert = ca.server_cert(&["localhost"])?;
//! let server_config = TlsServerConfig::from_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes())?;
//! let client_config = TlsConfig::client()
//!     .os_roots(false)
//!     .add_root_pem(ca.cert_pem().as_bytes())?
//!     .server_name("localhost")? // default: the host connected to
//!     .build()?;
//!
//! let selector = SelectorManager::builder().threads(1).build()?;
//! selector.run_blocking(async {
//!     let server = a_socket(&selector).tcp().bind("127.0.0.1:0").await?.tls(&server_config);
//!     let port = server.local_address().port().unwrap();
//!     selector.launch(async move {
//!         let socket = server.accept().await?;
//!         let (mut input, mut output) = (socket.open_read_channel(), socket.open_write_channel(true));
//!         while let Some(line) = input.read_utf8_line().await? {
//!             output.write_str(&format!("{line}\r\n")).await?;
//!         }
//!         output.close().await
//!     });
//!
//!     let socket = a_socket(&selector).tcp().connect(("127.0.0.1", port)).await?;
//!     let socket = socket.tls(&client_config).await?;
//!     let mut output = socket.open_write_channel(true);
//!     let mut input = socket.open_read_channel();
//!     output.write_str("hello\r\n").await?;
//!     assert_eq!(input.read_utf8_line().await?.as_deref(), Some("hello"));
//!     output.close().await?; // sends close_notify
//!     assert_eq!(input.read_utf8_line().await?, None);
//!     Ok(())
//! })
//! # }
//! # #[cfg(not(feature = "test-certs"))]
//! # fn main() {}
//! ```
//!
//! Errors are typed: a failed verification or handshake is [`Error::Tls`] with a
//! [`TlsReason`] (unknown issuer, name mismatch, expired, client certificate required,
//! handshake timeout, ...). A peer that closes the TCP connection without a TLS `close_notify`
//! is reported as [`TlsReason::Truncated`], never as a silent end of stream.
//!
//! # Name matching
//! The client checks the server's certificate against the name it verifies (`server_name`, else
//! the host connected to) as RFC 6125 says, through rustls-webpki: a wildcard stands for exactly
//! one leftmost label (`*.example.com` matches `a.example.com`, not `a.b.example.com` nor
//! `example.com`), a nested wildcard (`*.*.example.com`) never matches, and neither does a
//! certificate name with a trailing dot (`example.com.`). Ktor's JVM verifier accepts those last
//! two; see `docs/from-ktor.md`.

mod client;
mod listener;
mod server;
mod session;
mod socket;
#[cfg(feature = "test-certs")]
pub mod test_certs;

use std::io;
use std::path::Path;
use std::sync::Arc;

pub use client::{TlsConfig, TlsConfigBuilder};
pub use listener::TlsServerSocket;
pub use rustls::pki_types::CertificateDer;
pub use rustls::CipherSuite;
pub use server::{ClientAuth, TlsServerConfig, TlsServerConfigBuilder};
pub use socket::{TlsConnection, TlsSocket};

/// The rustls crate asock uses, for configurations beyond the builders
/// ([`TlsConfig::from_rustls`], [`TlsServerConfig::from_rustls`]).
pub use rustls;

use crate::error::{Error, Result, TlsReason};

/// Default limit for a TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    fn from_rustls(v: rustls::ProtocolVersion) -> Option<TlsVersion> {
        match v {
            rustls::ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
            rustls::ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
            _ => None,
        }
    }

    fn to_rustls(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        }
    }
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        })
    }
}

/// The crypto provider, with the versions and cipher suites asked for.
fn provider(suites: Option<&[CipherSuite]>) -> Result<Arc<rustls::crypto::CryptoProvider>> {
    let mut p = rustls::crypto::ring::default_provider();
    if let Some(want) = suites {
        let all = std::mem::take(&mut p.cipher_suites);
        p.cipher_suites = want
            .iter()
            .filter_map(|w| all.iter().find(|s| s.suite() == *w).copied())
            .collect();
        if p.cipher_suites.is_empty() {
            return Err(Error::tls_config(format!(
                "none of the cipher suites {want:?} is supported"
            )));
        }
    }
    Ok(Arc::new(p))
}

fn versions(v: &[TlsVersion]) -> Result<Vec<&'static rustls::SupportedProtocolVersion>> {
    if v.is_empty() {
        return Err(Error::tls_config("no protocol version enabled"));
    }
    Ok(v.iter().map(|v| v.to_rustls()).collect())
}

fn config_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::tls_config_from(e.to_string(), e)
}

/// Reads a file for a configuration (certificates and keys are read when the config is built).
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::tls_config_from(format!("cannot read {}: {e}", path.display()), e))
}

/// Parses every certificate in PEM text (a chain, or a bundle of roots).
fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::tls_config_from(format!("{what}: invalid PEM: {e}"), e))?;
    if certs.is_empty() {
        return Err(Error::tls_config(format!("{what}: no certificate found")));
    }
    Ok(certs)
}

/// Parses the private key in PEM text (PKCS#8, PKCS#1 RSA or SEC1 EC).
fn parse_key(pem: &[u8], what: &str) -> Result<rustls::pki_types::PrivateKeyDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| Error::tls_config_from(format!("{what}: no usable private key: {e}"), e))
}

/// A certificate chain and its key, checked against each other.
fn certified_key(
    chain_pem: &[u8],
    key_pem: &[u8],
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<rustls::sign::CertifiedKey>> {
    let chain = parse_certs(chain_pem, "certificate chain")?;
    let key = parse_key(key_pem, "private key")?;
    rustls::sign::CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| Error::tls_config_from(format!("certificate and key: {e}"), e))
}

/// An `io::Error` carrying a typed TLS error (with the rustls error behind it, if any), so
/// that it comes out of a channel as [`Error::Tls`].
fn tls_io_error(reason: TlsReason, detail: String, source: Option<rustls::Error>) -> io::Error {
    let e = match source {
        Some(s) => Error::tls_from(reason, detail, s),
        None => Error::tls(reason, detail),
    };
    io::Error::new(e.io_kind(), e)
}

/// Classifies a rustls error.
fn map_rustls_error(e: &rustls::Error) -> (TlsReason, String) {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let reason = match e {
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer => TlsReason::UnknownIssuer,
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsReason::NameMismatch,
            C::Expired | C::ExpiredContext { .. } => TlsReason::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => TlsReason::NotYetValid,
            _ => TlsReason::BadCertificate,
        },
        E::NoCertificatesPresented => TlsReason::ClientCertRequired,
        E::AlertReceived(A::CertificateRequired) => TlsReason::ClientCertRequired,
        E::AlertReceived(A::ProtocolVersion | A::NoApplicationProtocol) => TlsReason::Incompatible,
        E::AlertReceived(_) => TlsReason::AlertReceived,
        E::PeerIncompatible(_) | E::NoApplicationProtocol => TlsReason::Incompatible,
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. }
        | E::PeerMisbehaved(_)
        | E::PeerSentOversizedRecord
        | E::DecryptError => TlsReason::ProtocolError,
        _ => TlsReason::Other,
    };
    (reason, e.to_string())
}
