//! The TLS server: [`TlsServerConfig`] and [`Socket::tls_server`] (the accepting listener,
//! [`TlsServerSocket`](super::TlsServerSocket), is in `listener.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use super::client::{handshake_limit, run_handshake};
use super::session::TlsSession;
use super::socket::TlsSocket;
use super::{
    certified_key, config_error, parse_certs, provider, read_file, versions, CipherSuite,
    TlsVersion, DEFAULT_HANDSHAKE_TIMEOUT,
};
use crate::channel::Source;
use crate::error::{Error, Result, TlsReason};
use crate::Socket;

/// A TLS server configuration: certificate(s) and key(s), optional client-certificate
/// verification, ALPN, versions, handshake timeout.
///
/// Cheap to clone (clones share the rustls config and its session cache).
///
/// ```
/// # #[cfg(feature = "test-certs")] {
/// use asock::tls::{TlsConfig, TlsServerConfig};
/// use asock::{a_socket, SelectorManager};
///
/// // In production: TlsServerConfig::from_pem_files("server.pem", "server.key")?
/// let ca = asock::tls::test_certs::TestCa::new("doc CA")?;
/// let cert = ca.server_cert(&["localhost"])?;
/// let config = TlsServerConfig::from_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes())?;
/// let client = TlsConfig::client()
///     .os_roots(false)
///     .add_root_pem(ca.cert_pem().as_bytes())?
///     .server_name("localhost")?
///     .build()?;
///
/// let selector = SelectorManager::builder().threads(1).build()?;
/// selector.run_blocking(async {
///     let server = a_socket(&selector).tcp().bind("127.0.0.1:0").await?.tls(&config);
///     let addr = server.local_address().clone();
///     let sel = selector.clone();
///     let talk = selector.launch(async move {
///         let socket = a_socket(&sel).tcp().connect(addr).await?.tls(&client).await?;
///         socket.open_write_channel(true).write_str("hello\n").await?;
///         Ok::<_, asock::Error>(socket)
///     });
///     let socket = server.accept().await?; // handshaken in the background
///     assert_eq!(socket.open_read_channel().read_utf8_line().await?.as_deref(), Some("hello"));
///     drop(talk.await??);
///     Ok::<(), asock::Error>(())
/// })?;
/// # }
/// # Ok::<(), asock::Error>(())
/// ```
#[derive(Clone)]
pub struct TlsServerConfig {
    rustls: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServerConfig")
            .field("alpn", &self.rustls.alpn_protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Whether and how a server asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Clients must present a certificate issued by one of the given roots.
    Required,
    /// Clients may present one; if they do, it must verify.
    Optional,
}

impl TlsServerConfig {
    /// A server with one certificate chain (leaf first) and its key, both PEM, with defaults:
    /// TLS 1.2 and 1.3, no client certificates, 10 s handshake timeout.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<TlsServerConfig> {
        TlsServerConfig::builder()
            .cert_pem(chain_pem, key_pem)?
            .build()
    }

    /// [`from_pem`](Self::from_pem) from files (read now).
    pub fn from_pem_files(
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsServerConfig> {
        TlsServerConfig::builder()
            .cert_pem_files(chain, key)?
            .build()
    }

    /// Starts a configuration with every option.
    pub fn builder() -> TlsServerConfigBuilder {
        TlsServerConfigBuilder {
            default_cert: None,
            sni: HashMap::new(),
            client_auth: None,
            alpn: Vec::new(),
            versions: vec![TlsVersion::Tls13, TlsVersion::Tls12],
            suites: None,
            tickets: true,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Uses a rustls configuration made by hand.
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> TlsServerConfig {
        TlsServerConfig {
            rustls: config,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The handshake timeout (a socket timeout, when shorter, wins).
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The same configuration with another handshake timeout.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TlsServerConfig {
        self.handshake_timeout = timeout;
        self
    }
}

/// Builds a [`TlsServerConfig`]; from [`TlsServerConfig::builder`].
#[must_use]
pub struct TlsServerConfigBuilder {
    default_cert: Option<(Vec<u8>, Vec<u8>)>,
    sni: HashMap<String, (Vec<u8>, Vec<u8>)>,
    client_auth: Option<(ClientAuth, Vec<u8>)>,
    alpn: Vec<Vec<u8>>,
    versions: Vec<TlsVersion>,
    suites: Option<Vec<CipherSuite>>,
    tickets: bool,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsServerConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServerConfigBuilder")
            .finish_non_exhaustive()
    }
}

impl TlsServerConfigBuilder {
    /// The default certificate chain (leaf first) and key, PEM: used when the client sends no
    /// SNI name, or one that no [`sni_cert_pem`](Self::sni_cert_pem) matches.
    pub fn cert_pem(mut self, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        certified_key(chain_pem, key_pem, &*provider(None)?)?;
        self.default_cert = Some((chain_pem.to_vec(), key_pem.to_vec()));
        Ok(self)
    }

    /// [`cert_pem`](Self::cert_pem) from files (read now).
    pub fn cert_pem_files(self, chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let (c, k) = (read_file(chain.as_ref())?, read_file(key.as_ref())?);
        self.cert_pem(&c, &k)
    }

    /// A certificate for clients that ask for `host` through SNI (exact name, case-insensitive).
    pub fn sni_cert_pem(mut self, host: &str, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        certified_key(chain_pem, key_pem, &*provider(None)?)?;
        self.sni.insert(
            host.to_ascii_lowercase(),
            (chain_pem.to_vec(), key_pem.to_vec()),
        );
        Ok(self)
    }

    /// [`sni_cert_pem`](Self::sni_cert_pem) from files (read now).
    pub fn sni_cert_pem_files(
        self,
        host: &str,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self> {
        let (c, k) = (read_file(chain.as_ref())?, read_file(key.as_ref())?);
        self.sni_cert_pem(host, &c, &k)
    }

    /// Asks clients for a certificate issued by one of the roots in `roots_pem`.
    pub fn client_auth(mut self, mode: ClientAuth, roots_pem: &[u8]) -> Result<Self> {
        parse_certs(roots_pem, "client CA")?;
        self.client_auth = Some((mode, roots_pem.to_vec()));
        Ok(self)
    }

    /// [`client_auth`](Self::client_auth) with the roots from a file (read now).
    pub fn client_auth_file(self, mode: ClientAuth, roots: impl AsRef<Path>) -> Result<Self> {
        let pem = read_file(roots.as_ref())?;
        self.client_auth(mode, &pem)
    }

    /// Protocols accepted through ALPN, most preferred first. A client that offers ALPN but
    /// none of these is refused.
    pub fn alpn<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// The protocol versions to accept (default TLS 1.3 and 1.2).
    pub fn protocol_versions(mut self, versions: &[TlsVersion]) -> Self {
        self.versions = versions.to_vec();
        self
    }

    /// The cipher suites to accept, in the server's order of preference.
    pub fn cipher_suites(mut self, suites: &[CipherSuite]) -> Self {
        self.suites = Some(suites.to_vec());
        self
    }

    /// Whether to issue session tickets so clients can resume (default on).
    pub fn session_tickets(mut self, on: bool) -> Self {
        self.tickets = on;
        self
    }

    /// Limit for each handshake (default 10 s; a socket timeout, when shorter, wins). A client
    /// that stalls mid-handshake is dropped then.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Checks the configuration and makes it.
    pub fn build(self) -> Result<TlsServerConfig> {
        let provider = provider(self.suites.as_deref())?;
        if self.default_cert.is_none() && self.sni.is_empty() {
            return Err(Error::tls_config(
                "a TLS server needs a certificate and key",
            ));
        }
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(&self.versions)?)
            .map_err(config_error)?;
        let builder = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some((mode, roots_pem)) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in parse_certs(roots_pem, "client CA")? {
                    roots
                        .add(c)
                        .map_err(|e| Error::tls_config_from(format!("client CA: {e}"), e))?;
                }
                let v =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let v = match mode {
                    ClientAuth::Required => v,
                    ClientAuth::Optional => v.allow_unauthenticated(),
                };
                builder.with_client_cert_verifier(v.build().map_err(config_error)?)
            }
        };
        let load = |(c, k): &(Vec<u8>, Vec<u8>)| certified_key(c, k, &provider);
        let resolver = SniResolver {
            default: self.default_cert.as_ref().map(load).transpose()?,
            by_name: self
                .sni
                .iter()
                .map(|(h, ck)| Ok((h.clone(), load(ck)?)))
                .collect::<Result<_>>()?,
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = self.alpn;
        if self.tickets {
            config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(config_error)?;
        }
        Ok(TlsServerConfig {
            rustls: Arc::new(config),
            handshake_timeout: self.handshake_timeout,
        })
    }
}

/// Picks the certificate by SNI name, falling back to the default one.
#[derive(Debug)]
struct SniResolver {
    default: Option<Arc<CertifiedKey>>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|n| self.by_name.get(&n.to_ascii_lowercase()))
            .or(self.default.as_ref())
            .cloned()
    }
}

impl Socket {
    /// Starts TLS as a server on this accepted socket: handshakes within the config's handshake
    /// timeout (or the socket timeout, when shorter), then returns a [`TlsSocket`].
    ///
    /// Fails with [`Error::Tls`] (e.g. [`TlsReason::ProtocolError`](crate::TlsReason::ProtocolError)
    /// for a client that does not speak TLS,
    /// [`TlsReason::ClientCertRequired`](crate::TlsReason::ClientCertRequired),
    /// [`TlsReason::HandshakeTimeout`](crate::TlsReason::HandshakeTimeout)); the socket is
    /// closed then.
    pub async fn tls_server(self, config: &TlsServerConfig) -> Result<TlsSocket> {
        self.tls_server_with_early(config, Vec::new()).await
    }

    async fn tls_server_with_early(
        self,
        config: &TlsServerConfig,
        early: Vec<u8>,
    ) -> Result<TlsSocket> {
        let limit = handshake_limit(config.handshake_timeout, self.socket_timeout());
        self.tls_server_within(config, early, limit).await
    }

    /// The server handshake, `early` bytes first, within `limit`.
    async fn tls_server_within(
        self,
        config: &TlsServerConfig,
        early: Vec<u8>,
        limit: Duration,
    ) -> Result<TlsSocket> {
        let conn = rustls::ServerConnection::new(config.rustls.clone())
            .map_err(|e| Error::tls_config_from(e.to_string(), e))?;
        let session = Arc::new(TlsSession::new(self.shared().clone(), conn.into(), early));
        if let Err(e) = run_handshake(&session, limit).await {
            self.close();
            return Err(e);
        }
        let info = session.info();
        Ok(TlsSocket::new(self, session, info))
    }

    /// A [`TlsServerSocket`](super::TlsServerSocket)'s handshake of an accepted socket: waits
    /// for the client's first bytes (until then `spoke` stays false and the handshake counts
    /// as silent, the first to be shed under pressure), then handshakes, all within one
    /// handshake limit.
    pub(super) async fn tls_server_accepted(
        self,
        config: &TlsServerConfig,
        spoke: &AtomicBool,
    ) -> Result<TlsSocket> {
        let limit = handshake_limit(config.handshake_timeout, self.socket_timeout());
        let deadline = Instant::now() + limit;
        let mut first = vec![0; FIRST_READ];
        let read = std::future::poll_fn(|cx| Source::poll_read(&**self.shared(), cx, &mut first));
        let failed = match crate::time::timeout(limit, read).await {
            Ok(Ok(n)) if n > 0 => {
                first.truncate(n);
                spoke.store(true, Ordering::Relaxed);
                let rest = deadline.saturating_duration_since(Instant::now());
                return self.tls_server_within(config, first, rest).await;
            }
            // The same errors the handshake itself reports.
            Ok(Ok(_)) => Error::tls(
                TlsReason::HandshakeEof,
                "the peer closed the connection before the handshake finished",
            ),
            Ok(Err(e)) => Error::io("TLS handshake", e),
            Err(_) => Error::tls(
                TlsReason::HandshakeTimeout,
                format!("no complete handshake within {limit:?}"),
            ),
        };
        self.close();
        Err(failed)
    }
}

/// The first read of an accepted TLS connection: the start of its ClientHello (the rest, if
/// any, is read by the handshake).
const FIRST_READ: usize = 2048;

impl crate::Connection {
    /// Starts TLS as a server on a connection whose channels are already open (STARTTLS):
    /// queued output is flushed first, and bytes the read channel already buffered (an early
    /// ClientHello) are fed to the handshake.
    pub async fn tls_server(self, config: &TlsServerConfig) -> Result<TlsSocket> {
        let (socket, early) = self.into_plain().await?;
        socket.tls_server_with_early(config, early).await
    }
}
